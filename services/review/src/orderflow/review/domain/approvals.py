"""Who may decide a held order, and how many approvals it needs. Pure: no I/O, no framework.

A held order is approved by one reviewer, unless it is above one of the policy's director
thresholds (``director_approval_above`` on its grand total, ``director_approval_discount`` on its
discounts' share of the subtotal): then a reviewer's approval is the first of two, the order
stays held for ``director_approval`` (the reason names who gave the first approval), and a
director, another person, gives the second (``director_approve``). With
``director_approval_alone`` a director's approval of such an order counts as both.

A reviewer may also reject a held order, or send it back for rework: it is refused with reason
``rework`` (the comment says what to rework). Either way the order's next revision is its fix,
reviewed again on its new content (``changes.decide_change``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orderflow.contracts.events import HoldReason, OrderReceived
from orderflow.review.domain.accounts import ZERO, OrderLedger, money, percent
from orderflow.review.domain.policy import ReviewPolicy

#: what a reviewer (or a director) does with a held order
ManualAction = Literal["approve", "director_approve", "reject", "send_back"]
#: the hold of an order a reviewer approved that a director approves too
DIRECTOR_APPROVAL = "director_approval"
#: the reason of an order sent back for rework
REWORK = "rework"

_PAST = {"approve": "approved", "director_approve": "approved", "reject": "rejected",
         "send_back": "sent back"}


@dataclass(frozen=True)
class Decider:
    """Who decides, as the service credential says: their name, and whether they hold a
    director's right (the second approval)."""

    name: str
    director: bool = False


@dataclass(frozen=True)
class Refusal:
    """A decision that cannot be taken: the order is ``unknown``, its state is in ``conflict``
    with it, the decider is ``forbidden`` to take it, or it is ``incomplete`` (a rejection or a
    send-back without a comment)."""

    kind: Literal["unknown", "conflict", "forbidden", "incomplete"]
    message: str


Step = Literal["approve", "first_approval", "reject", "send_back"]


def refuse_manual_decision(ledger: OrderLedger | None, order_id: str,
                           action: ManualAction) -> str | None:
    """Why nobody may decide this order now, or None when it is held."""
    if ledger is None:
        return f"order {order_id} is not known to review"
    if ledger.status != "held":
        status = "sent back for rework" if ledger.status == "sent_back" else ledger.status
        return (f"order {order_id} is {status}, not held: it cannot be "
                f"{_PAST[action]} any more")
    return None


def director_thresholds(received: OrderReceived, policy: ReviewPolicy) -> dict[str, str]:
    """The figures of the director thresholds the order is above (empty: one reviewer's approval
    is enough). A threshold of null or 0 is off."""
    totals = received.totals
    figures: dict[str, str] = {}
    above = policy.director_approval_above
    if above and totals.grand_total > above:
        figures |= {"order_total": money(totals.grand_total), "threshold": money(above)}
    cap = policy.director_approval_discount
    share = totals.discount / totals.subtotal if totals.subtotal else ZERO
    if cap and share > cap:
        figures |= {"discount_pct": percent(share), "discount_threshold_pct": percent(cap)}
    return figures


def awaiting_director(ledger: OrderLedger) -> HoldReason | None:
    """The ``director_approval`` hold of an order a reviewer approved, if it awaits a director."""
    return next((r for r in ledger.reasons if r.code == DIRECTOR_APPROVAL), None)


def director_hold(received: OrderReceived, figures: dict[str, str],
                  first: Decider) -> HoldReason:
    """The hold of an order ``first`` approved that a director must approve too."""
    why = []
    if "order_total" in figures:
        why.append(f"its total {figures['order_total']} {received.order.currency} is above "
                   f"{figures['threshold']}")
    if "discount_pct" in figures:
        why.append(f"its discounts are {figures['discount_pct']} % of its subtotal, above "
                   f"{figures['discount_threshold_pct']} %")
    return HoldReason(code=DIRECTOR_APPROVAL,
                      message=f"approved by {first.name}; {' and '.join(why)}: a director "
                              "approves it too",
                      figures={"approved_by": first.name, **figures})


def decide_step(ledger: OrderLedger, received: OrderReceived, action: ManualAction,
                decider: Decider, policy: ReviewPolicy, comment: str | None = None) -> Step | Refusal:
    """What ``decider``'s ``action`` does to a held order (``refuse_manual_decision`` said it is
    held): approves it, gives its first approval (it then awaits a director), rejects it or sends
    it back; or why it may not. A rejection says why and a send-back what to rework: whoever
    answers the customer or fixes the order reads it."""
    if action in ("reject", "send_back"):
        if not (comment or "").strip():
            return Refusal("incomplete", "a rejection says why the order is rejected"
                           if action == "reject" else "a send-back says what to rework")
        return action
    waiting = awaiting_director(ledger)
    if action == "approve":
        if waiting is not None:
            return Refusal("conflict", f"order {ledger.order_id} was approved by "
                           f"{waiting.figures.get('approved_by', 'a reviewer')} and awaits a "
                           "director's approval")
        if not director_thresholds(received, policy):
            return "approve"
        if decider.director and policy.director_approval_alone:
            return "approve"
        return "first_approval"
    # the director's approval
    if not decider.director:
        return Refusal("forbidden", "only a director gives the director's approval")
    if waiting is not None:
        if waiting.figures.get("approved_by") == decider.name:
            return Refusal("conflict", f"order {ledger.order_id} was approved by {decider.name} "
                           "already: the director's approval is another person's")
        return "approve"
    if not director_thresholds(received, policy) or policy.director_approval_alone:
        return "approve"
    return Refusal("conflict", f"order {ledger.order_id} needs a reviewer's approval before a "
                   "director's (the policy's director_approval_alone is off)")


def rework_message(comment: str | None) -> str:
    """The reason's text of an order sent back for rework."""
    return f"sent back for rework: {comment}" if comment else "sent back for rework"

