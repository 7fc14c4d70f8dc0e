"""Set-based batch handlers in the batch consumer, against the real PostgreSQL: a run of
consecutive events is one call, the inbox still skips a redelivered batch, the outbox is written
in the same transaction with the right causation, and a failing event is re-run alone in its
savepoint and dead-lettered with its reason while the others apply."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from orderflow.contracts import topics
from orderflow.contracts.events import StockReceived, WarehouseUpdated
from orderflow.contracts.headers import EventHeaders
from orderflow.runtime import consumer as consumer_module
from orderflow.runtime import tracing
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.sqlalchemy_bridge import Statement
from orderflow.runtime.tracing import format_traceparent
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork
from orderflow.testing.infra import Infra
from orderflow.testing.records import Rec, event_id, migrated_schema, record

pytestmark = pytest.mark.service


def stock(offset: int, sku: str, quantity: int = 1) -> Rec:
    return record(StockReceived(warehouse_id="WH-1", sku=sku, quantity=quantity), offset=offset,
                  producer="t")


def warehouse(offset: int, warehouse_id: str) -> Rec:
    return record(WarehouseUpdated(warehouse_id=warehouse_id, name="W", province="P", city="C"),
                  offset=offset, producer="t")


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "batch") as engine:  # the runtime's tables
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE applied (n BIGSERIAL, ref TEXT NOT NULL)"))
        yield engine


class Recorder:
    """A set-based handler: one INSERT for the whole run, one event emitted per input."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    async def on_batch(self, uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        refs = [getattr(i.event, "sku", None) or i.event.warehouse_id for i in run]
        self.calls.append(refs)
        await uow.session.execute(sa.text("INSERT INTO applied (ref) SELECT unnest(CAST(:r AS text[]))"),
                                  {"r": refs})
        if self.fail_on in refs:
            raise ValueError(f"cannot apply {self.fail_on}")
        for incoming, ref in zip(run, refs, strict=True):
            uow.emit(WarehouseUpdated(warehouse_id=f"out-{ref}", name="n", province="p", city="c"),
                     cause=incoming)


async def _applied(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT ref FROM applied ORDER BY n"))).scalars())


async def _outbox(engine: AsyncEngine) -> list[tuple[str, dict[str, str]]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT topic, headers FROM outbox ORDER BY id"))).all()
    return [(topic, dict(json.loads(h) if isinstance(h, str) else h)) for topic, h in rows]


def test_a_subscription_takes_exactly_one_kind_of_handler() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Subscription(topics.STOCK_RECEIVED)
    with pytest.raises(ValueError, match="exactly one"):
        Subscription(topics.STOCK_RECEIVED, Recorder().on_batch, batch_handler=Recorder().on_batch)


async def test_a_run_is_one_call_in_batch_order_and_a_redelivery_is_skipped(engine: AsyncEngine) -> None:
    recorder = Recorder()
    plain: list[str] = []

    async def one(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
        plain.append(incoming.event.warehouse_id)

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch),
        Subscription(topics.WAREHOUSE_UPDATED, one)])
    batch = [stock(1, "A"), stock(2, "B"), stock(3, "C"), warehouse(4, "W1"), stock(5, "D")]
    await processor.process(batch, None)
    assert recorder.calls == [["A", "B", "C"], ["D"]]
    assert plain == ["W1"]
    assert await _applied(engine) == ["A", "B", "C", "D"]
    staged = await _outbox(engine)
    assert [h["event_id"] != "" for _, h in staged] == [True] * 4
    # each outgoing event answers the event it was emitted for, not the run's last
    assert [h["causation_id"] for _, h in staged] == [event_id(r) for r in batch if r.offset != 4]

    await processor.process(batch, None)  # redelivered after the commit: the inbox skips it all
    assert recorder.calls == [["A", "B", "C"], ["D"]]
    assert len(await _outbox(engine)) == 4


