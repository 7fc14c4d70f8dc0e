"""Traces inside one service, against the real PostgreSQL: a log line written while an event is
handled carries its consumer span's ids, and every statement of the handler (through SQLAlchemy
or the runtime's asyncpg path) is a database span, child of that span, whose text holds bind
placeholders and never the parameters. A batch handler's run of one is in its event's span; the
statements of a run of several are in no trace, its per-event log lines in their events'."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts import topics
from orderflow.contracts.events import WarehouseUpdated
from orderflow.runtime import tracing
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.logging import configure_logging, get_logger
from orderflow.runtime.sqlalchemy_bridge import Statement
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork
from orderflow.testing.infra import Infra
from orderflow.testing.records import Rec, migrated_schema, record

pytestmark = pytest.mark.service

EMAIL = "li.lei@example.com"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on as a service turns it on (``configure_tracing``, its sampler included), the
    spans kept in memory; the runtime's consumer spans and asyncpg's statements go to it."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    spans = InMemorySpanExporter()
    provider = tracing.configure_tracing("t", set_global=False,
                                         processors=(SimpleSpanProcessor(spans),))
    assert isinstance(provider, TracerProvider)
    monkeypatch.setattr(tracing, "_tracer", lambda tracer: tracer or provider.get_tracer("t"))
    tracing.instrument_database(provider)
    try:
        yield spans
    finally:
        tracing.uninstrument_database()
        provider.shutdown()


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "traced") as engine:  # the runtime's tables
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE contacts (id TEXT PRIMARY KEY, email TEXT)"))
        yield engine


def warehouse(offset: int, warehouse_id: str) -> Rec:
    return record(WarehouseUpdated(warehouse_id=warehouse_id, name="W", province="P", city="C"),
                  offset=offset, producer="t")


STORE = Statement("INSERT INTO contacts (id, email) VALUES (:id, :email)")


async def _handle(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
    """A handler as a service writes one: a log line, a repository's statements (one through
    SQLAlchemy, one through the runtime's asyncpg path)."""
    get_logger("orderflow.test").info("applying", warehouse_id=incoming.event.warehouse_id)
    await uow.session.execute(sa.text("SELECT count(*) FROM contacts WHERE email = :email"),
                              {"email": EMAIL})
    await STORE.run(uow.session, {"id": incoming.event.warehouse_id, "email": EMAIL})


def _consumer_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    (span,) = [s for s in spans if s.kind is SpanKind.CONSUMER]
    return span


@pytest.mark.usefixtures("process_logging")
async def test_a_log_line_inside_a_handler_carries_its_span_ids_and_one_outside_none(
        engine: AsyncEngine, exporter: InMemorySpanExporter,
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="json")
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000,
                               subscriptions=[Subscription(topics.WAREHOUSE_UPDATED, _handle)])
    await processor.process([warehouse(1, "W-1")], None)
    get_logger("orderflow.test").info("batch done")

    span = _consumer_span(exporter.get_finished_spans())
    assert span.context is not None
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    inside = next(line for line in lines if line["event"] == "applying")
    outside = next(line for line in lines if line["event"] == "batch done")
    assert inside["trace_id"] == f"{span.context.trace_id:032x}"
    assert inside["span_id"] == f"{span.context.span_id:016x}"
    assert inside["warehouse_id"] == "W-1"
    assert "trace_id" not in outside and "span_id" not in outside


async def test_a_handlers_statements_are_database_spans_children_of_its_span_without_parameters(
        engine: AsyncEngine, exporter: InMemorySpanExporter) -> None:
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000,
                               subscriptions=[Subscription(topics.WAREHOUSE_UPDATED, _handle)])
    await processor.process([warehouse(1, "W-1")], None)
    async with engine.connect() as conn:  # outside any trace: no span (StatementsInTraces)
        assert (await conn.execute(sa.text("SELECT email FROM contacts"))).scalar() == EMAIL

    spans = exporter.get_finished_spans()
    consumer = _consumer_span(spans)
    assert consumer.context is not None
    statements = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert statements, [s.name for s in spans]
    texts = [str((s.attributes or {}).get("db.statement")) for s in statements]
    # SQLAlchemy's statement and the runtime's asyncpg one, both inside the handler's span
    handler_texts = {t for s, t in zip(statements, texts, strict=True)
                     if s.parent is not None and s.parent.span_id == consumer.context.span_id}
    assert any("FROM contacts WHERE email = $1" in t for t in handler_texts), texts
    assert any("INSERT INTO contacts (id, email) VALUES ($1, $2)" in t for t in handler_texts), texts
    for span in statements:
        assert span.parent is not None, f"a statement outside the trace: {span.name}"
        assert span.context is not None
        assert span.context.trace_id == consumer.context.trace_id
        assert (span.attributes or {}).get("db.system") == "postgresql"
        assert "db.statement.parameters" not in (span.attributes or {})
        assert EMAIL not in json.dumps(dict(span.attributes or {}))
        assert EMAIL not in str(span.status.description)
    assert "SELECT email FROM contacts" not in texts


async def _handle_run(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
    """A set-based handler: one statement for the whole run, then a log line per event in its
    span (as intake announces each push)."""
    await uow.session.execute(sa.text("SELECT count(*) FROM contacts WHERE id = ANY(:ids)"),
                              {"ids": [i.event.warehouse_id for i in run]})
    for incoming in run:
        with uow.in_span(incoming) or contextlib.nullcontext():
            get_logger("orderflow.test").info("announced", warehouse_id=incoming.event.warehouse_id)


@pytest.mark.usefixtures("process_logging")
async def test_a_batch_handlers_run_of_one_is_in_its_span_a_run_of_several_in_none(
        engine: AsyncEngine, exporter: InMemorySpanExporter,
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="json")
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000, subscriptions=[
        Subscription(topics.WAREHOUSE_UPDATED, batch_handler=_handle_run)])
    await processor.process([warehouse(1, "W-1")], None)
    (alone,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert alone.context is not None
    (statement,) = [s for s in exporter.get_finished_spans()
                    if s.kind is SpanKind.CLIENT and "ANY" in str((s.attributes or {}).get("db.statement"))]
    assert statement.parent is not None and statement.parent.span_id == alone.context.span_id
    exporter.clear()

    await processor.process([warehouse(2, "W-2"), warehouse(3, "W-3")], None)
    consumers = {s.context.span_id: s for s in exporter.get_finished_spans()
                 if s.kind is SpanKind.CONSUMER and s.context is not None}
    assert len(consumers) == 2
    # the run's statement serves both events: in neither one's trace, and no trace of its own
    assert not [s for s in exporter.get_finished_spans()
                if s.kind is SpanKind.CLIENT and "ANY" in str((s.attributes or {}).get("db.statement"))]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    announced = {line["warehouse_id"]: line for line in lines if line["event"] == "announced"}
    assert int(announced["W-1"]["span_id"], 16) == alone.context.span_id
    for warehouse_id in ("W-2", "W-3"):
        span = consumers[int(announced[warehouse_id]["span_id"], 16)]
        assert span.attributes is not None
        assert span.attributes["messaging.kafka.message.key"] == warehouse_id
