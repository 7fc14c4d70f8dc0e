"""Notify's tables: customers' preferences, product names, each order's facts and contact, and the
notification log, whose unique key (source event id, channel) makes every notification happen at
most once however often its event is delivered."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import CustomerUpdated
from orderflow.notify.domain import (
    Channel,
    Contact,
    Fold,
    Kind,
    Language,
    Preferences,
    normalise_channel,
    normalise_language,
)
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()
customers = sa.Table(
    "notify_customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("preferred_channel", sa.Text, nullable=False),
    sa.Column("opt_out_marketing", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "notify_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
orders = sa.Table(
    "notify_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text),
    sa.Column("external_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("customer_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("facts", JSONB),
    sa.Column("shipments", JSONB, nullable=False),
    sa.Column("review_notice_sent", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
notifications = sa.Table(
    "notify_notifications", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("notification_id", sa.Uuid, nullable=False),
    sa.Column("source_event_id", sa.Uuid, nullable=False),
    sa.Column("source_topic", sa.Text, nullable=False),
    sa.Column("source_event_type", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("context", JSON, nullable=False),  # JSON: written and read whole
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("coalesce_key", sa.Text),
    sa.Column("coalesced_into", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("raw_value", sa.LargeBinary, nullable=False),
    sa.Column("raw_headers", JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


# the handlers' statements, built once and run on asyncpg directly (``Statement``); each takes a
# whole run's values as arrays
_CUSTOMERS = Statement(
    "SELECT customer_id, name, email, phone, language, preferred_channel, opt_out_marketing "
    "FROM notify_customers WHERE customer_id = ANY(CAST(:ids AS text[]))")
_PRODUCT_NAMES = Statement(
    "SELECT sku, name FROM notify_products WHERE sku = ANY(CAST(:skus AS text[]))")
# the orders a run saves, created when missing (as the per-event upsert would), in id order
_CREATE_ORDERS = Statement(
    "INSERT INTO notify_orders (order_id) SELECT o FROM unnest(CAST(:ids AS text[])) AS o "
    "ORDER BY o ON CONFLICT (order_id) DO NOTHING RETURNING order_id")
# every order of a run, locked in the order of its id (replicas cannot deadlock crosswise)
_LOCK_ORDERS = Statement(
    "SELECT order_id, channel, external_id, customer_id, customer_name, email, phone, facts, "
    "shipments, review_notice_sent FROM notify_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[])) ORDER BY order_id FOR UPDATE")
# the orders' state as the run's events left it (what the per-event upserts and updates would)
_SAVE_ORDERS = Statement(
    "UPDATE notify_orders o SET channel = u.channel, external_id = u.external_id, "
    "customer_id = u.customer_id, customer_name = u.customer_name, email = u.email, "
    "phone = u.phone, facts = CAST(u.facts AS jsonb), shipments = CAST(u.shipments AS jsonb), "
    "review_notice_sent = u.review_notice_sent, updated_at = now() "
    "FROM unnest(CAST(:ids AS text[]), CAST(:channels AS text[]), CAST(:external_ids AS text[]), "
    "CAST(:customer_ids AS text[]), CAST(:names AS text[]), CAST(:emails AS text[]), "
    "CAST(:phones AS text[]), CAST(:facts AS text[]), CAST(:shipments AS text[]), "
    "CAST(:reviews AS boolean[])) AS u(order_id, channel, external_id, customer_id, "
    "customer_name, email, phone, facts, shipments, review_notice_sent) "
    "WHERE o.order_id = u.order_id")
# a run's notifications in its order (ids follow it), each due when the handler decided (no
# time: now, as a release sets it) and finished when it says (a suppressed row, as staged)
_STAGE_ALL = Statement(
    "INSERT INTO notify_notifications (notification_id, source_event_id, source_topic, "
    "source_event_type, kind, order_id, channel, recipient, language, context, status, detail, "
    "attempts, next_attempt_at, coalesce_key, raw_value, raw_headers, finished_at) "
    "SELECT notification_id, source_event_id, source_topic, source_event_type, kind, order_id, "
    "channel, recipient, language, CAST(context AS json), status, detail, 0, "
    "COALESCE(next_attempt_at, now()), coalesce_key, raw_value, CAST(raw_headers AS json), "
    "CASE WHEN finished THEN now() END "
    "FROM unnest(CAST(:notification_ids AS uuid[]), CAST(:source_event_ids AS uuid[]), "
    "CAST(:source_topics AS text[]), CAST(:source_event_types AS text[]), CAST(:kinds AS text[]), "
    "CAST(:order_ids AS text[]), CAST(:channels AS text[]), CAST(:recipients AS text[]), "
    "CAST(:languages AS text[]), CAST(:contexts AS text[]), CAST(:statuses AS text[]), "
    "CAST(:details AS text[]), CAST(:next_attempts AS timestamptz[]), "
    "CAST(:coalesce_keys AS text[]), CAST(:raw_values AS bytea[]), "
    "CAST(:raw_headers AS text[]), CAST(:finished AS boolean[])) WITH ORDINALITY "
    "AS u(notification_id, source_event_id, source_topic, source_event_type, kind, order_id, "
    "channel, recipient, language, context, status, detail, next_attempt_at, coalesce_key, "
    "raw_value, raw_headers, finished, n) "
    "ORDER BY n ON CONFLICT (source_event_id, channel) DO NOTHING "
    "RETURNING source_event_id, channel")
# the dispatches waiting under a run's (coalesce key, channel) pairs, locked in id order, and
# the (event, channel) pairs the run's events already staged (a stored pair is not staged again)
_WAITING_AND_STAGED = Statement(
    "WITH waiting AS (SELECT n.id, n.coalesce_key, n.channel FROM notify_notifications n "
    "JOIN unnest(CAST(:keys AS text[]), CAST(:channels AS text[])) AS p(coalesce_key, channel) "
    "ON n.coalesce_key = p.coalesce_key AND n.channel = p.channel "
    "WHERE n.status = 'pending' ORDER BY n.id FOR UPDATE OF n) "
    "SELECT id, coalesce_key, channel, NULL::uuid AS source_event_id FROM waiting "
    "UNION ALL SELECT NULL, NULL, channel, source_event_id FROM notify_notifications "
    "WHERE source_event_id = ANY(CAST(:event_ids AS uuid[]))")
# waiting rows the handler let go now
_RELEASE = Statement("UPDATE notify_notifications SET next_attempt_at = now() "
                     "WHERE id = ANY(CAST(:ids AS bigint[]))")
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
class CustomerProfile:
    preferences: Preferences
    contact: Contact


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    channel: str | None
    external_id: str | None
    customer_id: str | None
    contact: Contact
    facts: dict[str, Any] | None
    shipments: dict[str, Any]
    review_notice_sent: bool


@dataclass(frozen=True)
class NewNotification:
    """A row the handler stages in the consumer's transaction."""

    source_event_id: str
    source_topic: str
    source_event_type: str
    kind: Kind
    order_id: str
    channel: Channel
    recipient: str
    language: Language
    context: Mapping[str, Any]
    status: str
    detail: str
    next_attempt_at: datetime | None  # None: now, as it is stored
    finished: bool  # finished as it is stored (a suppressed notification)
    coalesce_key: str | None
    raw_value: bytes
    raw_headers: Sequence[tuple[str, bytes]]
    notification_id: str = field(default_factory=lambda: str(uuid.uuid4()))


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