async def test_an_ahead_topic_is_applied_first_and_every_partition_keeps_its_order(
        engine: AsyncEngine) -> None:
    recorder = Recorder()
    order: list[str] = []

    async def one(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
        order.append(incoming.event.warehouse_id)

    async def run(uow: UnitOfWork, events: list[IncomingEvent[Any]]) -> None:
        order.extend(i.event.sku for i in events)
        await recorder.on_batch(uow, events)

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=run),
        Subscription(topics.WAREHOUSE_UPDATED, one, ahead=True)])
    w3 = record(WarehouseUpdated(warehouse_id="W3", name="W", province="P", city="C"), offset=1,
                producer="t", partition=1)
    batch = [stock(1, "A"), stock(2, "B"), warehouse(1, "W1"), w3, stock(3, "C"), warehouse(2, "W2")]
    await processor.process(batch, None)
    assert order == ["W1", "W3", "W2", "A", "B", "C"]
    assert recorder.calls == [["A", "B", "C"]]  # one run: not split by the other topic
    assert await _applied(engine) == ["A", "B", "C"]


async def test_prepare_sees_every_new_event_of_a_batch_once_before_its_first_handler(
        engine: AsyncEngine) -> None:
    """``prepare`` (a service's ``prepare_batch``): once per transaction, in its transaction,
    with the batch's new events (not those the inbox already has), before any handler."""
    calls: list[tuple[str, list[str]]] = []
    recorder = Recorder()

    async def prepare(uow: UnitOfWork, events: list[IncomingEvent[Any]]) -> None:
        calls.append(("prepare", [getattr(i.event, "sku", None) or i.event.warehouse_id
                                  for i in events]))
        await uow.session.execute(sa.text("INSERT INTO applied (ref) VALUES ('prepared')"))

    async def one(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
        calls.append(("one", [incoming.event.warehouse_id]))

    async def on_batch(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        await recorder.on_batch(uow, run)
        calls.append(("run", recorder.calls[-1]))

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, prepare=prepare,
                               subscriptions=[
                                   Subscription(topics.STOCK_RECEIVED, batch_handler=on_batch),
                                   Subscription(topics.WAREHOUSE_UPDATED, one)])
    first = [stock(1, "A"), warehouse(2, "W1"), stock(3, "B")]
    await processor.process(first, None)
    assert calls == [("prepare", ["A", "W1", "B"]), ("run", ["A"]), ("one", ["W1"]), ("run", ["B"])]
    calls.clear()
    await processor.process([*first, stock(4, "C")], None)  # redelivered, and one new event
    assert calls == [("prepare", ["C"]), ("run", ["C"])]
    calls.clear()
    await processor.process(first, None)  # nothing new: nothing to prepare
    assert calls == []
    assert await _applied(engine) == ["prepared", "A", "B", "prepared", "C"]


async def test_one_batch_handler_for_several_topics_gets_one_run(engine: AsyncEngine) -> None:
    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch),
        Subscription(topics.WAREHOUSE_UPDATED, batch_handler=recorder.on_batch)])
    await processor.process([stock(1, "A"), warehouse(2, "W1"), stock(3, "B")], None)
    assert recorder.calls == [["A", "W1", "B"]]


async def test_a_failing_event_is_dead_lettered_alone_and_the_others_apply(engine: AsyncEngine) -> None:
    recorder = Recorder(fail_on="BAD")
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    poison = Rec(topics.STOCK_RECEIVED.name, 0, 4, None, b"{", stock(4, "X").headers)
    batch = [stock(1, "A"), stock(2, "BAD"), stock(3, "C"), poison]
    await processor.process(batch, None)
    # the whole run once (rolled back), then one event at a time, each in its savepoint
    assert recorder.calls == [["A", "BAD", "C"], ["A"], ["BAD"], ["C"]]
    assert await _applied(engine) == ["A", "C"]
    staged = await _outbox(engine)
    assert [(topic, h.get("causation_id") or h.get("dlq_reason")) for topic, h in staged] == [
        ("warehouse.updated", event_id(batch[0])),
        ("stock.received.dlq", "handler_error"),
        ("warehouse.updated", event_id(batch[2])),
        ("stock.received.dlq", "malformed_json"),
    ]
    assert "cannot apply BAD" in staged[1][1]["dlq_error"]
    async with engine.connect() as conn:
        claimed = set((await conn.execute(sa.text("SELECT event_id::text FROM inbox"))).scalars())
    assert event_id(batch[1]) not in claimed  # a replay of the dead letter is not skipped
    assert {event_id(batch[0]), event_id(batch[2])} <= claimed

    await processor.process(batch, None)  # redelivered: what applied is not applied again
    assert await _applied(engine) == ["A", "C"]
    assert [t for t, _ in await _outbox(engine)].count("warehouse.updated") == 2


