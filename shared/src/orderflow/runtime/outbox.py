"""The transactional outbox and its relay.

A handler stages its outgoing events as rows of ``outbox`` in the same transaction as its state
change; the relay publishes unpublished rows in id order and marks them published. A crash between
commit and publish loses nothing (the rows are still there); a crash between publish and mark
publishes again, which consumers' inboxes absorb (same ``event_id``).

Only one relay per service publishes at a time (a PostgreSQL advisory lock), so events of one key
keep their order even with several replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from orderflow.runtime import metrics
from orderflow.runtime.db import driver
from orderflow.runtime.retry import is_transient
from orderflow.runtime.settings import KafkaSettings

log = structlog.get_logger(__name__)


class PublishRefused(Exception):
    """The broker refused an outbox row for good (not a transient fault): logged and counted
    where it happened; the row stays unpublished and the relay tries it again after a pause."""

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
                "WHERE published_at IS NULL ORDER BY id LIMIT $1")
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
    ) -> None:
        self.engine = engine
        self.producer = producer
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
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            sent = await self.publish_batch(conn)
            if sent:
                continue
            if self._stopping:
                return
            if loop.time() - last_purge > 60:
                await self.purge(conn)
                last_purge = loop.time()
            await self._sleep(self.poll_interval_s)

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
        metrics.OUTBOX_BACKLOG.labels(self.service).set(len(rows))
        if not rows:
            return 0
        futures = []
        # the first row that failed (its index, the error): it and the rows after it stay
        # unpublished; those before it, acknowledged, are marked
        failed: tuple[int, BaseException] | None = None
        for i, (_id, topic, key, value, headers) in enumerate(rows):
            if not isinstance(headers, list):
                headers = orjson.loads(headers)
            try:  # a topic it may not write is refused here already (its metadata)
                futures.append(await self.producer.send(
                    topic, value=value, key=key, headers=[(k, v.encode()) for k, v in headers]))
            except Exception as exc:
                if is_transient(exc):  # the broker is away: all of them again, later
                    raise
                failed = (i, exc)
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = next(((i, r) for i, r in enumerate(results) if isinstance(r, BaseException)),
                      failed)
        done = rows if failed is None else rows[:failed[0]]
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
            outbox_id, topic = rows[index][0], rows[index][1]
            metrics.PUBLISH_REFUSED.labels(self.service, topic, type(error).__name__).inc()
            log.error("outbox relay: the broker refused an event; it stays in the outbox and "
                      "every event behind it waits", service=self.service, topic=topic,
                      outbox_id=outbox_id, error=f"{type(error).__name__}: {error}"[:300])
            raise PublishRefused(topic, outbox_id, error) from error
        self.refusals = 0
        return len(rows)
