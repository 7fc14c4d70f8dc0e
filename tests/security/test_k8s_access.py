"""The Kubernetes base from an attacker's side: who can open a connection to which pod (its
NetworkPolicies evaluated for a set of callers), and where the credentials come from (the
service key and the console's users and admin token from Secrets, the same for every replica;
development users nowhere but the local overlay, which says so)."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
NAMESPACE = "orderflow"


@cache
def rendered(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        done = subprocess.run([kubectl, "kustomize", str(K8S / target)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return tuple(d for d in yaml.safe_load_all(done.stdout) if d)
    if target != "base":
        pytest.skip(f"kubectl is not installed: {target} not rendered")
    docs: list[dict[str, Any]] = []
    for name in yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / "base" / name).read_text()) if d]
    return tuple(docs)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions)."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if ((operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and present and labels[key] in values)
                or (operator == "Exists" and not present)
                or (operator == "DoesNotExist" and present)):
            return False
    return True


# callers: (namespace labels, pod labels)
def pod(name: str) -> tuple[dict[str, str], dict[str, str]]:
    return ({"kubernetes.io/metadata.name": NAMESPACE},
            {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "orderflow"})


CALLERS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    **{service: pod(service) for service in SERVICES},
    "prometheus": ({"kubernetes.io/metadata.name": "monitoring"},
                   {"app.kubernetes.io/name": "prometheus"}),
    "grafana": ({"kubernetes.io/metadata.name": "monitoring"}, {"app.kubernetes.io/name": "grafana"}),
    "ingress controller": ({"kubernetes.io/metadata.name": "ingress-nginx"},
                           {"app.kubernetes.io/name": "ingress-nginx"}),
    "another pod of the namespace": ({"kubernetes.io/metadata.name": NAMESPACE},
                                     {"app": "debug-shell"}),
    "a pod posing as the console elsewhere": (
        {"kubernetes.io/metadata.name": "tenant-b"},
        {"app.kubernetes.io/name": "console", "app.kubernetes.io/part-of": "orderflow"}),
}


def peer_allows(peer: dict[str, Any], caller: tuple[dict[str, str], dict[str, str]]) -> bool:
    namespace_labels, pod_labels = caller
    if "ipBlock" in peer:
        return False  # no policy of ours opens an address range
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif namespace_labels.get("kubernetes.io/metadata.name") != NAMESPACE:
        return False  # a podSelector alone: the policy's own namespace
    return "podSelector" not in peer or selects(peer["podSelector"], pod_labels)


def may_connect(docs: tuple[dict[str, Any], ...], caller: str, target: str, port: str) -> bool:
    """Whether ``caller`` may open a TCP connection to ``target``'s ``port`` (a name)."""
    deployment = of_kind(docs, "Deployment")[target]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    number = {p["name"]: p["containerPort"] for p in container["ports"]}[port]
    policies = [p for p in of_kind(docs, "NetworkPolicy").values()
                if "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                and selects(p["spec"]["podSelector"], labels)]
    if not policies:
        return True  # a pod no policy selects takes every connection
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports is not None and not any(p.get("port") in (port, number) for p in ports):
                continue
            peers = rule.get("from")
            if peers is None or any(peer_allows(peer, CALLERS[caller]) for peer in peers):
                return True
    return False


EXPECTED = {
    "intake": {"console", "prometheus", "ingress controller"},
    "review": {"console", "prometheus"},
    "inventory": {"console", "prometheus"},
    "logistics": {"console", "prometheus"},
    "notify": {"console", "prometheus"},
    "console": {"ingress controller", "prometheus"},
}


@pytest.mark.parametrize("target", ["base", "overlays/local", "overlays/production"])
def test_only_the_console_the_ingress_and_prometheus_reach_the_http_ports(target: str) -> None:
    docs = rendered(target)
    for service, allowed in EXPECTED.items():
        reached = {caller for caller in CALLERS if may_connect(docs, caller, service, "http")}
        assert reached == allowed, f"{target}: {service} is reached by {sorted(reached)}"


def test_every_orderflow_pod_is_covered_by_the_default_deny() -> None:
    docs = rendered("base")
    deny = of_kind(docs, "NetworkPolicy")["orderflow-default-deny-ingress"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")
    for name, deployment in of_kind(docs, "Deployment").items():
        assert selects(deny["podSelector"], deployment["spec"]["template"]["metadata"]["labels"]), name


def _sources(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["secretRef"]["name"]: e["secretRef"] for e in container.get("envFrom", [])
            if "secretRef" in e}


def test_credentials_come_from_secrets_the_same_for_every_replica() -> None:
    docs = rendered("base")
    deployments = of_kind(docs, "Deployment")
    for service in ("review", "inventory", "logistics", "console"):
        ref = _sources(deployments[service]).get("orderflow-service-key")
        assert ref is not None and not ref.get("optional"), f"{service}: no service key Secret"
    for service in ("intake", "notify"):  # nothing to sign or verify: not given the key
        assert "orderflow-service-key" not in _sources(deployments[service])
    console = _sources(deployments["console"]).get("orderflow-console")
    assert console is not None and not console.get("optional"), "the console's users and token"
    configs = of_kind(docs, "ConfigMap")
    for config in configs.values():
        data = config.get("data", {})
        # no token generated into a pod's own emptyDir, no development users in the base
        assert "ORDERFLOW_CONSOLE_TOKEN_FILE" not in data
        assert "ORDERFLOW_CONSOLE_DEV_USERS" not in data
        assert "ORDERFLOW_CONSOLE_USERS" not in data and "ORDERFLOW_CONSOLE_ADMIN_TOKEN" not in data
    assert not of_kind(docs, "Secret"), "Secrets are created out of band, never in the base"


def test_production_runs_several_console_replicas_on_the_secrets() -> None:
    docs = rendered("overlays/production")
    assert of_kind(docs, "HorizontalPodAutoscaler")["console"]["spec"]["minReplicas"] >= 2
    assert {"orderflow-console", "orderflow-service-key"} <= set(
        _sources(of_kind(docs, "Deployment")["console"]))
    for config in of_kind(docs, "ConfigMap").values():
        assert "ORDERFLOW_CONSOLE_DEV_USERS" not in config.get("data", {})


def test_only_the_local_overlay_says_development_users() -> None:
    docs = rendered("overlays/local")
    console_config = of_kind(docs, "ConfigMap")["orderflow-console-config"]["data"]
    assert console_config["ORDERFLOW_CONSOLE_DEV_USERS"] == "true"


def test_the_services_listen_on_all_addresses_only_inside_their_pods() -> None:
    """0.0.0.0 in a pod is the pod's own address (other pods and probes must reach it); the
    policies above are what restrict it. Outside a container the default stays loopback."""
    from orderflow.runtime.settings import ServiceSettings

    docs = rendered("base")
    assert of_kind(docs, "ConfigMap")["orderflow-config"]["data"]["ORDERFLOW_HTTP_HOST"] == "0.0.0.0"
    assert of_kind(docs, "NetworkPolicy"), "0.0.0.0 only where NetworkPolicies restrict it"
    assert ServiceSettings.model_fields["http_host"].default == "127.0.0.1"
