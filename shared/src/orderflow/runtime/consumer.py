"""Batch consumption with exactly-once effects.

For each batch the broker hands a subscriber:

1. every record is decoded and validated on its own; one that can never succeed (oversized,
   undecodable, wrong shape, unknown schema version) is staged for ``<topic>.dlq`` with its reason;
2. one database transaction claims the batch's ``event_id`` s in the inbox (a redelivered event is
   skipped), runs the handler for each new event, writes the outbox, and commits; a handler that
   raises a permanent error has its event dead-lettered (the batch is re-run with a savepoint per
   event, so the others still apply), a transient error (database away) is retried with backoff;
3. only then are the batch's offsets committed, explicitly, per partition.

A batch that fails outside its handlers with an error that is not transient (writing its outbox
or its dead letters, or the runtime itself) is applied again one record at a time, each in its own
transaction; a record that still fails alone is dead-lettered with reason ``unprocessable``, so
one bad record neither blocks its partition nor takes the others with it. If even that cannot be
written, ``consume`` (the consumer's entry point) logs the error, rewinds the consumer to the
batch's first offsets and backs off: the batch is delivered again, never skipped.

A subscription gives either ``handler`` (called once per new event) or ``batch_handler``
(set-based: called once per run of consecutive new events in the batch that share that batch
handler, so it can read and write with one statement per table for the whole run). When a batch is
re-run carefully after a handler failed, a batch handler is called with one event at a time, each
in its own savepoint, so the failing event is dead-lettered alone and the others still apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import Span, StatusCode
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import Topic
from orderflow.runtime import metrics
from orderflow.runtime.positions import PositionGuard
from orderflow.runtime.retry import Stopping, backoff_delays, is_transient, retry_transient
from orderflow.runtime.sqlalchemy_bridge import driver
from orderflow.runtime.tracing import current, spans_recorded, start_consumer_span
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

inbox_metadata = sa.MetaData()
inbox_table = sa.Table(
    "inbox",
    inbox_metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
)

_CLAIM = ("INSERT INTO inbox (event_id, topic, event_type) "
          "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) "
          "ON CONFLICT DO NOTHING RETURNING event_id::text")

Handler = Callable[[UnitOfWork, IncomingEvent[Any]], Awaitable[None]]
# set-based: the consecutive new events of a batch that share this handler, in batch order
BatchHandler = Callable[[UnitOfWork, list[IncomingEvent[Any]]], Awaitable[None]]
# called once per batch transaction, before its first handler, with every new event of the batch
# (``ServiceDefinition.prepare_batch``): a batch handler's shape
BatchHook = BatchHandler
_INBOUND_NAMESPACE = uuid.UUID("5f0c2a4e-7d1b-4b8e-9a57-0f1e2d3c4b5a")


class Record(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class OffsetCommitter(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class Consumer(OffsetCommitter, Protocol):
    """What ``BatchProcessor.consume`` needs of aiokafka's consumer."""

    def seek(self, partition: TopicPartition, offset: int) -> None: ...


@dataclass(frozen=True)
class Poison:
    record: Record
    reason: str
    error: str


