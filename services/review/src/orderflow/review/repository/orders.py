"""The orders review decided (with their rules and reasons), the decision audit, cancellations and
the changes review recorded.

An order's row is always locked after its customer's account, and everything about one order
(its review, its cancellation, its changes) runs under the order's key lock
(``lock_order_keys``), whichever topic and replica it comes from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.events import HoldReason, OrderReceived, RuleOutcome
from orderflow.review.domain import (
    AUTO,
    ChangeOutcome,
    EarlyChange,
    OrderContext,
    OrderLedger,
    ReviewedOrder,
    RunReview,
)
from orderflow.review.repository.accounts import (
    COUNT_NEW_USES_SQL,
    SAVE_ACCOUNTS_SQL,
    AccountRows,
    accounts_params,
    uses_params,
)
from orderflow.review.repository.tables import cancelled_orders, decisions, order_changes, orders
from orderflow.runtime.sqlalchemy_bridge import Statement

_B = sa.bindparam
_O_ID = _B("o_id", type_=sa.Text)
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
# what a change may have to restore: the order's row as it was
_SNAPSHOT_COLUMNS = (orders.c.grand_total, orders.c.exposure_kind, orders.c.status,
                     orders.c.reasons, orders.c.rules, orders.c.amount_due, orders.c.uninvoiced,
                     orders.c.currency, orders.c.promo_code, orders.c.received)
_SNAPSHOT_MONEY = ("grand_total", "amount_due", "uninvoiced")

# every key in one sorted order (the caller sorts), so overlapping runs cannot deadlock
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
# a run's orders, their audit rows (the decision is the order's status, decided by :decided_by,
# no comment, the decision's reasons, the order's rules; a held order is not decided yet), the
# accounts approvals moved, the early changes applied and the promotions' uses: one statement;
# the audit rows are numbered in the run's order
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
    "CASE WHEN status <> 'held' THEN CAST(:decided_by AS text) END FROM o ORDER BY n), "
    "audit AS (INSERT INTO review_decisions (order_id, decision, decided_by, comment, reasons, "
    "rules, decided_at) SELECT order_id, status, CAST(:decided_by AS text), NULL, "
    "decision_reasons, rules, now() FROM o ORDER BY n), "
    f"moved AS ({SAVE_ACCOUNTS_SQL}), "
    "early AS (UPDATE review_order_changes SET status = 'applied_early', updated_at = now() "
    "WHERE change_id = ANY(CAST(:early_change_ids AS text[]))), "
    + COUNT_NEW_USES_SQL)

_REASONS_JSON = TypeAdapter(tuple[HoldReason, ...])
_RULES_JSON = TypeAdapter(tuple[RuleOutcome, ...])


def _dump(items: Iterable[HoldReason | RuleOutcome]) -> list[dict[str, Any]]:
    return [i.model_dump(mode="json") for i in items]


def load_reasons(raw: Sequence[dict[str, Any]]) -> tuple[HoldReason, ...]:
    return tuple(HoldReason.model_validate(r) for r in raw)


def load_rules(raw: Sequence[dict[str, Any]]) -> tuple[RuleOutcome, ...]:
    return tuple(RuleOutcome.model_validate(r) for r in raw)


@dataclass(frozen=True)
class ChangeRecord:
    """A change as review recorded it."""

    status: str
    before: dict[str, Any] | None  # the order's row before the change (applied changes)
    credit_delta: Decimal
    cod_delta: Decimal


class OrderRows(AccountRows):
    """The orders review decided, their audit, cancellations and changes."""

    async def lock_order_keys(self, order_ids: Iterable[str]) -> None:
        """Serialise everything about these orders (review, cancellation, changes; they arrive
        on different topics, maybe at different replicas), in sorted order: one round trip.
        Taken before any account, always."""
        await _LOCK_ORDER_KEYS.run(self.session, {"ids": sorted(set(order_ids))})

    async def order_contexts(self, order_ids: Iterable[str]) -> dict[str, OrderContext]:
        """Whether each order was cancelled or reviewed already, and its newest early change
        (their key locks held): one round trip."""
        rows = await _ORDER_CONTEXTS.fetch(self.session, {"ids": sorted(set(order_ids))})
        return {r["order_id"]: OrderContext(
            cancelled=bool(r["cancelled"]), reviewed=bool(r["reviewed"]),
            early=None if r["change_id"] is None else EarlyChange(
                r["change_id"], r["revision"], OrderReceived.model_validate_json(r["received"])))
            for r in rows}

    async def add_reviewed_run(self, run: RunReview) -> None:
        """Record a run's orders as review decided them on its own (their audit rows in the
        run's order), save the accounts their approvals moved (locked by ``lock_accounts``),
        mark the early changes applied and count the promotions' uses: one statement."""
        if not run.rows:
            return
        rows = run.rows
        params: dict[str, Any] = {
            "order_ids": [r.ledger.order_id for r in rows],
            "channels": [r.received.channel for r in rows],
            "external_ids": [r.received.external_id for r in rows],
            "o_customer_ids": [r.ledger.customer_id for r in rows],
            "currencies": [r.received.order.currency for r in rows],
            "grand_totals": [r.ledger.grand_total for r in rows],
            "kinds": [r.ledger.kind for r in rows],
            "statuses": [r.ledger.status for r in rows],
            "reasons": [_REASONS_JSON.dump_json(r.ledger.reasons).decode() for r in rows],
            "rules": [_RULES_JSON.dump_json(r.rules).decode() for r in rows],
            "amounts_due": [r.amount_due for r in rows],
            "uninvoiced": [r.ledger.uninvoiced for r in rows],
            "invoiced": [r.ledger.invoiced for r in rows],
            "paid": [r.ledger.paid for r in rows],
            "promo_codes": [r.promo_code for r in rows],
            "received": [r.received.model_dump_json() for r in rows],
            "decision_reasons": [_REASONS_JSON.dump_json(r.reasons).decode() for r in rows],
            "decided_by": AUTO,
            "early_change_ids": list(run.early_change_ids),
            **accounts_params(run.moved), **uses_params(run.promotion_uses)}
        await _ADD_REVIEWED_RUN.run(self.session, params)

    async def add_cancelled(self, order_id: str, reason: str, requested_by: str) -> None:
        """The tombstone of an order cancelled before review saw it."""
        await self.session.execute(pg_insert(cancelled_orders).values(
            order_id=order_id, reason=reason, requested_by=requested_by).on_conflict_do_nothing())

    # -- an order review decided -----------------------------------------------------------------

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

    # -- the audit ---------------------------------------------------------------------------------

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

    # -- changes -----------------------------------------------------------------------------------

    async def change(self, change_id: str) -> ChangeRecord | None:
        """The change as review recorded it, locked; None when review has not."""
        row = (await self.session.execute(
            sa.select(order_changes.c.status, order_changes.c.before,
                      order_changes.c.credit_delta, order_changes.c.cod_delta)
            .where(order_changes.c.change_id == change_id).with_for_update())).first()
        return None if row is None else ChangeRecord(row.status, row.before, row.credit_delta,
                                                     row.cod_delta)

    async def set_change_status(self, change_id: str, status: str) -> None:
        await self.session.execute(_SET_CHANGE_STATUS, {"ch_id": change_id, "v_status": status})

    async def record_change(self, change_id: str, outcome: ChangeOutcome) -> None:
        """Write what review decided on a change (nothing when it had decided it already): the
        change with its status (and, when the order's content changes, the order's row before
        it, for an undo), the account, the order's new content, its release, the promotion's
        use and the audit lines, in that order."""
        if outcome.status is None:
            return
        changed = outcome.changed
        order_id = changed.order_id
        before = await self._snapshot(order_id) if outcome.content is not None else None
        if outcome.account is not None:
            await self.save_accounts([outcome.account])
        if outcome.content is not None:
            content = outcome.content
            await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
                grand_total=content.grand_total, exposure_kind=content.kind,
                status=content.status, reasons=_dump(content.reasons), rules=_dump(outcome.rules),
                amount_due=outcome.amount_due, uninvoiced=content.uninvoiced,
                currency=changed.order.currency, promo_code=outcome.promo_code,
                received=changed.model_dump(mode="json")))
        if outcome.released is not None:
            await self.save_ledger(outcome.released, decided_by=outcome.released_by,
                                   comment=outcome.release_comment)
        if outcome.promotion_use is not None:
            await self.use_promotions([(outcome.promotion_use, order_id)])
        await self.session.execute(pg_insert(order_changes).values(
            change_id=change_id, order_id=order_id, revision=changed.order.revision,
            status=outcome.status, received=changed.model_dump(mode="json"), before=before,
            credit_delta=outcome.credit_delta, cod_delta=outcome.cod_delta,
            created_at=sa.func.now(), updated_at=sa.func.now()).on_conflict_do_nothing())
        for entry in outcome.audit:
            await self.record_decision(order_id, entry.decision, entry.decided_by, entry.comment,
                                       entry.reasons, entry.rules)

    async def _snapshot(self, order_id: str) -> dict[str, Any]:
        row = (await self.session.execute(
            sa.select(*_SNAPSHOT_COLUMNS).where(orders.c.order_id == order_id))).one()
        values = dict(row._mapping)
        for key in _SNAPSHOT_MONEY:
            values[key] = None if values[key] is None else str(values[key])
        return values

    async def restore(self, order_id: str, before: dict[str, Any]) -> None:
        """The order's row as ``record_change`` kept it before a change."""
        values = dict(before)
        for key in _SNAPSHOT_MONEY:
            values[key] = None if values[key] is None else Decimal(values[key])
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(**values))