async def test_each_event_of_a_run_has_its_consumer_span_and_what_it_emits_names_it(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda tracer: tracer or provider.get_tracer("test"))
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def on_batch(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        for incoming in run:
            with uow.handling(incoming):  # as the consumer sets up one event's handler
                seen.append((format_traceparent(trace.get_current_span()),
                             structlog.contextvars.get_contextvars()))
                uow.emit(WarehouseUpdated(warehouse_id=f"out-{incoming.event.sku}", name="n",
                                          province="p", city="c"))
        assert structlog.contextvars.get_contextvars().get("event_id") is None

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=on_batch)])
    batch = [stock(1, "A"), stock(2, "B")]
    await processor.process(batch, None)
    provider.shutdown()

    spans = exporter.get_finished_spans()
    assert [s.attributes["messaging.message.id"] for s in spans if s.attributes] == \
        [event_id(r) for r in batch]
    staged = await _outbox(engine)
    for span, rec, (_, headers), (current, context) in zip(spans, batch, staged, seen, strict=True):
        incoming = EventHeaders.from_kafka(rec.headers)
        assert span.context is not None and span.parent is not None
        # a child of the incoming event's traceparent ...
        assert span.parent.span_id == int(incoming.traceparent.split("-")[2], 16)
        # ... current while the event is handled, and named by the event it emitted
        assert current == headers["traceparent"] == format_traceparent(span)  # type: ignore[arg-type]
        assert context["event_id"] == event_id(rec) and context["offset"] == rec.offset
        assert headers["causation_id"] == event_id(rec)


async def test_with_the_no_op_tracer_no_span_is_made_and_what_is_emitted_continues_the_trace(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_tracer", lambda tracer: tracer or trace.NoOpTracer())
    assert not tracing.spans_recorded()

    def no_span(*_: Any, **__: Any) -> None:
        raise AssertionError("a span was made for the no-op tracer")

    monkeypatch.setattr(consumer_module, "start_consumer_span", no_span)

    async def one(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
        uow.emit(WarehouseUpdated(warehouse_id=f"out-{incoming.event.warehouse_id}", name="n",
                                  province="p", city="c"))

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=Recorder().on_batch),
        Subscription(topics.WAREHOUSE_UPDATED, one)])
    batch = [stock(1, "A"), warehouse(1, "W")]
    await processor.process(batch, None)
    staged = await _outbox(engine)
    assert [h["causation_id"] for _, h in staged] == [event_id(r) for r in batch]
    for rec, (_, headers) in zip(batch, staged, strict=True):
        incoming = EventHeaders.from_kafka(rec.headers).traceparent.split("-")
        outgoing = headers["traceparent"].split("-")
        assert outgoing[1] == incoming[1] and outgoing[2] != incoming[2]  # same trace, a new span


async def test_a_transient_failure_rolls_the_claim_and_the_outbox_back_and_the_batch_applies_once(
        engine: AsyncEngine) -> None:
    # the inbox claim and the outbox rows go to asyncpg directly, under SQLAlchemy's transaction:
    # if they ran outside it, the retry would find the events claimed and skip them (lost)
    recorder = Recorder()
    failures = [ConnectionError("the database went away")]

    async def flaky(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        await recorder.on_batch(uow, run)
        await uow.flush()  # the outbox rows staged before the failure roll back with it
        if failures:
            raise failures.pop()

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=flaky)])
    batch = [stock(1, "A"), stock(2, "B")]
    await processor.process(batch, None)
    assert recorder.calls == [["A", "B"], ["A", "B"]]  # retried whole
    assert await _applied(engine) == ["A", "B"]
    assert [h["causation_id"] for _, h in await _outbox(engine)] == [event_id(r) for r in batch]


