"""The orders review decides: a run of ``order.received`` events reviewed one after another against
the state the earlier ones left (``admit_orders``, then ``review_orders``), a person's decision on
a held order (one approval or two, a rejection, a send-back for rework), a prepaid order released
by its payment, and the events review publishes about them. Pure: no I/O, no framework.

A single ``order.received`` is a run of one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from orderflow.contracts.events import (
    HoldReason,
    OrderApproved,
    OrderHeld,
    OrderReceived,
    OrderRejected,
    Reason,
    RuleOutcome,
)
from orderflow.review.domain.accounts import (
    ZERO,
    CreditAccount,
    ListPrice,
    OrderLedger,
    PromotionState,
    ReviewedOrder,
    approve,
    prepayment_rule_after_payment,
)
from orderflow.review.domain.approvals import (
    REWORK,
    Decider,
    ManualAction,
    Refusal,
    decide_step,
    director_hold,
    director_thresholds,
    rework_message,
)
from orderflow.review.domain.policy import ReviewPolicy, promo_code_key
from orderflow.review.domain.rules import Decision, OrderUnderReview, review_order

#: who decided what review decided on its own
AUTO = "auto"
#: the comment of a prepaid order its payment released
RELEASED_BY_PAYMENT = "released: prepayment received"


# --- what review publishes ----------------------------------------------------------------------


def approved_event(received: OrderReceived, rules: Iterable[RuleOutcome], approved_by: str,
                   comment: str | None) -> OrderApproved:
    return OrderApproved(order_id=received.order_id, channel=received.channel,
                         external_id=received.external_id, order=received.order,
                         totals=received.totals, approved_by=approved_by, comment=comment,
                         rules=tuple(rules))


def rejected_event(received: OrderReceived, reasons: Sequence[HoldReason], decided_by: str,
                   comment: str | None) -> OrderRejected:
    why = tuple(Reason(code=r.code, message=r.message) for r in reasons) or (
        Reason(code="rejected_by_reviewer", message=comment or "rejected by a reviewer"),)
    return OrderRejected(order_id=received.order_id, channel=received.channel,
                         external_id=received.external_id, stage="review", reasons=why,
                         customer=received.order.customer, decided_by=decided_by, comment=comment)


def decision_event(received: OrderReceived,
                   decision: Decision) -> OrderApproved | OrderHeld | OrderRejected:
    """Review's own decision on an order, as it is published."""
    if decision.outcome == "approved":
        return approved_event(received, decision.rules, AUTO, None)
    if decision.outcome == "held":
        return OrderHeld(order_id=received.order_id, reasons=decision.reasons,
                         rules=decision.rules, customer=received.order.customer,
                         amount_due=decision.amount_due, currency=received.order.currency)
    return rejected_event(received, decision.reasons, AUTO, "rejected by policy (reject_on)")


# --- a run of received orders -------------------------------------------------------------------


@dataclass(frozen=True)
class EarlyChange:
    """The newest change that came before review saw its order."""

    change_id: str
    revision: int
    received: OrderReceived  # the order as that change made it


@dataclass(frozen=True)
class OrderContext:
    """What review knows about an order when it arrives: whether it was cancelled or reviewed
    already, and its newest early change."""

    cancelled: bool
    reviewed: bool
    early: EarlyChange | None = None


Skip = Literal["cancelled", "reviewed"]


@dataclass(frozen=True)
class Admission:
    """An ``order.received`` of a run as review takes it: skipped (cancelled before review saw
    it; reviewed already, or earlier in the run), or reviewed as ``received`` (its own content,
    or that of a newer change that came first, ``early``) against ``account_id``'s account."""

    received: OrderReceived
    account_id: str | None  # the customer's account it locks (none: cancelled)
    skip: Skip | None = None
    early: EarlyChange | None = None


def admit_orders(events: Sequence[OrderReceived],
                 contexts: Mapping[str, OrderContext]) -> list[Admission]:
    """What review does with each order of a run, in the run's order."""
    admitted: list[Admission] = []
    seen: set[str] = set()
    for received in events:
        context = contexts[received.order_id]
        customer_id = received.order.customer.id
        if context.cancelled:
            admitted.append(Admission(received, None, "cancelled"))
        elif context.reviewed or received.order_id in seen:
            admitted.append(Admission(received, customer_id, "reviewed"))
        else:
            seen.add(received.order_id)
            early = context.early
            if early is not None and early.revision > received.order.revision:
                changed = received.model_copy(update={"order": early.received.order,
                                                      "totals": early.received.totals})
                admitted.append(Admission(changed, customer_id, early=early))
            else:
                admitted.append(Admission(received, customer_id))
    return admitted


@dataclass(frozen=True)
class ReviewedRow:
    """An order of a run as review decided it on its own: what is recorded of it."""

    ledger: OrderLedger
    received: OrderReceived
    rules: tuple[RuleOutcome, ...]
    amount_due: Decimal | None
    reasons: tuple[HoldReason, ...]
    promo_code: str | None  # as ``promo_code_key`` writes it


@dataclass(frozen=True)
class RunReview:
    """A run's decisions (one per admission, None for those skipped) and what they change: the
    orders to record, the accounts their approvals moved (each as the run left it), the early
    changes applied and the promotions' uses, as (code, order id)."""

    decisions: list[Decision | None]
    rows: list[ReviewedRow]
    moved: list[CreditAccount]
    early_change_ids: list[str]
    promotion_uses: list[tuple[str, str]]


