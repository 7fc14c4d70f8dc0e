"""The transactional outbox and its relay.

A handler stages its outgoing events as rows of ``outbox`` in the same transaction as its state
change; the relay publishes unpublished rows in id order and marks them published. A crash between
commit and publish loses nothing (the rows are still there); a crash between publish and mark
publishes again, which consumers' inboxes absorb (same ``event_id``).

Only one relay per service publishes at a time (a PostgreSQL advisory lock), so events of one key
keep their order even with several replicas.

A row the broker refuses for good (``QUARANTINED_ERRORS``: larger than the broker takes, a topic
name it calls invalid, a topic this service may not write) is quarantined: it stays in the table,
unpublished, with ``quarantined_at`` and the broker's reason in ``quarantine_reason``; the relay
skips it from then on, counts it (``orderflow_outbox_quarantined_total``), lists it on the
service's ``GET /outbox/quarantine`` (the console's exception queue shows it), and the rows behind
it flow on. Ordering: only the quarantined row is held back. A later row of the same key (a later
event of the same order) is published without it, so consumers may see it before the quarantined
one, or never see that one at all; holding back every later row of the key would stop that
order's flow for good and is not done. Once the cause is fixed (the broker's or the topic's
``max.message.bytes`` raised, the ACL granted), ``release_quarantined`` (or ``UPDATE outbox SET
quarantined_at = NULL, quarantine_reason = NULL WHERE id = ...``) gives the row back to the relay,
which publishes it then, after the rows that overtook it.

A refusal by the broker itself (not by the producer before sending) leaves a gap in an idempotent
producer's sequence numbers for that partition: every later batch to it would be refused as
``OutOfOrderSequenceNumber``. Given a ``producer_factory`` the relay then replaces its producer
(a new producer id, sequences from zero) and sends the rows behind again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from orderflow.runtime import metrics
from orderflow.runtime.retry import is_transient
from orderflow.runtime.settings import KafkaSettings
from orderflow.runtime.sqlalchemy_bridge import driver

log = structlog.get_logger(__name__)


# refusals that concern the row itself and will not change by trying again: the row is quarantined
# and the rows behind it flow on. (UnknownTopicOrPartition is not one: a topic not created yet is
# waited for, aiokafka retries it; anything else the broker refuses pauses the relay, as before.)
QUARANTINED_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
    TopicAuthorizationFailedError)


def quarantines(error: BaseException) -> bool:
    """Whether the broker's refusal ``error`` quarantines the row (``QUARANTINED_ERRORS``)."""
    return isinstance(error, QUARANTINED_ERRORS)


class PublishRefused(Exception):
    """The broker refused an outbox row (not a transient fault, and not one that quarantines the
    row, ``QUARANTINED_ERRORS``): logged and counted where it happened; the row stays unpublished
    and the relay tries it again after a pause."""

    def __init__(self, topic: str, outbox_id: int, error: BaseException) -> None:
        super().__init__(f"the broker refused outbox row {outbox_id} for {topic}: "
                         f"{type(error).__name__}: {error}")
        self.topic = topic
        self.outbox_id = outbox_id
        self.error = error


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]

    def headers_text(self) -> list[list[str]]:
        """The headers as the outbox keeps them (JSON: a list of [name, text] pairs). Bytes that
        are not UTF-8, and NUL characters (PostgreSQL's JSONB refuses ``\\u0000``), become U+FFFD."""
        return [[k.replace("\x00", "\ufffd"), v.decode("utf-8", "replace").replace("\x00", "\ufffd")]
                for k, v in self.headers]

    def row(self) -> dict[str, Any]:
        return {"topic": self.topic, "key": self.key, "value": self.value,
                "headers": self.headers_text()}


# one statement whatever the batch size; WITH ORDINALITY keeps the staging order in the ids
_STAGE_SQL = (
    "INSERT INTO outbox (topic, key, value, headers) "
    "SELECT topic, key, value, headers FROM unnest($1::text[], $2::bytea[], $3::bytea[], "
    "$4::jsonb[]) WITH ORDINALITY AS m(topic, key, value, headers, n) ORDER BY n"
)
_PENDING_SQL = ("SELECT id, topic, key, value, headers FROM outbox "
                "WHERE published_at IS NULL AND quarantined_at IS NULL ORDER BY id LIMIT $1")
_QUARANTINE_SQL = ("UPDATE outbox SET quarantined_at = now(), quarantine_reason = $2 "
                   "WHERE id = $1 AND published_at IS NULL")