class NotifyRepository:
    """What the handlers read and write, inside the consumer's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- master data ---------------------------------------------------------------------------
    async def upsert_customer(self, c: CustomerUpdated) -> None:
        values = {"customer_id": c.customer_id, "name": c.name, "email": c.email, "phone": c.phone,
                  "language": c.language, "preferred_channel": c.preferred_channel,
                  "opt_out_marketing": c.opt_out_marketing}
        stmt = pg_insert(customers).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[customers.c.customer_id],
            set_={**{k: stmt.excluded[k] for k in values if k != "customer_id"},
                  "updated_at": sa.func.now()},
        ))

    async def customers(self, customer_ids: Iterable[str],
                        default_language: Language) -> dict[str, CustomerProfile]:
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        rows = await _CUSTOMERS.fetch(self.session, {"ids": wanted})
        return {customer_id: CustomerProfile(
            Preferences(channel=normalise_channel(preferred_channel),
                        language=normalise_language(language, default_language),
                        opt_out_marketing=opt_out_marketing),
            Contact(name=name, email=email, phone=phone))
            for customer_id, name, email, phone, language, preferred_channel, opt_out_marketing
            in rows}

    async def upsert_product(self, sku: str, name: str) -> None:
        stmt = pg_insert(products).values(sku=sku, name=name)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku], set_={"name": stmt.excluded.name,
                                                   "updated_at": sa.func.now()}))

    async def product_names(self, skus: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        return {sku: name for sku, name in await _PRODUCT_NAMES.fetch(self.session,
                                                                      {"skus": wanted})}

    # -- orders ---------------------------------------------------------------------------------
    async def create_orders(self, order_ids: Iterable[str]) -> set[str]:
        """Create the rows of these orders that are missing (empty, in id order); the ids
        created."""
        wanted = sorted(set(order_ids))
        if not wanted:
            return set()
        return {r[0] for r in await _CREATE_ORDERS.fetch(self.session, {"ids": wanted})}

    async def lock_orders(self, order_ids: Iterable[str]) -> dict[str, OrderRecord]:
        """The orders' rows, locked in the order of their ids."""
        wanted = sorted(set(order_ids))
        if not wanted:
            return {}
        rows = await _LOCK_ORDERS.fetch(self.session, {"ids": wanted})
        return {order_id: OrderRecord(
            order_id, channel, external_id, customer_id, Contact(customer_name, email, phone),
            dict(facts) if facts is not None else None, dict(shipments), review_notice_sent)
            for (order_id, channel, external_id, customer_id, customer_name, email, phone, facts,
                 shipments, review_notice_sent) in rows}

    async def save_orders(self, records: Sequence[OrderRecord]) -> None:
        """Write the orders' state (rows locked by ``lock_orders`` in this transaction)."""
        if not records:
            return
        await _SAVE_ORDERS.run(self.session, {
            "ids": [r.order_id for r in records],
            "channels": [r.channel for r in records],
            "external_ids": [r.external_id for r in records],
            "customer_ids": [r.customer_id for r in records],
            "names": [r.contact.name for r in records],
            "emails": [r.contact.email for r in records],
            "phones": [r.contact.phone for r in records],
            "facts": [None if r.facts is None else _json(r.facts) for r in records],
            "shipments": [_json(r.shipments) for r in records],
            "reviews": [r.review_notice_sent for r in records],
        })

    # -- notifications --------------------------------------------------------------------------
    async def stage_all(self, rows: Sequence[NewNotification]) -> set[tuple[str, str]]:
        """Insert the notifications; the (source event id, channel) pairs inserted: a pair that
        already has a row is skipped."""
        if not rows:
            return set()
        inserted = await _STAGE_ALL.fetch(self.session, {
            "notification_ids": [uuid.UUID(r.notification_id) for r in rows],
            "source_event_ids": [uuid.UUID(r.source_event_id) for r in rows],
            "source_topics": [r.source_topic for r in rows],
            "source_event_types": [r.source_event_type for r in rows],
            "kinds": [r.kind for r in rows],
            "order_ids": [r.order_id for r in rows],
            "channels": [r.channel for r in rows],
            "recipients": [r.recipient for r in rows],
            "languages": [r.language for r in rows],
            "contexts": [_json(r.context) for r in rows],
            "statuses": [r.status for r in rows],
            "details": [r.detail for r in rows],
            "next_attempts": [r.next_attempt_at for r in rows],
            "coalesce_keys": [r.coalesce_key for r in rows],
            "raw_values": [r.raw_value for r in rows],
            "raw_headers": [_json([[k, v.decode("utf-8", "replace")] for k, v in r.raw_headers])
                            for r in rows],
            "finished": [r.finished for r in rows],
        })
        return {(str(event_id), channel) for event_id, channel in inserted}

    async def waiting_and_staged(
            self, pairs: Sequence[tuple[str, str]], event_ids: Sequence[str],
    ) -> tuple[dict[tuple[str, str], list[int]], set[tuple[str, str]]]:
        """The ids of the notifications waiting under each (coalesce key, channel) pair (locked:
        the counts stay right while this transaction lasts), and the (source event id, channel)
        pairs of these events that already have a row."""
        rows = await _WAITING_AND_STAGED.fetch(self.session, {
            "keys": [key for key, _ in pairs], "channels": [channel for _, channel in pairs],
            "event_ids": [uuid.UUID(e) for e in event_ids]})
        waiting: dict[tuple[str, str], list[int]] = {}
        staged: set[tuple[str, str]] = set()
        for row_id, coalesce_key, channel, source_event_id in rows:
            if row_id is not None:
                waiting.setdefault((coalesce_key, channel), []).append(row_id)
            else:
                staged.add((str(source_event_id), channel))
        return waiting, staged

    async def release(self, notification_ids: Sequence[int]) -> None:
        """Let waiting notifications go now."""
        await _RELEASE.run(self.session, {"ids": list(notification_ids)})


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


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
