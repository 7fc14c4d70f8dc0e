"""A batch redelivered after its transaction committed (an offset commit lost to a rebalance)
dead-letters its poison once, not twice: the physical record is claimed in the inbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest

from orderflow.contracts import topics
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.db import make_engine
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "order.inbound"
    partition: int = 0


async def _never(*_: object) -> None:
    raise AssertionError("a poison message must never reach a handler")


async def test_a_redelivered_poison_message_is_dead_lettered_once(
        pipeline: Pipeline, events: EventLog) -> None:
    if "intake" not in pipeline.services:
        pytest.skip("uses intake's schema and outbox relay")
    engine = make_engine(DatabaseSettings(url=pipeline.infra.database_url), "intake")
    processor = BatchProcessor(service="intake",
                               subscriptions=[Subscription(topics.ORDER_INBOUND, _never)],
                               engine=engine, max_bytes=10_000)
    key = f"canonical:POISON-{uuid.uuid4().hex[:8]}".encode()
    # an offset far beyond anything the real topic holds, so it names no real record
    record = Rec(b"{never json", key, offset=10**12 + uuid.uuid4().int % 10**9)
    try:
        await processor.process([record], None)
        await processor.process([record], None)  # the same batch, redelivered
        other = Rec(b"{also not json", key, offset=record.offset + 1)
        await processor.process([other], None)
    finally:
        await engine.dispose()
    found = await events.wait_for(lambda: len(events.of("order.inbound.dlq", key.decode())) >= 2
                                  and events.of("order.inbound.dlq", key.decode()), timeout=60,
                                  what="both poison messages in the DLQ")
    assert sorted(e.value for e in found) == [b"{also not json", b"{never json"]