_QUARANTINED_COUNT = sa.text(
    "SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL AND published_at IS NULL")
_QUARANTINED_ROWS = sa.text(
    "SELECT id, topic, key, quarantine_reason, created_at, quarantined_at, "
    "octet_length(value) AS size FROM outbox "
    "WHERE quarantined_at IS NOT NULL AND published_at IS NULL ORDER BY id LIMIT :n")
_RELEASE = sa.text(
    "UPDATE outbox SET quarantined_at = NULL, quarantine_reason = NULL "
    "WHERE quarantined_at IS NOT NULL AND published_at IS NULL "
    "AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(CAST(:ids AS bigint[])))")
# a process's first purge: the rows published before it, found by a scan of the table
_PURGE_OUTBOX = sa.text("DELETE FROM outbox WHERE published_at < now() - make_interval(secs => :s)")
# then: rows at or below an id every row of which (but stragglers, kept until published) had been
# published a retention ago, through the primary key, a chunk per transaction
_PURGE_OUTBOX_UPTO = sa.text(
    "DELETE FROM outbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM outbox "
    "WHERE id <= :upto AND published_at IS NOT NULL LIMIT :n))")
_PURGE_INBOX = sa.text(
    "DELETE FROM inbox WHERE ctid = ANY(ARRAY(SELECT ctid FROM inbox "
    "WHERE applied_at < now() - make_interval(secs => :s) LIMIT :n))")
_PUBLISHED_SQL = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
# the rows still kept (published within ``retention_s``) of topics whose log the broker lost:
# pending again, to go out in their order
_REPUBLISH = sa.text("UPDATE outbox SET published_at = NULL "
                     "WHERE published_at IS NOT NULL AND topic = ANY(:topics)")
EndOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


async def _delete_in_chunks(conn: AsyncConnection, statement: sa.TextClause,
                            params: dict[str, Any], chunk: int) -> int:
    """Run a ``DELETE ... LIMIT :n`` statement, each chunk its own transaction, until a chunk
    comes back short; returns the rows deleted."""
    deleted = 0
    while True:
        n = (await conn.execute(statement, {**params, "n": chunk})).rowcount
        await conn.commit()
        deleted += n
        if n < chunk:
            return deleted


async def quarantined_rows(conn: AsyncConnection, *, limit: int = 100) -> list[dict[str, Any]]:
    """The quarantined rows, the oldest first: no value and no headers (personal data)."""
    rows = (await conn.execute(_QUARANTINED_ROWS, {"n": limit})).mappings().all()
    return [{"id": r["id"], "topic": r["topic"],
             "key": bytes(r["key"]).decode("utf-8", "replace") if r["key"] is not None else None,
             "reason": r["quarantine_reason"], "staged_at": r["created_at"].isoformat(),
             "quarantined_at": r["quarantined_at"].isoformat(), "size": r["size"]}
            for r in rows]


async def release_quarantined(conn: AsyncConnection, ids: Sequence[int] | None = None) -> int:
    """Give quarantined rows (``ids``, or all of them) back to the relay, once their cause is
    fixed; returns how many. The caller commits."""
    return (await conn.execute(_RELEASE, {"ids": list(ids) if ids is not None else None})).rowcount


_UNPUBLISHED_UPTO = sa.text(
    "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL "
    "AND quarantined_at IS NULL LIMIT :n) AS pending")


async def unpublished(conn: AsyncConnection, *, at_most: int | None) -> int:
    """How many rows wait to be published (quarantined ones left out), counted up to ``at_most``
    (through the index of unpublished rows: the count costs no more than ``at_most`` index
    entries); ``None`` counts them all."""
    return int((await conn.execute(_UNPUBLISHED_UPTO, {"n": at_most})).scalar() or 0)


async def stage(session: AsyncSession | AsyncConnection, messages: Sequence[OutgoingMessage]) -> None:
    """Write messages to the outbox within the caller's transaction."""
    if messages:
        await (await driver(session)).execute(
            _STAGE_SQL, [m.topic for m in messages], [m.key for m in messages],
            [m.value for m in messages],
            [orjson.dumps(m.headers_text()).decode() for m in messages])


