"""The walking skeleton end to end: every service as its own process, the real broker and
PostgreSQL, orders pushed as a connector pushes them. Each test runs on the session's pipeline
and again on a pipeline of the module's own on the embedded Tansu broker (the Python-only
default), unless the session's broker is Tansu already."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator

import psutil
import pytest
from aiokafka import AIOKafkaProducer

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.priority import autogroup_nice, kernel_has_autogroups, leads_own_session
from orderflow.devstack.stack import SIDE_CONSUMER_NICE, SIDE_CONSUMERS, available_services
from orderflow.devstack.tracking import Tracker
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.infra import Infra, connect
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline

pytestmark = pytest.mark.e2e

# customers with room under their limits, paying on terms (no prepayment hold)
GOOD_CUSTOMERS = ["C0070", "C0033", "C0025", "C0022", "C0082"]


@pytest.fixture(scope="module", params=["session broker", "tansu"])
async def broker_tier(request: pytest.FixtureRequest,
                      infra: Infra) -> AsyncIterator[tuple[Pipeline, EventLog] | None]:
    """None on the session's broker; on ``tansu``, every service on a Tansu broker of its own."""
    if request.param != "tansu":
        yield None
        return
    if infra.broker_is_tansu:
        pytest.skip("the session's broker is Tansu: the session broker tier runs these")
    async with private_pipeline(infra, "walking-skeleton-tansu", available_services()) as running:
        yield running


@pytest.fixture(scope="module")
def pipeline(session_pipeline: Pipeline, broker_tier: tuple[Pipeline, EventLog] | None) -> Pipeline:
    return broker_tier[0] if broker_tier else session_pipeline


@pytest.fixture(scope="module")
def events(session_events: EventLog, broker_tier: tuple[Pipeline, EventLog] | None) -> EventLog:
    return broker_tier[1] if broker_tier else session_events


def new_id(prefix: str = "E2E") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def good_order(eid: str, i: int = 0) -> dict[str, object]:
    return canonical_order(eid, customer_id=GOOD_CUSTOMERS[i % len(GOOD_CUSTOMERS)],
                           lines=[("TEA-002", 1)], address_index=i)


