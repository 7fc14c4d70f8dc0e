"""Credit accounts, the price list and promotions' uses.

Every statement takes its rows in sorted order (byte order: COLLATE "C" in SQL and Python's sort
agree), so replicas and the HTTP API locking overlapping sets cannot deadlock crosswise. The hot
ones run on asyncpg directly (``Statement``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.events import ProductUpdated
from orderflow.review.domain import CreditAccount, ListPrice, Promotion, PromotionState
from orderflow.review.repository.tables import Rows, credit_accounts, products
from orderflow.runtime.sqlalchemy_bridge import Statement

ACCOUNT_FIELDS = ("known", "currency", "credit_limit", "payment_terms", "open_receivables",
                  "overdue_amount", "overdue_days", "blocked", "approved_not_invoiced",
                  "open_cod", "approved_orders")
_LOCK_ACCOUNTS = Statement(
    f"SELECT customer_id, {', '.join(ACCOUNT_FIELDS)} FROM review_credit_accounts "
    "WHERE customer_id = ANY(CAST(:ids AS text[])) ORDER BY customer_id COLLATE \"C\" "
    "FOR UPDATE")
# the accounts as arrays, one per field (``accounts_params``)
_ACCOUNT_ARRAYS = ("CAST(:customer_ids AS text[]), CAST(:known AS boolean[]), "
                   "CAST(:currency AS text[]), CAST(:credit_limit AS numeric[]), "
                   "CAST(:payment_terms AS text[]), CAST(:open_receivables AS numeric[]), "
                   "CAST(:overdue_amount AS numeric[]), CAST(:overdue_days AS integer[]), "
                   "CAST(:blocked AS boolean[]), CAST(:approved_not_invoiced AS numeric[]), "
                   "CAST(:open_cod AS numeric[]), CAST(:approved_orders AS integer[])")
_ADD_ACCOUNTS = Statement(
    f"INSERT INTO review_credit_accounts (customer_id, {', '.join(ACCOUNT_FIELDS)}) "
    f"SELECT customer_id, {', '.join(ACCOUNT_FIELDS)} FROM unnest({_ACCOUNT_ARRAYS}) "
    f"WITH ORDINALITY AS a(customer_id, {', '.join(ACCOUNT_FIELDS)}, n) ORDER BY n "
    "ON CONFLICT DO NOTHING")
# the accounts saved as they are given (locked by ``lock_accounts``): a statement of its own, or
# a part of a larger one (``orders.add_reviewed_run``)
SAVE_ACCOUNTS_SQL = (
    "UPDATE review_credit_accounts AS t SET "
    + ", ".join(f"{f} = a.{f}" for f in ACCOUNT_FIELDS) + ", updated_at = now() "
    f"FROM unnest({_ACCOUNT_ARRAYS}) AS a(customer_id, {', '.join(ACCOUNT_FIELDS)}) "
    "WHERE t.customer_id = a.customer_id")
_SAVE_ACCOUNTS = Statement(SAVE_ACCOUNTS_SQL)

_UPSERT_PROMOTIONS = Statement(
    "INSERT INTO review_promotions (code, valid_from, valid_to, usage_limit, used) "
    "SELECT code, valid_from, valid_to, usage_limit, 0 FROM unnest(CAST(:codes AS text[]), "
    "CAST(:valid_from AS date[]), CAST(:valid_to AS date[]), CAST(:usage_limit AS integer[])) "
    "WITH ORDINALITY AS p(code, valid_from, valid_to, usage_limit, n) ORDER BY n "
    "ON CONFLICT (code) DO UPDATE SET valid_from = excluded.valid_from, "
    "valid_to = excluded.valid_to, usage_limit = excluded.usage_limit")
_LOCK_PROMOTIONS = Statement(
    "SELECT code, valid_from, valid_to, usage_limit, used FROM review_promotions "
    "WHERE code = ANY(CAST(:codes AS text[])) ORDER BY code COLLATE \"C\" FOR UPDATE")
# the uses (:use_codes, :use_order_ids), each counted only when it is new (once per order): the
# tail of a WITH, alone (``use_promotions``) or in a larger one (``orders.add_reviewed_run``)
COUNT_NEW_USES_SQL = (
    "new_uses AS (INSERT INTO review_promotion_uses (code, order_id) "
    "SELECT * FROM unnest(CAST(:use_codes AS text[]), CAST(:use_order_ids AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING code) "
    "UPDATE review_promotions AS p SET used = p.used + u.n "
    "FROM (SELECT code, count(*) AS n FROM new_uses GROUP BY code) AS u WHERE p.code = u.code")
_USE_PROMOTIONS = Statement("WITH " + COUNT_NEW_USES_SQL)

# the list prices of SKUs (kind 'p') and each order's advance payments (kind 'a')
_PRICES_AND_ADVANCES = Statement(
    "SELECT 'p' AS kind, sku AS id, unit_price AS amount, currency, active "
    "FROM review_products WHERE sku = ANY(CAST(:skus AS text[])) "
    "UNION ALL "
    "SELECT 'a', order_id, sum(amount), CAST(NULL AS text), CAST(NULL AS boolean) "
    "FROM review_payments WHERE order_id = ANY(CAST(:ids AS text[])) "
    "AND applied_as = 'advance' GROUP BY order_id")


def accounts_params(accounts: Sequence[CreditAccount]) -> dict[str, list[Any]]:
    """The parameters of ``_ACCOUNT_ARRAYS``: one array per field."""
    return {"customer_ids": [a.customer_id for a in accounts],
            **{f: [getattr(a, f) for a in accounts] for f in ACCOUNT_FIELDS}}


def uses_params(uses: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The parameters of ``COUNT_NEW_USES_SQL``."""
    return {"use_codes": [code for code, _ in uses],
            "use_order_ids": [order_id for _, order_id in uses]}