def make_producer(kafka: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """The relay's producer: ``acks=all``, idempotent where the broker supports it (its
    profile); order within a partition holds either way, as aiokafka sends one batch per
    partition at a time."""
    return AIOKafkaProducer(
        **kafka.producer_kwargs(),
        client_id=client_id,
        linger_ms=2,
        max_batch_size=256 * 1024,
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=15_000,
    )


class OutboxRelay:
    """Publishes the outbox of one service schema, in order, and marks rows published."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        service: str,
        batch_size: int = 1000,
        poll_interval_s: float = 0.5,
        retention_s: float = 3600.0,
        inbox_retention_s: float = 45 * 86400.0,
        clock: Callable[[], float] = time.monotonic,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        end_offsets: EndOffsets | None = None,
        log_check_interval_s: float = 5.0,
        log_check_timeout_s: float = 3.0,
        backlog_count_interval_s: float = 5.0,
    ) -> None:
        self.engine = engine
        # the backlog gauge: a pass that finds less than a batch knows the backlog exactly; one
        # that finds a full batch counts the rows waiting, at most once per this interval
        self.backlog_count_interval_s = backlog_count_interval_s
        self._backlog_counted_at: float | None = None
        # the partitions' ends, to notice a broker that lost the log of a topic this relay wrote
        # to (an end that went down): its rows still kept are published again (None: no check)
        self.end_offsets = end_offsets
        self.log_check_interval_s = log_check_interval_s
        self.log_check_timeout_s = log_check_timeout_s
        self._written: set[TopicPartition] = set()
        self._highest_end: dict[TopicPartition, int] = {}
        self.republished = 0
        self.producer = producer
        # a new producer (not started) for the one a refusal by the broker left unusable; the
        # relay starts it, and stops the old one
        self.producer_factory = producer_factory
        self.service = service
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self.inbox_retention_s = inbox_retention_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0
        self._clock = clock
        # (when, the highest outbox id published by then), one per purge round: what the purge
        # may delete once ``retention_s`` has passed, without scanning the table for it
        self._published_marks: deque[tuple[float, int]] = deque()
        self._highest_published = 0
        self._scanned = False  # this process's one purge by a scan of the table is done
        self.refusals = 0  # rows refused in a row (PublishRefused): the pause grows with them
        self.quarantined = 0  # rows this relay quarantined

    def wake(self) -> None:
        """Tell the relay there is something new (called after a commit in this process)."""
        self._wake.set()

    def stop(self) -> None:
        """Publish what is left, then return from ``run``."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        lock_key = f"orderflow-outbox:{self.service}"
        while not self._stopping:
            try:
                async with self.engine.connect() as conn:
                    got = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                                              {"k": lock_key})).scalar()
                    await conn.commit()
                    if not got:
                        # the leader reports the backlog; a replica that was leader stops
                        with contextlib.suppress(KeyError):
                            metrics.OUTBOX_BACKLOG.remove(self.service)
                        await self._sleep(self.poll_interval_s * 4)
                        continue
                    log.info("outbox relay is the leader", service=self.service)
                    try:
                        await self._lead(conn)
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"),
                                               {"k": lock_key})
                            await conn.commit()
            except asyncio.CancelledError:
                raise
            except PublishRefused:  # logged and counted where it happened
                self.refusals += 1
                await self._pause(min(30.0, float(2 ** min(self.refusals, 5))))
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("outbox relay failed; restarting it", service=self.service)
                else:
                    log.warning("outbox relay lost the database or broker; retrying",
                                error=f"{type(exc).__name__}: {exc}"[:300])
                metrics.TRANSIENT_RETRIES.labels(self.service, "outbox relay").inc()
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` whatever commits wake the relay meanwhile; ``stop`` ends it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping and (left := deadline - loop.time()) > 0:
            await self._sleep(left)

    async def _lead(self, conn: AsyncConnection) -> None:
        last_purge = last_check = 0.0
        loop = asyncio.get_running_loop()
        await self.count_quarantined(conn)
        while True:
            self._wake.clear()
            sent = await self.publish_batch(conn)
            if sent:
                continue
            if self._stopping:
                return
            if self.end_offsets is not None and loop.time() - last_check > self.log_check_interval_s:
                last_check = loop.time()
                if await self.republish_lost(conn):
                    continue
            if loop.time() - last_purge > 60:
                await self.purge(conn)
                await self.count_quarantined(conn)
                last_purge = loop.time()
            await self._sleep(self.poll_interval_s)

    async def republish_lost(self, conn: AsyncConnection) -> int:
        """If the broker lost the log of a topic this relay wrote to (a partition's end went
        down: Tansu restarted, a topic re-created, a cluster rebuilt), make the rows of that
        topic still kept (published within ``retention_s``) pending again, so the events its
        consumers had not read yet are not lost with the log; consumers skip the ones they had
        applied (the inbox). Returns the rows made pending again."""
        if self.end_offsets is None or not self._written:
            return 0
        try:  # a look that cannot be had now is had at the next one: it never holds the relay
            ends = await asyncio.wait_for(self.end_offsets(sorted(self._written)),
                                          self.log_check_timeout_s)
        except Exception as exc:  # noqa: BLE001 - the broker away or a partition without leader
            log.debug("the partitions' ends could not be read", service=self.service,
                      error=f"{type(exc).__name__}: {exc}"[:200])
            return 0
        lost: set[str] = set()
        for tp, end in ends.items():
            highest = self._highest_end.get(tp, end)
            if end < highest:
                lost.add(tp.topic)
            self._highest_end[tp] = end if end < highest else max(highest, end)
        if not lost:
            return 0
        result = await conn.execute(_REPUBLISH, {"topics": sorted(lost)})
        await conn.commit()
        count = int(getattr(result, "rowcount", 0) or 0)
        self.republished += count
        metrics.OUTBOX_REPUBLISHED.labels(self.service).inc(count)
        log.warning("the broker lost the log of topics this service wrote to: the events still "
                    "kept are published again; consumers skip what they had applied",
                    service=self.service, topics=sorted(lost), rows=count)
        return count

    async def count_quarantined(self, conn: AsyncConnection) -> int:
        """Set the gauge of quarantined rows (released ones leave it) and return it."""
        held = int((await conn.execute(_QUARANTINED_COUNT)).scalar() or 0)
        await conn.commit()
        metrics.OUTBOX_QUARANTINE.labels(self.service).set(held)
        return held

    async def purge(self, conn: AsyncConnection, *, chunk: int = 10_000) -> int:
        """Delete the outbox rows published longer than ``retention_s`` ago, and the inbox rows
        applied longer than ``inbox_retention_s`` ago (in chunks, each its own transaction, so
        a first purge of a large inbox holds no long lock). Returns the inbox rows deleted.

        The outbox has no index on ``published_at`` (each row would pay for it when marked): the
        first purge of a process finds the old rows by scanning the table, and each purge after
        it deletes, through the primary key, the rows at or below the highest id that had been
        published ``retention_s`` ago (an hour's outbox under load is millions of rows; scanning
        it every minute cost more than the publishing)."""
        await self._purge_outbox(conn, chunk)
        deleted = await _delete_in_chunks(conn, _PURGE_INBOX, {"s": self.inbox_retention_s}, chunk)
        if deleted:
            log.info("inbox purged", service=self.service, rows=deleted,
                     older_than_days=round(self.inbox_retention_s / 86400, 1))
        return deleted

    async def _purge_outbox(self, conn: AsyncConnection, chunk: int) -> None:
        now = self._clock()
        if not self._scanned:
            await conn.execute(_PURGE_OUTBOX, {"s": self.retention_s})
            await conn.commit()
            self._scanned = True
        else:
            upto = 0
            while self._published_marks and self._published_marks[0][0] <= now - self.retention_s:
                upto = self._published_marks.popleft()[1]
            if upto:
                await _delete_in_chunks(conn, _PURGE_OUTBOX_UPTO, {"upto": upto}, chunk)
        if self._highest_published and (not self._published_marks
                                        or self._published_marks[-1][1] < self._highest_published):
            self._published_marks.append((now, self._highest_published))

    async def publish_batch(self, conn: AsyncConnection) -> int:
        # straight to asyncpg, each statement its own transaction (no BEGIN/COMMIT round trips):
        # the relay runs once for every committed batch, so this is a fixed cost of each batch
        raw = await driver(conn, in_transaction=False)
        rows = await raw.fetch(_PENDING_SQL, self.batch_size)
        await self._report_backlog(conn, len(rows))
        if not rows:
            return 0
        # each row sent, in order, with its delivery; a row the producer refused at once (a topic
        # it may not write is refused by its metadata, a row past max_request_size by its size)
        # has its error in place of the delivery
        outcomes: list[Any] = []
        sent: set[int] = set()  # the rows the producer took (refused later, by the broker)
        for _id, topic, key, value, headers in rows:
            if not isinstance(headers, list):
                headers = orjson.loads(headers)
            try:
                outcomes.append(await self.producer.send(
                    topic, value=value, key=key, headers=[(k, v.encode()) for k, v in headers]))
                sent.add(len(outcomes) - 1)
            except Exception as exc:
                if is_transient(exc):  # the broker is away: all of them again, later
                    raise
                outcomes.append(exc)
                if not quarantines(exc):
                    break  # refused, but not for this row alone: it and those behind it wait
        futures = [o for o in outcomes if not isinstance(o, BaseException)]
        delivered = iter(await asyncio.gather(*futures, return_exceptions=True))
        results = [o if isinstance(o, BaseException) else next(delivered) for o in outcomes]
        # in order: acknowledged rows are marked, refused-for-good ones quarantined, up to the
        # first row that failed otherwise: it and the rows after it stay unpublished
        done: list[Any] = []
        quarantine: list[tuple[int, BaseException]] = []
        failed: tuple[int, BaseException] | None = None
        for i, result in enumerate(results):
            if not isinstance(result, BaseException):
                done.append(rows[i])
                if hasattr(result, "topic"):  # the broker's delivery report
                    self._written.add(TopicPartition(result.topic, result.partition))
            elif quarantines(result):
                quarantine.append((i, result))
            else:
                failed = (i, result)
                break
        for i, error in quarantine:
            await self._quarantine(raw, rows[i][0], rows[i][1], error)
        # the broker refused a batch it was sent: that partition's sequence has a gap now
        gap = any(i in sent for i, _ in quarantine)
        if done:
            await raw.execute(_PUBLISHED_SQL, [row[0] for row in done])
            self._highest_published = max(self._highest_published, done[-1][0])
            for topic, count in Counter(row[1] for row in done).items():
                metrics.EVENTS_PUBLISHED.labels(self.service, topic).inc(count)
            self.published += len(done)
        if failed is not None:
            index, error = failed
            if isinstance(error, asyncio.CancelledError) or is_transient(error):
                raise error
            # the gap was ours, just now: a new producer, and the rows behind go again at once
            if isinstance(error, OutOfOrderSequenceNumber) and await self._renew_producer() \
                    and gap:
                return len(done) + len(quarantine)
            outbox_id, topic = rows[index][0], rows[index][1]
            metrics.PUBLISH_REFUSED.labels(self.service, topic, type(error).__name__).inc()
            log.error("outbox relay: the broker refused an event; it stays in the outbox and "
                      "every event behind it waits", service=self.service, topic=topic,
                      outbox_id=outbox_id, error=f"{type(error).__name__}: {error}"[:300])
            raise PublishRefused(topic, outbox_id, error) from error
        if gap:
            await self._renew_producer()
        self.refusals = 0
        return len(rows)

    async def _report_backlog(self, conn: AsyncConnection, fetched: int) -> None:
        """Set the backlog gauge (``orderflow_outbox_backlog``) at the start of a pass that
        fetched ``fetched`` rows: that many if less than a batch, else the rows counted (at most
        once per ``backlog_count_interval_s``; the gauge keeps the last count in between)."""
        if fetched < self.batch_size:
            metrics.OUTBOX_BACKLOG.labels(self.service).set(fetched)
            return
        now = self._clock()
        if (self._backlog_counted_at is not None
                and now - self._backlog_counted_at < self.backlog_count_interval_s):
            return
        self._backlog_counted_at = now
        waiting = await unpublished(conn, at_most=None)
        await conn.commit()
        metrics.OUTBOX_BACKLOG.labels(self.service).set(waiting)

    async def _renew_producer(self) -> bool:
        """Replace the producer by a new one (``producer_factory``); False without a factory."""
        if self.producer_factory is None:
            return False
        fresh = self.producer_factory()
        await fresh.start()
        old, self.producer = self.producer, fresh
        with contextlib.suppress(Exception):
            await old.stop()
        log.info("outbox relay: a new producer replaces the one the broker's refusal left with "
                 "a gap in its sequence numbers", service=self.service)
        return True

    async def _quarantine(self, raw: Any, outbox_id: int, topic: str, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"[:1000]
        await raw.execute(_QUARANTINE_SQL, outbox_id, reason)
        self.quarantined += 1
        metrics.PUBLISH_REFUSED.labels(self.service, topic, type(error).__name__).inc()
        metrics.OUTBOX_QUARANTINED.labels(self.service, topic, type(error).__name__).inc()
        metrics.OUTBOX_QUARANTINE.labels(self.service).inc()
        log.error("outbox relay: the broker refused an event for good; it is quarantined in the "
                  "outbox and the events behind it go on", service=self.service, topic=topic,
                  outbox_id=outbox_id, error=reason[:300])