def review_orders(admitted: Sequence[Admission], accounts: Mapping[str, CreditAccount],
                  promotions: Mapping[str, PromotionState], prices: Mapping[str, ListPrice],
                  advances: Mapping[str, Decimal], policy: ReviewPolicy) -> RunReview:
    """Each order admitted, in the run's order, decided against its customer's account and its
    promotion as the run's earlier approvals left them (as if reviewed one after another).
    ``promotions`` holds the policy's promotions by code, ``advances`` the money paid in advance
    per order."""
    accounts, promotions = dict(accounts), dict(promotions)
    moved: dict[str, CreditAccount] = {}
    decisions: list[Decision | None] = []
    rows: list[ReviewedRow] = []
    early_change_ids: list[str] = []
    uses: list[tuple[str, str]] = []
    for admission in admitted:
        if admission.skip is not None or admission.account_id is None:
            decisions.append(None)
            continue
        received = admission.received
        order = received.order
        if admission.early is not None:
            early_change_ids.append(admission.early.change_id)
        code = promo_code_key(order.promo_code)
        promotion = promotions.get(code) if code is not None else None
        review = OrderUnderReview(
            order=order, totals=received.totals, account=accounts[admission.account_id],
            prices={line.sku: prices[line.sku] for line in order.lines if line.sku in prices},
            promotion=promotion,
            # money paid to us in advance, plus what the channel collected at checkout
            paid_in_advance=advances.get(received.order_id, ZERO) + order.amount_paid)
        decision = review_order(review, policy)
        ledger = OrderLedger(
            order_id=received.order_id, customer_id=order.customer.id, status=decision.outcome,
            kind=decision.kind, grand_total=received.totals.grand_total,
            paid=review.paid_in_advance if decision.kind == "prepaid" else ZERO,
            reasons=decision.reasons)
        if decision.outcome == "approved":
            account, ledger = approve(review.account, ledger)
            accounts[account.customer_id] = moved[account.customer_id] = account
            if promotion is not None:
                uses.append((promotion.code, received.order_id))
                promotions[promotion.code] = replace(promotion, used=promotion.used + 1)
        decisions.append(decision)
        rows.append(ReviewedRow(ledger, received, decision.rules, decision.amount_due,
                                decision.reasons, code))
    return RunReview(decisions, rows, list(moved.values()), early_change_ids, uses)


# --- decisions on an order review holds ---------------------------------------------------------


@dataclass(frozen=True)
class ManualDecision:
    """A person's decision on a held order: what the audit calls it, the order's new ledger, the
    account an approval moved, the holds decided, the promotion whose use an approval counts,
    the event; ``decided`` is whether the order's decision is final (a first approval is not)."""

    decision: Literal["approved", "first_approval", "rejected", "sent_back"]
    ledger: OrderLedger
    account: CreditAccount | None
    reasons: tuple[HoldReason, ...]
    promotion_code: str | None
    event: OrderApproved | OrderHeld | OrderRejected

    @property
    def decided(self) -> bool:
        return self.decision != "first_approval"


def decide_manually(account: CreditAccount, ledger: OrderLedger, reviewed: ReviewedOrder,
                    action: ManualAction, decider: Decider, comment: str | None,
                    policy: ReviewPolicy) -> ManualDecision | Refusal:
    """A reviewer (or a director) approves, rejects or sends back a held order
    (``refuse_manual_decision`` said it is held); above the policy's director thresholds a
    reviewer's approval is the first of two (``approvals.decide_step``)."""
    step = decide_step(ledger, reviewed.received, action, decider, policy, comment)
    if isinstance(step, Refusal):
        return step
    reasons, received = ledger.reasons, reviewed.received
    if step == "approve":
        account, ledger = approve(account, ledger)
        return ManualDecision("approved", ledger, account, reasons, reviewed.promo_code,
                              approved_event(received, reviewed.rules, decider.name, comment))
    if step == "first_approval":
        hold = director_hold(received, director_thresholds(received, policy), decider)
        return ManualDecision(
            "first_approval", replace(ledger, reasons=(hold,)), None, reasons, None,
            OrderHeld(order_id=received.order_id, reasons=(hold,), rules=reviewed.rules,
                      customer=received.order.customer, currency=received.order.currency))
    if step == "send_back":
        why = (Reason(code=REWORK, message=rework_message(comment)),)
        return ManualDecision("sent_back", replace(ledger, status="sent_back"), None, reasons,
                              None, OrderRejected(
                                  order_id=received.order_id, channel=received.channel,
                                  external_id=received.external_id, stage="review", reasons=why,
                                  customer=received.order.customer, decided_by=decider.name,
                                  comment=comment))
    return ManualDecision("rejected", replace(ledger, status="rejected"), None, reasons, None,
                          rejected_event(received, reasons, decider.name, comment))


def release_prepaid(account: CreditAccount, ledger: OrderLedger,
                    reviewed: ReviewedOrder) -> tuple[CreditAccount, OrderLedger,
                                                      tuple[RuleOutcome, ...]]:
    """A payment covered a prepaid order whose only hold was its prepayment: it is approved, and
    its prepayment rule explained again with the money received."""
    rules = tuple(prepayment_rule_after_payment(ledger) if r.rule == "prepayment" else r
                  for r in reviewed.rules)
    account, ledger = approve(account, ledger)
    return account, ledger, rules