_APPLY = Statement("INSERT INTO applied (ref) SELECT unnest(CAST(:refs AS text[])) RETURNING ref")


async def test_a_statement_on_asyncpg_is_part_of_the_sessions_transaction(engine: AsyncEngine) -> None:
    # handlers' hot statements go to asyncpg directly (``Statement``): whether one runs first in
    # the session (before SQLAlchemy sent BEGIN) or after SQLAlchemy's own, the session's
    # rollback undoes it and its commit keeps it
    sessions = async_sessionmaker(engine)
    async with sessions() as session:
        assert [r["ref"] for r in await _APPLY.fetch(session, {"refs": ["first"]})] == ["first"]
        await session.execute(sa.text("INSERT INTO applied (ref) VALUES ('through SQLAlchemy')"))
        await _APPLY.run(session, {"refs": ["after"]})
        await session.rollback()
    assert await _applied(engine) == []
    async with sessions() as session:
        await _APPLY.run(session, {"refs": ["kept"]})
        await session.commit()
    assert await _applied(engine) == ["kept"]


async def test_a_handlers_statement_rolls_back_with_a_transient_failure_and_applies_once(
        engine: AsyncEngine) -> None:
    failures = [ConnectionError("the database went away")]

    async def flaky(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        await _APPLY.run(uow.session, {"refs": [i.event.sku for i in run]})
        if failures:
            raise failures.pop()

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=flaky)])
    await processor.process([stock(1, "A"), stock(2, "B")], None)
    assert await _applied(engine) == ["A", "B"]


async def test_a_statement_passes_and_returns_the_values_sqlalchemy_does(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            "CREATE TABLE kinds (id uuid, doc jsonb, plain json, amount numeric(16, 2), "
            "at timestamptz, tags text[], flag boolean)"))
    values = {"id": uuid.UUID("0b6c1f7e-3a52-4f0e-8d2c-6e9a4b1d7c30"), "doc": '{"a": [1, "x"]}',
              "plain": '{"b": null}', "amount": Decimal("12.30"),
              "at": datetime(2026, 11, 27, 8, 0, tzinfo=UTC), "tags": ["p", "q"], "flag": True}
    insert = ("INSERT INTO kinds VALUES (:id, CAST(:doc AS jsonb), CAST(:plain AS json), :amount, "
              ":at, CAST(:tags AS text[]), :flag)")
    select = "SELECT id, doc, plain, amount, at, tags, flag FROM kinds"
    async with async_sessionmaker(engine)() as session:
        await Statement(insert).run(session, values)
        await session.execute(sa.text(insert), values)
        through_sqlalchemy = [tuple(r) for r in (await session.execute(sa.text(select))).all()]
        direct = [tuple(r) for r in await Statement(select).fetch(session)]
        await session.commit()
    assert direct == through_sqlalchemy
    assert direct[0] == direct[1]
    assert direct[0][1:] == ({"a": [1, "x"]}, {"b": None}, Decimal("12.30"), values["at"],
                             ["p", "q"], True)
    assert str(direct[0][0]) == str(values["id"])


