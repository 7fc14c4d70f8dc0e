"""Review's tables: credit accounts, the price list, promotions and their uses, the orders review
decided (with their rules and reasons), the decision audit, invoices and payments.

Every change to a customer's credit position happens with that customer's ``review_credit_accounts``
row locked (``SELECT ... FOR UPDATE``), and an order's row is always locked after its customer's,
so consumers, replicas and the HTTP API serialise on one customer without deadlocking."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import (
    HoldReason,
    InvoiceIssued,
    OrderReceived,
    PaymentReceived,
    ProductUpdated,
    RuleOutcome,
)
from orderflow.review.domain import (
    ZERO,
    CreditAccount,
    ListPrice,
    OrderLedger,
    PromotionState,
)
from orderflow.review.policy import ReviewPolicy
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()
MONEY = sa.Numeric(16, 2)

credit_accounts = sa.Table(
    "review_credit_accounts", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("credit_limit", MONEY, nullable=False),
    sa.Column("payment_terms", sa.Text, nullable=False),
    sa.Column("open_receivables", MONEY, nullable=False),
    sa.Column("overdue_amount", MONEY, nullable=False),
    sa.Column("overdue_days", sa.Integer, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("approved_not_invoiced", MONEY, nullable=False),
    sa.Column("open_cod", MONEY, nullable=False),
    sa.Column("approved_orders", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "review_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("unit_price", sa.Numeric(14, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
promotions = sa.Table(
    "review_promotions", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date, nullable=False),
    sa.Column("usage_limit", sa.Integer),
    sa.Column("used", sa.Integer, nullable=False),
)
promotion_uses = sa.Table(
    "review_promotion_uses", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, primary_key=True),
)
orders = sa.Table(
    "review_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("grand_total", MONEY, nullable=False),
    sa.Column("exposure_kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("rules", JSONB, nullable=False),
    sa.Column("amount_due", MONEY),
    sa.Column("uninvoiced", MONEY, nullable=False),
    sa.Column("invoiced", MONEY, nullable=False),
    sa.Column("paid", MONEY, nullable=False),
    sa.Column("promo_code", sa.Text),
    sa.Column("received", JSONB, nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.Text),
    sa.Column("comment", sa.Text),
)
cancelled_orders = sa.Table(
    "review_cancelled_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
)
decisions = sa.Table(
    "review_decisions", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("rules", JSONB, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
)
order_changes = sa.Table(
    "review_order_changes", metadata,
    sa.Column("change_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("received", JSONB, nullable=False),
    sa.Column("before", JSONB),
    sa.Column("credit_delta", MONEY, nullable=False),
    sa.Column("cod_delta", MONEY, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
invoices = sa.Table(
    "review_invoices", metadata,
    sa.Column("invoice_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("to_receivables", MONEY, nullable=False),
    sa.Column("moved_from_approved", MONEY, nullable=False),
)
payments = sa.Table(
    "review_payments", metadata,
    sa.Column("payment_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("applied_as", sa.Text, nullable=False),
)


# -- the statements of the review path, built once (bind parameters only) ----------------------
_B = sa.bindparam
_O_ID = _B("o_id", type_=sa.Text)
_C_ID = _B("c_id", type_=sa.Text)
_P_CODE = _B("p_code", type_=sa.Text)
_SKUS = _B("skus", type_=ARRAY(sa.Text))

_LOCK_ORDER_KEY = sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
    sa.literal("review-order:") + _O_ID, 0)))
_IS_CANCELLED = sa.select(cancelled_orders.c.order_id).where(cancelled_orders.c.order_id == _O_ID)
_ACCOUNT_FIELDS = ("known", "currency", "credit_limit", "payment_terms", "open_receivables",
                   "overdue_amount", "overdue_days", "blocked", "approved_not_invoiced",
                   "open_cod", "approved_orders")
_LOCK_ACCOUNT = (sa.select(credit_accounts.c.customer_id,
                           *(credit_accounts.c[f] for f in _ACCOUNT_FIELDS))
                 .where(credit_accounts.c.customer_id == _C_ID).with_for_update())
_ADD_ACCOUNT = pg_insert(credit_accounts).on_conflict_do_nothing(
    index_elements=[credit_accounts.c.customer_id])
_SAVE_ACCOUNT = credit_accounts.update().where(credit_accounts.c.customer_id == _C_ID).values(
    **{f: _B(f"a_{f}", type_=credit_accounts.c[f].type) for f in _ACCOUNT_FIELDS},
    updated_at=sa.func.now())

_PRICE_COLUMNS = (products.c.sku, products.c.unit_price, products.c.currency, products.c.active)
_PRICES = sa.select(*_PRICE_COLUMNS).where(products.c.sku == sa.any_(_SKUS))
_ADVANCE_PAID = sa.select(sa.func.coalesce(sa.func.sum(payments.c.amount), 0).label("paid")).where(
    payments.c.order_id == _O_ID, payments.c.applied_as == "advance")
_PROMOTION_INSERT = pg_insert(promotions).values(
    code=_P_CODE, valid_from=_B("v_valid_from", type_=sa.Date),
    valid_to=_B("v_valid_to", type_=sa.Date), usage_limit=_B("v_usage_limit", type_=sa.Integer),
    used=0)
_UPSERT_PROMOTION = _PROMOTION_INSERT.on_conflict_do_update(
    index_elements=[promotions.c.code],
    set_={"valid_from": _PROMOTION_INSERT.excluded.valid_from,
          "valid_to": _PROMOTION_INSERT.excluded.valid_to,
          "usage_limit": _PROMOTION_INSERT.excluded.usage_limit})
_LOCK_PROMOTION = sa.select(promotions).where(promotions.c.code == _P_CODE).with_for_update()
_NEW_USE = (pg_insert(promotion_uses).values(code=_P_CODE, order_id=_O_ID)
            .on_conflict_do_nothing().returning(promotion_uses.c.code).cte("new_use"))
# the use is counted only when it is new (once per order)
_USE_PROMOTION = (promotions.update()
                  .where(promotions.c.code == _P_CODE,
                         promotions.c.code.in_(sa.select(_NEW_USE.c.code)))
                  .values(used=promotions.c.used + 1))

_LEDGER_COLUMNS = (orders.c.order_id, orders.c.customer_id, orders.c.status,
                   orders.c.exposure_kind, orders.c.grand_total, orders.c.uninvoiced,
                   orders.c.invoiced, orders.c.paid, orders.c.reasons)
_LEDGER = sa.select(*_LEDGER_COLUMNS).where(orders.c.order_id == _O_ID)
_LEDGER_FOR_UPDATE = _LEDGER.with_for_update()

_RECORD_DECISION = decisions.insert().values(
    order_id=_O_ID, decision=_B("v_decision", type_=sa.Text),
    decided_by=_B("v_decided_by", type_=sa.Text), comment=_B("v_comment", type_=sa.Text),
    reasons=_B("v_reasons", type_=JSONB), rules=_B("v_rules", type_=JSONB),
    decided_at=sa.func.now())
_SET_CHANGE_STATUS = (order_changes.update()
                      .where(order_changes.c.change_id == _B("ch_id", type_=sa.Text))
                      .values(status=_B("v_status", type_=sa.Text), updated_at=sa.func.now()))


# -- the statements of a run of orders (the batch handler), built once: one statement per table
# whatever the run's size, run on asyncpg directly (``Statement``); every lock taken in sorted
# order (byte order: COLLATE "C" in SQL and Python's sort agree), so replicas reviewing
# overlapping runs cannot deadlock crosswise
_LOCK_ORDER_KEYS = Statement(
    "SELECT count(pg_advisory_xact_lock(hashtextextended('review-order:' || k.id, 0))) "
    "FROM (SELECT id FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS u(id, n) "
    "ORDER BY n) AS k")
# written only under the order's key lock (see ``order_contexts``)
_ORDER_CONTEXTS = Statement(
    "SELECT k.order_id, "
    "EXISTS (SELECT 1 FROM review_cancelled_orders c WHERE c.order_id = k.order_id) "
    "AS cancelled, "
    "EXISTS (SELECT 1 FROM review_orders o WHERE o.order_id = k.order_id) AS reviewed, "
    "e.change_id, e.revision, CAST(e.received AS text) AS received "
    "FROM unnest(CAST(:ids AS text[])) AS k(order_id) "
    "LEFT JOIN LATERAL (SELECT ch.change_id, ch.revision, ch.received "
    "FROM review_order_changes ch WHERE ch.order_id = k.order_id AND ch.status = 'early' "
    "ORDER BY ch.revision DESC LIMIT 1) AS e ON true")
_LOCK_ACCOUNTS = Statement(
    f"SELECT customer_id, {', '.join(_ACCOUNT_FIELDS)} FROM review_credit_accounts "
    "WHERE customer_id = ANY(CAST(:ids AS text[])) ORDER BY customer_id COLLATE \"C\" "
    "FOR UPDATE")
_ACCOUNT_ARRAYS = ("CAST(:customer_ids AS text[]), CAST(:known AS boolean[]), "
                   "CAST(:currency AS text[]), CAST(:credit_limit AS numeric[]), "
                   "CAST(:payment_terms AS text[]), CAST(:open_receivables AS numeric[]), "
                   "CAST(:overdue_amount AS numeric[]), CAST(:overdue_days AS integer[]), "
                   "CAST(:blocked AS boolean[]), CAST(:approved_not_invoiced AS numeric[]), "
                   "CAST(:open_cod AS numeric[]), CAST(:approved_orders AS integer[])")
_ADD_ACCOUNTS = Statement(
    f"INSERT INTO review_credit_accounts (customer_id, {', '.join(_ACCOUNT_FIELDS)}) "
    f"SELECT customer_id, {', '.join(_ACCOUNT_FIELDS)} FROM unnest({_ACCOUNT_ARRAYS}) "
    f"WITH ORDINALITY AS a(customer_id, {', '.join(_ACCOUNT_FIELDS)}, n) ORDER BY n "
    "ON CONFLICT DO NOTHING")
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
# the list prices of the run's SKUs (kind 'p') and each order's advance payments (kind 'a')
_PRICES_AND_ADVANCES = Statement(
    "SELECT 'p' AS kind, sku AS id, unit_price AS amount, currency, active "
    "FROM review_products WHERE sku = ANY(CAST(:skus AS text[])) "
    "UNION ALL "
    "SELECT 'a', order_id, sum(amount), CAST(NULL AS text), CAST(NULL AS boolean) "
    "FROM review_payments WHERE order_id = ANY(CAST(:ids AS text[])) "
    "AND applied_as = 'advance' GROUP BY order_id")
# the run's orders, their audit rows (the decision is the order's status; decided by "auto", no
# comment, the decision's reasons, the order's rules), the accounts approvals moved (each once,
# as the last approval left it), the early changes applied and the promotions' uses (a use is
# counted only when it is new): one statement; the audit rows are numbered in the run's order
_ADD_REVIEWED_RUN = Statement(
    "WITH o AS (SELECT * FROM unnest(CAST(:order_ids AS text[]), CAST(:channels AS text[]), "
    "CAST(:external_ids AS text[]), CAST(:o_customer_ids AS text[]), "
    "CAST(:currencies AS text[]), CAST(:grand_totals AS numeric[]), "
    "CAST(:kinds AS text[]), CAST(:statuses AS text[]), CAST(:reasons AS jsonb[]), "
    "CAST(:rules AS jsonb[]), CAST(:amounts_due AS numeric[]), CAST(:uninvoiced AS numeric[]), "
    "CAST(:invoiced AS numeric[]), CAST(:paid AS numeric[]), CAST(:promo_codes AS text[]), "
    "CAST(:received AS jsonb[]), CAST(:decision_reasons AS jsonb[])) WITH ORDINALITY AS "
    "o(order_id, channel, external_id, customer_id, currency, grand_total, exposure_kind, "
    "status, reasons, rules, amount_due, uninvoiced, invoiced, paid, promo_code, received, "
    "decision_reasons, n)), "
    "added AS (INSERT INTO review_orders (order_id, channel, external_id, customer_id, "
    "currency, grand_total, exposure_kind, status, reasons, rules, amount_due, uninvoiced, "
    "invoiced, paid, promo_code, received, reviewed_at, decided_at, decided_by) "
    "SELECT order_id, channel, external_id, customer_id, currency, grand_total, exposure_kind, "
    "status, reasons, rules, amount_due, uninvoiced, invoiced, paid, promo_code, received, "
    "now(), CASE WHEN status <> 'held' THEN now() END, "
    "CASE WHEN status <> 'held' THEN 'auto' END FROM o ORDER BY n), "
    "audit AS (INSERT INTO review_decisions (order_id, decision, decided_by, comment, reasons, "
    "rules, decided_at) SELECT order_id, status, 'auto', NULL, decision_reasons, rules, now() "
    "FROM o ORDER BY n), "
    "moved AS (UPDATE review_credit_accounts AS t SET "
    + ", ".join(f"{f} = a.{f}" for f in _ACCOUNT_FIELDS) + ", updated_at = now() "
    f"FROM unnest({_ACCOUNT_ARRAYS}) AS a(customer_id, {', '.join(_ACCOUNT_FIELDS)}) "
    "WHERE t.customer_id = a.customer_id), "
    "early AS (UPDATE review_order_changes SET status = 'applied_early', updated_at = now() "
    "WHERE change_id = ANY(CAST(:early_change_ids AS text[]))), "
    "new_uses AS (INSERT INTO review_promotion_uses (code, order_id) "
    "SELECT * FROM unnest(CAST(:use_codes AS text[]), CAST(:use_order_ids AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING code) "
    "UPDATE review_promotions AS p SET used = p.used + u.n "
    "FROM (SELECT code, count(*) AS n FROM new_uses GROUP BY code) AS u WHERE p.code = u.code")


def _account_params(a: CreditAccount) -> dict[str, Any]:
    """``_SAVE_ACCOUNT``'s parameters."""
    return {"c_id": a.customer_id, **{f"a_{f}": getattr(a, f) for f in _ACCOUNT_FIELDS}}


