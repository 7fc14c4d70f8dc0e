"""The order desk's lookups in the console's master data and orders (SQL only): customers (with
their delivery address) and products as ``customer.updated`` / ``product.updated`` left them,
and where a customer's latest order went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.repository import _like, customers, orders, products

CUSTOMER_COLUMNS = (customers.c.customer_id, customers.c.name, customers.c.blocked,
                    customers.c.email, customers.c.phone, customers.c.payment_terms,
                    customers.c.currency, customers.c.credit_limit, customers.c.delivery_address)
PRODUCT_COLUMNS = (products.c.sku, products.c.name, products.c.spec, products.c.active,
                   products.c.unit_price, products.c.currency, products.c.tax_rate)


@dataclass(frozen=True)
class Lookup:
    """A master-data search: the columns it answers, its key (an exact key first), the columns
    it searches, and the rows it keeps (all: ``None``)."""

    columns: tuple[sa.ColumnElement[Any], ...]
    key: sa.ColumnElement[Any]
    searched: tuple[sa.ColumnElement[Any], ...]
    kept: sa.ColumnElement[bool] | None = None


# customers by id, name or phone; active products by SKU, name or spec
CUSTOMERS = Lookup(CUSTOMER_COLUMNS, customers.c.customer_id,
                   (customers.c.customer_id, customers.c.name, customers.c.phone))
PRODUCTS = Lookup(PRODUCT_COLUMNS, products.c.sku, (products.c.sku, products.c.name,
                                                     products.c.spec), products.c.active)


class DeskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find(self, lookup: Lookup, q: str, limit: int) -> list[dict[str, Any]]:
        """The rows of ``lookup`` one of whose searched columns holds ``q`` (an exact key
        first)."""
        pattern = f"%{_like(q)}%"
        query = sa.select(*lookup.columns).where(
            sa.or_(*(column.ilike(pattern) for column in lookup.searched)))
        if lookup.kept is not None:
            query = query.where(lookup.kept)
        rows = (await self.session.execute(
            query.order_by(lookup.key != q, lookup.key).limit(limit))).mappings().all()
        return [dict(r) for r in rows]

    async def customer(self, customer_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            sa.select(*CUSTOMER_COLUMNS).where(customers.c.customer_id == customer_id)
        )).mappings().first()
        return dict(row) if row else None

    async def last_destination(self, customer_id: str) -> dict[str, Any] | None:
        """The province and city of the customer's latest order (the read model keeps no
        street or recipient)."""
        view = (await self.session.execute(
            sa.select(orders.c.view).where(orders.c.customer_id == customer_id)
            .order_by(orders.c.last_event_at.desc().nulls_last()).limit(1))).scalar_one_or_none()
        destination = view.get("destination") if isinstance(view, dict) else None
        if not isinstance(destination, str) or not destination:
            return None
        province, _, city = destination.partition(" ")
        return {"province": province, "city": city or province}