async def test_a_pooled_connection_the_server_closed_is_replaced_not_retried_forever(
        engine: AsyncEngine, infra: Infra) -> None:
    """A database restart closes the connections resting in the pool. The batch's first
    statement goes to asyncpg directly (the inbox claim), where SQLAlchemy never sees the error:
    the dead connection went back to the pool and every retry took it again, for ever. Now it
    is invalidated and the retry gets a new one."""
    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    await processor.process([stock(1, "A")], None)  # a connection now rests in the pool
    async with engine.connect() as conn:
        name = (await conn.execute(sa.text("SELECT current_setting('application_name')"))).scalar()
    admin = await asyncpg.connect(infra.database_url.replace("+asyncpg", ""))
    try:  # what a restart does to them: the server ends every one of this engine's sessions
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = $1 AND pid <> pg_backend_pid()", name)
        deadline = asyncio.get_running_loop().time() + 10
        while await admin.fetchval("SELECT count(*) FROM pg_stat_activity "
                                   "WHERE application_name = $1", name):
            assert asyncio.get_running_loop().time() < deadline, "the sessions did not end"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    await asyncio.wait_for(processor.process([stock(2, "B")], None), timeout=30)
    assert await _applied(engine) == ["A", "B"]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Any:
        import asyncio

        self.sent.append((topic, key, value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_publishes_the_outbox_in_order_and_marks_it_published(
        engine: AsyncEngine) -> None:
    from orderflow.runtime.outbox import OutboxRelay

    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    batch = [stock(1, "A"), stock(2, "B"), stock(3, "C")]
    await processor.process(batch, None)
    producer = FakeProducer()
    relay = OutboxRelay(engine, producer, service="t", batch_size=2)  # type: ignore[arg-type]
    async with engine.connect() as conn:
        assert await relay.publish_batch(conn) == 2
        assert await relay.publish_batch(conn) == 1
        assert await relay.publish_batch(conn) == 0
    assert [json.loads(value)["warehouse_id"] for _, _, value, _ in producer.sent] == [
        "out-A", "out-B", "out-C"]
    assert [dict(h)["causation_id"].decode() for *_, h in producer.sent] == [
        event_id(r) for r in batch]
    assert {key for _, key, _, _ in producer.sent} == {b"out-A", b"out-B", b"out-C"}
    async with engine.connect() as conn:
        pending = (await conn.execute(sa.text(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar()
    assert pending == 0


class RefusingProducer(FakeProducer):
    """Refuses the keys in ``at_send`` when sending (as aiokafka does for a topic the principal
    may not describe) and fails the delivery of those in ``at_delivery``, with ``error``."""

    def __init__(self, at_send: tuple[bytes, ...] = (), at_delivery: tuple[bytes, ...] = (),
                 error: type[Exception] | None = None) -> None:
        from aiokafka.errors import TopicAuthorizationFailedError

        super().__init__()
        self.at_send, self.at_delivery = at_send, at_delivery
        self.error = error or TopicAuthorizationFailedError

    async def send(self, topic: str, *, value: bytes, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> Any:
        if key in self.at_send:
            raise self.error(topic)
        if key in self.at_delivery:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(self.error(topic))
            return failed
        return await super().send(topic, value=value, key=key, headers=headers)


async def _pending(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as c:
        return list((await c.execute(sa.text(
            "SELECT key FROM outbox WHERE published_at IS NULL AND quarantined_at IS NULL "
            "ORDER BY id"))).scalars())


async def test_a_refused_event_stays_in_the_outbox_is_counted_and_those_before_it_are_marked(
        engine: AsyncEngine) -> None:
    """A refusal that does not quarantine the row (not one of QUARANTINED_ERRORS): it and the
    rows behind it wait."""
    from aiokafka.errors import CorruptRecordException

    from orderflow.runtime import metrics
    from orderflow.runtime.outbox import OutboxRelay, PublishRefused

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=Recorder().on_batch)])
    await processor.process([stock(1, "A"), stock(2, "B"), stock(3, "C"), stock(4, "D")], None)
    counter = metrics.PUBLISH_REFUSED.labels("t", topics.WAREHOUSE_UPDATED.name,
                                             "CorruptRecordException")
    before = counter._value.get()

    async with engine.connect() as conn:
        refusing = RefusingProducer(at_send=(b"out-C",), error=CorruptRecordException)
        relay = OutboxRelay(engine, refusing, service="t")  # type: ignore[arg-type]
        with pytest.raises(PublishRefused) as refused:
            await relay.publish_batch(conn)
        assert refused.value.topic == topics.WAREHOUSE_UPDATED.name
        assert type(refused.value.error).__name__ == "CorruptRecordException"
        assert await _pending(engine) == [b"out-C", b"out-D"]  # A and B were acknowledged
        assert counter._value.get() == before + 1
        relay.producer = RefusingProducer(  # type: ignore[assignment]
            at_delivery=(b"out-D",), error=CorruptRecordException)
        with pytest.raises(PublishRefused):
            await relay.publish_batch(conn)
        assert await _pending(engine) == [b"out-D"]
        assert counter._value.get() == before + 2
        relay.producer = FakeProducer()  # type: ignore[assignment]
        assert await relay.publish_batch(conn) == 1 and await _pending(engine) == []
        assert relay.quarantined == 0


async def test_an_event_refused_for_good_is_quarantined_and_those_behind_it_are_published(
        engine: AsyncEngine) -> None:
    """TopicAuthorizationFailedError (at send or at delivery) quarantines the row: it stays,
    unpublished, with the broker's reason; the others are published, and a later batch skips
    it. The relay has no producer factory here: nothing to renew."""
    from orderflow.runtime import metrics
    from orderflow.runtime.outbox import OutboxRelay, quarantined_rows

    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=Recorder().on_batch)])
    await processor.process([stock(1, "A"), stock(2, "B"), stock(3, "C"), stock(4, "D")], None)
    counter = metrics.OUTBOX_QUARANTINED.labels("t", topics.WAREHOUSE_UPDATED.name,
                                                "TopicAuthorizationFailedError")
    before = counter._value.get()
    refusing = RefusingProducer(at_send=(b"out-B",), at_delivery=(b"out-C",))
    relay = OutboxRelay(engine, refusing, service="t")  # type: ignore[arg-type]
    async with engine.connect() as conn:
        assert await relay.publish_batch(conn) == 4
        assert await _pending(engine) == []
        assert [key for _, key, _, _ in refusing.sent] == [b"out-A", b"out-D"]
        assert counter._value.get() == before + 2 and relay.quarantined == 2
        listed = await quarantined_rows(conn)
        assert [r["key"] for r in listed] == ["out-B", "out-C"]
        assert all(r["reason"].startswith("TopicAuthorizationFailedError") for r in listed)
        assert await relay.count_quarantined(conn) == 2
        assert await relay.publish_batch(conn) == 0  # skipped from then on
        assert len(refusing.sent) == 2


async def test_the_relay_purges_the_inbox_past_its_retention_and_a_recent_redelivery_is_still_skipped(
        engine: AsyncEngine) -> None:
    from orderflow.runtime.outbox import OutboxRelay

    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    recent, old = [stock(1, "A"), stock(2, "B")], [stock(3, "OLD-1"), stock(4, "OLD-2"), stock(5, "OLD-3")]
    await processor.process(recent + old, None)
    async with engine.begin() as conn:  # the old ones were applied 46 and 60 days ago
        await conn.execute(sa.text(
            "UPDATE inbox SET applied_at = now() - make_interval(days => :d) "
            "WHERE event_id = ANY(CAST(:ids AS uuid[]))"), {"d": 46, "ids": [event_id(r) for r in old[:2]]})
        await conn.execute(sa.text(
            "UPDATE inbox SET applied_at = now() - interval '60 days' WHERE event_id = :id"),
            {"id": event_id(old[2])})
        # the purge's index is there (runtime_tables_ddl, which migrate also runs on every start)
        assert (await conn.execute(sa.text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'inbox' AND indexname = 'inbox_applied_at' "
            "AND schemaname = current_schema()"))).scalar() is not None
    relay = OutboxRelay(engine, FakeProducer(), service="t",  # type: ignore[arg-type]
                        inbox_retention_s=45 * 86400)
    async with engine.connect() as conn:
        assert await relay.purge(conn, chunk=2) == 3  # two chunks
        assert await relay.purge(conn) == 0
        kept = set((await conn.execute(sa.text("SELECT event_id::text FROM inbox"))).scalars())
    assert kept == {event_id(r) for r in recent}
    await processor.process(recent, None)  # within the retention: still skipped
    assert await _applied(engine) == ["A", "B", "OLD-1", "OLD-2", "OLD-3"]