def _accounts_params(accounts: Sequence[CreditAccount]) -> dict[str, list[Any]]:
    """``_ACCOUNT_ARRAYS``' parameters: one array per field."""
    return {"customer_ids": [a.customer_id for a in accounts],
            **{f: [getattr(a, f) for a in accounts] for f in _ACCOUNT_FIELDS}}


_REASONS_JSON = TypeAdapter(tuple[HoldReason, ...])
_RULES_JSON = TypeAdapter(tuple[RuleOutcome, ...])


def _promo_code(received: OrderReceived) -> str | None:
    return (received.order.promo_code or "").strip().upper() or None


def _dump(items: Iterable[HoldReason | RuleOutcome]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in items]


def load_reasons(raw: Sequence[dict[str, Any]]) -> tuple[HoldReason, ...]:
    return tuple(HoldReason.model_validate(r) for r in raw)


def load_rules(raw: Sequence[dict[str, Any]]) -> tuple[RuleOutcome, ...]:
    return tuple(RuleOutcome.model_validate(r) for r in raw)


@dataclass(frozen=True)
class ReviewedOrder:
    """An order as review recorded it (for the queue, the API and manual decisions)."""

    ledger: OrderLedger
    received: OrderReceived
    rules: tuple[RuleOutcome, ...]
    amount_due: Decimal | None
    promo_code: str | None
    reviewed_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None


