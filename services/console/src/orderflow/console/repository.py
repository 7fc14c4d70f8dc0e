"""The console's tables (schema ``console``): the events of every order, the projected order
views, master data (names, and what the order desk fills an order from), operator sessions and
the audit log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.domain import OrderView, TimelineEntry, project
from orderflow.console.exception_queue import order_exceptions
from orderflow.console.settings import DEFAULT_SLA_MINUTES
from orderflow.contracts.events import CustomerUpdated, ProductUpdated
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()
events = sa.Table(
    "console_events", metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("producer", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("payload", pg.JSON, nullable=False),  # JSON: written and read whole
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
    sa.Column("view", pg.JSON, nullable=False),  # JSON: written and read whole
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
customers = sa.Table(
    "console_customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    # what the order desk fills an order from
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("payment_terms", sa.Text),
    sa.Column("currency", sa.Text),
    sa.Column("credit_limit", sa.Numeric(16, 2)),
    sa.Column("delivery_address", pg.JSON),  # the contract's Address; personal data
)
products = sa.Table(
    "console_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    # what the order desk shows and prices a line with
    sa.Column("spec", sa.Text),
    sa.Column("unit_price", sa.Numeric(16, 2)),
    sa.Column("currency", sa.Text),
    sa.Column("tax_rate", sa.Numeric(6, 4)),
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
            await _LOCK_ORDERS.run(self.session, {"ids": sorted(set(order_ids))})

    async def add_entries(self, entries: list[TimelineEntry]) -> set[str]:
        """Store the entries not stored before; return their event ids."""
        if not entries:
            return set()
        rows = await _ADD_ENTRIES.fetch(self.session, {
            "ids": [e.event_id for e in entries], "orders": [e.order_id for e in entries],
            "topics": [e.topic for e in entries], "types": [e.event_type for e in entries],
            "producers": [e.producer for e in entries], "ats": [e.occurred_at for e in entries],
            "payloads": [orjson.dumps(e.payload).decode() for e in entries],
        })
        return {r[0] for r in rows}

    async def entries_of(self, order_ids: list[str]) -> dict[str, list[TimelineEntry]]:
        """Every stored entry of these orders, by order (payloads read as text and parsed here:
        faster than the driver's JSON decoding, the same values)."""
        found: dict[str, list[TimelineEntry]] = {order_id: [] for order_id in order_ids}
        if not order_ids:
            return found
        rows = await _ENTRIES_OF.fetch(self.session, {"ids": list(order_ids)})
        for event_id, order_id, topic, event_type, producer, occurred_at, payload in rows:
            found.setdefault(order_id, []).append(TimelineEntry(
                event_id=event_id, order_id=order_id, topic=topic, event_type=event_type,
                producer=producer, occurred_at=occurred_at, payload=_parse_json(payload)))
        return found

    async def stored_views(self, order_ids: list[str]) -> dict[str, OrderView]:
        """These orders' stored views (without timelines), of those that have one."""
        if not order_ids:
            return {}
        rows = await _STORED_VIEWS.fetch(self.session, {"ids": list(order_ids)})
        return {order_id: OrderView.model_validate_json(text) for order_id, text in rows}

    async def save_views(self, views: list[OrderView]) -> None:
        """Insert or replace these orders' views (one statement for all of them; the orders are
        distinct)."""
        if not views:
            return
        columns: dict[str, list[Any]] = {name: [] for name in _SAVE_VIEWS_PARAMS}
        for view in views:
            for name, value in zip(_SAVE_VIEWS_PARAMS, _view_values(view), strict=True):
                columns[name].append(value)
        await _SAVE_VIEWS.run(self.session, columns)

    async def upsert_customers(self, updates: list[CustomerUpdated]) -> None:
        """The latest name, status, contact, terms and delivery address of these customers (each
        once)."""
        if updates:
            await _UPSERT_CUSTOMERS.run(self.session, {
                "ids": [c.customer_id for c in updates], "names": [c.name for c in updates],
                "blocked": [c.blocked for c in updates], "emails": [c.email for c in updates],
                "phones": [c.phone for c in updates],
                "terms": [c.payment_terms for c in updates],
                "currencies": [c.currency for c in updates],
                "limits": [c.credit_limit for c in updates],
                "addresses": [c.delivery_address.model_dump_json() if c.delivery_address else None
                              for c in updates]})

    async def upsert_products(self, updates: list[ProductUpdated]) -> None:
        """The latest name, status, spec and price of these products (each once)."""
        if updates:
            await _UPSERT_PRODUCTS.run(self.session, {
                "skus": [p.sku for p in updates], "names": [p.name for p in updates],
                "active": [p.active for p in updates], "specs": [p.spec for p in updates],
                "prices": [p.unit_price for p in updates],
                "currencies": [p.currency for p in updates],
                "rates": [p.tax_rate for p in updates]})

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
        """The order's stored view with its timeline, made from its stored entries (the views
        are stored without it; the other readers of views do not show it)."""
        raw = (await self.session.execute(
            sa.select(orders.c.view).where(orders.c.order_id == order_id))).scalar_one_or_none()
        if raw is None:
            return None
        view = OrderView.model_validate(raw)
        entries = (await self.entries_of([order_id]))[order_id]
        view.timeline = project(order_id, entries).timeline
        return view

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


def _view_values(view: OrderView) -> tuple[Any, ...]:
    """One order's row for ``_SAVE_VIEWS``, in ``_SAVE_VIEWS_PARAMS`` order (the text arrays and
    the view as JSON text)."""
    kinds = sorted({i.kind for i in order_exceptions(view, view.last_event_at or datetime.now(UTC),
                                                     _NO_SLA)})
    return (
        view.order_id, view.state.value if view.state else None, view.channel, view.external_id,
        view.customer_id, view.customer_name, view.currency, view.grand_total, view.priority,
        orjson.dumps(list(view.hold_codes)).decode(), orjson.dumps(kinds).decode(),
        orjson.dumps(view.tracking_numbers).decode(), view.first_seen_at,
        view.milestones.get("received"), view.state_since, view.last_event_at,
        view.model_dump_json(),
    )


def _parse_json(text: str) -> Any:
    """A stored JSON value's text; the standard library's parser for what orjson does not take
    (integers beyond 64 bits), so the values are those ``json.loads`` gives."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# the projection's statements, built once (constant shape whatever the number of rows), run on
# asyncpg directly (``Statement``)
_LOCK_ORDERS = Statement(
    "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
    "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n) ORDER BY n")
_ADD_ENTRIES = Statement(
    "INSERT INTO console_events (event_id, order_id, topic, event_type, producer, occurred_at, "
    "payload) SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:orders AS text[]), "
    "CAST(:topics AS text[]), CAST(:types AS text[]), CAST(:producers AS text[]), "
    "CAST(:ats AS timestamptz[]), CAST(:payloads AS json[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id")
# each order's entries through the order index, one lookup per order (``OFFSET 0`` keeps the
# lookup a subquery of its own): ``order_id = ANY(:ids)`` read the whole table while its
# statistics were older than its rows (PostgreSQL guesses 0.5 % of the rows per id without them),
# as in the minutes after a backlog began: 75 million rows read while the console caught up
# after the benchmark's 20,000 orders (docs/decisions/0007-lookups-by-key.md)
_ENTRIES_OF = Statement(
    "SELECT e.event_id, e.order_id, e.topic, e.event_type, e.producer, e.occurred_at, "
    "CAST(e.payload AS text) "
    "FROM (SELECT DISTINCT id FROM unnest(CAST(:ids AS text[])) AS t(id)) AS k "
    "CROSS JOIN LATERAL (SELECT * FROM console_events AS c WHERE c.order_id = k.id OFFSET 0) AS e")
_STORED_VIEWS = Statement(
    "SELECT order_id, CAST(view AS text) FROM console_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[]))")
# (parameter, SQL type) of each column of a view's row, in ``_view_values`` order; the text
# arrays travel as JSON arrays (arrays of arrays cannot be unnested row by row)
_SAVE_VIEWS_COLUMNS = (
    ("order_id", "text"), ("state", "text"), ("channel", "text"), ("external_id", "text"),
    ("customer_id", "text"), ("customer_name", "text"), ("currency", "text"),
    ("grand_total", "numeric"), ("priority", "text"), ("hold_codes", "jsonb"),
    ("exception_kinds", "jsonb"), ("tracking_numbers", "jsonb"), ("first_seen_at", "timestamptz"),
    ("received_at", "timestamptz"), ("state_since", "timestamptz"),
    ("last_event_at", "timestamptz"), ("view", "json"),
)
_SAVE_VIEWS_PARAMS = tuple(name for name, _ in _SAVE_VIEWS_COLUMNS)
_TEXT_ARRAYS = {"hold_codes", "exception_kinds", "tracking_numbers"}


def _select_of(name: str) -> str:
    if name in _TEXT_ARRAYS:
        return (f"ARRAY(SELECT e FROM jsonb_array_elements_text(t.{name}) WITH ORDINALITY "
                f"AS a(e, n) ORDER BY n)")
    return f"t.{name}"


_SAVE_VIEWS = Statement(
    f"INSERT INTO console_orders ({', '.join(_SAVE_VIEWS_PARAMS)}, updated_at) "
    f"SELECT {', '.join(_select_of(name) for name in _SAVE_VIEWS_PARAMS)}, now() "
    f"FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in _SAVE_VIEWS_COLUMNS)}) "
    f"AS t({', '.join(_SAVE_VIEWS_PARAMS)}) "
    f"ON CONFLICT (order_id) DO UPDATE SET "
    f"{', '.join(f'{name} = EXCLUDED.{name}' for name in _SAVE_VIEWS_PARAMS[1:])}, "
    f"updated_at = now()")
_UPSERT_CUSTOMERS = Statement(
    "INSERT INTO console_customers (customer_id, name, blocked, email, phone, payment_terms, "
    "currency, credit_limit, delivery_address, updated_at) "
    "SELECT *, now() FROM unnest(CAST(:ids AS text[]), CAST(:names AS text[]), "
    "CAST(:blocked AS boolean[]), CAST(:emails AS text[]), CAST(:phones AS text[]), "
    "CAST(:terms AS text[]), CAST(:currencies AS text[]), CAST(:limits AS numeric[]), "
    "CAST(:addresses AS json[])) "
    "ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, blocked = EXCLUDED.blocked, "
    "email = EXCLUDED.email, phone = EXCLUDED.phone, payment_terms = EXCLUDED.payment_terms, "
    "currency = EXCLUDED.currency, credit_limit = EXCLUDED.credit_limit, "
    "delivery_address = EXCLUDED.delivery_address, updated_at = now()")
_UPSERT_PRODUCTS = Statement(
    "INSERT INTO console_products (sku, name, active, spec, unit_price, currency, tax_rate, "
    "updated_at) "
    "SELECT *, now() FROM unnest(CAST(:skus AS text[]), CAST(:names AS text[]), "
    "CAST(:active AS boolean[]), CAST(:specs AS text[]), CAST(:prices AS numeric[]), "
    "CAST(:currencies AS text[]), CAST(:rates AS numeric[])) "
    "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, active = EXCLUDED.active, "
    "spec = EXCLUDED.spec, unit_price = EXCLUDED.unit_price, currency = EXCLUDED.currency, "
    "tax_rate = EXCLUDED.tax_rate, updated_at = now()")


_NO_SLA = dict.fromkeys(DEFAULT_SLA_MINUTES, 0.0)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def money(value: Decimal | None) -> str | None:
    return format(value, "f") if value is not None else None
