"""docker-compose.yml parses and references only images, files, ports and settings that exist.

`docker compose config` runs too when the Compose plugin is installed; the YAML-level checks run
everywhere."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from typing import Any

import pytest

from orderflow.runtime.settings import ServiceSettings
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
    assert set(compose["services"]) == set(SERVICES) | INFRA
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
