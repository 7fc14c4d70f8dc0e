"""A broker that lost its data leaves positions beyond the partitions' ends: the consumer reads the
partition again from its start instead of waiting there, commits nothing beyond the end, and a
message that reuses an old offset is never taken for the one that had it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.contracts import topics
from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.runtime.consumer import Subscription, decode
from orderflow.runtime.lag import PartitionEnds
from orderflow.runtime.outbox import OutboxRelay, OutgoingMessage, make_producer, stage
from orderflow.runtime.positions import PositionGuard
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.infra import Infra
from orderflow.testing.records import migrated_schema


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@pytest.mark.unit
def test_a_headerless_message_at_a_reused_offset_gets_a_new_event_id() -> None:
    """Connectors may push without our headers: the event id then comes from where the message
    lies and what it holds, so after the broker lost its data a new order at an old offset is
    not skipped by the inbox as the old one."""
    sub = Subscription(topics.ORDER_INBOUND, handler=lambda uow, e: None,  # type: ignore[arg-type,return-value]
                       headerless=True)
    first = (b'{"channel": "web", "external_id": "A-1", "received_at": "2026-12-01T08:00:00Z",'
             b' "payload": {"id": "A-1"}}')
    second = (b'{"channel": "web", "external_id": "B-7", "received_at": "2026-12-01T08:00:00Z",'
              b' "payload": {"id": "B-7"}}')
    ids = []
    for value in (first, second, first):
        decoded = decode(_Record("order.inbound", 0, 42, b"web:x", value), sub, 1_000_000)
        headers = getattr(decoded, "headers", None)
        if headers is None:  # a poison (the payload's shape) still carries no id: use the record
            pytest.fail(f"the record was not decoded: {decoded}")
        ids.append(headers.event_id)
    assert ids[0] != ids[1], "a different message at the same offset must get another event id"
    assert ids[0] == ids[2], "a redelivery of the same message must keep its event id"


@pytest.mark.unit
def test_on_a_broker_with_inexact_end_offsets_only_an_end_that_went_down_means_lost_data() -> None:
    """Tansu reports the first offset of the last record batch plus one as a partition's end: a
    position a batch beyond it is normal there. Apache Kafka's end is exact."""
    tp = TopicPartition("t", 0)
    inexact = PositionGuard(lambda: None, service="tests", exact_end_offsets=False)
    assert not inexact._beyond(tp, 305, 301)  # the last batch's records
    assert not inexact._beyond(tp, 305, 301)
    assert inexact._beyond(tp, 305, 2)  # the log started again: data lost
    exact = PositionGuard(lambda: None, service="tests")
    assert exact._beyond(tp, 305, 301)
    assert not exact._beyond(tp, 301, 301)


@pytest.mark.unit
def test_a_batch_fetched_before_its_partition_was_reset_commits_nothing_there() -> None:
    guard = PositionGuard(lambda: None, service="tests")
    tp, other = TopicPartition("t", 0), TopicPartition("t", 1)
    fetched = time.monotonic()
    assert guard.may_commit(tp, fetched)
    guard.reset_at[tp] = time.monotonic() + 0.001
    assert not guard.may_commit(tp, fetched)
    assert guard.may_commit(other, fetched)
    assert guard.may_commit(tp, time.monotonic() + 1)


