"""docker-compose.yml parses and references only images, files, ports and settings that exist.

`docker compose config` runs too when the Compose plugin is installed; the YAML-level checks run
everywhere."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orderflow.runtime.settings import ServiceSettings
from orderflow.runtime.tracing import exporter_configured
from tests.deploy.support import (
    DOCKERFILE,
    HTTP_PORT,
    ROOT,
    SERVICES,
    is_known_env_var,
    load_every_setting,
    load_yaml,
    module_exists,
)

pytestmark = pytest.mark.unit

INFRA = {"kafka", "postgres", "topics", "kafka-ui", "kafka-exporter", "prometheus", "grafana"}
# profile observability: started only when asked for (docker compose --profile observability)
OBSERVABILITY = {"otel-collector", "jaeger"}
OTEL = ROOT / "deploy" / "otel"
COLLECTOR_CONFIG_IN_IMAGE = "/etc/otelcol-contrib/config.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _interpolated(value: str) -> str:
    """``${VAR:-default}`` as Compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


def test_every_service_and_the_infrastructure_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == set(SERVICES) | INFRA | OBSERVABILITY
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in _env(kafka)["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any("zookeeper" in str(s.get("image", "")) for s in compose["services"].values())
    assert compose["services"]["postgres"]["image"].startswith("postgres:16")
    assert compose["services"]["kafka-ui"]["image"].startswith(("kafbat/kafka-ui", "ghcr.io/kafbat/"))
    assert compose["services"]["kafka-exporter"]["image"].startswith("danielqsj/kafka-exporter")


@pytest.mark.parametrize("service", SERVICES)
def test_service_builds_from_the_one_dockerfile_with_its_name(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["build"]["context"] == "."
    assert ROOT / spec["build"]["dockerfile"] == DOCKERFILE
    assert spec["build"]["args"] == {"SERVICE": service}
    assert _interpolated(spec["image"]) == f"orderflow/{service}:latest"
    assert module_exists(f"orderflow.{service}.__main__")


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_scalable(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert "container_name" not in spec
    if service == "console":
        assert spec["ports"] == [f"127.0.0.1:8080:{HTTP_PORT}"]
    else:
        assert "ports" not in spec, "a worker with a host port cannot be scaled"
    assert spec["restart"] == "unless-stopped"


def test_no_fixed_container_names_anywhere(compose: dict[str, Any]) -> None:
    assert not [name for name, spec in compose["services"].items() if "container_name" in spec]


@pytest.mark.parametrize("service", SERVICES)
def test_service_environment_is_known_and_loads(compose: dict[str, Any], service: str) -> None:
    env = {k: _interpolated(v) for k, v in _env(compose["services"][service]).items()}
    unknown = [name for name in env if not is_known_env_var(service, name)]
    assert not unknown, f"{service} is given variables no setting reads: {unknown}"
    loaded = load_every_setting(service, {k: v for k, v in env.items() if v})
    settings: ServiceSettings = loaded["ServiceSettings"]
    assert settings.http_port == HTTP_PORT and settings.http_host == "0.0.0.0"
    assert loaded["KafkaSettings"].bootstrap_servers == "kafka:9092"
    assert "@postgres:5432/" in loaded["DatabaseSettings"].url
    grace = float(compose["services"][service]["stop_grace_period"].removesuffix("s"))
    assert grace > settings.graceful_timeout_s, "stop_grace_period must exceed the graceful timeout"


def test_console_reaches_the_other_services_by_their_compose_names(compose: dict[str, Any]) -> None:
    loaded = load_every_setting("console", {k: _interpolated(v) for k, v in
                                            _env(compose["services"]["console"]).items()})
    urls = loaded["ConsoleSettings"].service_urls
    assert set(urls) == set(SERVICES) - {"console"}
    for name, url in urls.items():
        assert url == f"http://{name}:{HTTP_PORT}"


def test_dependencies_and_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, spec in services.items():
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully"
        assert depends["kafka"]["condition"] == depends["postgres"]["condition"] == "service_healthy"


def test_topics_job_runs_code_that_exists(compose: dict[str, Any]) -> None:
    job = compose["services"]["topics"]
    assert _interpolated(job["image"]) == "orderflow/intake:latest"
    assert job["build"] == compose["services"]["intake"]["build"]
    assert job["restart"] == "no"
    argv = job["command"]
    assert argv[:2] == ["python", "-c"]
    tree = ast.parse(argv[2])
    imported = {(node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert ("orderflow.runtime.service", "create_topics") in imported
    assert ("orderflow.contracts.topics", "all_topic_names") in imported
    for module, name in imported:
        assert module is not None
        assert hasattr(__import__(module, fromlist=[name]), name), f"{module}.{name}"


def test_published_ports_do_not_clash(compose: dict[str, Any]) -> None:
    host_ports = [p.split(":")[-2] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), host_ports
    assert {"8080", "8090", "9090", "3000"} <= set(host_ports)


def test_published_ports_are_bound_to_the_loopback(compose: dict[str, Any]) -> None:
    """Development credentials and UIs without sign-in: never on the host's other interfaces."""
    for name, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert port.startswith("127.0.0.1:") and port.count(":") == 2, (name, port)


def test_credentials_come_from_the_environment_not_the_file(compose: dict[str, Any]) -> None:
    """The service key and the console's users are passed through, never written here; the
    console gets no development users."""
    for service in SERVICES:
        env = _env(compose["services"][service])
        holds_key = service in {"review", "inventory", "logistics", "console"}
        assert (env.get("ORDERFLOW_SERVICE_KEY") == "${ORDERFLOW_SERVICE_KEY:-}") == holds_key, service
        assert "ORDERFLOW_CONSOLE_DEV_USERS" not in env, service
    console = _env(compose["services"]["console"])
    assert console["ORDERFLOW_CONSOLE_USERS"] == "${ORDERFLOW_CONSOLE_USERS:-}"


def test_docker_compose_config_when_the_plugin_is_installed() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client here")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("the docker client has no compose plugin here (the YAML-level checks ran)")
    done = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


# --- profile observability --------------------------------------------------------------------

def _env_file(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    data = load_yaml(OTEL / "collector.yaml")
    assert isinstance(data, dict)
    return data


def test_only_the_observability_services_have_a_profile(compose: dict[str, Any]) -> None:
    """``docker compose up`` starts what it always did; the profile adds the collector and Jaeger."""
    for name, spec in compose["services"].items():
        assert spec.get("profiles", []) == (["observability"] if name in OBSERVABILITY else []), name
    collector = compose["services"]["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert compose["services"]["jaeger"]["image"].startswith("jaegertracing/all-in-one:")
    assert set(collector["depends_on"]) == {"jaeger"}
    # no service depends on them: without the profile, they are not there
    for name in set(compose["services"]) - OBSERVABILITY:
        assert not OBSERVABILITY & set(compose["services"][name].get("depends_on", {})), name


def test_the_collector_config_is_mounted_and_every_pipeline_component_is_defined(
        compose: dict[str, Any], collector: dict[str, Any]) -> None:
    spec = compose["services"]["otel-collector"]
    mounts = dict(v.split(":")[:2] for v in spec["volumes"])
    assert mounts["./deploy/otel/collector.yaml"] == COLLECTOR_CONFIG_IN_IMAGE
    assert spec["command"] == [f"--config={COLLECTOR_CONFIG_IN_IMAGE}"]
    service = collector["service"]
    for kind in ("receivers", "processors", "exporters"):
        for pipeline in service["pipelines"].values():
            for component in pipeline.get(kind, []):
                assert component in collector[kind], f"{kind}: {component} is not defined"
    assert set(service.get("extensions", [])) <= set(collector.get("extensions", {}))
    traces = service["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert "debug" in traces["exporters"]  # a line per batch in `docker compose logs`
    assert traces["processors"][0] == "memory_limiter"  # first, as the collector's docs ask


def test_the_services_endpoint_is_the_collectors_otlp_http_receiver(
        compose: dict[str, Any], collector: dict[str, Any]) -> None:
    profile = _env_file(OTEL / "observability.env")
    assert profile["COMPOSE_PROFILES"] == "observability"
    endpoint = urlsplit(profile["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.scheme == "http" and endpoint.path in {"", "/"}  # the SDK adds /v1/traces
    assert endpoint.hostname == "otel-collector" and endpoint.hostname in compose["services"]
    receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    host, port = receiver.rsplit(":", 1)
    assert host == "0.0.0.0", "bound to the container's loopback, the services could not reach it"
    assert int(port) == endpoint.port
    assert str(endpoint.port) in compose["services"]["otel-collector"]["expose"]
    # the services take the endpoint from that variable
    for service in SERVICES:
        env = _env(compose["services"][service])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}", service
        loaded = {**{k: _interpolated(v) for k, v in env.items()},
                  "OTEL_EXPORTER_OTLP_ENDPOINT": profile["OTEL_EXPORTER_OTLP_ENDPOINT"]}
        assert exporter_configured(loaded), service
    # the collector forwards to Jaeger's OTLP/gRPC port, which Jaeger opens
    jaeger = urlsplit("//" + collector["exporters"]["otlp/jaeger"]["endpoint"])
    assert jaeger.hostname == "jaeger" and str(jaeger.port) in compose["services"]["jaeger"]["expose"]
    assert jaeger.port == 4317
    assert _env(compose["services"]["jaeger"])["COLLECTOR_OTLP_ENABLED"] == "true"