class AccountRows(Rows):
    """Credit accounts, promotions and the price list."""

    async def lock_accounts(self, customer_ids: Iterable[str]) -> dict[str, CreditAccount]:
        """The customers' credit accounts that exist, locked in sorted order until the
        transaction ends: one round trip."""
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        rows = await _LOCK_ACCOUNTS.fetch(self.session, {"ids": wanted})
        return {r["customer_id"]: CreditAccount(**dict(r.items())) for r in rows}

    async def add_accounts(self, accounts: Sequence[CreditAccount]) -> None:
        """Store new accounts, in the order given; one someone else stored meanwhile is kept."""
        if accounts:
            await _ADD_ACCOUNTS.run(self.session, accounts_params(accounts))

    async def save_accounts(self, accounts: Sequence[CreditAccount]) -> None:
        """Store accounts as they are given (locked by ``lock_accounts``)."""
        if accounts:
            await _SAVE_ACCOUNTS.run(self.session, accounts_params(accounts))

    async def account(self, customer_id: str) -> dict[str, Any] | None:
        """A customer's account row as it is, for the API."""
        row = (await self.session.execute(
            sa.select(credit_accounts).where(credit_accounts.c.customer_id == customer_id)
        )).mappings().first()
        return dict(row) if row else None

    async def lock_promotions(self, known: Sequence[Promotion]) -> dict[str, PromotionState]:
        """These promotions (the policy's, by code) with their use counts, their dates and
        limits as given, locked in sorted order: two round trips, none for no promotion."""
        if not known:
            return {}
        ordered = sorted(known, key=lambda p: p.code)
        await _UPSERT_PROMOTIONS.run(self.session, {
            "codes": [p.code for p in ordered], "valid_from": [p.valid_from for p in ordered],
            "valid_to": [p.valid_to for p in ordered],
            "usage_limit": [p.usage_limit for p in ordered]})
        rows = await _LOCK_PROMOTIONS.fetch(self.session, {"codes": [p.code for p in ordered]})
        return {r[0]: PromotionState(r[0], r[1], r[2], r[3], r[4]) for r in rows}

    async def use_promotions(self, uses: Sequence[tuple[str, str]]) -> None:
        """Count the uses, as (code, order id), of promotions ``lock_promotions`` locked."""
        if uses:
            await _USE_PROMOTIONS.run(self.session, uses_params(uses))

    async def prices_and_advances(self, skus: Iterable[str], order_ids: Iterable[str],
                                  ) -> tuple[dict[str, ListPrice], dict[str, Decimal]]:
        """The list prices of ``skus`` and the advance payments of each of ``order_ids`` (only
        those with any): one round trip."""
        rows = await _PRICES_AND_ADVANCES.fetch(self.session, {
            "skus": sorted(set(skus)), "ids": sorted(set(order_ids))})
        prices: dict[str, ListPrice] = {}
        advances: dict[str, Decimal] = {}
        for kind, key, amount, currency, active in rows:
            if kind == "p":
                prices[key] = ListPrice(key, amount, currency, active)
            else:
                advances[key] = Decimal(amount)
        return prices, advances

    async def upsert_price(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "unit_price": p.unit_price, "currency": p.currency,
                  "active": p.active}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"unit_price": stmt.excluded.unit_price, "currency": stmt.excluded.currency,
                  "active": stmt.excluded.active, "updated_at": sa.func.now()},
        ))
