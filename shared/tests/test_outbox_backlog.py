"""The outbox backlog gauge reports the rows waiting, past the relay's batch size (against the real
broker and PostgreSQL): counted when a pass finds a full batch, at most once per interval."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.runtime import metrics
from orderflow.runtime.outbox import OutboxRelay, OutgoingMessage, make_producer, stage
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.infra import Infra
from orderflow.testing.records import migrated_schema

pytestmark = pytest.mark.service


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "backlog") as engine:
        yield engine


def backlog(service: str) -> float:
    return metrics.OUTBOX_BACKLOG.labels(service)._value.get()


async def _stage(engine: AsyncEngine, topic: str, count: int) -> None:
    async with engine.begin() as conn:
        await stage(conn, [OutgoingMessage(topic, f"k{i}".encode(), b'{"n": %d}' % i,
                                           [("event_type", b"N")]) for i in range(count)])


async def test_the_backlog_is_counted_past_a_batch_and_at_most_once_per_interval(
        engine: AsyncEngine, kafka: KafkaSettings) -> None:
    topic = f"test.backlog.{uuid.uuid4().hex[:8]}"
    await create_topics(kafka, [(topic, 1)])
    await _stage(engine, topic, 45)
    async with engine.begin() as conn:  # a quarantined row waits too, but is not counted
        await conn.execute(sa.text("UPDATE outbox SET quarantined_at = now(), "
                                   "quarantine_reason = 'test' WHERE id = (SELECT max(id) FROM outbox)"))
    now = [0.0]
    producer = make_producer(kafka, client_id="orderflow-test-backlog")
    await producer.start()
    relay = OutboxRelay(engine, producer, service="backlog", batch_size=10,
                        backlog_count_interval_s=5.0, clock=lambda: now[0])
    try:
        async with engine.connect() as conn:
            seen = []
            for advance in (0.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0):
                now[0] += advance
                await relay.publish_batch(conn)
                seen.append(backlog("backlog"))
    finally:
        await producer.stop()
    # 44 rows to publish, 10 a pass (44, 34, 24, 14, 4 waiting at the passes' starts): counted
    # at the first full pass (44, not the batch's 10); the next full pass, a second later, keeps
    # that count; the one 5 s after the count counts again (24), the next keeps it; a short pass
    # knows its 4, an empty one 0
    assert seen == [44, 44, 24, 24, 4, 0, 0]
    assert relay.published == 44


async def test_a_running_relay_reports_a_large_backlog_then_none(
        engine: AsyncEngine, kafka: KafkaSettings) -> None:
    topic = f"test.backlog.{uuid.uuid4().hex[:8]}"
    await create_topics(kafka, [(topic, 1)])
    await _stage(engine, topic, 30)
    producer = make_producer(kafka, client_id="orderflow-test-backlog-run")
    await producer.start()
    relay = OutboxRelay(engine, producer, service="backlog-run", batch_size=10,
                        poll_interval_s=0.1, backlog_count_interval_s=0.0)
    readings: list[float] = []
    drained = asyncio.Event()
    report = relay._report_backlog

    async def recording(conn: object, fetched: int) -> None:
        await report(conn, fetched)  # type: ignore[arg-type]
        readings.append(backlog("backlog-run"))
        if relay.published == 30 and readings[-1] == 0:
            drained.set()

    relay._report_backlog = recording  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(drained.wait(), 20)
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()
    assert readings[0] == 30  # the whole backlog, not the batch fetched
    assert readings[-1] == 0
