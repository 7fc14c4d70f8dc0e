"""Intake's tables: the orders it has seen (for deduplication) and the product catalogue."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ProductUpdated, Reason
from orderflow.intake.domain import KnownOrder, Product

metadata = sa.MetaData()
orders = sa.Table(
    "intake_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
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


# the statements of every order's path, built once
_LOCK_KNOWN = (sa.select(orders.c.order_id, orders.c.revision, orders.c.status,
                         orders.c.payload_sha256)
               .where(orders.c.order_id == sa.bindparam("o_id")).with_for_update())
_ADD = pg_insert(orders).on_conflict_do_nothing().returning(orders.c.order_id)
_RECORD = pg_insert(revisions).on_conflict_do_nothing()
_CATALOGUE = sa.select(products).where(
    products.c.sku == sa.any_(sa.bindparam("skus", type_=ARRAY(sa.Text))))


class IntakeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_known(self, order_id: str) -> KnownOrder | None:
        row = (await self.session.execute(_LOCK_KNOWN, {"o_id": order_id})).first()
        return KnownOrder(row.order_id, row.revision, row.status, row.payload_sha256) if row else None

    async def add(self, *, order_id: str, channel: str, external_id: str, revision: int,
                  status: str, fingerprint: str, reasons: tuple[Reason, ...] = ()) -> bool:
        """Record an order; False if a concurrent push recorded it first."""
        result = await self.session.execute(_ADD, {
            "order_id": order_id, "channel": channel, "external_id": external_id,
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
        rows = (await self.session.execute(_CATALOGUE, {"skus": sorted(set(skus))})).all()
        return {r.sku: Product(r.sku, r.unit_price, r.tax_rate, r.weight_kg, r.active) for r in rows}

    async def upsert_product(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "unit_price": p.unit_price, "tax_rate": p.tax_rate,
                  "weight_kg": p.weight_kg, "active": p.active}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={**{k: stmt.excluded[k] for k in values if k != "sku"}, "updated_at": sa.func.now()},
        ))
