"""A batch that fails outside its handlers, against the real PostgreSQL (and, for the consumer's
rewind, the real broker through FastStream): the record at fault is dead-lettered alone with its
reason and the others apply; when not even its dead letter can be written, the consumer is
rewound and the batch delivered again once the fault is mended, never skipped."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, TopicPartition
from pydantic import field_validator
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts import topics
from orderflow.contracts.events import StockReceived
from orderflow.contracts.topics import Topic
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.lag import wait_consumed
from orderflow.runtime.service import ServiceDefinition, build_broker, create_topics
from orderflow.runtime.settings import KafkaSettings, ServiceSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork
from orderflow.testing.infra import Infra
from orderflow.testing.records import Rec, event_id, migrated_schema, record

pytestmark = pytest.mark.service

# the outbox refuses what the test says: rows whose payload holds BOOM (not dead letters), or
# every row while the table ``refuse`` has one
_REFUSING_OUTBOX = [
    "CREATE TABLE applied (n BIGSERIAL, ref TEXT NOT NULL)",
    "CREATE TABLE refuse (on_ BOOLEAN)",
    """CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM refuse) THEN
           RAISE EXCEPTION 'the outbox refuses every row';
         END IF;
         IF NEW.topic NOT LIKE '%.dlq' AND position('BOOM' IN convert_from(NEW.value, 'UTF8')) > 0
         THEN
           RAISE EXCEPTION 'the outbox refuses %', convert_from(NEW.value, 'UTF8');
         END IF;
         RETURN NEW;
       END $$""",
    "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_outbox()",
]


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "failing") as engine:
        async with engine.begin() as conn:
            for ddl in _REFUSING_OUTBOX:
                await conn.execute(sa.text(ddl))
        yield engine


async def echo(uow: UnitOfWork, incoming: IncomingEvent[StockReceived]) -> None:
    """Records the SKU, and emits the event again (its payload goes through the outbox)."""
    await uow.session.execute(sa.text("INSERT INTO applied (ref) VALUES (:r)"),
                              {"r": incoming.event.sku})
    uow.emit(incoming.event, topic=topics.STOCK_RECEIVED)


def stock(offset: int, sku: str, *, topic: str = topics.STOCK_RECEIVED.name) -> Rec:
    return record(StockReceived(warehouse_id="WH-1", sku=sku, quantity=1), offset=offset,
                  topic=topic)


async def _applied(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text("SELECT ref FROM applied ORDER BY n"))).scalars())


async def _outbox(engine: AsyncEngine) -> list[tuple[str, dict[str, str], bytes]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT topic, headers, value FROM outbox ORDER BY id"))).all()
    return [(t, dict(json.loads(h) if isinstance(h, str) else h), bytes(v)) for t, h, v in rows]


def _processor(engine: AsyncEngine) -> BatchProcessor:
    return BatchProcessor(service="t", engine=engine, max_bytes=10_000,
                          subscriptions=[Subscription(topics.STOCK_RECEIVED, echo)])


async def test_a_record_that_fails_outside_its_handler_is_dead_lettered_alone_and_the_others_apply(
        engine: AsyncEngine) -> None:
    processor = _processor(engine)
    batch = [stock(1, "A"), stock(2, "BOOM"), stock(3, "C")]
    await processor.process(batch, None)  # the handler passes; writing its outbox fails
    assert await _applied(engine) == ["A", "C"]
    staged = await _outbox(engine)
    assert [(t, h.get("causation_id") or h.get("dlq_reason")) for t, h, _ in staged] == [
        ("stock.received", event_id(batch[0])),
        ("stock.received.dlq", "unprocessable"),
        ("stock.received", event_id(batch[2])),
    ]
    dead = staged[1]
    assert "the outbox refuses" in dead[1]["dlq_error"]
    assert dead[1]["event_id"] == event_id(batch[1])  # as it came: its headers and its bytes
    assert dead[2] == batch[1].value

    await processor.process(batch, None)  # redelivered: nothing applied or dead-lettered twice
    assert await _applied(engine) == ["A", "C"]
    assert len(await _outbox(engine)) == 3


async def test_a_nul_character_in_a_poison_messages_headers_does_not_take_the_batch_down(
        engine: AsyncEngine) -> None:
    """PostgreSQL's JSONB refuses ``\\u0000``: the dead letter's headers keep U+FFFD instead."""
    processor = _processor(engine)
    poison = Rec(topics.STOCK_RECEIVED.name, 0, 2, b"k", b"{", [("x-note\x00", b"a\x00b")])
    await processor.process([stock(1, "A"), poison], None)
    assert await _applied(engine) == ["A"]
    staged = await _outbox(engine)
    assert [t for t, _, _ in staged] == ["stock.received", "stock.received.dlq"]
    assert staged[1][1]["x-note\ufffd"] == "a\ufffdb"
    assert staged[1][1]["dlq_reason"] == "bad_headers"


async def test_header_bytes_that_are_not_utf8_are_kept_as_replacement_characters(
        engine: AsyncEngine) -> None:
    processor = _processor(engine)
    poison = Rec(topics.STOCK_RECEIVED.name, 0, 2, b"k", b"{", [("x-raw", b"a\xff\xfeb")])
    await processor.process([poison], None)
    [(topic, headers, _)] = await _outbox(engine)
    assert topic == "stock.received.dlq" and headers["x-raw"] == "a\ufffd\ufffdb"


class Touchy(StockReceived):
    """A contract whose validator raises what pydantic does not turn into a ValidationError."""

    @field_validator("sku")
    @classmethod
    def _touchy(cls, value: str) -> str:
        if value == "TOUCHY":
            raise TypeError("the validator itself broke")
        return value


async def test_a_record_that_breaks_the_decoder_is_dead_lettered_and_the_others_apply(
        engine: AsyncEngine) -> None:
    topic = Topic(topics.STOCK_RECEIVED.name, Touchy, 1, "sku", "a touchy contract")
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000,
                               subscriptions=[Subscription(topic, echo)])
    await processor.process([stock(1, "A"), stock(2, "TOUCHY"), stock(3, "C")], None)
    assert await _applied(engine) == ["A", "C"]
    dead = [h for t, h, _ in await _outbox(engine) if t.endswith(".dlq")]
    assert [(h["dlq_reason"], h["dlq_error"]) for h in dead] == [
        ("undecodable", "TypeError: the validator itself broke")]


class Offsets:
    """A consumer's commit and seek, as the processor calls them."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


