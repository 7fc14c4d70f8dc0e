"""The Kubernetes manifests: kustomize output validates against the Kubernetes schemas offline
(kubernetes-validate), custom resources carry their required fields, and every Deployment,
autoscaler, topic and setting matches the code.

The overlays are rendered with ``kubectl kustomize`` when kubectl is installed; without it only
the base (plain resources) is checked and the overlay checks are skipped, saying so."""

from __future__ import annotations

import base64
import shutil
import subprocess
from functools import cache
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from orderflow.contracts.topics import BY_NAME, all_topic_names
from orderflow.devstack import k8s_topics
from orderflow.devstack.asyncapi import load_definition
from orderflow.runtime.settings import ServiceSettings
from tests.deploy.support import (
    CONSUMERS,
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

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
TARGETS = ("base", "overlays/local", "overlays/production")
# Secrets created out of band (README, Deployment): never in the repository
EXTERNAL_SECRETS = {"orderflow-database", "orderflow-kafka", "orderflow-kafka-ca",
                    "orderflow-service-key", "orderflow-console"}
# who gets the key of service credentials: the console signs, the others verify
SERVICE_KEY_HOLDERS = {"review", "inventory", "logistics", "console"}
HTTP_SERVICES = {"intake", "review", "console"}


@cache
def _kubectl() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    probe = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, timeout=30)
    return kubectl if probe.returncode == 0 else None


@cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = _kubectl()
    if kubectl is not None:
        done = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return tuple(d for d in yaml.safe_load_all(done.stdout) if d)
    if target != "base":
        pytest.skip(f"kubectl (with built-in kustomize) is not installed: {target} not rendered; "
                    "the base resources are checked as files")
    kustomization = load_yaml(K8S / "base" / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / "base" / name).read_text(encoding="utf-8")) if d]
    return tuple(docs)


def _kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _base_files() -> tuple[dict[str, Any], ...]:
    kustomization = load_yaml(K8S / "base" / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / "base" / name).read_text(encoding="utf-8")) if d]
    return tuple(docs)


def _production_resources() -> tuple[dict[str, Any], ...]:
    """The production overlay's output; without kubectl, the base and component files as they
    are (no namespace, image or patch transformations): enough for structural checks."""
    if _kubectl() is not None:
        return _render("overlays/production")
    docs = list(_base_files())
    for component in ("keda", "strimzi-topics", "strimzi-users"):
        folder = K8S / "components" / component
        for name in load_yaml(folder / "kustomization.yaml")["resources"]:
            docs += [d for d in yaml.safe_load_all((folder / name).read_text(encoding="utf-8")) if d]
    return tuple(docs)


def _check_custom_resource(doc: dict[str, Any]) -> None:
    kind, spec, name = doc["kind"], doc.get("spec", {}), doc["metadata"]["name"]
    if kind == "ScaledObject":
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"], name
        assert spec["triggers"], name
        for trigger in spec["triggers"]:
            assert trigger["type"] and isinstance(trigger["metadata"], dict), name
            assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA metadata are strings"
        assert 0 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]
    elif kind == "TriggerAuthentication":
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        for ref in spec["secretTargetRef"]:
            assert ref["parameter"] and ref["name"] and ref["key"], name
    elif kind == "KafkaTopic":
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"], name
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
        assert spec["topicName"]
    elif kind == "KafkaUser":
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"], name
        assert spec["authentication"]["type"] in {"scram-sha-512", "tls"}, name
        assert spec["authorization"]["type"] == "simple", name
        for acl in spec["authorization"]["acls"]:
            assert acl["resource"]["type"] in {"topic", "group", "cluster", "transactionalId"}
            assert acl["resource"]["type"] == "cluster" or acl["resource"]["name"], name
            assert acl["operations"], name
    else:
        raise AssertionError(f"no schema and no check for {doc['apiVersion']} {kind}")


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_validate_against_the_kubernetes_schemas(target: str) -> None:
    docs = _render(target)
    assert docs
    for doc in docs:
        if doc["kind"] in {"ScaledObject", "TriggerAuthentication", "KafkaTopic", "KafkaUser"}:
            _check_custom_resource(doc)
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{target}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                                 f"at {list(exc.path)}") from exc


