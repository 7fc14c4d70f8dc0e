"""The master data notify keeps: customers' preferences and contact (``customer.updated``) and
product names (``product.updated``)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.events import CustomerUpdated
from orderflow.notify.domain import (
    Contact,
    CustomerProfile,
    Language,
    Preferences,
    normalise_channel,
    normalise_language,
)
from orderflow.notify.repository.tables import Rows, customers, products
from orderflow.runtime.sqlalchemy_bridge import Statement

_CUSTOMERS = Statement(
    "SELECT customer_id, name, email, phone, language, preferred_channel, opt_out_marketing "
    "FROM notify_customers WHERE customer_id = ANY(CAST(:ids AS text[]))")
_PRODUCT_NAMES = Statement(
    "SELECT sku, name FROM notify_products WHERE sku = ANY(CAST(:skus AS text[]))")


class MasterDataRows(Rows):
    """Customers and products."""

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
