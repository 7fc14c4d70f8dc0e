"""Approval levels and sending back, without broker or database: the director thresholds, a
reviewer's approval then a director's, the same person twice refused, a send-back for rework and
the reworked order's next revision reviewed again."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from orderflow.contracts.events import HoldReason, OrderChangeAdmitted, OrderReceived
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.review import domain
from orderflow.review.domain import CreditAccount, Decider, OrderLedger, ReviewedOrder, ReviewPolicy

pytestmark = pytest.mark.unit

D = Decimal
POLICY = ReviewPolicy()
REVIEWER = Decider("wang.li")
OTHER_REVIEWER = Decider("zhao.min")
DIRECTOR = Decider("chen.jie", director=True)
HOLD = HoldReason(code="manager_approval", message="above 10000")


def received(total: str = "60000", discount: str = "0", subtotal: str | None = None,
             revision: int = 1) -> OrderReceived:
    from orderflow.devstack import catalogue

    order = CanonicalOrder.model_validate(catalogue.canonical_order("T-1") | {"revision": revision})
    totals = OrderTotals(subtotal=D(subtotal or total), discount=D(discount), tax=D(0),
                         shipping=D(0), grand_total=D(total))
    return OrderReceived(order_id="O1", channel="desk", external_id="T-1", order=order,
                         totals=totals)


def account() -> CreditAccount:
    return CreditAccount(customer_id="C0002", known=True, currency="CNY",
                         credit_limit=D("1000000"), payment_terms="net30")


def ledger(total: str = "60000", **changes: Any) -> OrderLedger:
    base = OrderLedger(order_id="O1", customer_id="C0002", status="held", kind="credit",
                       grand_total=D(total), reasons=(HOLD,))
    return replace(base, **changes)


def reviewed(r: OrderReceived, led: OrderLedger) -> ReviewedOrder:
    return ReviewedOrder(ledger=led, received=r, rules=(), amount_due=None, promo_code=None,
                         reviewed_at=datetime(2026, 11, 20, tzinfo=UTC))


def decide(action: domain.ManualAction, decider: Decider, led: OrderLedger | None = None,
           r: OrderReceived | None = None, policy: ReviewPolicy = POLICY,
           comment: str | None = None) -> domain.ManualDecision | domain.Refusal:
    r = r or received()
    led = led or ledger(grand_total=r.totals.grand_total)
    return domain.decide_manually(account(), led, reviewed(r, led), action, decider, comment,
                                  policy)


def decided(outcome: domain.ManualDecision | domain.Refusal) -> domain.ManualDecision:
    assert isinstance(outcome, domain.ManualDecision), outcome
    return outcome


# --- the thresholds -----------------------------------------------------------------------------


def test_the_thresholds_are_on_the_total_and_on_the_discounts_share() -> None:
    assert domain.director_thresholds(received("50000"), POLICY) == {}
    assert domain.director_thresholds(received("50000.01"), POLICY) == {
        "order_total": "50000.01", "threshold": "50000.00"}
    assert domain.director_thresholds(received("1000", discount="250", subtotal="1250"),
                                      POLICY) == {}  # 20 %: not above 25 %
    assert domain.director_thresholds(received("1000", discount="400", subtotal="1400"),
                                      POLICY) == {"discount_pct": "28.57",
                                                  "discount_threshold_pct": "25.00"}


@pytest.mark.parametrize("off", [None, D(0)])
def test_a_threshold_of_null_or_zero_is_off(off: Decimal | None) -> None:
    policy = ReviewPolicy(director_approval_above=off, director_approval_discount=off)
    assert domain.director_thresholds(received("9999999", discount="900", subtotal="1000"),
                                      policy) == {}
    assert decided(decide("approve", REVIEWER, policy=policy)).decision == "approved"


def test_an_order_below_the_thresholds_is_approved_by_one_reviewer() -> None:
    outcome = decided(decide("approve", REVIEWER, r=received("12000"), comment="fine"))
    assert outcome.decision == "approved" and outcome.decided
    assert outcome.ledger.status == "approved" and outcome.account is not None
    assert outcome.event.approved_by == "wang.li"  # type: ignore[union-attr]


# --- two approvals ------------------------------------------------------------------------------


def test_a_reviewers_approval_above_the_threshold_is_the_first_of_two() -> None:
    first = decided(decide("approve", REVIEWER, comment="checked the credit"))
    assert first.decision == "first_approval" and not first.decided
    assert first.ledger.status == "held" and first.account is None
    (hold,) = first.ledger.reasons
    assert hold.code == "director_approval"
    assert hold.figures == {"approved_by": "wang.li", "order_total": "60000.00",
                            "threshold": "50000.00"}
    assert hold.message.startswith("approved by wang.li; its total 60000.00 CNY is above 50000.00")
    assert first.event.EVENT_TYPE == "OrderHeld"
    assert first.event.reasons == (hold,)  # type: ignore[union-attr]
    assert first.reasons == (HOLD,)  # the holds the reviewer decided, for the audit


def test_a_reviewer_then_a_director_approves_it() -> None:
    first = decided(decide("approve", REVIEWER))
    second = decided(decide("director_approve", DIRECTOR, led=first.ledger, comment="ok"))
    assert second.decision == "approved" and second.ledger.status == "approved"
    assert second.event.approved_by == "chen.jie"  # type: ignore[union-attr]
    assert second.account is not None
    assert second.account.approved_not_invoiced == D("60000")


def test_a_reviewer_cannot_give_the_second_approval() -> None:
    first = decided(decide("approve", REVIEWER))
    for action, decider, kind in [("approve", OTHER_REVIEWER, "conflict"),
                                  ("approve", REVIEWER, "conflict"),
                                  ("director_approve", OTHER_REVIEWER, "forbidden")]:
        refused = decide(action, decider, led=first.ledger)  # type: ignore[arg-type]
        assert isinstance(refused, domain.Refusal)
        assert refused.kind == kind, (action, decider)
    plain = decide("approve", DIRECTOR, led=first.ledger)
    assert isinstance(plain, domain.Refusal) and "awaits a director" in plain.message


def test_the_same_person_cannot_give_both_approvals() -> None:
    first = decided(decide("approve", DIRECTOR))  # a director's approval counts as the first
    assert first.decision == "first_approval"
    again = decide("director_approve", DIRECTOR, led=first.ledger)
    assert isinstance(again, domain.Refusal) and again.kind == "conflict"
    assert "another person" in again.message
    other = decided(decide("director_approve", Decider("liu.yang", director=True),
                           led=first.ledger))
    assert other.decision == "approved"


def test_a_directors_approval_alone_needs_the_policy_to_say_so() -> None:
    fresh = decide("director_approve", DIRECTOR)
    assert isinstance(fresh, domain.Refusal) and fresh.kind == "conflict"
    assert "reviewer's approval before" in fresh.message
    alone = ReviewPolicy(director_approval_alone=True)
    assert decided(decide("director_approve", DIRECTOR, policy=alone)).decision == "approved"
    assert decided(decide("approve", DIRECTOR, policy=alone)).decision == "approved"
    # a reviewer's approval is still the first of two
    assert decided(decide("approve", REVIEWER, policy=alone)).decision == "first_approval"


def test_a_director_approves_an_order_below_the_thresholds_alone() -> None:
    outcome = decided(decide("director_approve", DIRECTOR, r=received("12000")))
    assert outcome.decision == "approved"


def test_an_order_awaiting_a_director_may_still_be_rejected_or_sent_back() -> None:
    first = decided(decide("approve", REVIEWER))
    assert decided(decide("reject", OTHER_REVIEWER, led=first.ledger,
                          comment="the customer cancelled by phone")).decision == "rejected"
    assert decided(decide("send_back", OTHER_REVIEWER, led=first.ledger,
                          comment="split the order")).decision == "sent_back"


# --- sending back -------------------------------------------------------------------------------


def test_sending_back_rejects_with_reason_rework_and_the_comment() -> None:
    back = decided(decide("send_back", REVIEWER, comment="wrong delivery address"))
    assert back.decision == "sent_back" and back.ledger.status == "sent_back"
    event = back.event
    assert event.EVENT_TYPE == "OrderRejected"
    assert event.stage == "review" and event.decided_by == "wang.li"  # type: ignore[union-attr]
    (reason,) = event.reasons  # type: ignore[union-attr]
    assert (reason.code, reason.message) == ("rework",
                                             "sent back for rework: wrong delivery address")
    assert domain.refuse_manual_decision(back.ledger, "O1", "approve") == (
        "order O1 is sent back for rework, not held: it cannot be approved any more")
    assert domain.cancel(account(), back.ledger) is None  # nothing to release


def change_of(r: OrderReceived, revision: int) -> OrderChangeAdmitted:
    new = r.order.model_copy(update={"revision": revision})
    return OrderChangeAdmitted(order_id=r.order_id, change_id=f"O1:{revision}", channel="desk",
                               external_id="T-1", previous_revision=r.order.revision,
                               order=new, totals=r.totals,
                               requested_by="clerk")


@pytest.mark.parametrize("action", ["send_back", "reject"])
def test_the_next_revision_of_an_order_sent_back_or_rejected_is_reviewed_again(
        action: domain.ManualAction) -> None:
    """One path for both: the new revision is the fix, reviewed again on its content."""
    from orderflow.devstack import catalogue
    from orderflow.review.domain import ListPrice

    prices = {sku: ListPrice(sku, p.unit_price, "CNY") for sku, p in catalogue.products().items()}
    first = received("1000")
    back = decided(decide(action, REVIEWER, r=first, comment="fix it"))
    state = domain.ChangeState(account=account(), ledger=back.ledger,
                               reviewed=reviewed(first, back.ledger), prices=prices)
    # held again: back in the queue, said with a hold of its own
    blocked = replace(account(), blocked=True)
    outcome = domain.decide_change(change_of(first, 2), replace(state, account=blocked), POLICY)
    assert outcome.status == "applied" and outcome.content is not None
    assert outcome.content.status == "held"
    assert [e.EVENT_TYPE for e in outcome.events] == ["OrderHeld", "OrderChangeApproved"]
    # passes every rule now: approved
    totals = OrderTotals(subtotal=D("146.00"), discount=D(0), tax=D("18.98"), shipping=D("10.00"),
                         grand_total=D("174.98"))
    passing = change_of(first, 2).model_copy(update={"totals": totals})
    approved = domain.decide_change(passing, state, POLICY)
    assert approved.status == "released", approved.note
    assert approved.released is not None and approved.released.status == "approved"
    assert [e.EVENT_TYPE for e in approved.events] == ["OrderApproved", "OrderChangeApproved"]


def test_a_rejected_order_whose_new_revision_a_rule_still_rejects_stays_rejected() -> None:
    first = received("1000")
    rejected = decided(decide("reject", REVIEWER, r=first, comment="duplicate of SO-1"))
    state = domain.ChangeState(account=replace(account(), blocked=True), ledger=rejected.ledger,
                               reviewed=reviewed(first, rejected.ledger))
    policy = ReviewPolicy(reject_on=frozenset({"blocked_customer"}))
    outcome = domain.decide_change(change_of(first, 2), state, policy)
    assert outcome.status == "refused" and outcome.content is None
    assert "blocked_customer" in [r.code for r in outcome.events[0].reasons]  # type: ignore[attr-defined]


def test_a_rejection_says_why_and_a_send_back_what_to_rework() -> None:
    for action, said in (("reject", "says why"), ("send_back", "what to rework")):
        for comment in (None, "", "   "):
            refused = decide(action, REVIEWER, comment=comment)
            assert isinstance(refused, domain.Refusal) and refused.kind == "incomplete", refused
            assert said in refused.message
    # an approval needs none
    assert decided(decide("approve", REVIEWER, r=received("100"))).decision == "approved"
