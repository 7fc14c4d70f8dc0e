"""Intake's tables: the orders it has seen (for deduplication) and the product catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ProductUpdated, Reason
from orderflow.intake.domain import KnownOrder, Product
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


# the statements of every order's path, built once; a push looks up (and locks) its order
# under its store's id and under the id its number had before stores counted, in one statement
_LOCK_KNOWN = (sa.select(orders.c.order_id, orders.c.revision, orders.c.status,
                         orders.c.payload_sha256, orders.c.store)
               .where(orders.c.order_id.in_([sa.bindparam("o_id"), sa.bindparam("legacy_id")]))
               .order_by(orders.c.order_id).with_for_update())
_ADD = pg_insert(orders).on_conflict_do_nothing().returning(orders.c.order_id)
_RECORD = pg_insert(revisions).on_conflict_do_nothing()

# the set-based path's statements (a run of pushes: one statement per table), run on asyncpg
# directly (``Statement``)
_CATALOGUE = Statement(
    "SELECT sku, unit_price, tax_rate, weight_kg, active FROM intake_products "
    "WHERE sku = ANY(CAST(:skus AS text[]))")
_LOCK_KNOWN_MANY = Statement(
    "SELECT order_id, revision, status, payload_sha256, store FROM intake_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[])) ORDER BY order_id FOR UPDATE")
_ADD_MANY = Statement(
    "INSERT INTO intake_orders (order_id, channel, external_id, store, revision, status, "
    "payload_sha256) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:channels AS text[]), "
    "CAST(:external_ids AS text[]), CAST(:stores AS text[]), CAST(:revisions AS bigint[]), "
    "CAST(:statuses AS text[]), CAST(:fingerprints AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING order_id")
_UNADD_MANY = Statement("DELETE FROM intake_orders WHERE order_id = ANY(CAST(:ids AS text[]))")
_UPDATE_MANY = Statement(
    "UPDATE intake_orders AS o SET revision = t.revision, status = t.status, "
    "payload_sha256 = t.fingerprint, updated_at = now() "
    "FROM unnest(CAST(:ids AS text[]), CAST(:revisions AS bigint[]), CAST(:statuses AS text[]), "
    "CAST(:fingerprints AS text[])) AS t(order_id, revision, status, fingerprint) "
    "WHERE o.order_id = t.order_id")
_RECORD_MANY = Statement(
    "INSERT INTO intake_revisions (order_id, revision, payload_sha256, status, reasons) "
    "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:revisions AS bigint[]), "
    "CAST(:fingerprints AS text[]), CAST(:statuses AS text[]), CAST(:reasons AS jsonb[])) "
    "ON CONFLICT DO NOTHING")


@dataclass(frozen=True)
class OrderRow:
    """An order's row in ``intake_orders`` as a run of pushes leaves it."""

    order_id: str
    channel: str
    external_id: str
    store: str  # '' without one
    revision: int
    status: str
    fingerprint: str


@dataclass(frozen=True)
class RevisionRow:
    order_id: str
    revision: int
    fingerprint: str
    status: str
    reasons: tuple[Reason, ...]


class IntakeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_known(self, order_id: str, legacy_id: str | None = None) -> dict[str, KnownOrder]:
        """The rows of ``order_id`` and ``legacy_id`` (``domain.Identity.ids``) that exist,
        locked, by id."""
        rows = (await self.session.execute(
            _LOCK_KNOWN, {"o_id": order_id, "legacy_id": legacy_id or order_id})).all()
        return {r.order_id: KnownOrder(r.order_id, r.revision, r.status, r.payload_sha256, r.store)
                for r in rows}

    async def lock_known_many(self, order_ids: Iterable[str]) -> dict[str, KnownOrder]:
        """``lock_known`` for many orders at once, their rows locked in order id order (two
        replicas' runs cannot lock crosswise)."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        rows = await _LOCK_KNOWN_MANY.fetch(self.session, {"ids": ids})
        return {r[0]: KnownOrder(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def add_many(self, rows: Sequence[OrderRow]) -> set[str]:
        """Insert these orders (distinct ids, in id order); return those inserted (one a
        concurrent push recorded first is not)."""
        if not rows:
            return set()
        rows = sorted(rows, key=lambda r: r.order_id)
        added = await _ADD_MANY.fetch(self.session, {
            "ids": [r.order_id for r in rows], "channels": [r.channel for r in rows],
            "external_ids": [r.external_id for r in rows], "stores": [r.store for r in rows],
            "revisions": [r.revision for r in rows],
            "statuses": [r.status for r in rows], "fingerprints": [r.fingerprint for r in rows]})
        return {r[0] for r in added}

    async def unadd_many(self, order_ids: Iterable[str]) -> None:
        """Take back orders ``add_many`` inserted in this transaction."""
        ids = sorted(order_ids)
        if ids:
            await _UNADD_MANY.run(self.session, {"ids": ids})

    async def update_many(self, rows: Sequence[OrderRow]) -> None:
        """Set the revision, status and fingerprint of these (locked, distinct) orders."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r.order_id)
        await _UPDATE_MANY.run(self.session, {
            "ids": [r.order_id for r in rows], "revisions": [r.revision for r in rows],
            "statuses": [r.status for r in rows], "fingerprints": [r.fingerprint for r in rows]})

    async def record_many(self, rows: Sequence[RevisionRow]) -> None:
        """Record these revisions (distinct (order, revision) pairs); one already recorded
        stays as it is, as with ``_record``."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: (r.order_id, r.revision))
        await _RECORD_MANY.run(self.session, {
            "ids": [r.order_id for r in rows], "revisions": [r.revision for r in rows],
            "fingerprints": [r.fingerprint for r in rows], "statuses": [r.status for r in rows],
            "reasons": [orjson.dumps([x.model_dump(mode="json") for x in r.reasons]).decode()
                        for r in rows]})

    async def add(self, *, order_id: str, channel: str, external_id: str, store: str,
                  revision: int, status: str, fingerprint: str,
                  reasons: tuple[Reason, ...] = ()) -> bool:
        """Record an order (``store`` '' without one); False if a concurrent push recorded it
        first."""
        result = await self.session.execute(_ADD, {
            "order_id": order_id, "channel": channel, "external_id": external_id, "store": store,
            "revision": revision, "status": status, "payload_sha256": fingerprint})
        if result.first() is None:
            return False
        await self._record(order_id, revision, fingerprint, status, reasons)
        return True

    async def retry(self, *, order_id: str, revision: int, status: str, fingerprint: str,
                    reasons: tuple[Reason, ...] = ()) -> None:
        """A newer revision of a rejected order, checked afresh."""
        await self.session.execute(
            orders.update().where(orders.c.order_id == order_id)
            .values(revision=revision, status=status, payload_sha256=fingerprint,
                    updated_at=sa.func.now())
        )
        await self._record(order_id, revision, fingerprint, status, reasons)

    async def record_revision(self, order_id: str, revision: int, fingerprint: str, *,
                              status: str, reasons: tuple[Reason, ...] = ()) -> None:
        """A newer revision of a received order: a change (``change``), which becomes the
        order's current revision, or one that failed the checks (``refused``), which does not."""
        if status == "change":
            await self.session.execute(
                orders.update().where(orders.c.order_id == order_id)
                .values(revision=revision, payload_sha256=fingerprint, updated_at=sa.func.now())
            )
        await self._record(order_id, revision, fingerprint, status, reasons)

    async def _record(self, order_id: str, revision: int, fingerprint: str, status: str,
                      reasons: tuple[Reason, ...]) -> None:
        await self.session.execute(_RECORD, {
            "order_id": order_id, "revision": revision, "payload_sha256": fingerprint,
            "status": status, "reasons": [r.model_dump(mode="json") for r in reasons]})

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