async def test_an_order_pushed_at_inbound_comes_out_dispatched(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", good_order(eid))
    oid = order_id_for("canonical", eid)
    dispatched = await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    assert dispatched.event.tracking_number
    for topic in ("order.received", "order.approved", "stock.reserved"):
        assert len(events.of(topic, oid)) == 1, topic
    # every event of the order carries the standard headers, answering the one before
    chain = [events.of(t, oid)[0] for t in
             ("order.received", "order.approved", "stock.reserved", "shipment.dispatched")]
    for before, after in itertools.pairwise(chain):
        assert after.headers["causation_id"] == before.headers["event_id"]
        assert after.headers["correlation_id"] == oid
        assert after.headers["traceparent"].split("-")[1] == before.headers["traceparent"].split("-")[1]


async def test_the_same_inbound_message_twice_yields_one_order(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    order = good_order(eid, 1)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", order)
        await pusher.push("canonical", order)
    oid = order_id_for("canonical", eid)
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    tracker = Tracker()
    tracker.feed(e for e in events.events if e.key == oid)
    assert tracker.duplicates() == {}
    assert len(events.of("order.received", oid)) == 1


async def _redeliver(pipeline: Pipeline, seen: SeenEvent) -> None:
    producer = AIOKafkaProducer(**pipeline.kafka.producer_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(seen.topic, seen.value, key=(seen.key or "").encode(),
                                     headers=[(k, v.encode()) for k, v in seen.headers.items()])
    finally:
        await producer.stop()


async def test_a_redelivered_event_changes_nothing(pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", good_order(eid, 2))
    oid = order_id_for("canonical", eid)
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    for topic in ("order.received", "order.approved", "stock.reserved"):
        await _redeliver(pipeline, events.of(topic, oid)[0])
    # a marker order behind the redeliveries on every hop proves they were consumed
    marker = new_id("MARK")
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", good_order(marker, 2))
    await events.wait_for_event("shipment.dispatched", order_id_for("canonical", marker), timeout=60)
    # the copies we re-sent are on the topics; what counts is that no service acted again:
    # one distinct event per hop (a second decision would carry a new event_id)
    for topic in ("order.approved", "stock.reserved", "shipment.dispatched"):
        assert len({e.event_id for e in events.of(topic, oid)}) == 1, topic


@pytest.mark.parametrize("topic", ["order.received", "order.approved", "stock.reserved"])
async def test_a_malformed_message_goes_to_the_dlq_and_the_next_goes_through(
        pipeline: Pipeline, events: EventLog, topic: str) -> None:
    eid = new_id()
    oid = order_id_for("canonical", eid)
    producer = AIOKafkaProducer(**pipeline.kafka.producer_kwargs())
    await producer.start()
    try:  # keyed like the order that follows, so it sits first in the same partition
        await producer.send_and_wait(topic, b'{"order_id": 42', key=oid.encode(),
                                     headers=[("event_id", str(uuid.uuid4()).encode()),
                                              ("event_type", b"Whatever"),
                                              ("schema_version", b"1")])
    finally:
        await producer.stop()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", good_order(eid, 3))
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    dead = await events.wait_for_event(f"{topic}.dlq", oid, timeout=30)
    assert dead.headers["dlq_reason"] == "unexpected_event_type"
    assert dead.headers["dlq_source"] == topic


@pytest.mark.fault
async def test_a_service_killed_with_sigkill_and_restarted_loses_nothing(
        pipeline: Pipeline, events: EventLog) -> None:
    batch = [new_id("KILL") for _ in range(60)]
    oids = [order_id_for("canonical", eid) for eid in batch]
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many([("canonical", eid, good_order(eid, i))
                                for i, eid in enumerate(batch[:30])])
        await events.wait_for(lambda: any(events.of("stock.reserved", o) for o in oids),
                              timeout=60, what="the first reservations")
        pipeline.kill("inventory")
        await pusher.push_many([("canonical", eid, good_order(eid, i))
                                for i, eid in enumerate(batch[30:])])
    pipeline.restart("inventory")
    tracker = Tracker()

    def all_dispatched() -> bool:
        tracker.feed_new(events.events)
        return all(str(tracker.state_of(o)) == "dispatched" for o in oids)

    await events.wait_for(all_dispatched, timeout=120, what="every order dispatched")
    relevant = Tracker()
    relevant.feed(e for e in events.events if e.key in set(oids))
    assert relevant.duplicates() == {}


def test_notify_and_the_console_run_at_a_lower_priority_than_the_order_flow(pipeline: Pipeline) -> None:
    """On the dev stack's one machine the services of the order flow get the cores first:
    notify and the console (off its path) run at niceness 19, as their settings say."""
    running = {sp.name: sp.proc.pid for sp in pipeline.stack.processes
               if sp.replica == 0 and sp.proc is not None and sp.proc.poll() is None}
    assert {"intake", "notify"} <= set(running), running
    nices = {name: psutil.Process(pid).nice() for name, pid in running.items()}
    assert nices == {name: SIDE_CONSUMER_NICE if name in SIDE_CONSUMERS else 0 for name in running}
    # each in a session of its own, and where the scheduler weighs sessions (autogroups) the
    # side consumers' sessions at their niceness too: otherwise theirs would do nothing
    assert all(leads_own_session(pid) for pid in running.values()), running
    if kernel_has_autogroups():
        groups = {name: autogroup_nice(pid) for name, pid in running.items()}
        assert groups == {name: SIDE_CONSUMER_NICE if name in SIDE_CONSUMERS else 0
                          for name in running}


async def test_notify_and_the_consoles_database_backends_run_at_their_priority_too(
        pipeline: Pipeline) -> None:
    """The test database runs on this machine: the PostgreSQL backends of notify's and the
    console's connections are reniced with them, those of the order flow's services are not."""
    if pipeline.infra.kind != "embedded":
        pytest.skip("the database runs elsewhere: its backends are not this machine's processes")
    conn = await connect(pipeline.infra.database_url)
    try:
        rows = await conn.fetch("SELECT pid, application_name FROM pg_stat_activity "
                                "WHERE application_name LIKE 'orderflow-%'")
    finally:
        await conn.close()
    nices: dict[str, set[int]] = {}
    groups: dict[str, set[int | None]] = {}
    for row in rows:
        name, pid = row["application_name"].removeprefix("orderflow-"), row["pid"]
        try:
            nice = psutil.Process(pid).nice()
        except psutil.NoSuchProcess:  # a connection closed meanwhile
            continue
        group = autogroup_nice(pid)  # None also when the backend has gone since: not counted
        if group is None and not psutil.pid_exists(pid):
            continue
        nices.setdefault(name, set()).add(nice)
        groups.setdefault(name, set()).add(group)
    assert {"intake", "notify"} <= set(nices), nices
    assert nices == {name: {SIDE_CONSUMER_NICE if name in SIDE_CONSUMERS else 0}
                     for name in nices}
    # a backend is a session of its own: where sessions are weighed, its session's niceness
    if kernel_has_autogroups():
        assert groups == {name: {SIDE_CONSUMER_NICE if name in SIDE_CONSUMERS else 0}
                          for name in groups}


async def test_the_outboxes_rows_are_stored_uncompressed(
        pipeline: Pipeline, events: EventLog) -> None:
    """Every service's outbox keeps rows up to a page uncompressed (their migrations), the
    long-lived tables keep PostgreSQL's default: an approval in review's outbox (every rule's
    outcome, over 2 kB) is stored at its full length."""
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", good_order(eid))
    oid = order_id_for("canonical", eid)
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    conn = await connect(pipeline.infra.database_url)
    try:
        options = {f"{r['nspname']}.{r['relname']}": r["reloptions"] for r in await conn.fetch(
            "SELECT n.nspname, c.relname, c.reloptions FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
            "AND n.nspname IN ('intake', 'review', 'inventory', 'logistics', 'notify', 'console')")}
        approval = await conn.fetchrow(
            "SELECT octet_length(value) AS length, pg_column_size(value) AS stored "
            "FROM review.outbox WHERE topic = 'order.approved' AND key = $1", oid.encode())
    finally:
        await conn.close()
    outboxes = {f"{s}.outbox" for s in ("intake", "review", "inventory", "logistics", "notify",
                                        "console")}
    assert outboxes <= set(options), options
    assert {t: o for t, o in options.items() if o} == {
        t: ["toast_tuple_target=8160"] for t in outboxes}
    assert approval is not None
    assert approval["length"] > 2_100  # past the length PostgreSQL starts compressing at
    assert approval["stored"] >= approval["length"]
