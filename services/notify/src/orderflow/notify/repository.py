"""Notify's tables: customers' preferences, product names, each order's facts and contact, and the
notification log, whose unique key (source event id, channel) makes every notification happen at
most once however often its event is delivered."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import CustomerUpdated
from orderflow.contracts.order import Customer
from orderflow.notify.domain import (
    Channel,
    Contact,
    Kind,
    Language,
    Preferences,
    normalise_channel,
    normalise_language,
)

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
    sa.Column("context", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("coalesce_key", sa.Text),
    sa.Column("coalesced_into", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("raw_value", sa.LargeBinary, nullable=False),
    sa.Column("raw_headers", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


# the handlers' statements, built once: SQLAlchemy then reuses their compiled form and cache key
# instead of building, keying and looking up a new expression for every event
_CUSTOMER = sa.select(customers).where(customers.c.customer_id == sa.bindparam("customer_id"))
_PRODUCT_NAMES = sa.select(products.c.sku, products.c.name).where(
    products.c.sku == sa.any_(sa.bindparam("skus", type_=ARRAY(sa.Text))))
_LOCK_ORDER = sa.select(orders).where(orders.c.order_id == sa.bindparam("order_id")).with_for_update()
_INSERT_ORDER = pg_insert(orders)
_SAVE_ORDER = _INSERT_ORDER.on_conflict_do_update(
    index_elements=[orders.c.order_id],
    set_={**{name: sa.func.coalesce(_INSERT_ORDER.excluded[name], orders.c[name])
             for name in ("channel", "external_id", "customer_id", "email", "phone", "facts")},
          "customer_name": sa.func.coalesce(sa.func.nullif(_INSERT_ORDER.excluded.customer_name, ""),
                                            orders.c.customer_name),
          "updated_at": sa.func.now()})
_ADD_SHIPMENT = orders.update().where(orders.c.order_id == sa.bindparam("o_id")).values(
    shipments=orders.c.shipments.op("||")(sa.bindparam("shipment", type_=JSONB)),
    updated_at=sa.func.now())
_MARK_REVIEW_NOTICE = orders.update().where(orders.c.order_id == sa.bindparam("o_id")).values(
    review_notice_sent=True, updated_at=sa.func.now())
_STAGE = pg_insert(notifications).on_conflict_do_nothing(
    index_elements=["source_event_id", "channel"]).returning(notifications.c.id)
_STAGE_FINISHED = pg_insert(notifications).values(finished_at=sa.func.now()).on_conflict_do_nothing(
    index_elements=["source_event_id", "channel"]).returning(notifications.c.id)
_PENDING = sa.and_(notifications.c.coalesce_key == sa.bindparam("key"),
                   notifications.c.channel == sa.bindparam("n_channel"),
                   notifications.c.status == "pending")
_WAITING = sa.select(notifications.c.id).where(_PENDING).with_for_update()
_RELEASE_WAITING = notifications.update().where(_PENDING).values(next_attempt_at=sa.func.now())
# the sender's claim, built once: due pending rows and rows whose lease ran out (a dead sender)
_DUE = (
    sa.select(notifications.c.id)
    .where(notifications.c.channel == sa.bindparam("n_channel"),
           sa.or_(sa.and_(notifications.c.status == "pending",
                          notifications.c.next_attempt_at <= sa.func.now()),
                  sa.and_(notifications.c.status == "sending",
                          notifications.c.lease_until < sa.func.now())))
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
# seconds until the channel's next row is due (a pending row's time, a sending row's lease)
_NEXT_DUE = sa.text(
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
    next_attempt_at: datetime
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

    async def customer(self, customer_id: str | None, default_language: Language) -> CustomerProfile | None:
        if not customer_id:
            return None
        row = (await self.session.execute(_CUSTOMER, {"customer_id": customer_id})).first()
        if row is None:
            return None
        return CustomerProfile(
            Preferences(channel=normalise_channel(row.preferred_channel),
                        language=normalise_language(row.language, default_language),
                        opt_out_marketing=row.opt_out_marketing),
            Contact(name=row.name, email=row.email, phone=row.phone),
        )

    async def upsert_product(self, sku: str, name: str) -> None:
        stmt = pg_insert(products).values(sku=sku, name=name)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku], set_={"name": stmt.excluded.name,
                                                   "updated_at": sa.func.now()}))

    async def product_names(self, skus: Iterable[str]) -> dict[str, str]:
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        rows = (await self.session.execute(_PRODUCT_NAMES, {"skus": wanted})).all()
        return {r.sku: r.name for r in rows}

    # -- orders ---------------------------------------------------------------------------------
    async def lock_order(self, order_id: str) -> OrderRecord | None:
        row = (await self.session.execute(_LOCK_ORDER, {"order_id": order_id})).first()
        if row is None:
            return None
        return OrderRecord(row.order_id, row.channel, row.external_id, row.customer_id,
                           Contact(row.customer_name, row.email, row.phone),
                           dict(row.facts) if row.facts is not None else None,
                           dict(row.shipments), row.review_notice_sent)

    async def save_order(self, order_id: str, *, channel: str | None = None,
                         external_id: str | None = None, customer: Customer | None = None,
                         facts: Mapping[str, Any] | None = None) -> None:
        """Remember what notify knows of an order; newer knowledge wins, gaps keep the old."""
        values: dict[str, Any] = {"order_id": order_id, "channel": channel,
                                  "external_id": external_id,
                                  "customer_id": customer.id if customer else None,
                                  "customer_name": customer.name if customer else "",
                                  "email": customer.email if customer else None,
                                  "phone": customer.phone if customer else None,
                                  "facts": dict(facts) if facts is not None else None,
                                  "shipments": {}, "review_notice_sent": False}
        await self.session.execute(_SAVE_ORDER, values)

    async def add_shipment(self, order_id: str, shipment_id: str, shipment: Mapping[str, Any]) -> None:
        await self.session.execute(_ADD_SHIPMENT, {"o_id": order_id,
                                                   "shipment": {shipment_id: dict(shipment)}})

    async def mark_review_notice(self, order_id: str) -> None:
        await self.session.execute(_MARK_REVIEW_NOTICE, {"o_id": order_id})

    # -- notifications --------------------------------------------------------------------------
    async def stage(self, row: NewNotification) -> int | None:
        """Insert one notification; ``None`` when (source event, channel) already has one."""
        values = {
            "notification_id": uuid.UUID(row.notification_id),
            "source_event_id": uuid.UUID(row.source_event_id), "source_topic": row.source_topic,
            "source_event_type": row.source_event_type, "kind": row.kind, "order_id": row.order_id,
            "channel": row.channel, "recipient": row.recipient, "language": row.language,
            "context": dict(row.context), "status": row.status, "detail": row.detail, "attempts": 0,
            "next_attempt_at": row.next_attempt_at, "coalesce_key": row.coalesce_key,
            "raw_value": row.raw_value,
            "raw_headers": [[k, v.decode("utf-8", "replace")] for k, v in row.raw_headers],
        }
        stmt = _STAGE_FINISHED if row.status == "suppressed" else _STAGE  # finished_at: now()
        inserted: int | None = (await self.session.execute(stmt, values)).scalar()
        return inserted

    async def waiting(self, coalesce_key: str, channel: Channel) -> int:
        """How many notifications of this key and channel wait to be sent (locked: the count
        stays right while this transaction lasts)."""
        ids = (await self.session.execute(
            _WAITING, {"key": coalesce_key, "n_channel": channel})).scalars().all()
        return len(ids)

    async def release_waiting(self, coalesce_key: str, channel: Channel) -> None:
        await self.session.execute(_RELEASE_WAITING, {"key": coalesce_key, "n_channel": channel})


class SenderRepository:
    """What the sender reads and writes, each step in its own short transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(self, channel: Channel, limit: int, lease_s: float) -> list[NotificationRow]:
        """Take up to ``limit`` due notifications of ``channel``: pending ones whose time came,
        and ones left ``sending`` by a process that died (their lease ran out)."""
        rows = (await self.session.execute(
            _CLAIM, {"n_channel": channel, "n_limit": limit, "lease_s": float(lease_s)})).all()
        return sorted((_row(r) for r in rows), key=lambda r: r.id)

    async def next_due_s(self, channel: Channel) -> float | None:
        """Seconds until the next row of ``channel`` is due (negative: due already); ``None``
        when none is pending or sending."""
        value = (await self.session.execute(_NEXT_DUE, {"n_channel": channel})).scalar()
        return None if value is None else float(value)

    async def absorb_waiting(self, row: NotificationRow,
                             claimed_with_it: Sequence[int] = ()) -> list[NotificationRow]:
        """Mark the other notifications of ``row``'s coalesce key, waiting or claimed in the same
        transaction, as told together with it."""
        if row.coalesce_key is None:
            return []
        rows = (await self.session.execute(
            notifications.update().where(
                notifications.c.coalesce_key == row.coalesce_key,
                notifications.c.channel == row.channel,
                sa.or_(notifications.c.status == "pending",
                       notifications.c.id.in_(list(claimed_with_it))),
                notifications.c.id != row.id)
            .values(status="coalesced", coalesced_into=row.id, finished_at=sa.func.now(),
                    detail=f"told together with notification {row.notification_id}",
                    updated_at=sa.func.now())
            .returning(*notifications.c)
        )).all()
        return sorted((_row(r) for r in rows), key=lambda r: r.id)

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
