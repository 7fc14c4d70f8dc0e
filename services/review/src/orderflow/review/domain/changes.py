"""Changes of an order review decided: what changed, how the exposure moves, and the decision on
a change (``decide_change``). Pure: no I/O, no framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from orderflow.contracts.events import (
    Event,
    HoldReason,
    OrderChangeAdmitted,
    OrderChangeApproved,
    OrderChangeRejected,
    OrderHeld,
    OrderReceived,
    Reason,
    ReviewStatus,
    RuleOutcome,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.review.domain.accounts import (
    ZERO,
    CreditAccount,
    ExposureKind,
    ListPrice,
    OrderLedger,
    PromotionState,
    ReviewedOrder,
    approve,
)
from orderflow.review.domain.orders import AUTO, approved_event
from orderflow.review.domain.policy import ReviewPolicy, promo_code_key
from orderflow.review.domain.rules import OrderUnderReview, review_order

#: the comment of a held order a change released
RELEASED_BY_CHANGE = "released: the changed order passes every rule"

# --- what a change changes ----------------------------------------------------------------------


def describe_changes(old: CanonicalOrder, new: CanonicalOrder) -> tuple[str, ...]:
    """What a change changes, as sorted codes: ``line_added``, ``line_removed``,
    ``quantity_increased``, ``quantity_decreased``, ``price_changed``, ``shipping_address``,
    ``requested_delivery_date``, ``priority``, ``payment_terms``, ``promo_code``,
    ``shipping_fee``, ``other``."""
    def units(order: CanonicalOrder) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in order.lines:
            out[line.sku] = out.get(line.sku, 0) + line.quantity
        return out

    def prices(order: CanonicalOrder) -> dict[str, tuple[Decimal, Decimal]]:
        return {line.sku: (line.unit_price, line.discount) for line in order.lines}

    codes: set[str] = set()
    before, after = units(old), units(new)
    for sku, quantity in after.items():
        if sku not in before:
            codes.add("line_added")
        elif quantity > before[sku]:
            codes.add("quantity_increased")
        elif quantity < before[sku]:
            codes.add("quantity_decreased")
    if set(before) - set(after):
        codes.add("line_removed")
    old_prices, new_prices = prices(old), prices(new)
    if any(old_prices[sku] != new_prices[sku] for sku in set(old_prices) & set(new_prices)):
        codes.add("price_changed")
    for name in ("shipping_address", "requested_delivery_date", "priority", "payment_terms",
                 "promo_code", "shipping_fee"):
        if getattr(old, name) != getattr(new, name):
            codes.add(name)
    ignored = {"lines", "shipping_address", "requested_delivery_date", "priority",
               "payment_terms", "promo_code", "shipping_fee", "revision", "stated_total"}
    if any(getattr(old, f) != getattr(new, f) for f in type(old).model_fields if f not in ignored):
        codes.add("other")
    return tuple(sorted(codes))


def without_order(account: CreditAccount, ledger: OrderLedger) -> CreditAccount:
    """The account as if this approved order were not in its exposure: what a change of the
    order is weighed against (so the credit check is for the difference only)."""
    if ledger.status != "approved":
        return account
    if ledger.kind == "credit":
        return replace(account, approved_not_invoiced=max(
            ZERO, account.approved_not_invoiced - ledger.uninvoiced))
    if ledger.kind == "cod":
        return replace(account, open_cod=max(
            ZERO, account.open_cod - max(ZERO, ledger.grand_total - ledger.paid)))
    return account


@dataclass(frozen=True)
class ExposureChange:
    """An approved order's new place in the exposure after a change, and how far it moved."""

    account: CreditAccount
    ledger: OrderLedger
    credit_delta: Decimal
    cod_delta: Decimal