async def test_a_batch_that_cannot_be_written_at_all_is_rewound_not_committed(engine: AsyncEngine) -> None:
    processor = _processor(engine)
    processor.pauses = [0.01]
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO refuse VALUES (true)"))
    other = stock(7, "B", topic=topics.STOCK_RECEIVED.name)
    other.partition = 3
    batch = [stock(4, "A"), stock(5, "C"), other]
    offsets = Offsets()
    await processor.consume(batch, offsets)  # does not raise
    tp = topics.STOCK_RECEIVED.name
    assert offsets.commits == []
    assert sorted(offsets.seeks) == [(TopicPartition(tp, 0), 4), (TopicPartition(tp, 3), 7)]
    assert processor.failures == 1
    assert await _applied(engine) == [] and await _outbox(engine) == []

    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM refuse"))
    await processor.consume(batch, offsets)  # delivered again: applied, committed
    assert sorted(await _applied(engine)) == ["A", "B", "C"]
    assert offsets.commits == [{TopicPartition(tp, 0): 6, TopicPartition(tp, 3): 8}]
    assert processor.failures == 0


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_the_consumer_delivers_a_failed_batch_again_once_mended_and_never_skips_it(
        engine: AsyncEngine, kafka: KafkaSettings) -> None:
    """Through FastStream and the real broker: while every write fails, no later batch's commit
    passes over the failed ones (with manual acknowledgement FastStream goes on to the next
    batch when a handler raises); once the fault is mended every record applies exactly once."""
    name = f"test.rewind.{uuid.uuid4().hex[:8]}"
    topic = Topic(name, StockReceived, 1, "sku", "the rewind test's own topic")
    await create_topics(kafka, [(name, 1)])
    stopping = asyncio.Event()
    attempts: list[str] = []

    async def counting(uow: UnitOfWork, incoming: IncomingEvent[StockReceived]) -> None:
        attempts.append(incoming.event.sku)
        await echo(uow, incoming)

    subscriptions = [Subscription(topic, counting)]
    processor = BatchProcessor(service="t", engine=engine, max_bytes=10_000,
                               stopping=stopping.is_set, subscriptions=subscriptions)
    processor.pauses = [0.2]
    definition = ServiceDefinition("rewind", migrations=None, subscriptions=subscriptions)  # type: ignore[arg-type]
    settings = ServiceSettings(consumer_group_prefix=f"test-{uuid.uuid4().hex[:8]}",
                               batch_max_records=3)
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO refuse VALUES (true)"))
    broker = build_broker(definition, kafka, settings, processor)
    producer = AIOKafkaProducer(**kafka.client_kwargs())
    await producer.start()
    await broker.start()

    async def send(*skus: str) -> None:
        for sku in skus:
            rec = stock(0, sku, topic=name)
            await producer.send_and_wait(name, rec.value, key=rec.key, headers=list(rec.headers))

    try:
        await send("R1", "R2", "R3", "R4", "R5")
        # each delivery tries R1 twice (in its batch, then alone): four is a delivery again
        await _eventually(lambda: _is(attempts.count("R1") >= 4), "R1 to be delivered again")
        assert await _applied(engine) == []
        assert processor.failures >= 1
        async with engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM refuse"))
        await send("R6", "R7", "R8")

        async def all_applied() -> bool:
            return len(await _applied(engine)) >= 8
        await _eventually(all_applied, "all eight records to apply")
        await wait_consumed(kafka, f"{settings.consumer_group_prefix}.rewind",
                            {TopicPartition(name, 0): 8}, timeout=30)
        assert sorted(await _applied(engine)) == [f"R{i}" for i in range(1, 9)]
        assert [t for t, _, _ in await _outbox(engine)] == ["stock.received"] * 8  # no dead letter
        assert processor.failures == 0
    finally:
        stopping.set()
        await broker.stop()
        await producer.stop()


async def _is(value: bool) -> bool:
    return value
