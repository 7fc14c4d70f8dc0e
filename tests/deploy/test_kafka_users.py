"""The Kafka principals and their ACLs have one source of truth, ``orderflow.devstack.acls``:
the Strimzi ``KafkaUser`` resources and the Deployments' credentials are generated from it and
match it, and what it derives is exactly what each service consumes and emits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from orderflow.contracts.topics import BY_NAME, CATALOGUE, TOPIC_OF_EVENT
from orderflow.devstack import acls, k8s_users
from orderflow.devstack.asyncapi import load_definition, published_events
from orderflow.devstack.stack import subscriptions_of
from tests.deploy.support import ROOT, SERVICES

pytestmark = pytest.mark.unit

COMPONENT = ROOT / k8s_users.DEFAULT_DIR
PRODUCTION = ROOT / "deploy" / "k8s" / "overlays" / "production"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _production() -> list[dict[str, Any]]:
    """The production overlay's output (kubectl kustomize), else the component's own files."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return _docs(COMPONENT / k8s_users.USERS_FILE)
    done = subprocess.run([kubectl, "kustomize", str(PRODUCTION)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _acls_of(user: dict[str, Any]) -> set[acls.Acl]:
    name = user["metadata"]["name"]
    out = set()
    for rule in user["spec"]["authorization"]["acls"]:
        resource = rule["resource"]
        assert rule.get("host", "*") == "*" and rule.get("type", "allow") == "allow"
        assert resource["type"] == "cluster" or resource["patternType"] == "literal"
        out |= {acls.Acl(name, resource["type"], resource.get("name", "kafka-cluster"), op)
                for op in rule["operations"]}
    return out


def test_the_committed_files_are_generated_from_the_acls_module(tmp_path: Path) -> None:
    assert k8s_users.main([str(tmp_path)]) == 0  # what `make docs` runs
    for name in (k8s_users.USERS_FILE, k8s_users.CREDENTIALS_FILE):
        committed = (COMPONENT / name).read_text(encoding="utf-8")
        assert committed == (tmp_path / name).read_text(encoding="utf-8"), (
            f"{name} is stale: run python -m orderflow.devstack.k8s_users")
    kustomization = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["resources"] == [k8s_users.USERS_FILE]
    assert kustomization["patches"] == [{"path": k8s_users.CREDENTIALS_FILE}]
    production = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "../../components/strimzi-users" in production["components"]


def test_the_kafka_users_in_production_carry_exactly_the_derived_acls() -> None:
    users = {d["metadata"]["name"]: d for d in _production() if d["kind"] == "KafkaUser"}
    derived = acls.all_acls()
    assert set(users) == set(derived) == {*(f"orderflow-{s}" for s in SERVICES), acls.CONNECTOR}
    for name, user in users.items():
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert _acls_of(user) == set(derived[name]), name


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl (with built-in kustomize) is not installed: the production "
                           "overlay is not rendered")
def test_each_service_logs_in_as_its_own_user_with_the_password_strimzi_writes() -> None:
    docs = _production()
    users = {d["metadata"]["name"] for d in docs if d["kind"] == "KafkaUser"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    for service in SERVICES:
        (container,) = deployments[service]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["ORDERFLOW_KAFKA_SASL_USERNAME"]["value"] == acls.principal_of(service)
        secret = env["ORDERFLOW_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": acls.principal_of(service), "key": k8s_users.PASSWORD_KEY}
        assert secret["name"] in users


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_reads_what_it_consumes_and_writes_what_it_emits_and_its_dlqs(
        service: str) -> None:
    mine = acls.service_acls(service)
    user = acls.principal_of(service)
    assert {a.user for a in mine} == {user}

    def on(rtype: str, op: str) -> set[str]:
        return {a.resource for a in mine if a.resource_type == rtype and a.operation == op}

    consumed = set(subscriptions_of(service))
    assert consumed == {s.topic.name for s in load_definition(service).subscriptions}
    emitted = {TOPIC_OF_EVENT[model].name for model in published_events(service)}
    dlqs = {f"{t}.dlq" for t in consumed}
    group = f"orderflow.{service}"
    if service == "console":  # its dashboard and its DLQ replay (acls module docstring)
        every_dlq = {t.dlq for t in CATALOGUE}
        replay_groups = {f"orderflow.dlq-replay.{t.name}" for t in CATALOGUE}
        assert on("topic", "Read") == consumed | every_dlq
        assert on("topic", "Write") == emitted | dlqs | set(BY_NAME)
        assert on("group", "Read") == {group} | replay_groups
        assert on("group", "Describe") == {f"orderflow.{s}" for s in SERVICES} | replay_groups
    else:
        assert on("topic", "Read") == consumed
        assert on("topic", "Write") == emitted | dlqs
        assert on("group", "Read") == on("group", "Describe") == {group}
    assert on("topic", "Describe") == on("topic", "Read") | on("topic", "Write")
    assert not {a for a in mine if a.resource_type == "cluster"}


def test_the_connectors_write_only_inbound_orders_and_master_data() -> None:
    mine = acls.connector_acls()
    assert {a.operation for a in mine} == {"Write"}
    assert {a.resource_type for a in mine} == {"topic"}
    assert {a.resource for a in mine} == {"order.inbound", "product.updated", "customer.updated",
                                          "warehouse.updated", "stock.received"}


def test_every_acl_names_a_topic_or_dlq_of_the_catalogue() -> None:
    known = set(BY_NAME) | {t.dlq for t in CATALOGUE}
    for acl in acls.flatten(acls.all_acls()):
        if acl.resource_type == "topic":
            assert acl.resource in known, acl


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-storage would read ``-t -xyz`` as an option: an id drawn with a leading dash is
    drawn again."""
    import uuid

    from orderflow.devstack import kafka

    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    value = kafka.new_cluster_id()
    assert not value.startswith("-")
    assert value == "AQAAAAAAAAAAAAAAAAAAAA"