def change_exposure(account: CreditAccount, ledger: OrderLedger, new_total: Decimal,
                    kind: ExposureKind) -> ExposureChange:
    """An approved order changed to ``new_total``: its uninvoiced share (credit) or unpaid amount
    (COD) moves by the difference; an increase raises the exposure only by the increase, a
    decrease lowers it. What was invoiced stays invoiced."""
    old_credit = ledger.uninvoiced if ledger.kind == "credit" else ZERO
    old_cod = max(ZERO, ledger.grand_total - ledger.paid) if ledger.kind == "cod" else ZERO
    new_credit = max(ZERO, new_total - ledger.invoiced) if kind == "credit" else ZERO
    new_cod = max(ZERO, new_total - ledger.paid) if kind == "cod" else ZERO
    credit_delta, cod_delta = new_credit - old_credit, new_cod - old_cod
    account = replace(account,
                      approved_not_invoiced=max(ZERO, account.approved_not_invoiced + credit_delta),
                      open_cod=max(ZERO, account.open_cod + cod_delta))
    ledger = replace(ledger, grand_total=new_total, kind=kind, uninvoiced=new_credit)
    return ExposureChange(account, ledger, credit_delta, cod_delta)


def undo_exposure(account: CreditAccount, credit_delta: Decimal,
                  cod_delta: Decimal) -> CreditAccount:
    """Compensation: a change refused after review applied it gives its movement back."""
    return replace(account,
                   approved_not_invoiced=max(ZERO, account.approved_not_invoiced - credit_delta),
                   open_cod=max(ZERO, account.open_cod - cod_delta))


def refuse_change(ledger: OrderLedger | None, current_revision: int | None, revision: int,
                  customer_id: str, currency: str | None,
                  new_currency: str) -> tuple[str, str] | None:
    """Why review cannot consider a change at all, as (code, message); None when it can. A
    rejected order can: its new revision is its fix, reviewed again (``decide_change``)."""
    if ledger is None:
        return None
    if current_revision is not None and revision <= current_revision:
        return ("stale_revision",
                f"revision {revision} is not newer than revision {current_revision}")
    if ledger.status == "cancelled":
        return ("order_cancelled", "the order is cancelled")
    if customer_id != ledger.customer_id:
        return ("customer_changed", "a change cannot move the order to another customer")
    if currency is not None and new_currency != currency:
        return ("currency_changed", "a change cannot change the order's currency")
    return None



# --- the decision on a change -------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeState:
    """What review holds about an order when a change of it arrives, read under the order's key
    lock (the account and the order's row locked). Without ``account``, ``ledger`` and
    ``reviewed``: review has not seen the order."""

    recorded: bool = False  # this change was decided already
    cancelled: bool = False
    account: CreditAccount | None = None
    ledger: OrderLedger | None = None
    reviewed: ReviewedOrder | None = None
    promotion: PromotionState | None = None  # the new content's, if the policy knows it
    prices: Mapping[str, ListPrice] = field(default_factory=dict)
    advance_paid: Decimal = ZERO  # money paid for the order before review saw it


@dataclass(frozen=True)
class AuditEntry:
    """A line of the decision audit."""

    decision: str
    decided_by: str
    comment: str | None
    reasons: tuple[HoldReason, ...] = ()
    rules: tuple[RuleOutcome, ...] = ()


ChangeStatus = Literal["refused", "early", "applied", "released"]


