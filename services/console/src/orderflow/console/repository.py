"""The console's tables (schema ``console``): the events of every order, the projected order
views, master data names, operator sessions and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.exception_queue import order_exceptions
from orderflow.console.readmodel import OrderView, TimelineEntry
from orderflow.contracts.events import CustomerUpdated, ProductUpdated

metadata = sa.MetaData()
events = sa.Table(
    "console_events", metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("producer", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
)
orders = sa.Table(
    "console_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("state", sa.Text),
    sa.Column("channel", sa.Text),
    sa.Column("external_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("customer_name", sa.Text),
    sa.Column("currency", sa.Text),
    sa.Column("grand_total", sa.Numeric(16, 2)),
    sa.Column("priority", sa.Text),
    sa.Column("hold_codes", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("exception_kinds", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("tracking_numbers", pg.ARRAY(sa.Text), nullable=False),
    sa.Column("first_seen_at", sa.DateTime(timezone=True)),
    sa.Column("received_at", sa.DateTime(timezone=True)),
    sa.Column("state_since", sa.DateTime(timezone=True)),
    sa.Column("last_event_at", sa.DateTime(timezone=True)),
    sa.Column("view", pg.JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
customers = sa.Table(
    "console_customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "console_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("digest", sa.Text, primary_key=True),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("csrf_token", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
audit = sa.Table(
    "console_audit", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("via", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("detail", pg.JSONB, nullable=False),
)

# the read model: emptied by ``rebuild`` (with the inbox), refilled by replaying the topics
READ_MODEL_TABLES = ("console_events", "console_orders", "console_customers", "console_products")


@dataclass(frozen=True)
class OrderFilter:
    state: str | None = None
    channel: str | None = None
    customer: str | None = None
    external_id: str | None = None
    q: str | None = None


@dataclass(frozen=True)
class SessionRow:
    user_name: str
    role: str
    csrf_token: str
    expires_at: datetime


ORDER_LIST_COLUMNS = (orders.c.order_id, orders.c.state, orders.c.channel, orders.c.external_id,
                      orders.c.customer_id, orders.c.customer_name, orders.c.currency,
                      orders.c.grand_total, orders.c.priority, orders.c.hold_codes,
                      orders.c.exception_kinds, orders.c.tracking_numbers, orders.c.first_seen_at,
                      orders.c.received_at, orders.c.state_since, orders.c.last_event_at)


class ConsoleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- the projection (set-based: one statement per table for a run of events) ----------------
    async def lock_orders(self, order_ids: list[str]) -> None:
        """Serialise projections of these orders across replicas (their events arrive on many
        topics); always in sorted order, so two replicas' batches cannot lock crosswise."""
        if order_ids:
            (await self.session.execute(_LOCK_ORDERS, {"ids": sorted(set(order_ids))})).all()

    async def add_entries(self, entries: list[TimelineEntry]) -> set[str]:
        """Store the entries not stored before; return the orders that got at least one."""
        if not entries:
            return set()
        result = await self.session.execute(_ADD_ENTRIES, {
            "ids": [e.event_id for e in entries], "orders": [e.order_id for e in entries],
            "topics": [e.topic for e in entries], "types": [e.event_type for e in entries],
            "producers": [e.producer for e in entries], "ats": [e.occurred_at for e in entries],
            "payloads": [orjson.dumps(e.payload).decode() for e in entries],
        })
        return set(result.scalars())

    async def entries_of(self, order_ids: list[str]) -> dict[str, list[TimelineEntry]]:
        """Every stored entry of these orders, by order."""
        found: dict[str, list[TimelineEntry]] = {order_id: [] for order_id in order_ids}
        if not order_ids:
            return found
        rows = (await self.session.execute(_ENTRIES_OF, {"ids": list(order_ids)})).all()
        for r in rows:
            found.setdefault(r.order_id, []).append(TimelineEntry(
                event_id=r.event_id, order_id=r.order_id, topic=r.topic, event_type=r.event_type,
                producer=r.producer, occurred_at=r.occurred_at, payload=r.payload))
        return found

    async def save_views(self, views: list[OrderView]) -> None:
        """Insert or replace these orders' views (one prepared statement, many rows)."""
        if views:
            await self.session.execute(_SAVE_VIEW, [_view_row(v) for v in views])

    async def upsert_customer(self, c: CustomerUpdated) -> None:
        stmt = pg_insert(customers).values(customer_id=c.customer_id, name=c.name,
                                           blocked=c.blocked, updated_at=sa.func.now())
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[customers.c.customer_id],
            set_={"name": stmt.excluded.name, "blocked": stmt.excluded.blocked,
                  "updated_at": sa.func.now()}))

    async def upsert_product(self, p: ProductUpdated) -> None:
        stmt = pg_insert(products).values(sku=p.sku, name=p.name, active=p.active,
                                          updated_at=sa.func.now())
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"name": stmt.excluded.name, "active": stmt.excluded.active,
                  "updated_at": sa.func.now()}))

    # -- queries ----------------------------------------------------------------------------------
    async def search(self, f: OrderFilter, *, page: int, page_size: int) -> tuple[int, list[dict[str, Any]]]:
        where: list[sa.ColumnElement[bool]] = []
        if f.state:
            where.append(orders.c.state.is_(None) if f.state == "submitted"
                         else orders.c.state == f.state)
        if f.channel:
            where.append(orders.c.channel == f.channel)
        if f.customer:
            where.append(sa.or_(orders.c.customer_id == f.customer,
                                orders.c.customer_name.ilike(f"%{_like(f.customer)}%")))
        if f.external_id:
            where.append(orders.c.external_id == f.external_id)
        if f.q:
            pattern = f"%{_like(f.q)}%"
            where.append(sa.or_(
                orders.c.order_id == f.q, orders.c.external_id.ilike(pattern),
                orders.c.customer_id.ilike(pattern), orders.c.customer_name.ilike(pattern),
                orders.c.tracking_numbers.any(f.q),
            ))
        total = (await self.session.execute(
            sa.select(sa.func.count()).select_from(orders).where(*where))).scalar_one()
        rows = (await self.session.execute(
            sa.select(*ORDER_LIST_COLUMNS).where(*where)
            .order_by(orders.c.last_event_at.desc().nulls_last(), orders.c.order_id)
            .limit(page_size).offset((page - 1) * page_size)
        )).mappings().all()
        return int(total), [dict(r) for r in rows]

    async def view(self, order_id: str) -> OrderView | None:
        raw = (await self.session.execute(
            sa.select(orders.c.view).where(orders.c.order_id == order_id))).scalar_one_or_none()
        return OrderView.model_validate(raw) if raw is not None else None

    async def views_with_exceptions(self) -> list[OrderView]:
        rows = (await self.session.execute(
            sa.select(orders.c.view).where(sa.func.cardinality(orders.c.exception_kinds) > 0)
        )).scalars().all()
        return [OrderView.model_validate(r) for r in rows]

    async def held_views(self, reason: str | None = None) -> list[OrderView]:
        stmt = sa.select(orders.c.view).where(orders.c.state == "held")
        if reason:
            stmt = stmt.where(orders.c.hold_codes.any(reason))
        rows = (await self.session.execute(stmt.order_by(orders.c.state_since))).scalars().all()
        return [OrderView.model_validate(r) for r in rows]

    async def views_between(self, frm: datetime, to: datetime) -> list[OrderView]:
        at = sa.func.coalesce(orders.c.received_at, orders.c.first_seen_at)
        rows = (await self.session.execute(
            sa.select(orders.c.view).where(at >= frm, at < to))).scalars().all()
        return [OrderView.model_validate(r) for r in rows]

    async def state_counts(self) -> dict[str, int]:
        rows = (await self.session.execute(
            sa.select(orders.c.state, sa.func.count()).group_by(orders.c.state))).all()
        return {(state or "submitted"): int(n) for state, n in rows}

    async def received_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        minute = sa.func.date_trunc("minute", orders.c.received_at)
        rows = (await self.session.execute(
            sa.select(minute, sa.func.count()).where(orders.c.received_at >= since)
            .group_by(minute).order_by(minute))).all()
        return [(m, int(n)) for m, n in rows]

    async def product_names(self, skus: list[str]) -> dict[str, str]:
        rows = (await self.session.execute(
            sa.select(products.c.sku, products.c.name).where(products.c.sku.in_(skus)))).all()
        return {sku: name for sku, name in rows}

    async def channels(self) -> list[str]:
        rows = (await self.session.execute(
            sa.select(orders.c.channel).where(orders.c.channel.is_not(None)).distinct())).scalars()
        return sorted(rows)

    # -- sessions and audit -----------------------------------------------------------------------
    async def add_session(self, digest: str, row: SessionRow) -> None:
        await self.session.execute(sessions.insert().values(
            digest=digest, user_name=row.user_name, role=row.role, csrf_token=row.csrf_token,
            created_at=sa.func.now(), expires_at=row.expires_at))
        await self.session.execute(sessions.delete().where(sessions.c.expires_at < sa.func.now()))

    async def find_session(self, digest: str) -> SessionRow | None:
        row = (await self.session.execute(
            sa.select(sessions).where(sessions.c.digest == digest,
                                      sessions.c.expires_at > sa.func.now()))).first()
        return SessionRow(row.user_name, row.role, row.csrf_token, row.expires_at) if row else None

    async def drop_session(self, digest: str) -> None:
        await self.session.execute(sessions.delete().where(sessions.c.digest == digest))

    async def record_audit(self, *, user: str, role: str, via: str, action: str, target: str | None,
                           outcome: str, detail: dict[str, Any]) -> None:
        await self.session.execute(audit.insert().values(
            user_name=user, role=role, via=via, action=action, target=target, outcome=outcome,
            detail=detail))

    async def audit_log(self, limit: int = 200, action: str | None = None) -> list[dict[str, Any]]:
        stmt = sa.select(audit).order_by(audit.c.id.desc()).limit(limit)
        if action:
            stmt = stmt.where(audit.c.action == action)
        return [dict(r) for r in (await self.session.execute(stmt)).mappings().all()]