async def test_the_relay_purges_the_outbox_by_the_ids_it_had_published_a_retention_ago(
        engine: AsyncEngine) -> None:
    """The first purge finds rows published more than the retention ago by a scan; after it,
    each purge deletes through the primary key the rows at or below the highest id published a
    retention ago, and keeps a row below it that is not published yet until it is."""
    from orderflow.runtime.outbox import OutboxRelay

    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    now = [1000.0]
    relay = OutboxRelay(engine, FakeProducer(), service="t", retention_s=3600,  # type: ignore[arg-type]
                        clock=lambda: now[0])

    async def ids() -> list[int]:
        async with engine.connect() as c:
            return list((await c.execute(sa.text("SELECT id FROM outbox ORDER BY id"))).scalars())

    await processor.process([stock(1, "A"), stock(2, "B")], None)
    async with engine.connect() as conn:
        assert await relay.publish_batch(conn) == 2
        first = await ids()
        # published two hours ago, by a process before this one: only a scan finds it
        await conn.execute(sa.text("UPDATE outbox SET published_at = now() - interval '2 hours' "
                                   "WHERE id = :id"), {"id": first[0]})
        await conn.commit()
        await relay.purge(conn, chunk=2)  # the scan; then the mark (1000 s, first[1])
        assert await ids() == first[1:]
    await processor.process([stock(3, "C"), stock(4, "D"), stock(5, "E")], None)
    async with engine.connect() as conn:
        assert await relay.publish_batch(conn) == 3
        second = (await ids())[1:]
        now[0] = 1060.0
        await relay.purge(conn, chunk=2)  # nothing a retention old yet; mark (1060 s, second[-1])
        assert await ids() == first[1:] + second
        # a row below the next mark that its relay has not published yet (committed late)
        await conn.execute(sa.text("UPDATE outbox SET published_at = NULL WHERE id = :id"),
                           {"id": second[0]})
        await conn.commit()
        now[0] = 1000.0 + 3600 + 61  # both marks a retention old: everything up to second[-1]
        await relay.purge(conn, chunk=2)
        assert await ids() == [second[0]]  # kept until published
        assert await relay.publish_batch(conn) == 1
        await processor.process([stock(6, "F")], None)
        assert await relay.publish_batch(conn) == 1
        now[0] += 3600 + 60
        await relay.purge(conn, chunk=2)  # marks the newest
        now[0] += 3600 + 60
        await relay.purge(conn, chunk=2)
        assert await ids() == []