@dataclass(frozen=True)
class ReviewedRow:
    """An order of a run as review decided it on its own, for ``add_reviewed_run``."""

    ledger: OrderLedger
    received: OrderReceived
    rules: tuple[RuleOutcome, ...]
    amount_due: Decimal | None
    reasons: tuple[HoldReason, ...]


@dataclass(frozen=True)
class EarlyChange:
    """The newest change that came before review saw its order."""

    change_id: str
    revision: int
    received: dict[str, Any]


@dataclass(frozen=True)
class OrderContext:
    """What review knows about an order when it arrives: whether it was cancelled or reviewed
    already, and its newest early change."""

    cancelled: bool
    reviewed: bool
    early: EarlyChange | None


class ReviewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- one order at a time ----------------------------------------------------------------------

    async def lock_order_key(self, order_id: str) -> None:
        """Serialise an order's review and its cancellation (they arrive on different topics,
        maybe at different replicas); taken before the customer's account, always."""
        await self.session.execute(_LOCK_ORDER_KEY, {"o_id": order_id})

    async def add_cancelled(self, order_id: str, reason: str, requested_by: str) -> None:
        await self.session.execute(pg_insert(cancelled_orders).values(
            order_id=order_id, reason=reason, requested_by=requested_by).on_conflict_do_nothing())

    async def is_cancelled(self, order_id: str) -> bool:
        return (await self.session.execute(_IS_CANCELLED, {"o_id": order_id})).first() is not None

    # -- a run of orders (the batch handler) ---------------------------------------------------

    async def lock_order_keys(self, order_ids: Iterable[str]) -> None:
        """``lock_order_key`` for every order of a run, in sorted order: one round trip."""
        await _LOCK_ORDER_KEYS.run(self.session, {"ids": sorted(set(order_ids))})

    async def order_contexts(self, order_ids: Iterable[str]) -> dict[str, OrderContext]:
        """``order_context`` of every order of a run (their key locks held): one round trip."""
        rows = await _ORDER_CONTEXTS.fetch(self.session, {"ids": sorted(set(order_ids))})
        return {r["order_id"]: OrderContext(
            cancelled=bool(r["cancelled"]), reviewed=bool(r["reviewed"]),
            early=None if r["change_id"] is None else EarlyChange(
                r["change_id"], r["revision"], json.loads(r["received"]))) for r in rows}

    async def lock_accounts(self, customer_ids: Iterable[str],
                            policy: ReviewPolicy) -> dict[str, CreditAccount]:
        """``lock_account`` for every customer of a run, locked in sorted order: one round trip
        when every account exists; the missing ones get the policy's default account (inserted
        in sorted order, then locked)."""
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        found = await self._lock_accounts(wanted)
        missing = [c for c in wanted if c not in found]
        if missing:
            await _ADD_ACCOUNTS.run(self.session, _accounts_params(
                [CreditAccount.unknown(c, policy) for c in missing]))
            found.update(await self._lock_accounts(missing))
        return found

    async def _lock_accounts(self, customer_ids: list[str]) -> dict[str, CreditAccount]:
        rows = await _LOCK_ACCOUNTS.fetch(self.session, {"ids": customer_ids})
        return {r["customer_id"]: CreditAccount(**dict(r.items())) for r in rows}

    async def lock_promotions(self, codes: Iterable[str],
                              policy: ReviewPolicy) -> dict[str, PromotionState]:
        """``lock_promotion`` for every code of a run the policy knows (by its normalised code),
        upserted and locked in sorted order: two round trips, none without a known code."""
        known = sorted({p.code: p for c in codes if (p := policy.promotion(c)) is not None}
                       .values(), key=lambda p: p.code)
        if not known:
            return {}
        await _UPSERT_PROMOTIONS.run(self.session, {
            "codes": [p.code for p in known], "valid_from": [p.valid_from for p in known],
            "valid_to": [p.valid_to for p in known],
            "usage_limit": [p.usage_limit for p in known]})
        rows = await _LOCK_PROMOTIONS.fetch(self.session, {"codes": [p.code for p in known]})
        return {r[0]: PromotionState(r[0], r[1], r[2], r[3], r[4]) for r in rows}

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

    async def add_reviewed_run(self, reviewed: Sequence[ReviewedRow],
                               moved: Sequence[CreditAccount], early_change_ids: Sequence[str],
                               promotion_uses: Sequence[tuple[str, str]]) -> None:
        """Record a run's orders as review decided them on its own, as ``add_order`` records one
        (their audit rows in the run's order), save the accounts their approvals moved (each
        once: as the run left it; locked by ``lock_accounts``), mark the early changes applied
        and count the promotions' uses (``use_promotion``): one statement."""
        params: dict[str, Any] = {
            "order_ids": [], "channels": [], "external_ids": [], "o_customer_ids": [],
            "currencies": [], "grand_totals": [], "kinds": [], "statuses": [], "reasons": [],
            "rules": [], "amounts_due": [], "uninvoiced": [], "invoiced": [], "paid": [],
            "promo_codes": [], "received": [], "decision_reasons": []}
        for row in reviewed:
            ledger, received = row.ledger, row.received
            params["order_ids"].append(ledger.order_id)
            params["channels"].append(received.channel)
            params["external_ids"].append(received.external_id)
            params["o_customer_ids"].append(ledger.customer_id)
            params["currencies"].append(received.order.currency)
            params["grand_totals"].append(ledger.grand_total)
            params["kinds"].append(ledger.kind)
            params["statuses"].append(ledger.status)
            params["reasons"].append(_REASONS_JSON.dump_json(ledger.reasons).decode())
            params["rules"].append(_RULES_JSON.dump_json(tuple(row.rules)).decode())
            params["amounts_due"].append(row.amount_due)
            params["uninvoiced"].append(ledger.uninvoiced)
            params["invoiced"].append(ledger.invoiced)
            params["paid"].append(ledger.paid)
            params["promo_codes"].append(_promo_code(received))
            params["received"].append(received.model_dump_json())
            params["decision_reasons"].append(
                _REASONS_JSON.dump_json(tuple(row.reasons)).decode())
        params.update(_accounts_params(moved))
        params["early_change_ids"] = list(early_change_ids)
        params["use_codes"] = [code for code, _ in promotion_uses]
        params["use_order_ids"] = [order_id for _, order_id in promotion_uses]
        await _ADD_REVIEWED_RUN.run(self.session, params)

    # -- credit accounts ---------------------------------------------------------------------------

    async def lock_account(self, customer_id: str, policy: ReviewPolicy) -> CreditAccount:
        """The customer's credit account, locked until the transaction ends; a customer without
        a profile gets the policy's default account (created here, so it can be locked too).
        The account is locked first; only when there is none is the default inserted (if no one
        else is inserting it meanwhile) and then locked."""
        row = (await self.session.execute(_LOCK_ACCOUNT, {"c_id": customer_id})).first()
        if row is None:
            default = CreditAccount.unknown(customer_id, policy)
            await self.session.execute(_ADD_ACCOUNT, self._account_values(default))
            row = (await self.session.execute(_LOCK_ACCOUNT, {"c_id": customer_id})).one()
        return CreditAccount(
            customer_id=row.customer_id, known=row.known, currency=row.currency,
            credit_limit=row.credit_limit, payment_terms=row.payment_terms,
            open_receivables=row.open_receivables, overdue_amount=row.overdue_amount,
            overdue_days=row.overdue_days, blocked=row.blocked,
            approved_not_invoiced=row.approved_not_invoiced, open_cod=row.open_cod,
            approved_orders=row.approved_orders,
        )

    @staticmethod
    def _account_values(a: CreditAccount) -> dict[str, Any]:
        return {"customer_id": a.customer_id, **{f: getattr(a, f) for f in _ACCOUNT_FIELDS}}

    async def save_account(self, a: CreditAccount) -> None:
        await self.session.execute(_SAVE_ACCOUNT, _account_params(a))

    async def account(self, customer_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            sa.select(credit_accounts).where(credit_accounts.c.customer_id == customer_id)
        )).mappings().first()
        return dict(row) if row else None

    # -- price list --------------------------------------------------------------------------------

    async def upsert_price(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "unit_price": p.unit_price, "currency": p.currency,
                  "active": p.active}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"unit_price": stmt.excluded.unit_price, "currency": stmt.excluded.currency,
                  "active": stmt.excluded.active, "updated_at": sa.func.now()},
        ))

    async def prices(self, skus: Iterable[str]) -> dict[str, ListPrice]:
        rows = (await self.session.execute(_PRICES, {"skus": sorted(set(skus))})).all()
        return {r.sku: ListPrice(r.sku, r.unit_price, r.currency, r.active) for r in rows}

    # -- promotions --------------------------------------------------------------------------------

    async def lock_promotion(self, code: str, policy: ReviewPolicy) -> PromotionState | None:
        """The policy's promotion ``code`` with its use count, locked; None if the policy does not
        know it. The policy is the source of its dates and limit; the table counts uses."""
        promo = policy.promotion(code)
        if promo is None:
            return None
        await self.session.execute(_UPSERT_PROMOTION, {
            "p_code": promo.code, "v_valid_from": promo.valid_from, "v_valid_to": promo.valid_to,
            "v_usage_limit": promo.usage_limit})
        row = (await self.session.execute(_LOCK_PROMOTION, {"p_code": promo.code})).one()
        return PromotionState(row.code, row.valid_from, row.valid_to, row.usage_limit, row.used)

    async def use_promotion(self, code: str, order_id: str) -> None:
        """Count one use of ``code`` by ``order_id`` (once per order): one statement."""
        await self.session.execute(_USE_PROMOTION, {"p_code": code, "o_id": order_id})

    # -- orders ------------------------------------------------------------------------------------

    async def ledger(self, order_id: str, *, lock: bool = False) -> OrderLedger | None:
        row = (await self.session.execute(_LEDGER_FOR_UPDATE if lock else _LEDGER,
                                          {"o_id": order_id})).first()
        return self._ledger(row) if row else None

    @staticmethod
    def _ledger(row: Any) -> OrderLedger:
        return OrderLedger(order_id=row.order_id, customer_id=row.customer_id,
                           status=row.status, kind=row.exposure_kind, grand_total=row.grand_total,
                           uninvoiced=row.uninvoiced, invoiced=row.invoiced, paid=row.paid,
                           reasons=load_reasons(row.reasons))

    async def save_ledger(self, ledger: OrderLedger, *, rules: Sequence[RuleOutcome] | None = None,
                          amount_due: Decimal | None = None, decided_by: str | None = None,
                          comment: str | None = None) -> None:
        values: dict[str, Any] = {"status": ledger.status, "reasons": _dump(ledger.reasons),
                                  "uninvoiced": ledger.uninvoiced, "invoiced": ledger.invoiced,
                                  "paid": ledger.paid}
        if ledger.status == "held":
            values["amount_due"] = amount_due
        if rules is not None:
            values["rules"] = _dump(rules)
        if decided_by is not None:
            values.update(decided_by=decided_by, comment=comment, decided_at=sa.func.now())
        await self.session.execute(orders.update().where(orders.c.order_id == ledger.order_id)
                                   .values(**values))

    async def reviewed_order(self, order_id: str) -> ReviewedOrder | None:
        row = (await self.session.execute(
            sa.select(orders).where(orders.c.order_id == order_id))).first()
        return self._reviewed(row) if row else None

    def _reviewed(self, row: Any) -> ReviewedOrder:
        return ReviewedOrder(
            ledger=self._ledger(row), received=OrderReceived.model_validate(row.received),
            rules=load_rules(row.rules), amount_due=row.amount_due, promo_code=row.promo_code,
            reviewed_at=row.reviewed_at, decided_at=row.decided_at, decided_by=row.decided_by,
            comment=row.comment,
        )

    async def save_content(self, ledger: OrderLedger, received: OrderReceived,
                           rules: Sequence[RuleOutcome], amount_due: Decimal | None) -> None:
        """A change's new content and figures replace the order's (its decision stays)."""
        await self.session.execute(orders.update().where(orders.c.order_id == ledger.order_id).values(
            grand_total=ledger.grand_total, exposure_kind=ledger.kind, status=ledger.status,
            reasons=_dump(ledger.reasons), rules=_dump(rules), amount_due=amount_due,
            uninvoiced=ledger.uninvoiced, currency=received.order.currency,
            promo_code=_promo_code(received), received=received.model_dump(mode="json")))

    async def snapshot(self, order_id: str) -> dict[str, Any]:
        """What a change may have to restore: the order's row as it is."""
        row = (await self.session.execute(
            sa.select(orders.c.grand_total, orders.c.exposure_kind, orders.c.status,
                      orders.c.reasons, orders.c.rules, orders.c.amount_due, orders.c.uninvoiced,
                      orders.c.currency, orders.c.promo_code, orders.c.received)
            .where(orders.c.order_id == order_id))).one()
        values = dict(row._mapping)
        for key in ("grand_total", "amount_due", "uninvoiced"):
            values[key] = None if values[key] is None else str(values[key])
        return values

    async def restore(self, order_id: str, before: dict[str, Any]) -> None:
        values = dict(before)
        for key in ("grand_total", "amount_due", "uninvoiced"):
            values[key] = None if values[key] is None else Decimal(values[key])
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(**values))

    async def add_change(self, change_id: str, order_id: str, revision: int, status: str,
                         received: OrderReceived, before: dict[str, Any] | None = None,
                         credit_delta: Decimal = ZERO, cod_delta: Decimal = ZERO) -> bool:
        """Record a change review decided; False when it already did."""
        row = (await self.session.execute(pg_insert(order_changes).values(
            change_id=change_id, order_id=order_id, revision=revision, status=status,
            received=received.model_dump(mode="json"), before=before,
            credit_delta=credit_delta, cod_delta=cod_delta, created_at=sa.func.now(),
            updated_at=sa.func.now()).on_conflict_do_nothing()
            .returning(order_changes.c.change_id))).first()
        return row is not None

    async def change(self, change_id: str) -> Any:
        return (await self.session.execute(
            sa.select(order_changes).where(order_changes.c.change_id == change_id)
            .with_for_update())).first()

    async def set_change_status(self, change_id: str, status: str) -> None:
        await self.session.execute(_SET_CHANGE_STATUS, {"ch_id": change_id, "v_status": status})

    async def held_orders(self, reason: str | None, limit: int) -> list[ReviewedOrder]:
        """Held orders, oldest first; with ``reason``, only those held (also) for it."""
        stmt = sa.select(orders).where(orders.c.status == "held")
        if reason:
            stmt = stmt.where(orders.c.reasons.contains([{"code": reason}]))
        rows = (await self.session.execute(
            stmt.order_by(orders.c.reviewed_at, orders.c.order_id).limit(limit))).all()
        return [self._reviewed(r) for r in rows]

    async def held_counts(self) -> dict[str, int]:
        """Held orders per reason code."""
        rows = (await self.session.execute(sa.text(
            "SELECT r->>'code' AS code, count(DISTINCT o.order_id) AS n FROM review_orders o, "
            "jsonb_array_elements(o.reasons) r WHERE o.status = 'held' GROUP BY 1"
        ))).all()
        return {r.code: int(r.n) for r in rows}

    async def advance_paid(self, order_id: str) -> Decimal:
        total = (await self.session.execute(_ADVANCE_PAID, {"o_id": order_id})).scalar_one()
        return Decimal(total)

    # -- audit -------------------------------------------------------------------------------------

    async def record_decision(self, order_id: str, decision: str, decided_by: str,
                              comment: str | None, reasons: Sequence[HoldReason],
                              rules: Sequence[RuleOutcome]) -> None:
        await self.session.execute(_RECORD_DECISION, {
            "o_id": order_id, "v_decision": decision, "v_decided_by": decided_by,
            "v_comment": comment, "v_reasons": _dump(reasons), "v_rules": _dump(rules)})

    async def decisions_of(self, order_id: str) -> list[dict[str, Any]]:
        rows = (await self.session.execute(
            sa.select(decisions).where(decisions.c.order_id == order_id).order_by(decisions.c.id)
        )).mappings().all()
        return [dict(r) for r in rows]

    # -- finance -----------------------------------------------------------------------------------

    async def record_invoice(self, invoice: InvoiceIssued) -> bool:
        """Record an invoice once; False if finance already sent this invoice id."""
        inserted = (await self.session.execute(
            pg_insert(invoices).values(invoice_id=invoice.invoice_id,
                                       customer_id=invoice.customer_id, order_id=invoice.order_id,
                                       amount=invoice.amount, to_receivables=ZERO,
                                       moved_from_approved=ZERO)
            .on_conflict_do_nothing().returning(invoices.c.invoice_id)
        )).first()
        return inserted is not None

    async def settle_invoice(self, invoice_id: str, to_receivables: Decimal,
                             moved: Decimal) -> None:
        await self.session.execute(invoices.update().where(invoices.c.invoice_id == invoice_id)
                                   .values(to_receivables=to_receivables, moved_from_approved=moved))

    async def record_payment(self, payment: PaymentReceived) -> bool:
        """Record a payment once; False if finance already sent this payment id."""
        inserted = (await self.session.execute(
            pg_insert(payments).values(payment_id=payment.payment_id,
                                       customer_id=payment.customer_id, order_id=payment.order_id,
                                       amount=payment.amount, applied_as="pending")
            .on_conflict_do_nothing().returning(payments.c.payment_id)
        )).first()
        return inserted is not None

    async def settle_payment(self, payment_id: str, applied_as: str) -> None:
        await self.session.execute(payments.update().where(payments.c.payment_id == payment_id)
                                   .values(applied_as=applied_as))