@dataclass(frozen=True)
class ChangeOutcome:
    """Review's decision on a change and everything it writes and publishes.

    ``status`` is what is recorded of the change (None: it was decided already, nothing to do);
    ``content`` (with ``rules``, ``amount_due`` and ``promo_code``) replaces the order's content
    and figures, its row kept for an undo; ``released`` is the order approved by review
    (``released_by``, ``release_comment``); ``promotion_use`` is the promotion whose use it
    counts; the deltas are how far the exposure moved."""

    status: ChangeStatus | None
    changed: OrderReceived  # the order as the change makes it
    note: str  # what the log says, with ``details``
    details: dict[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    account: CreditAccount | None = None
    content: OrderLedger | None = None
    rules: tuple[RuleOutcome, ...] = ()
    amount_due: Decimal | None = None
    promo_code: str | None = None  # the new content's, as ``promo_code_key`` writes it
    released: OrderLedger | None = None
    released_by: str = AUTO
    release_comment: str = RELEASED_BY_CHANGE
    promotion_use: str | None = None
    credit_delta: Decimal = ZERO
    cod_delta: Decimal = ZERO
    audit: tuple[AuditEntry, ...] = ()


def change_approved_event(change: OrderChangeAdmitted, status: ReviewStatus,
                          changes: tuple[str, ...], previous: OrderReceived | None,
                          delta: Decimal, changed: OrderReceived | None = None,
                          ) -> OrderChangeApproved:
    return OrderChangeApproved(
        order_id=change.order_id, change_id=change.change_id,
        channel=changed.channel if changed else change.channel,
        external_id=changed.external_id if changed else change.external_id,
        previous_revision=previous.order.revision if previous else change.previous_revision,
        order=change.order, totals=change.totals,
        previous_totals=previous.totals if previous else None, changes=changes,
        review_status=status, exposure_delta=delta, requested_by=change.requested_by)


def _refused(change: OrderChangeAdmitted, changed: OrderReceived,
             reasons: list[tuple[str, str]]) -> ChangeOutcome:
    return ChangeOutcome(
        "refused", changed, "change refused",
        {"change_id": change.change_id, "reasons": [code for code, _ in reasons]},
        events=(OrderChangeRejected(
            order_id=change.order_id, change_id=change.change_id, revision=change.order.revision,
            stage="review", reasons=tuple(Reason(code=c, message=m) for c, m in reasons),
            requested_by=change.requested_by, customer=change.order.customer),))


def decide_change(change: OrderChangeAdmitted, state: ChangeState,
                  policy: ReviewPolicy) -> ChangeOutcome:
    """Credit for the difference, prices, terms, promotion and date checked again on the new
    content: an approved order stays approved (its exposure moves by the difference) or the
    change is refused; a held order, one sent back for rework or one rejected is reviewed again
    on the new content (approved if it now passes every rule, else held with the new reasons,
    or refused when a rule still rejects it outright and the order stays as it was); an order
    review has not seen yet will be reviewed with the new content."""
    new = change.order
    changed = OrderReceived(order_id=change.order_id, channel=change.channel,
                            external_id=change.external_id, order=new, totals=change.totals)
    if state.recorded:
        return ChangeOutcome(None, changed, "change already decided; ignored",
                             {"change_id": change.change_id})
    if state.cancelled:
        return _refused(change, changed, [("order_cancelled", "the order is cancelled")])
    account, ledger, reviewed = state.account, state.ledger, state.reviewed
    if account is None or ledger is None or reviewed is None:
        return ChangeOutcome(
            "early", changed, "change before the order; it will be reviewed as changed",
            {"change_id": change.change_id},
            events=(change_approved_event(change, "not_reviewed", (), None, ZERO),))
    old = reviewed.received.order
    refusal = refuse_change(ledger, old.revision, new.revision, new.customer.id, old.currency,
                            new.currency)
    if refusal is not None:
        return _refused(change, changed, [refusal])
    changes = describe_changes(old, new)
    changed = changed.model_copy(update={"channel": reviewed.received.channel,
                                         "external_id": reviewed.received.external_id})
    promotion = state.promotion
    same_promo = promo_code_key(new.promo_code) == reviewed.promo_code
    if promotion is not None and same_promo and ledger.status == "approved":
        promotion = replace(promotion, used=max(0, promotion.used - 1))  # its own use
    # money paid to us for the order, plus what the channel collected at checkout
    paid = max(ledger.paid, state.advance_paid + new.amount_paid)
    decision = review_order(OrderUnderReview(
        order=new, totals=change.totals, account=without_order(account, ledger),
        prices=state.prices, promotion=promotion, paid_in_advance=paid), policy)
    changed_audit = f"revision {new.revision}: {', '.join(changes)}"[:500]
    if ledger.status == "approved":
        if decision.outcome != "approved":
            return _refused(change, changed, [(r.code, r.message) for r in decision.reasons])
        moved = change_exposure(account, ledger, change.totals.grand_total, decision.kind)
        delta = moved.credit_delta + moved.cod_delta
        return ChangeOutcome(
            "applied", changed, "change approved",
            {"change_id": change.change_id, "changes": list(changes), "exposure_delta": str(delta)},
            events=(change_approved_event(change, "approved", changes, reviewed.received, delta,
                                          changed=changed),),
            account=moved.account, content=moved.ledger, rules=decision.rules,
            promo_code=promo_code_key(new.promo_code),
            promotion_use=promotion.code if promotion is not None and not same_promo else None,
            credit_delta=moved.credit_delta, cod_delta=moved.cod_delta,
            audit=(AuditEntry("changed", change.requested_by, changed_audit, (), decision.rules),))
    # held, sent back for rework, or rejected: reviewed again on the new content
    if decision.outcome == "rejected":
        return _refused(change, changed, [(r.code, r.message) for r in decision.reasons])
    held = replace(ledger, status="held", grand_total=change.totals.grand_total,
                   kind=decision.kind, reasons=decision.reasons,
                   paid=paid if decision.kind == "prepaid" else ZERO)
    audit = (AuditEntry("changed", change.requested_by, changed_audit, decision.reasons,
                        decision.rules),)
    details = {"change_id": change.change_id, "reasons": decision.codes}
    if decision.outcome != "approved":
        # a reworked (sent back or rejected) order held again is back in the queue: said as a
        # hold of its own
        rehold: tuple[Event, ...] = () if ledger.status == "held" else (OrderHeld(
            order_id=change.order_id, reasons=decision.reasons, rules=decision.rules,
            customer=new.customer, amount_due=decision.amount_due, currency=new.currency),)
        return ChangeOutcome(
            "applied", changed, "held order changed", details | {"now": "held"},
            events=(*rehold, change_approved_event(change, "held", changes, reviewed.received,
                                                   ZERO, changed=changed)),
            content=held, rules=decision.rules, amount_due=decision.amount_due,
            promo_code=promo_code_key(new.promo_code), audit=audit)
    account, approved = approve(account, held)
    return ChangeOutcome(
        "released", changed, "held order changed", details | {"now": "approved"},
        events=(approved_event(changed, decision.rules, AUTO, RELEASED_BY_CHANGE),
                change_approved_event(change, "approved", changes, reviewed.received, ZERO,
                                      changed=changed)),
        account=account, content=held, rules=decision.rules, amount_due=decision.amount_due,
        promo_code=promo_code_key(new.promo_code), released=approved,
        promotion_use=promotion.code if promotion is not None else None,
        audit=(AuditEntry("approved", AUTO, RELEASED_BY_CHANGE, (), decision.rules), *audit))


# --- a change refused after review applied it ---------------------------------------------------


def undo_change(account: CreditAccount, ledger: OrderLedger, credit_delta: Decimal,
                cod_delta: Decimal) -> CreditAccount | None:
    """The account with an applied change's movement given back (its content is restored as it
    was); None when the order was cancelled meanwhile (its exposure is gone already)."""
    if ledger.status == "cancelled":
        return None
    return undo_exposure(account, credit_delta, cod_delta)


def compensates(stage: str) -> bool:
    """Whether a change refused at ``stage`` may have been applied by review first (inventory
    and logistics come after review; review's own refusals do not)."""
    return stage in ("inventory", "logistics")


Compensation = Literal["refuse_early", "keep_release", "undo"]


def compensation(status: str | None) -> Compensation | None:
    """What a later step's refusal of a change does, by what review recorded of the change: an
    early change is refused (its order will be reviewed as it came), a change that released a
    held order keeps the approval, an applied change is undone (content, figures and exposure);
    None: nothing (review never saw it, refused it, or undid it already)."""
    if status == "early":
        return "refuse_early"
    if status == "released":
        return "keep_release"
    if status == "applied":
        return "undo"
    return None