def test_base_validates_as_plain_files_too() -> None:
    """What CI without kubectl checks: the base's files, one by one."""
    for doc in _base_files():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("service", SERVICES)
def test_deployment_per_service(service: str) -> None:
    deployment = _kind(_base_files(), "Deployment")[service]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"orderflow/{service}:latest"
    assert DOCKERFILE.is_file() and (ROOT / "services" / service / "pyproject.toml").is_file()
    assert module_exists(f"orderflow.{service}.__main__")
    assert "command" not in container and "args" not in container, "the image's CMD starts it"
    (port,) = container["ports"]
    assert port["containerPort"] == HTTP_PORT and port["name"] == "http"
    for probe in ("readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    # liveness is the process answering, not its dependencies: a database outage must not
    # restart every pod (the runtime retries and /healthz reports it for readiness)
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    grace = ServiceSettings.model_fields["graceful_timeout_s"].default
    assert pod["terminationGracePeriodSeconds"] > grace
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env_from = container["envFrom"]
    configs = [e["configMapRef"]["name"] for e in env_from if "configMapRef" in e]
    assert configs == ["orderflow-config"] + (["orderflow-console-config"] if service == "console" else [])
    secrets = {e["secretRef"]["name"] for e in env_from if "secretRef" in e}
    assert secrets == {"orderflow-database", "orderflow-kafka"} \
        | ({"orderflow-service-key"} if service in SERVICE_KEY_HOLDERS else set()) \
        | ({"orderflow-console"} if service == "console" else set())
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kafka-ca"]["secret"]["secretName"] == "orderflow-kafka-ca"
    assert mounts["var"] == "/app/var" and mounts["tmp"] == "/tmp"
    assert all(name in volumes for name in mounts)
    for item in container.get("env", []):
        assert is_known_env_var(service, item["name"]), item["name"]


def test_http_services_have_a_service() -> None:
    docs = _base_files()
    services, deployments = _kind(docs, "Service"), _kind(docs, "Deployment")
    assert set(services) == HTTP_SERVICES
    for name, service in services.items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == "http"


DUMMY_SECRETS = {
    "orderflow-database": {"DATABASE_URL": "postgresql://orderflow:x@db:5432/orderflow"},
    "orderflow-kafka": {"ORDERFLOW_KAFKA_SASL_USERNAME": "orderflow", "ORDERFLOW_KAFKA_SASL_PASSWORD": "x"},
    "orderflow-service-key": {"ORDERFLOW_SERVICE_KEY": "x" * 43},
    "orderflow-console": {"ORDERFLOW_CONSOLE_USERS": '{"ops": {"role": "admin", "password_hash": '
                                                     '"scrypt$16384$8$1$c2FsdA$aGFzaA"}}',
                          "ORDERFLOW_CONSOLE_ADMIN_TOKEN": "x" * 43},
}


def _pod_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any], *,
             external_secrets: bool) -> dict[str, str]:
    """The variables a container starts with: its envFrom sources, then its env literals.
    With ``external_secrets``, Secrets missing from the output (created out of band) get dummy
    values; otherwise a missing (optional) Secret gives nothing."""
    configs, secrets = _kind(docs, "ConfigMap"), _kind(docs, "Secret")
    env: dict[str, str] = {}
    for ref in container.get("envFrom", []):
        if "configMapRef" in ref:
            env |= configs[ref["configMapRef"]["name"]]["data"]
            continue
        name = ref["secretRef"]["name"]
        if name in secrets:
            env |= {k: base64.b64decode(v).decode() for k, v in secrets[name].get("data", {}).items()}
        elif external_secrets:
            env |= DUMMY_SECRETS.get(name, {})
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return env


