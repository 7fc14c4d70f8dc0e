"""An outbox row the broker refuses for good is quarantined and the rows behind it flow on
(against the real broker, whose default maximum message size is 1 MiB, and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.runtime import metrics
from orderflow.runtime.http import create_http_app
from orderflow.runtime.outbox import (
    OutboxRelay,
    OutgoingMessage,
    make_producer,
    quarantined_rows,
    release_quarantined,
    stage,
)
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.infra import Infra
from orderflow.testing.records import migrated_schema

pytestmark = pytest.mark.service

MIB = 1024 * 1024


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "quarantine") as engine:
        yield engine


async def _read(kafka: KafkaSettings, topic: str, count: int, timeout_s: float) -> list[bytes]:
    """The keys of the first ``count`` messages of ``topic`` (one partition), within the time."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                                fetch_max_bytes=8 * MIB, max_partition_fetch_bytes=8 * MIB)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        keys: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(keys) < count and time.monotonic() < deadline:
            got = await consumer.getmany(tp, timeout_ms=300)
            keys += [r.key or b"" for r in got.get(tp, [])]
        return keys
    finally:
        await consumer.stop()


async def test_a_row_too_large_for_the_broker_is_quarantined_and_the_rows_behind_it_flow(
        engine: AsyncEngine, kafka: KafkaSettings) -> None:
    topic = f"test.quarantine.{uuid.uuid4().hex[:8]}"
    await create_topics(kafka, [(topic, 1)])
    # 3 MiB: past the producer's own max_request_size (refused when sent); 1.5 MiB: within it
    # but past the broker's 1 MiB (refused at delivery, by the broker)
    big = OutgoingMessage(topic, b"big", b"x" * (3 * MIB), [("event_type", b"Big")])
    large = OutgoingMessage(topic, b"large", b"y" * (3 * MIB // 2), [("event_type", b"Large")])
    normal = [OutgoingMessage(topic, f"n{i}".encode(), b'{"n": %d}' % i, [("event_type", b"N")])
              for i in range(5)]
    async with engine.begin() as conn:
        await stage(conn, [big, *normal[:3], large, *normal[3:]])
    quarantined = metrics.OUTBOX_QUARANTINED.labels("qt", topic, "MessageSizeTooLargeError")
    refused = metrics.PUBLISH_REFUSED.labels("qt", topic, "MessageSizeTooLargeError")
    before_refused = refused._value.get()

    producer = make_producer(kafka, client_id="orderflow-test-quarantine")
    await producer.start()
    relay = OutboxRelay(engine, producer, service="qt", poll_interval_s=0.1,
                        producer_factory=lambda: make_producer(
                            kafka, client_id="orderflow-test-quarantine"))
    task = asyncio.create_task(relay.run())
    started = time.monotonic()
    try:
        keys = await _read(kafka, topic, 5, timeout_s=20)
        took = time.monotonic() - started
        # every normal row, in order, and promptly (no pause of a second or more behind a refusal)
        assert keys == [m.key for m in normal]
        assert took < 10, took
        for _ in range(50):  # the quarantine is written with the batch; give the relay its turn
            if relay.quarantined == 2:
                break
            await asyncio.sleep(0.1)
        assert relay.quarantined == 2 and relay.refusals == 0
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await relay.producer.stop()

    assert quarantined._value.get() == 2
    assert refused._value.get() == before_refused + 2
    assert metrics.OUTBOX_QUARANTINE.labels("qt")._value.get() == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT key, published_at, quarantined_at, quarantine_reason, octet_length(value) "
            "FROM outbox ORDER BY id"))).all()
        listed = await quarantined_rows(conn)
    by_key = {bytes(r[0]): r for r in rows}
    assert len(rows) == 7  # the refused rows are kept
    for key, size in [(b"big", 3 * MIB), (b"large", 3 * MIB // 2)]:
        row = by_key[key]
        assert row[1] is None and row[2] is not None and row[4] == size
        assert row[3].startswith("MessageSizeTooLargeError"), row[3]
    assert "larger than the maximum request size" in by_key[b"big"][3]  # the producer's words
    assert all(by_key[m.key][1] is not None and by_key[m.key][2] is None for m in normal)
    assert [(r["key"], r["size"]) for r in listed] == [("big", 3 * MIB), ("large", 3 * MIB // 2)]
    assert all(r["reason"].startswith("MessageSizeTooLargeError") for r in listed)

    # the service's HTTP side lists them (no event bodies), for the console's exception queue
    async def listing() -> list[dict[str, object]]:
        async with engine.connect() as conn:
            return await quarantined_rows(conn)

    async def health() -> dict[str, bool]:
        return {}

    app = create_http_app("qt", health, quarantine=listing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://qt") as client:
        answer = (await client.get("/outbox/quarantine")).json()
    assert answer["service"] == "qt"
    assert [r["key"] for r in answer["rows"]] == ["big", "large"]
    assert all("value" not in r and "headers" not in r for r in answer["rows"])

    # released (once the cause is fixed), a row is the relay's again
    async with engine.connect() as conn:
        assert await release_quarantined(conn, [listed[1]["id"]]) == 1
        await conn.commit()
        pending = (await conn.execute(sa.text(
            "SELECT key FROM outbox WHERE published_at IS NULL AND quarantined_at IS NULL"))).all()
    assert [bytes(r[0]) for r in pending] == [b"large"]
