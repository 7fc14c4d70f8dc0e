"""The master data logistics keeps: warehouse locations (``logistics_warehouses``) and product
names, weights and tax rates (``logistics_products``)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ProductUpdated, WarehouseUpdated
from orderflow.logistics.repository.tables import products, warehouses


class MasterData:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert_warehouse(self, w: WarehouseUpdated) -> None:
        values = {"warehouse_id": w.warehouse_id, "name": w.name, "province": w.province,
                  "city": w.city}
        stmt = pg_insert(warehouses).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[warehouses.c.warehouse_id],
            set_={**{k: stmt.excluded[k] for k in values if k != "warehouse_id"},
                  "updated_at": sa.func.now()}))

    async def upsert_product(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "name": p.name, "weight_kg": p.weight_kg, "tax_rate": p.tax_rate}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"name": stmt.excluded.name, "weight_kg": stmt.excluded.weight_kg,
                  "tax_rate": stmt.excluded.tax_rate, "updated_at": sa.func.now()}))

    async def tax_rates(self, skus: Iterable[str]) -> dict[str, Decimal]:
        rows = (await self.session.execute(
            sa.select(products.c.sku, products.c.tax_rate)
            .where(products.c.sku.in_(sorted(set(skus)))))).all()
        return {r.sku: Decimal(r.tax_rate) for r in rows}

    async def warehouse_row(self, warehouse_id: str) -> Any:
        return (await self.session.execute(
            sa.select(warehouses).where(warehouses.c.warehouse_id == warehouse_id))).first()