@pytest.mark.parametrize("target", TARGETS[1:])
def test_configuration_loads_in_every_service(target: str) -> None:
    docs = _render(target)
    production = target.endswith("production")
    for service, deployment in _kind(docs, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = _pod_env(docs, container, external_secrets=production)
        unknown = [k for k in env if not is_known_env_var(service, k)]
        assert not unknown, f"{target}: {service} is given variables no setting reads: {unknown}"
        loaded = load_every_setting(service, env)  # raises as the process would at start
        kafka = loaded["KafkaSettings"]
        assert loaded["ServiceSettings"].http_port == HTTP_PORT
        if production:
            assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_mechanism == "SCRAM-SHA-512"
            assert kafka.ssl_cafile == "/etc/orderflow/kafka/ca.crt"
        else:
            assert kafka.security_protocol == "PLAINTEXT" and kafka.bootstrap_servers == "kafka:9092"
        if service == "console":
            urls = loaded["ConsoleSettings"].service_urls
            assert urls == {s: f"http://{s}:{HTTP_PORT}" for s in SERVICES if s != "console"}
    assert set(_kind(docs, "Deployment")) >= set(SERVICES)


@pytest.mark.parametrize("target", TARGETS[1:])
def test_every_secret_and_config_reference_resolves(target: str) -> None:
    docs = _render(target)
    present = set(_kind(docs, "Secret"))
    configs = set(_kind(docs, "ConfigMap"))
    for deployment in [*_kind(docs, "Deployment").values(), *_kind(docs, "StatefulSet").values(),
                       *(j for j in _kind(docs, "Job").values())]:
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for ref in container.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configs
                elif ref["secretRef"].get("optional") or target.endswith("production"):
                    assert ref["secretRef"]["name"] in present | EXTERNAL_SECRETS
                else:
                    assert ref["secretRef"]["name"] in present, ref
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"].get("optional") or volume["secret"]["secretName"] in present
    if target.endswith("production"):
        assert not present, "production Secrets are created out of band, never committed"


def test_custom_resources_carry_their_required_fields() -> None:
    docs = [d for d in _production_resources()
            if d["kind"] in {"ScaledObject", "TriggerAuthentication", "KafkaTopic", "KafkaUser"}]
    assert docs
    for doc in docs:
        _check_custom_resource(doc)


def test_production_scales_consumers_on_lag_and_the_console_on_cpu() -> None:
    docs = _production_resources()
    scaled = _kind(docs, "ScaledObject")
    deployments = _kind(docs, "Deployment")
    auths = _kind(docs, "TriggerAuthentication")
    assert set(scaled) == set(CONSUMERS)
    for service, so in scaled.items():
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] == service and service in deployments
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == f"orderflow.{service}"
        assert trigger["authenticationRef"]["name"] in auths
        main = so["metadata"]["annotations"]["orderflow.io/main-topic"]
        assert main in {s.topic.name for s in load_definition(service).subscriptions}
        assert spec["maxReplicaCount"] == BY_NAME[main].partitions
        config = _kind(docs, "ConfigMap")["orderflow-config"]["data"]
        assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    for auth in auths.values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] in EXTERNAL_SECRETS
            if ref["name"] == "orderflow-kafka":
                assert is_known_env_var("intake", ref["key"])
    (hpa,) = _kind(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "console"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "console" not in scaled


def test_production_images_are_pinned_in_the_registry() -> None:
    for name, deployment in _kind(_render("overlays/production"), "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"registry.example.com/orderflow/{name}:0.1.0"


def test_kafka_topics_are_generated_from_the_catalogue() -> None:
    committed = (ROOT / k8s_topics.DEFAULT_PATH).read_text(encoding="utf-8")
    assert committed == k8s_topics.render(), (
        "kafkatopics.yaml is stale: run python -m orderflow.devstack.k8s_topics")
    docs = _production_resources()
    topics = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in _kind(docs, "KafkaTopic").values()}
    assert topics == dict(all_topic_names())


def test_local_overlay_creates_topics_with_code_that_exists() -> None:
    docs = _render("overlays/local")
    (job,) = _kind(docs, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    code = container["command"][2]
    compile(code, "topics-job", "exec")
    assert "create_topics" in code and "all_topic_names" in code
    assert container["image"].startswith("orderflow/intake:")
    assert {"kafka", "postgres"} <= set(_kind(docs, "StatefulSet"))
    assert not _kind(docs, "ScaledObject") and not _kind(docs, "KafkaTopic")


def test_overlays_exist_on_disk() -> None:
    for target in TARGETS:
        assert (K8S / target / "kustomization.yaml").is_file()
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = load_yaml(path)
        for entry in [*kustomization.get("resources", []), *kustomization.get("components", [])]:
            assert (path.parent / entry).exists(), f"{path}: {entry}"