@pytest.fixture
async def tansu(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _send(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def _read(consumer: AIOKafkaConsumer, want: int, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        got += [r.value or b"" for records in batch.values() for r in records]
    return got


@pytest.mark.service
@pytest.mark.parametrize("with_guard", [True, False], ids=["guarded", "unguarded"])
async def test_after_the_broker_lost_its_data_the_consumer_reads_the_partition_from_its_start(
        tansu: EmbeddedBroker, with_guard: bool) -> None:
    """Tansu keeps everything in memory: after a restart the partition starts again at offset 0
    while a running consumer's position stands where it was. Without the guard it waits there for
    offsets that do not come (the orders written since are stranded); with it, the consumer reads
    the partition again from its start."""
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap, broker="tansu")
    topic = "positions.test"
    await create_topics(kafka, [(topic, 1)])
    await _send(kafka, topic, [f"old-{i}".encode() for i in range(6)])
    consumer = AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id="positions-test",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=1500,
                                fetch_max_wait_ms=100)
    # one guard for the process's life: it remembers the ends it saw (Tansu's end offsets are not
    # exact, so only an end that went down says the log was lost)
    current: list[AIOKafkaConsumer] = [consumer]
    guard = PositionGuard(lambda: current[0], service="tests", exact_end_offsets=False)
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        assert len(await _read(consumer, 6, timeout=30)) == 6
        assert await guard.check() == 0  # sees the partition's end; nothing is beyond it

        port = tansu.port
        tansu.stop()
        tansu.start(port)  # the same address, an empty broker
        await create_topics(kafka, [(topic, 1)])
        await _send(kafka, topic, [b"new-0", b"new-1"])
    finally:
        await consumer.stop()

    # a batch fetched before the restart commits its offsets late, into the new broker's state
    late = AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id="positions-test",
                            enable_auto_commit=False, session_timeout_ms=6000,
                            heartbeat_interval_ms=1500)
    await late.start()
    try:
        deadline = time.monotonic() + 30
        while not late.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await late.commit({tp: 6})
        assert await late.committed(tp) == 6
    finally:
        await late.stop()

    # the group's next member: its committed position (6) is beyond the partition's end (2)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id="positions-test",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=1500,
                                fetch_max_wait_ms=100)
    current[0] = consumer
    consumer.subscribe([topic], listener=guard if with_guard else None)
    await consumer.start()
    try:
        got = await _read(consumer, 2, timeout=15)
        if with_guard:
            assert got == [b"new-0", b"new-1"]
            assert tp in guard.reset_at
        else:  # what the guard is for: the broker answers nothing at a position beyond the end
            assert got == []
    finally:
        await consumer.stop()


@pytest.mark.service
async def test_after_the_broker_lost_a_topics_log_the_relay_publishes_the_kept_rows_again(
        tansu: EmbeddedBroker, infra: Infra) -> None:
    """Events the broker acknowledged and lost with its log (Tansu restarted) are not lost: the
    relay sees the partition's end go down and publishes the rows it still keeps again, in
    order; consumers skip those they had applied (the inbox)."""
    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap, broker="tansu")
    topic = "relay.lost-log"
    await create_topics(kafka, [(topic, 1)])
    async with migrated_schema(infra.database_url, "lostlog") as engine:
        async with engine.begin() as conn:
            await stage(conn, [OutgoingMessage(topic, f"k{i}".encode(), b'{"n": %d}' % i,
                                               [("event_type", b"N")]) for i in range(4)])
        producer = make_producer(kafka, client_id="tests-relay")
        ends = PartitionEnds(kafka, client_id="tests-relay-ends")
        await producer.start()
        relay = OutboxRelay(engine, producer, service="lostlog", end_offsets=ends.read)
        try:
            async with engine.connect() as conn:
                assert await relay.publish_batch(conn) == 4
                assert await relay.republish_lost(conn) == 0  # sees the ends; nothing lost
                port = tansu.port
                tansu.stop()
                tansu.start(port)  # the same address, an empty broker
                await create_topics(kafka, [(topic, 1)])
                republished = 0
                deadline = time.monotonic() + 30
                while not republished and time.monotonic() < deadline:
                    republished = await relay.republish_lost(conn)  # the end went down: 4 → 0
                    await asyncio.sleep(0.2)
                assert republished == 4
                assert await relay.republish_lost(conn) == 0  # once
                assert await relay.publish_batch(conn) == 4
        finally:
            await producer.stop()
            await ends.stop()
    reader = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False,
                              auto_offset_reset="earliest")
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            batch = await reader.getmany(tp, timeout_ms=300)
            got += [r.key or b"" for r in batch.get(tp, [])]
    finally:
        await reader.stop()
    assert got == [b"k0", b"k1", b"k2", b"k3"]


@pytest.mark.unit
async def test_a_look_at_the_ends_that_cannot_be_had_never_holds_the_relay() -> None:
    """The broker away, or a partition without a leader: the look gives up within its timeout
    and publishing goes on; the next look tries again."""
    async def never(_partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        await asyncio.sleep(3600)
        return {}

    relay = OutboxRelay(None, None, service="tests", end_offsets=never,  # type: ignore[arg-type]
                        log_check_timeout_s=0.2)
    relay._written.add(TopicPartition("t", 0))
    started = time.monotonic()
    assert await relay.republish_lost(None) == 0  # type: ignore[arg-type]
    assert time.monotonic() - started < 2