def _view_row(view: OrderView) -> dict[str, Any]:
    kinds = sorted({i.kind for i in order_exceptions(view, view.last_event_at or datetime.now(UTC),
                                                     _NO_SLA)})
    return {
        "order_id": view.order_id,
        "state": view.state.value if view.state else None,
        "channel": view.channel, "external_id": view.external_id,
        "customer_id": view.customer_id, "customer_name": view.customer_name,
        "currency": view.currency, "grand_total": view.grand_total, "priority": view.priority,
        "hold_codes": list(view.hold_codes), "exception_kinds": kinds,
        "tracking_numbers": view.tracking_numbers,
        "first_seen_at": view.first_seen_at, "received_at": view.milestones.get("received"),
        "state_since": view.state_since, "last_event_at": view.last_event_at,
        "view": view.model_dump(mode="json"),
    }


# the projection's statements, built once (constant shape whatever the number of rows)
_LOCK_ORDERS = sa.text(
    "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
    "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n) ORDER BY n")
_ADD_ENTRIES = sa.text(
    "INSERT INTO console_events (event_id, order_id, topic, event_type, producer, occurred_at, "
    "payload) SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:orders AS text[]), "
    "CAST(:topics AS text[]), CAST(:types AS text[]), CAST(:producers AS text[]), "
    "CAST(:ats AS timestamptz[]), CAST(:payloads AS jsonb[])) "
    "ON CONFLICT DO NOTHING RETURNING order_id")
_ENTRIES_OF = sa.select(events).where(
    events.c.order_id == sa.any_(sa.bindparam("ids", type_=pg.ARRAY(sa.Text))))
_VIEW_COLUMNS = [c.name for c in orders.c if c.name not in {"order_id", "updated_at"}]
_INSERT_VIEW = pg_insert(orders).values(updated_at=sa.func.now())
_SAVE_VIEW = _INSERT_VIEW.on_conflict_do_update(
    index_elements=[orders.c.order_id],
    set_={**{name: _INSERT_VIEW.excluded[name] for name in _VIEW_COLUMNS},
          "updated_at": sa.func.now()})


_NO_SLA = {"held": 0.0, "backordered": 0.0, "delayed": 0.0, "carrier_exception": 0.0, "dlq": 0.0}


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def money(value: Decimal | None) -> str | None:
    return format(value, "f") if value is not None else None
