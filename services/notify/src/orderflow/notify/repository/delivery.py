"""What the sender reads and writes (claims, folds, marks, retries) and the retention purge, each
step in its own short transaction."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.notify.domain import Channel, Fold, Kind, Language
from orderflow.notify.repository.tables import notifications
from orderflow.runtime.sqlalchemy_bridge import Statement

# the sender's claim, built once: due pending rows and rows whose lease ran out (a dead sender).
# A sending row was due when it was claimed (nothing moves its next attempt later while it is
# sending), so "due" bounds both: the due rows' index, (channel, next_attempt_at, id), gives them
# in the claim's order and the scan ends at the first row not yet due, however many wait out
# their coalescing window behind it (with "due" inside the OR, PostgreSQL read every one of them
# on each claim that found fewer due rows than its limit: 11 ms a claim in the benchmark)
_DUE = (
    sa.select(notifications.c.id)
    .where(notifications.c.channel == sa.bindparam("n_channel"),
           notifications.c.next_attempt_at <= sa.func.now(),
           sa.or_(notifications.c.status == "pending",
                  sa.and_(notifications.c.status == "sending",
                          notifications.c.lease_until < sa.func.now())),
           # not a row this process still holds: sent and waiting for its mark (the database
           # may have been away for longer than the lease), or still being sent
           notifications.c.id != sa.all_(sa.bindparam("held", type_=ARRAY(sa.BigInteger))))
    .order_by(notifications.c.next_attempt_at, notifications.c.id)
    .limit(sa.bindparam("n_limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_CLAIM = (
    notifications.update().where(notifications.c.id.in_(_DUE.scalar_subquery()))
    .values(status="sending", attempts=notifications.c.attempts + 1,
            lease_until=sa.func.now() + sa.func.make_interval(
                0, 0, 0, 0, 0, 0, sa.bindparam("lease_s", type_=sa.Float)),
            updated_at=sa.func.now())
    .returning(*notifications.c)
)
# the rows waiting under the claim's coalesce keys and channel (``SenderRepository.waiting_of``),
# locked in id order, for the domain to fold. The waiting rows are looked up per key by key and
# channel (LATERAL, kept apart by OFFSET 0: the waiting rows' partial index) whatever
# PostgreSQL's statistics say: written as a join, on a table grown since its last ANALYZE (a
# fresh database, a backlog) PostgreSQL read every pending row of the channel on every claim
# (14 ms a claim in the benchmark, 0.8 ms this way on the same rows without statistics)
_WAITING_OF_KEYS = sa.text(
    "SELECT n.* FROM unnest(CAST(:keys AS text[])) AS k(coalesce_key) "
    "CROSS JOIN LATERAL (SELECT w.id FROM notify_notifications w "
    "WHERE w.coalesce_key = k.coalesce_key AND w.channel = :channel "
    "AND w.status = 'pending' OFFSET 0) AS w "
    "JOIN notify_notifications n ON n.id = w.id WHERE n.status = 'pending' "
    "ORDER BY n.id FOR UPDATE OF n")
# the folds the domain decided, stored: each row coalesced into its carrying row, with its detail
# (the rows are locked already: claimed, or loaded by ``_WAITING_OF_KEYS``)
_COALESCE = Statement(
    "UPDATE notify_notifications n SET status = 'coalesced', coalesced_into = u.carrier, "
    "finished_at = now(), detail = u.detail, updated_at = now() "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:carriers AS bigint[]), CAST(:details AS text[])) "
    "AS u(id, carrier, detail) WHERE n.id = u.id")
# claimed rows delivered, fenced by their attempt (as ``SenderRepository.finish``)
_FINISH_DELIVERED = Statement(
    "UPDATE notify_notifications n SET status = u.status, detail = u.detail, last_error = NULL, "
    "lease_until = NULL, finished_at = now(), updated_at = now() "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[]), CAST(:statuses AS text[]), "
    "CAST(:details AS text[])) AS u(id, attempts, status, detail) "
    "WHERE n.id = u.id AND n.status = 'sending' AND n.attempts = u.attempts RETURNING n.id")
# seconds until the channel's next row is due (a pending row's time, a sending row's lease)
_NEXT_DUE = Statement(
    "SELECT EXTRACT(EPOCH FROM min(CASE WHEN status = 'pending' THEN next_attempt_at "
    "ELSE lease_until END) - now()) FROM notify_notifications "
    "WHERE channel = :n_channel AND status IN ('pending', 'sending')")


@dataclass(frozen=True)
class NotificationRow:
    """A row as the sender sees it."""

    id: int
    notification_id: str
    source_event_id: str
    source_topic: str
    source_event_type: str
    kind: Kind
    order_id: str
    channel: Channel
    recipient: str
    language: Language
    context: dict[str, Any]
    attempts: int
    coalesce_key: str | None
    raw_value: bytes
    raw_headers: tuple[tuple[str, bytes], ...]


def _row(r: Any) -> NotificationRow:
    return NotificationRow(
        id=r.id, notification_id=str(r.notification_id), source_event_id=str(r.source_event_id),
        source_topic=r.source_topic, source_event_type=r.source_event_type, kind=r.kind,
        order_id=r.order_id, channel=r.channel, recipient=r.recipient, language=r.language,
        context=dict(r.context), attempts=r.attempts, coalesce_key=r.coalesce_key,
        raw_value=bytes(r.raw_value),
        raw_headers=tuple((str(k), str(v).encode()) for k, v in r.raw_headers),
    )


# finished notifications past the retention, a chunk at a time; a row another still points at
# (``coalesced_into``) waits for that one to go first, in this round or the next
_PURGE_FINISHED = sa.text(
    "DELETE FROM notify_notifications WHERE id = ANY(ARRAY("
    "SELECT n.id FROM notify_notifications n "
    "WHERE n.created_at < now() - make_interval(secs => :older_than_s) "
    "AND n.status IN ('sent', 'recorded', 'failed', 'suppressed', 'coalesced') "
    "AND NOT EXISTS (SELECT 1 FROM notify_notifications r WHERE r.coalesced_into = n.id) "
    "LIMIT :chunk))")


async def purge_finished(session: AsyncSession, *, older_than_s: float, chunk: int) -> int:
    """Delete up to ``chunk`` finished notifications created more than ``older_than_s`` ago;
    returns how many."""
    result = await session.execute(_PURGE_FINISHED,
                                   {"older_than_s": float(older_than_s), "chunk": chunk})
    return int(result.rowcount)  # type: ignore[attr-defined]


class SenderRepository:
    """What the sender reads and writes, each step in its own short transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(self, channel: Channel, limit: int, lease_s: float,
                        held: Collection[int] = ()) -> list[NotificationRow]:
        """Take up to ``limit`` due notifications of ``channel``: pending ones whose time came,
        and ones left ``sending`` by a process that died (their lease ran out), except ``held``
        (the rows the calling process is sending or marking)."""
        rows = (await self.session.execute(
            _CLAIM, {"n_channel": channel, "n_limit": limit, "lease_s": float(lease_s),
                     "held": list(held)})).all()
        return sorted((_row(r) for r in rows), key=lambda r: r.id)

    async def next_due_s(self, channel: Channel) -> float | None:
        """Seconds until the next row of ``channel`` is due (negative: due already); ``None``
        when none is pending or sending."""
        ((value,),) = await _NEXT_DUE.fetch(self.session, {"n_channel": channel})
        return None if value is None else float(value)

    async def waiting_of(self, keys: Collection[str], channel: Channel,
                         ) -> list[NotificationRow]:
        """The notifications waiting under these coalesce keys on ``channel``, locked in id order
        (as the handlers lock waiting rows)."""
        if not keys:
            return []
        rows = (await self.session.execute(_WAITING_OF_KEYS, {
            "keys": sorted(keys), "channel": channel})).all()
        return [_row(r) for r in rows]

    async def coalesce(self, folds: Sequence[Fold]) -> None:
        """Store the folds: each row ``coalesced`` into its carrying row, with its detail."""
        if not folds:
            return
        await _COALESCE.run(self.session, {"ids": [f.row_id for f in folds],
                                           "carriers": [f.carrier_id for f in folds],
                                           "details": [f.detail for f in folds]})

    async def set_context(self, notification: int, context: Mapping[str, Any]) -> None:
        await self.session.execute(notifications.update().where(notifications.c.id == notification)
                                   .values(context=dict(context)))

    async def finish(self, row: NotificationRow, *, status: str, detail: str,
                     error: str | None = None) -> bool:
        """Mark a claimed notification done (sent, recorded, failed); False if it is no longer
        this attempt's (another sender took it over after the lease ran out)."""
        result = await self.session.execute(
            notifications.update().where(notifications.c.id == row.id,
                                         notifications.c.status == "sending",
                                         notifications.c.attempts == row.attempts)
            .values(status=status, detail=detail[:1000], last_error=error, lease_until=None,
                    finished_at=sa.func.now(), updated_at=sa.func.now())
            .returning(notifications.c.id))
        return result.first() is not None

    async def finish_delivered(self, rows: Sequence[tuple[NotificationRow, str, str]]) -> set[int]:
        """Mark claimed notifications delivered, each with its (status, detail), in one
        statement; the ids marked: a row that is no longer this attempt's (another sender took
        it over after the lease ran out) is left alone, as ``finish`` would."""
        if not rows:
            return set()
        marked = await _FINISH_DELIVERED.fetch(self.session, {
            "ids": [row.id for row, _, _ in rows],
            "attempts": [row.attempts for row, _, _ in rows],
            "statuses": [status for _, status, _ in rows],
            "details": [detail[:1000] for _, _, detail in rows]})
        return {r[0] for r in marked}

    async def retry_later(self, row: NotificationRow, *, delay_s: float, error: str) -> bool:
        result = await self.session.execute(
            notifications.update().where(notifications.c.id == row.id,
                                         notifications.c.status == "sending",
                                         notifications.c.attempts == row.attempts)
            .values(status="pending", last_error=error[:1000], lease_until=None,
                    next_attempt_at=sa.func.now()
                    + sa.func.make_interval(0, 0, 0, 0, 0, 0, delay_s),
                    updated_at=sa.func.now())
            .returning(notifications.c.id))
        return result.first() is not None
