"""Intake's tables: the orders it has seen (for deduplication), the product catalogue, each
order's status as its channel sees it and the channels' outcome webhooks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ProductUpdated, Reason
from orderflow.intake.domain import KnownOrder, OrderRow, OrderStatus, Product, RevisionRow
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()
orders = sa.Table(
    "intake_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("store", sa.Text, nullable=False),  # '' without one
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("payload_sha256", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
revisions = sa.Table(
    "intake_revisions", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.BigInteger, primary_key=True),
    sa.Column("payload_sha256", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
)
products = sa.Table(
    "intake_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("unit_price", sa.Numeric(14, 2), nullable=False),
    sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False),
    sa.Column("weight_kg", sa.Numeric(10, 3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


# every statement of a run of pushes (one statement per table whatever the run's size), run on
# asyncpg directly (``Statement``); a single push is a run of one
_CATALOGUE = Statement(
    "SELECT sku, unit_price, tax_rate, weight_kg, active FROM intake_products "
    "WHERE sku = ANY(CAST(:skus AS text[]))")
_LOCK_KNOWN = Statement(
    "SELECT order_id, revision, status, payload_sha256, store FROM intake_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[])) ORDER BY order_id FOR UPDATE")
_ADD_ORDERS = Statement(
    "INSERT INTO intake_orders (order_id, channel, external_id, store, revision, status, "
    "payload_sha256) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:channels AS text[]), "
    "CAST(:external_ids AS text[]), CAST(:stores AS text[]), CAST(:revisions AS bigint[]), "
    "CAST(:statuses AS text[]), CAST(:fingerprints AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING order_id")
_REMOVE_ORDERS = Statement("DELETE FROM intake_orders WHERE order_id = ANY(CAST(:ids AS text[]))")
_UPDATE_ORDERS = Statement(
    "UPDATE intake_orders AS o SET revision = t.revision, status = t.status, "
    "payload_sha256 = t.fingerprint, updated_at = now() "
    "FROM unnest(CAST(:ids AS text[]), CAST(:revisions AS bigint[]), CAST(:statuses AS text[]), "
    "CAST(:fingerprints AS text[])) AS t(order_id, revision, status, fingerprint) "
    "WHERE o.order_id = t.order_id")
_RECORD_REVISIONS = Statement(
    "INSERT INTO intake_revisions (order_id, revision, payload_sha256, status, reasons) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:revisions AS bigint[]), "
    "CAST(:fingerprints AS text[]), CAST(:statuses AS text[]), CAST(:reasons AS jsonb[])) "
    "ON CONFLICT DO NOTHING")
_REVISION_REASONS = Statement(
    "SELECT reasons FROM intake_revisions WHERE order_id = :id AND revision = :revision")
_LOCK_STATUSES = Statement(
    "SELECT order_id, status FROM intake_status WHERE order_id = ANY(CAST(:ids AS text[])) "
    "ORDER BY order_id FOR UPDATE")
_SAVE_STATUSES = Statement(
    "INSERT INTO intake_status (order_id, state, status) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:states AS text[]), "
    "CAST(:statuses AS jsonb[])) "
    "ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, status = excluded.status, "
    "updated_at = now()")
_FIND_ORDER = Statement(
    "SELECT o.order_id, o.revision, o.status, s.status FROM intake_orders AS o "
    "LEFT JOIN intake_status AS s ON s.order_id = o.order_id "
    "WHERE o.channel = :channel AND o.store = :store AND o.external_id = :external_id")
_LOCK_WEBHOOK = Statement("SELECT url FROM intake_webhooks WHERE channel = :channel FOR UPDATE")
_SET_WEBHOOK = Statement(
    "INSERT INTO intake_webhooks (channel, url, set_by) VALUES (:channel, :url, :set_by) "
    "ON CONFLICT (channel) DO UPDATE SET url = excluded.url, set_by = excluded.set_by, "
    "updated_at = now()")
_REMOVE_WEBHOOK = Statement("DELETE FROM intake_webhooks WHERE channel = :channel")


@dataclass(frozen=True)
class ChannelOrder:
    """An order of a channel's store as the status route finds it: intake's own record of it
    (``recorded``: received or rejected) and the status the outcome topics made of it (None
    before the first outcome is consumed)."""

    order_id: str
    revision: int
    recorded: str
    status: OrderStatus | None


def _json(stored: object) -> object:
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


class IntakeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_known(self, order_ids: Iterable[str]) -> dict[str, KnownOrder]:
        """The rows of these orders that exist, by id, locked in order id order (two replicas'
        runs cannot lock crosswise)."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        rows = await _LOCK_KNOWN.fetch(self.session, {"ids": ids})
        return {r[0]: KnownOrder(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def add_orders(self, rows: Sequence[OrderRow]) -> set[str]:
        """Insert these orders (distinct ids, in id order); return those inserted (one a
        concurrent push recorded first is not)."""
        if not rows:
            return set()
        rows = sorted(rows, key=lambda r: r.order_id)
        added = await _ADD_ORDERS.fetch(self.session, {
            "ids": [r.order_id for r in rows], "channels": [r.channel for r in rows],
            "external_ids": [r.external_id for r in rows], "stores": [r.store for r in rows],
            "revisions": [r.revision for r in rows],
            "statuses": [r.status for r in rows], "fingerprints": [r.fingerprint for r in rows]})
        return {r[0] for r in added}

    async def remove_orders(self, order_ids: Iterable[str]) -> None:
        """Take back orders ``add_orders`` inserted in this transaction."""
        ids = sorted(order_ids)
        if ids:
            await _REMOVE_ORDERS.run(self.session, {"ids": ids})

    async def update_orders(self, rows: Sequence[OrderRow]) -> None:
        """Set the revision, status and fingerprint of these (locked, distinct) orders."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r.order_id)
        await _UPDATE_ORDERS.run(self.session, {
            "ids": [r.order_id for r in rows], "revisions": [r.revision for r in rows],
            "statuses": [r.status for r in rows], "fingerprints": [r.fingerprint for r in rows]})

    async def record_revisions(self, rows: Sequence[RevisionRow]) -> None:
        """Record these revisions (distinct (order, revision) pairs); one already recorded stays
        as it is."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: (r.order_id, r.revision))
        await _RECORD_REVISIONS.run(self.session, {
            "ids": [r.order_id for r in rows], "revisions": [r.revision for r in rows],
            "fingerprints": [r.fingerprint for r in rows], "statuses": [r.status for r in rows],
            "reasons": [orjson.dumps([x.model_dump(mode="json") for x in r.reasons]).decode()
                        for r in rows]})

    async def revision_reasons(self, order_id: str, revision: int) -> tuple[Reason, ...]:
        """The reasons recorded for a revision of an order (none for one accepted, or not
        recorded)."""
        rows = await _REVISION_REASONS.fetch(self.session, {"id": order_id, "revision": revision})
        if not rows:
            return ()
        stored = rows[0][0]
        if isinstance(stored, str | bytes):
            stored = orjson.loads(stored)
        return tuple(Reason.model_validate(r) for r in stored)

    async def catalogue(self, skus: Iterable[str]) -> dict[str, Product]:
        rows = await _CATALOGUE.fetch(self.session, {"skus": sorted(set(skus))})
        return {r[0]: Product(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def upsert_product(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "unit_price": p.unit_price, "tax_rate": p.tax_rate,
                  "weight_kg": p.weight_kg, "active": p.active}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={**{k: stmt.excluded[k] for k in values if k != "sku"}, "updated_at": sa.func.now()},
        ))

    async def lock_statuses(self, order_ids: Iterable[str]) -> dict[str, OrderStatus]:
        """The stored statuses of these orders, locked in order id order."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        rows = await _LOCK_STATUSES.fetch(self.session, {"ids": ids})
        return {r[0]: OrderStatus.model_validate(_json(r[1])) for r in rows}

    async def save_statuses(self, statuses: dict[str, OrderStatus]) -> None:
        """Store these orders' statuses (one statement)."""
        if not statuses:
            return
        ids = sorted(statuses)
        await _SAVE_STATUSES.run(self.session, {
            "ids": ids, "states": [statuses[i].state for i in ids],
            "statuses": [statuses[i].model_dump_json() for i in ids]})

    async def find_channel_order(self, channel: str, store: str | None,
                                 external_id: str) -> ChannelOrder | None:
        """The order a channel's store sent under ``external_id``, with its status; None for one
        it never sent (another store's order of the same number included)."""
        rows = await _FIND_ORDER.fetch(self.session, {"channel": channel, "store": store or "",
                                                      "external_id": external_id})
        if not rows:
            return None
        r = rows[0]
        status = OrderStatus.model_validate(_json(r[3])) if r[3] is not None else None
        return ChannelOrder(r[0], r[1], r[2], status)

    async def lock_webhook(self, channel: str) -> str | None:
        """The URL of the channel's outcome webhook (locked), if it registered one."""
        rows = await _LOCK_WEBHOOK.fetch(self.session, {"channel": channel})
        return str(rows[0][0]) if rows else None

    async def set_webhook(self, channel: str, url: str | None, set_by: str) -> None:
        """Record the channel's outcome webhook (``url``), or remove it (None)."""
        if url is None:
            await _REMOVE_WEBHOOK.run(self.session, {"channel": channel})
        else:
            await _SET_WEBHOOK.run(self.session, {"channel": channel, "url": url,
                                                  "set_by": set_by})