@dataclass
class Subscription:
    """One topic a service consumes and what applies its events: ``handler`` one event at a
    time, or ``batch_handler`` once per run of consecutive new events of the batch that share it
    (the same batch handler may serve several topics: its runs then mix them, in batch order).
    A batch handler names the event each outgoing event answers: ``uow.emit(..., cause=event)``.

    Kafka orders nothing across partitions, and a batch comes partition by partition in the
    client's order. ``ahead`` puts this topic's records before the others of every batch (each
    partition still in its order): for requests that must be decided before what was fetched
    with them (logistics' cancel and change requests, waiting since before the reservations
    of the same fetch, are decided before those are dispatched)."""

    topic: Topic
    handler: Handler | None = None
    description: str = ""
    accept_versions: frozenset[int] = frozenset({1})
    headerless: bool = False  # connectors' raw messages may come without our headers
    extra: dict[str, Any] = field(default_factory=dict)
    batch_handler: BatchHandler | None = None
    ahead: bool = False

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.batch_handler is None):
            raise ValueError(f"{self.topic.name}: give exactly one of handler and batch_handler")

    def one_at_a_time(self) -> Handler:
        """The handler for one event (a batch handler called with a run of one)."""
        if self.handler is not None:
            return self.handler
        batch = self.batch_handler
        assert batch is not None

        async def one(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
            await batch(uow, [incoming])

        return one


_POISON_NAMESPACE = uuid.UUID("a3d6f0c1-2b4e-4c8a-9f15-7e2d1c0b9a84")


def physical_id(record: Record) -> uuid.UUID:
    digest = hashlib.sha256(record.value or b"").hexdigest()[:32]
    return uuid.uuid5(_POISON_NAMESPACE,
                      f"{record.topic}/{record.partition}/{record.offset}/{digest}")


def format_validation_error(exc: ValidationError, limit: int = 8) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def decode(record: Record, subscription: Subscription, max_bytes: int) -> IncomingEvent[Any] | Poison:
    """Decode one record, or say in plain words why it can never be applied."""
    value = record.value or b""
    raw_headers = tuple((k, bytes(v) if v is not None else b"") for k, v in (record.headers or ()))
    if len(value) > max_bytes:
        return Poison(record, "payload_too_large", f"{len(value)} bytes > limit {max_bytes}")
    model = subscription.topic.model
    try:
        headers = EventHeaders.from_kafka(raw_headers)
    except ValueError as exc:
        if not subscription.headerless:
            return Poison(record, "bad_headers", str(exc))
        # where it lies and what it holds: an offset reused after the broker lost its data never
        # makes a new message look like one already handled
        digest = hashlib.sha256(value).hexdigest()[:32]
        headers = EventHeaders(
            event_id=str(uuid.uuid5(_INBOUND_NAMESPACE,
                                    f"{record.topic}/{record.partition}/{record.offset}/{digest}")),
            event_type=model.EVENT_TYPE,
            schema_version=model.SCHEMA_VERSION,
            occurred_at=datetime.now(UTC),
            producer="connector",
            correlation_id=(record.key or b"").decode("utf-8", "replace"),
        )
    if headers.event_type != model.EVENT_TYPE:
        return Poison(record, "unexpected_event_type",
                      f"{record.topic} carries {model.EVENT_TYPE}, not {headers.event_type!r}")
    if headers.schema_version not in subscription.accept_versions:
        accepted = ", ".join(str(v) for v in sorted(subscription.accept_versions))
        return Poison(record, "unknown_schema_version",
                      f"schema_version {headers.schema_version} is not one of {accepted}")
    try:
        event = model.model_validate_json(value)
    except ValidationError as exc:
        if any(e.get("type") == "json_invalid" for e in exc.errors(include_input=False)):
            return Poison(record, "malformed_json", format_validation_error(exc))
        return Poison(record, "invalid_payload", format_validation_error(exc))
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    return IncomingEvent(record.topic, record.partition, record.offset, key, headers, event,
                         value, raw_headers)


async def _claim_ids(session: Any, ids: list[str], topics: list[str], types: list[str]) -> set[str]:
    """Insert these event ids into the inbox; return those not there before. One statement of
    constant shape, straight to asyncpg inside the batch's transaction (the first of every
    batch)."""
    return {r[0] for r in await (await driver(session)).fetch(_CLAIM, ids, topics, types)}


class _HandlerFailed(Exception):
    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class BatchProcessor:
    """Applies batches that may mix records of every topic the service subscribes to."""

    def __init__(
        self,
        *,
        service: str,
        subscriptions: Sequence[Subscription],
        engine: AsyncEngine,
        max_bytes: int,
        after_commit: Callable[[], None] = lambda: None,
        stopping: Callable[[], bool] = lambda: False,
        prepare: BatchHook | None = None,
        positions: PositionGuard | None = None,
    ) -> None:
        self.service = service
        self.positions = positions
        self.prepare = prepare
        self.subscriptions = {sub.topic.name: sub for sub in subscriptions}
        self.ahead = frozenset(sub.topic.name for sub in subscriptions if sub.ahead)
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.max_bytes = max_bytes
        self.after_commit = after_commit
        self.stopping = stopping
        self.topic = ",".join(self.subscriptions)
        self.failures = 0  # consecutive batches that failed and were rewound
        self.pauses = backoff_delays(0.5, 30.0)

    async def consume(self, records: Sequence[Record], consumer: Consumer | None) -> None:
        """The consumer's entry point; never raises. A batch that cannot be applied (nor its
        failing record dead-lettered) is logged, the consumer is rewound to the batch's first
        offset on each partition, and consumption pauses with a growing backoff before the batch
        comes again: the partition stalls, visibly, rather than skipping the batch (with manual
        acknowledgement the broker's loop would go on to the next batch, whose commit would
        pass over this one)."""
        try:
            await self.process(records, consumer)
        except Stopping:  # shutting down mid-retry: delivered again after the restart
            self._rewind(records, consumer)
        except Exception as exc:
            self.failures += 1
            self._rewind(records, consumer)
            pause = self.pauses[min(self.failures - 1, len(self.pauses) - 1)]
            metrics.BATCH_FAILURES.labels(self.service, self.topic).inc()
            log.error("batch failed; the consumer is rewound to deliver it again",
                      topic=self.topic, records=len(records), failures=self.failures,
                      pause_s=pause, error=f"{type(exc).__name__}: {exc}"[:500], exc_info=exc)
            await self._pause(pause)
        else:
            self.failures = 0

    def _rewind(self, records: Sequence[Record], consumer: Consumer | None) -> None:
        if consumer is None:
            return
        first: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            # no longer assigned: its new owner starts at the last commit, before this batch
            with contextlib.suppress(IllegalStateError):
                consumer.seek(tp, offset)

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        # ``stopping`` is a predicate (the service's event's ``is_set``): looked at every 250 ms
        while not self.stopping() and (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, 0.25))

    async def process(self, records: Sequence[Record], committer: OffsetCommitter | None) -> None:
        """Apply ``records`` and commit their offsets; raises what could not be applied."""
        if not records:
            return
        started = time.perf_counter()
        fetched_at = time.monotonic()
        if self.ahead:  # a stable sort: each partition keeps its order
            records = sorted(records, key=lambda r: r.topic not in self.ahead)
        items = [self._decode(record) for record in records]
        try:
            outcome = await self._apply_with_retry(items)
        except Stopping:
            raise
        except Exception as exc:  # noqa: BLE001 - not transient: each record on its own
            if len(items) == 1:
                outcome = await self._dead_letter_alone(records[0], exc)
            else:
                log.warning("batch failed outside its handlers; applying its records one at a time",
                            topic=self.topic, records=len(items),
                            error=f"{type(exc).__name__}: {exc}"[:300])
                outcome = defaultdict(int)
                for record, item in zip(records, items, strict=True):
                    try:
                        part = await self._apply_with_retry([item])
                    except Stopping:
                        raise
                    except Exception as alone:  # noqa: BLE001 - dead-lettered with its reason
                        part = await self._dead_letter_alone(record, alone)
                    for k, v in part.items():
                        outcome[k] += v
        self.after_commit()
        if committer is not None:
            await self._commit_offsets(records, committer, fetched_at)
        for (topic, name), count in outcome.items():
            if count:
                metrics.MESSAGES_CONSUMED.labels(self.service, topic, name).inc(count)
        metrics.BATCH_SECONDS.labels(self.service, self.topic).observe(time.perf_counter() - started)

    def _decode(self, record: Record) -> IncomingEvent[Any] | Poison:
        subscription = self.subscriptions.get(record.topic)
        if subscription is None:  # pragma: no cover - the consumer only subscribes to these
            return Poison(record, "unexpected_topic", f"not subscribed to {record.topic}")
        try:
            return decode(record, subscription, self.max_bytes)
        except Exception as exc:  # noqa: BLE001 - a record that breaks the decoder is poison too
            # (a model's validator raising other than ValueError, which pydantic passes through)
            return Poison(record, "undecodable", f"{type(exc).__name__}: {exc}")

    async def _apply_with_retry(self, items: Sequence[IncomingEvent[Any] | Poison]
                                ) -> dict[tuple[str, str], int]:
        decoded = [i for i in items if not isinstance(i, Poison)]
        poison = [i for i in items if isinstance(i, Poison)]
        return await retry_transient(
            lambda: self._apply(decoded, poison, careful=False),
            what=f"apply batch from {self.topic}",
            stopping=self.stopping,
        )

    async def _dead_letter_alone(self, record: Record, error: Exception
                                 ) -> dict[tuple[str, str], int]:
        """A record that fails even alone, outside its handler: dead-lettered as it came, with
        reason ``unprocessable``, in a transaction of its own; claimed by its physical identity so
        a redelivery does not dead-letter it twice. Raises if even this cannot be written."""
        reason = f"{type(error).__name__}: {error}"
        log.error("record failed on its own outside its handler; dead-lettering it", topic=record.topic,
                  partition=record.partition, offset=record.offset, reason="unprocessable",
                  error=reason[:500])
        return await retry_transient(
            lambda: self._apply([], [Poison(record, "unprocessable", reason)], careful=False),
            what=f"dead-letter a record from {self.topic}", stopping=self.stopping)

    async def _commit_offsets(self, records: Sequence[Record], committer: OffsetCommitter,
                              fetched_at: float) -> None:
        offsets: dict[TopicPartition, int] = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if self.positions is not None:  # a partition read again from its start since the fetch
            offsets = {tp: o for tp, o in offsets.items()
                       if self.positions.may_commit(tp, fetched_at)}
            if not offsets:
                return
        try:
            await committer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # the group rebalanced: the new owner will see these again, and the inbox skips them
            log.warning("offset commit failed; the batch will be redelivered and skipped",
                        topic=self.topic, error=str(exc)[:300])

    async def _apply(self, decoded: list[IncomingEvent[Any]], poison: list[Poison], *,
                     careful: bool) -> dict[tuple[str, str], int]:
        try:
            return await self._transaction(decoded, poison, careful=careful)
        except _HandlerFailed as failed:
            if careful:  # pragma: no cover - careful mode catches per event
                raise failed.error from failed
            log.warning("a handler failed; re-running the batch one event at a time",
                        topic=self.topic, error=f"{type(failed.error).__name__}: {failed.error}"[:300])
            return await self._transaction(decoded, poison, careful=True)

    async def _transaction(self, decoded: list[IncomingEvent[Any]], poison: list[Poison], *,
                           careful: bool) -> dict[tuple[str, str], int]:
        outcome: dict[tuple[str, str], int] = defaultdict(int)
        traced = spans_recorded()
        async with self._session() as session:
            uow = UnitOfWork(session, self.service)
            fresh = await self._claim(session, decoded)
            fresh_ids = {f.headers.event_id for f in fresh}
            for d in decoded:
                if d.headers.event_id not in fresh_ids:
                    outcome[(d.topic, "duplicate")] += 1
            if fresh and self.prepare is not None:
                # failing otherwise than transiently: as a batch failing outside its handlers
                # (its records one at a time, one failing alone dead-lettered)
                await self.prepare(uow, fresh)
            run_end = 0
            for index, incoming in enumerate(fresh):
                if index < run_end:  # applied with its run by a batch handler
                    continue
                subscription = self.subscriptions[incoming.topic]
                batch_handler = subscription.batch_handler
                if batch_handler is not None and not careful:
                    run_end = index + 1
                    while (run_end < len(fresh) and
                           self.subscriptions[fresh[run_end].topic].batch_handler == batch_handler):
                        run_end += 1
                    uow.current = None  # a batch handler names the cause: emit(..., cause=event)
                    run = fresh[index:run_end]
                    uow.spans = ({e.headers.event_id: self._start_span(e) for e in run}
                                 if traced else {})
                    # a run of one: its span current throughout (the statements that serve a
                    # run of several serve them all, and are in no one event's trace); a failure
                    # is recorded on every span of the run below
                    alone = uow.in_span(run[0], record_exception=False) if len(run) == 1 else None
                    try:
                        with alone or contextlib.nullcontext():
                            await batch_handler(uow, run)
                    except Exception as exc:
                        for span in uow.spans.values():
                            span.record_exception(exc)
                            span.set_status(StatusCode.ERROR, "the run failed")
                        if is_transient(exc):
                            raise
                        raise _HandlerFailed(index, exc) from exc
                    finally:
                        for span in uow.spans.values():
                            span.end()
                        uow.spans = {}
                    for applied in fresh[index:run_end]:
                        outcome[(applied.topic, "applied")] += 1
                    continue
                handler = subscription.one_at_a_time()
                # the event answered by what is emitted, and its log context, as a batch
                # handler's run sets them up (UnitOfWork.handling)
                with uow.handling(incoming):
                    if not careful:
                        try:
                            with self._span(incoming, traced):
                                await handler(uow, incoming)
                        except Exception as exc:
                            if is_transient(exc):
                                raise
                            raise _HandlerFailed(index, exc) from exc
                        outcome[(incoming.topic, "applied")] += 1
                        continue
                    mark = uow.mark()
                    try:
                        async with session.begin_nested():
                            with self._span(incoming, traced):
                                await handler(uow, incoming)
                        outcome[(incoming.topic, "applied")] += 1
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        uow.rollback_to(mark)
                        await session.execute(
                            sa.delete(inbox_table).where(
                                inbox_table.c.event_id == uuid.UUID(incoming.headers.event_id)
                            )
                        )
                        self._dead_letter(uow, incoming.topic, incoming.key, incoming.raw_value,
                                          incoming.raw_headers, "handler_error",
                                          f"{type(exc).__name__}: {exc}")
                        log.error("handler failed; event dead-lettered",
                                  error=f"{type(exc).__name__}: {exc}"[:500])
                        outcome[(incoming.topic, "dead_lettered")] += 1
            for p in await self._claim_poison(session, poison):
                key = p.record.key.decode("utf-8", "replace") if p.record.key is not None else None
                self._dead_letter(uow, p.record.topic, key, p.record.value or b"",
                                  tuple(p.record.headers or ()), p.reason, p.error)
                log.warning("message dead-lettered", topic=p.record.topic,
                            partition=p.record.partition, offset=p.record.offset,
                            reason=p.reason, error=p.error[:300])
                outcome[(p.record.topic, "dead_lettered")] += 1
            await uow.flush()
        uow.run_committed()
        metrics.observe_event_ages(self.service, fresh)
        return outcome

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """The batch's session inside its transaction. After a transient fault its connection is
        invalidated, not returned to the pool: a connection the server closed, or whose protocol
        a dropped session left mid-operation, would otherwise be taken again by the retry (the
        runtime's statements go to asyncpg directly, where SQLAlchemy never sees their errors)."""
        async with self.sessions() as session, session.begin():
            try:
                yield session
            except Exception as exc:
                if is_transient(exc):  # while the session still holds the connection
                    with contextlib.suppress(Exception):
                        await session.invalidate()
                raise

    def _start_span(self, incoming: IncomingEvent[Any]) -> Span:
        """The consumer span of one event of a batch handler's run (ended after the run)."""
        return start_consumer_span(incoming.topic, incoming.headers.traceparent,
                                   service=self.service, event_type=incoming.headers.event_type,
                                   event_id=incoming.headers.event_id, order_id=incoming.key,
                                   partition=incoming.partition, offset=incoming.offset)

    def _span(self, incoming: IncomingEvent[Any], traced: bool) -> AbstractContextManager[Any]:
        """A consumer span, child of the event's traceparent, current around its handler (none
        when ``traced`` is false: see ``tracing.spans_recorded``)."""
        return current(self._start_span(incoming)) if traced else contextlib.nullcontext()

    def _dead_letter(self, uow: UnitOfWork, topic: str, key: str | None, value: bytes,
                     headers: tuple[tuple[str, bytes], ...], reason: str, error: str) -> None:
        uow.dead_letter(topic=topic, key=key.encode() if key is not None else None, value=value,
                        headers=headers, reason=reason, error=error)
        metrics.DEAD_LETTERS.labels(self.service, topic, reason).inc()

    async def _claim_poison(self, session: Any, poison: list[Poison]) -> list[Poison]:
        """Poison has no usable event id: claim the physical record (topic, partition, offset
        and a hash of its bytes) instead, so a redelivered batch does not dead-letter it twice.
        The hash keeps a different message at a reused offset (a broker reset) from being
        mistaken for it."""
        if not poison:
            return []
        ids = [str(physical_id(p.record)) for p in poison]
        new_ids = await _claim_ids(session, ids, [p.record.topic for p in poison],
                                   ["(dead-lettered)"] * len(poison))
        return [p for p, pid in zip(poison, ids, strict=True) if pid in new_ids]

    async def _claim(self, session: Any, decoded: list[IncomingEvent[Any]]) -> list[IncomingEvent[Any]]:
        """Insert the batch's event ids into the inbox; return the events seen for the first time."""
        if not decoded:
            return []
        new_ids = await _claim_ids(session, [d.headers.event_id for d in decoded],
                                   [d.topic for d in decoded],
                                   [d.headers.event_type for d in decoded])
        fresh, seen = [], set()
        for d in decoded:
            if d.headers.event_id in new_ids and d.headers.event_id not in seen:
                seen.add(d.headers.event_id)
                fresh.append(d)
        return fresh