_OLD_FIRST_REVISION = '''
from alembic import op

revision = "old_0001"
down_revision = None


def upgrade() -> None:  # the runtime's tables as a first revision made them before the purge
    op.execute("CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, key BYTEA, "
               "value BYTEA NOT NULL, headers JSONB NOT NULL, "
               "created_at TIMESTAMPTZ NOT NULL DEFAULT now(), published_at TIMESTAMPTZ)")
    op.execute("CREATE TABLE inbox (event_id UUID PRIMARY KEY, topic TEXT NOT NULL, "
               "event_type TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
'''


async def test_migrate_gives_a_schema_made_by_an_older_runtime_the_inbox_purges_index(
        infra: Infra, tmp_path: Path) -> None:
    (tmp_path / "old_0001.py").write_text(_OLD_FIRST_REVISION)
    async with migrated_schema(infra.database_url, "older", tmp_path) as engine, engine.connect() as conn:
        indexes = set((await conn.execute(sa.text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'inbox' "
            "AND schemaname = current_schema()"))).scalars())
    assert "inbox_applied_at" in indexes


async def test_an_event_id_in_another_spelling_of_its_uuid_is_applied_once_not_skipped(
        engine: AsyncEngine) -> None:
    # the inbox hands back the canonical spelling; an upper-case or brace-wrapped event id that
    # was compared as sent looked already claimed, and the event was skipped (lost)
    recorder = Recorder()
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.STOCK_RECEIVED, batch_handler=recorder.on_batch)])
    upper, braced = stock(1, "A"), stock(2, "B")
    for rec, spell in ((upper, str.upper), (braced, lambda s: "{" + s + "}")):
        rec.headers = [(k, spell(v.decode()).encode() if k == "event_id" else v)
                       for k, v in rec.headers]
    await processor.process([upper, braced], None)
    assert recorder.calls == [["A", "B"]]
    await processor.process([upper, braced], None)  # redelivered: skipped
    assert recorder.calls == [["A", "B"]]
    assert await _applied(engine) == ["A", "B"]
