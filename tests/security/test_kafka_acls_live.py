"""Security on a live broker: the whole pipeline on Apache Kafka with a SASL_SSL listener
(SCRAM-SHA-512), the standard authorizer and nothing allowed but the ACLs derived by
``orderflow.devstack.acls`` (the ones the Strimzi ``KafkaUser`` resources carry), every service
logged in as its own user, the orders pushed as the connectors' user.

- the broker holds exactly the derived ACLs, no cluster ACL among them;
- orders settle (dispatched, notified, in the console's read model) and no process meets an
  authorization error: the derived ACLs are enough, idempotent producers included;
- a poison message is dead-lettered by its consumer under its own user, and the console reads
  the dead letter, every group's lag and replays the DLQ under its own;
- a wrong password stops a service at start, in one clear line, without retrying;
- an event a service may not write is refused by the broker: the outbox relay logs it with the
  topic and ``TopicAuthorizationFailedError``, counts it, keeps the row, and carries on once the
  row is gone.

One secured Kafka for the session (``tests/security/conftest.py``), one PostgreSQL and one set of
service processes for this module."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.contracts.topics import ORDER_INBOUND, SHIPMENT_DISPATCHED
from orderflow.devstack import acls
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.embedded import EmbeddedPostgres
from orderflow.devstack.processes import free_port
from orderflow.devstack.stack import ServiceProcess, Stack, available_services, var_dir
from orderflow.runtime.service import EXIT_AUTHENTICATION_FAILED
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.infra import connect
from tests.security.conftest import SecuredKafka

pytestmark = pytest.mark.e2e

GOOD_CUSTOMERS = ["C0070", "C0033", "C0025", "C0022", "C0082"]  # room under their limits
REFUSALS = ("AuthorizationFailed", "not authorized", "SaslAuthenticationFailed")


def new_id(prefix: str = "ACL") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def good_order(eid: str, i: int = 0) -> dict[str, object]:
    return canonical_order(eid, customer_id=GOOD_CUSTOMERS[i % len(GOOD_CUSTOMERS)],
                           lines=[("TEA-002", 1)], address_index=i)


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


@pytest.fixture(scope="module")
async def secured_stack(secured_kafka: SecuredKafka) -> AsyncIterator[Stack]:
    root = var_dir() / "test" / str(os.getpid()) / "secured-stack"
    shutil.rmtree(root, ignore_errors=True)
    postgres = EmbeddedPostgres(root / "postgres")
    services = available_services()
    stack = Stack(root=root, services=services, fixed_ports=False, broker_kind="kafka",
                  bootstrap=secured_kafka.cluster.bootstrap, admin_kafka=secured_kafka.admin,
                  extra_env={"ORDERFLOW_LOG_LEVEL": "INFO", **secured_kafka.service_env(services),
                             # notify and the console at the normal priority: niced to 19 on a
                             # machine shared with other work they take a minute to start
                             "ORDERFLOW_NICE": "0", "ORDERFLOW_DB_BACKEND_NICE": "0"})
    try:
        postgres.start()
        stack.database_url = postgres.url
        stack.start_infrastructure(create_topics=False)  # both given: starts nothing
        await stack.create_topics()  # as the super user
        stack.start_services()
        stack.wait_healthy(timeout=180)
        # the master data as the connectors' user; waited for through the super user
        await stack.load_demo_master_data(publisher=secured_kafka.settings(acls.CONNECTOR))
        yield stack
    finally:
        stack.stop()
        postgres.stop()


@pytest.fixture(scope="module")
async def events(secured_stack: Stack) -> AsyncIterator[EventLog]:
    assert secured_stack.admin_kafka is not None
    async with EventLog(secured_stack.admin_kafka) as log:
        yield log


def log_of(stack: Stack, label: str) -> str:
    path = stack.root / "logs" / f"{label}.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def console_get(stack: Stack, path: str) -> Any:
    token = (stack.root / "console-token").read_text().strip()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.find('console').port}",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        response = await c.get(path)
        response.raise_for_status()
        return response.json()


async def console_view(stack: Stack, order_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await console_get(stack, f"/api/orders/{order_id}")
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


async def test_the_broker_holds_exactly_the_derived_acls(secured_kafka: SecuredKafka) -> None:
    on_broker = await acls.describe_acls(secured_kafka.admin)
    assert on_broker == acls.flatten(acls.all_acls())
    assert not {a for a in on_broker if a.resource_type == "cluster"}  # no IdempotentWrite


async def test_orders_settle_with_every_service_as_its_own_principal(
        secured_stack: Stack, secured_kafka: SecuredKafka, events: EventLog) -> None:
    connector = secured_kafka.settings(acls.CONNECTOR)
    assert connector.idempotent_producer  # the connectors' producer needs no cluster ACL
    eids = [new_id() for _ in range(5)]
    async with OrderPusher(connector) as pusher:
        await pusher.push_many([("canonical", eid, good_order(eid, i)) for i, eid in enumerate(eids)])
    for eid in eids:
        oid = order_id_for("canonical", eid)
        dispatched = await events.wait_for_event(SHIPMENT_DISPATCHED.name, oid, timeout=90)
        assert dispatched.event.tracking_number
        for topic in ("order.received", "order.approved", "stock.reserved"):
            assert len(events.of(topic, oid)) == 1, topic
        await events.wait_for_event("notification.recorded", oid, timeout=60)
        view = await console_view(secured_stack, oid)  # the console consumed them too
        assert view["order_id"] == oid
    for sp in secured_stack.processes:  # none crashed, none was refused anything
        assert sp.proc is not None and sp.proc.poll() is None, sp.label
        text = log_of(secured_stack, sp.label)
        assert not [w for w in REFUSALS if w in text], (sp.label, text[-2000:])


async def test_a_poison_message_is_dead_lettered_and_the_console_reads_and_replays_it(
        secured_stack: Stack, secured_kafka: SecuredKafka, events: EventLog) -> None:
    key = f"canonical:{new_id('POISON')}"
    producer = AIOKafkaProducer(**secured_kafka.settings(acls.CONNECTOR).producer_kwargs())
    await producer.start()
    try:  # written as a connector may: to order.inbound; intake dead-letters it as its own user
        await producer.send_and_wait(ORDER_INBOUND.name, b'{"not": "an order"', key=key.encode(),
                                     headers=[("event_id", str(uuid.uuid4()).encode()),
                                              ("event_type", b"OrderSubmitted"),
                                              ("schema_version", b"1")])
    finally:
        await producer.stop()
    def dead_lettered_by(service: str) -> Callable[[SeenEvent], bool]:
        return lambda e: e.headers.get("dlq_service") == service

    for consumer in ("intake", "console"):  # both consume order.inbound, both dead-letter it
        await events.wait_for_event(f"{ORDER_INBOUND.name}.dlq", key, timeout=60,
                                    where=dead_lettered_by(consumer))

    def settled(snapshot: dict[str, Any]) -> bool:
        dlq = {d["dlq"]: d for d in snapshot.get("dlq", [])}.get(f"{ORDER_INBOUND.name}.dlq")
        return bool(dlq and any(n["key"] == key for n in dlq["newest"])) and all(
            g["lag"] is not None for g in snapshot.get("groups", []))

    deadline = time.monotonic() + 60
    snapshot = await console_get(secured_stack, "/api/topics")
    while not settled(snapshot) and time.monotonic() < deadline:
        await asyncio.sleep(1)
        snapshot = await console_get(secured_stack, "/api/topics")
    assert settled(snapshot), snapshot.get("groups")
    groups = {g["group"]: g for g in snapshot["groups"]}
    assert set(groups) == {acls.group_of(s) for s in secured_stack.services}
    for group in groups.values():  # every group's lag and members, under the console's user
        assert "error" not in group and "members_error" not in group, group
        assert group["replicas"] == 1, group

    token = (secured_stack.root / "console-token").read_text().strip()
    async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{secured_stack.find('console').port}",
            headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        path = f"/api/dlq/{ORDER_INBOUND.name}/replay"
        expected = (await client.get(path)).json()["pending"]  # what the operator confirms
        replayed = await client.post(path, json={"expected": expected})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replayed"] >= 1
    copies = await events.wait_for(lambda: len(events.of(ORDER_INBOUND.name, key)) >= 2 and
                                   events.of(ORDER_INBOUND.name, key), timeout=30,
                                   what="the replayed dead letter back on order.inbound")
    assert copies[-1].headers["event_id"] == copies[0].headers["event_id"]


async def test_a_wrong_password_stops_a_service_at_start_with_one_clear_line(
        secured_stack: Stack) -> None:
    sp = ServiceProcess("intake", 9, free_port())
    user = acls.principal_of("intake")
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]
    env = {**secured_stack.service_env(sp), "ORDERFLOW_INTAKE_KAFKA_SASL_PASSWORD": wrong}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderflow.intake", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == EXIT_AUTHENTICATION_FAILED, text[-3000:]
    assert time.monotonic() - started < 60
    lines = [line for line in text.splitlines() if "authentication failed" in line.lower()]
    assert len(lines) == 1, text[-3000:]  # one line, not a retry loop
    (entry,) = json_lines(lines[0])
    assert entry["level"] == "error" and entry["user"] == user
    assert f"'{user}'" in entry["event"] and "Kafka authentication failed" in entry["event"]
    assert "retrying" not in text and "Traceback" not in text, text[-3000:]
    assert wrong not in text


async def test_an_event_the_service_may_not_write_is_refused_logged_counted_and_kept(
        secured_stack: Stack, secured_kafka: SecuredKafka, events: EventLog) -> None:
    forbidden = SHIPMENT_DISPATCHED.name
    intake = acls.service_acls("intake")
    assert not {a for a in intake if a.resource == forbidden and a.operation == "Write"}
    key = new_id("FORBIDDEN")
    conn = await connect(secured_stack.database_url)
    row_id = await conn.fetchval(
        "INSERT INTO intake.outbox (topic, key, value, headers) VALUES ($1, $2, $3, '[]'::jsonb) "
        "RETURNING id", forbidden, key.encode(), b"{}")
    try:
        log_path = secured_stack.root / "logs" / "intake.log"

        def refusal() -> dict[str, Any] | None:
            for entry in json_lines(log_path.read_text(errors="replace")):
                if entry.get("outbox_id") == row_id:
                    return entry
            return None

        deadline = time.monotonic() + 30
        while True:
            entry = refusal()
            if entry is not None or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert entry is not None, log_path.read_text(errors="replace")[-3000:]
        assert entry["level"] == "error" and entry["topic"] == forbidden
        assert entry["error"].startswith("TopicAuthorizationFailedError")

        port = secured_stack.find("intake").port
        async with httpx.AsyncClient(timeout=10) as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        counted = [s.value for family in text_string_to_metric_families(metrics)
                   for s in family.samples
                   if s.name == "orderflow_outbox_publish_refused_total"
                   and s.labels == {"service": "intake", "topic": forbidden,
                                    "error": "TopicAuthorizationFailedError"}]
        assert counted and counted[0] >= 1, metrics

        await asyncio.sleep(1.0)  # a pause: the relay has tried again meanwhile
        assert await conn.fetchval("SELECT published_at FROM intake.outbox WHERE id = $1",
                                   row_id) is None, "the refused row was marked published"
        assert not events.of(forbidden, key)
    finally:
        await conn.execute("DELETE FROM intake.outbox WHERE id = $1", row_id)
        await conn.close()
    # the row gone, the relay carries on: the next order goes through intake
    eid = new_id()
    async with OrderPusher(secured_kafka.settings(acls.CONNECTOR)) as pusher:
        await pusher.push("canonical", good_order(eid, 4), external_id=eid)
    await events.wait_for_event(SHIPMENT_DISPATCHED.name, order_id_for("canonical", eid),
                                timeout=90)
