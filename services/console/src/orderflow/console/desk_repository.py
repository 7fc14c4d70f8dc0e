"""The order desk's lookups in the console's master data and orders (SQL only): customers and
products as ``customer.updated`` / ``product.updated`` left them, and where a customer's
latest order went."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.repository import _like, customers, orders, products

CUSTOMER_COLUMNS = (customers.c.customer_id, customers.c.name, customers.c.blocked,
                    customers.c.email, customers.c.phone, customers.c.payment_terms,
                    customers.c.currency, customers.c.credit_limit)
PRODUCT_COLUMNS = (products.c.sku, products.c.name, products.c.spec, products.c.active,
                   products.c.unit_price, products.c.currency, products.c.tax_rate)


class DeskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_customers(self, q: str, limit: int) -> list[dict[str, Any]]:
        """Customers whose id, name or phone holds ``q`` (an exact id first)."""
        pattern = f"%{_like(q)}%"
        rows = (await self.session.execute(
            sa.select(*CUSTOMER_COLUMNS).where(sa.or_(
                customers.c.customer_id.ilike(pattern), customers.c.name.ilike(pattern),
                customers.c.phone.ilike(pattern)))
            .order_by((customers.c.customer_id != q), customers.c.customer_id).limit(limit)
        )).mappings().all()
        return [dict(r) for r in rows]

    async def customer(self, customer_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            sa.select(*CUSTOMER_COLUMNS).where(customers.c.customer_id == customer_id)
        )).mappings().first()
        return dict(row) if row else None

    async def find_products(self, q: str, limit: int) -> list[dict[str, Any]]:
        """Active products whose SKU, name or spec holds ``q`` (an exact SKU first)."""
        pattern = f"%{_like(q)}%"
        rows = (await self.session.execute(
            sa.select(*PRODUCT_COLUMNS).where(products.c.active, sa.or_(
                products.c.sku.ilike(pattern), products.c.name.ilike(pattern),
                products.c.spec.ilike(pattern)))
            .order_by((products.c.sku != q), products.c.sku).limit(limit)
        )).mappings().all()
        return [dict(r) for r in rows]

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
