"""The demo's expectations, without a broker: every simulated order is meant to come to one
outcome (``expected``), the services' own rules really decide it that way (intake's checks and
review's rules, run here as pure functions against the demo master data, approvals in any order),
and the demo's comparison counts an order that ends elsewhere, or a customer-facing event
without a recorded notification."""

from __future__ import annotations

import csv
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from orderflow.contracts.events import (
    CustomerUpdated,
    HoldReason,
    NotificationRecorded,
    OrderHeld,
    OrderRejected,
    OrderSubmitted,
    Reason,
)
from orderflow.devstack import catalogue
from orderflow.devstack.eventlog import SeenEvent
from orderflow.devstack.masterdata import DEMO_DATA
from orderflow.devstack.simulator import Expected, Mix, generate_orders
from orderflow.devstack.tracking import Tracker, unnotified_events, wrong_outcomes
from orderflow.intake import domain as intake
from orderflow.intake.handlers import Normalised, normalise
from orderflow.review import domain as review
from orderflow.review.domain import (
    CreditAccount,
    ListPrice,
    OrderLedger,
    OrderUnderReview,
    ReviewPolicy,
)

pytestmark = pytest.mark.unit
POLICY = ReviewPolicy()


def _intake(channel: str, external_id: str, payload: Any) -> intake.Accepted | intake.Refused:
    submitted = OrderSubmitted(channel=channel, external_id=external_id,
                               received_at=datetime.now(UTC), payload=payload)
    n = normalise(submitted)
    if not isinstance(n, Normalised):
        return n
    products = {sku: intake.Product(sku, p.unit_price, p.tax_rate, p.weight_kg, p.active)
                for sku, p in catalogue.products().items()}
    return intake.check_order(n.order, products, prices_include_tax=n.prices_include_tax)


def _accounts() -> dict[str, CreditAccount]:
    with (DEMO_DATA / "customers.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {r["customer_id"]: CreditAccount.unknown(r["customer_id"], POLICY).with_profile(
        CustomerUpdated(customer_id=r["customer_id"], name=r["name"],
                        credit_limit=Decimal(r["credit_limit"]), currency=r["currency"],
                        payment_terms=r["payment_terms"],
                        open_receivables=Decimal(r["open_receivables"]),
                        overdue_amount=Decimal(r["overdue_amount"]),
                        overdue_days=int(r["overdue_days"]), blocked=r["blocked"] == "true"))
        for r in rows}


@pytest.mark.parametrize("seed", [7, 3, 11])
def test_every_simulated_order_comes_to_its_expected_outcome_by_the_services_rules(
        seed: int) -> None:
    """Intake rejects the bad orders with the seeded code and accepts the rest; review, taking
    the accepted orders in a shuffled order (approvals adding to the exposure), holds the seeded
    ones for their reason and approves every order meant to be fulfilled."""
    orders = generate_orders(300, seed=seed, mix=Mix(bad=0.1, held=0.1))
    accounts = _accounts()
    prices = {sku: ListPrice(sku, p.unit_price, "CNY", p.active)
              for sku, p in catalogue.products().items()}
    accepted = []
    outcomes: Counter[str] = Counter()
    for sim in orders:
        if sim.kind == "duplicate":
            continue
        result = _intake(sim.channel, sim.external_id, sim.payload)
        if sim.expected.outcome == "rejected":
            assert isinstance(result, intake.Refused), sim
            assert sim.expected.code in {r.code for r in result.reasons}, (sim, result)
            outcomes[str(sim.expected)] += 1
        else:
            assert isinstance(result, intake.Accepted), (sim, result)
            accepted.append((sim, result))
    random.Random(seed).shuffle(accepted)
    for sim, result in accepted:
        order = result.order
        r = OrderUnderReview(order, result.totals, accounts[order.customer.id], prices,
                             paid_in_advance=order.amount_paid)
        decision = review.review_order(r, POLICY)
        if sim.expected.outcome == "held":
            assert decision.outcome == "held", (sim.expected, decision.codes)
            assert sim.expected.code in decision.codes, (sim.expected, decision.codes)
        else:
            assert decision.outcome == "approved", (sim.channel, order.customer.id,
                                                    r.total, decision.codes)
            ledger = OrderLedger(order.external_id, order.customer.id, "held", decision.kind,
                                 r.total)
            accounts[order.customer.id], _ = review.approve(accounts[order.customer.id], ledger)
        outcomes[str(sim.expected)] += 1
    # every kind of seeded outcome occurs, and most orders are meant to go through
    assert {"rejected:quantity_not_positive", "rejected:unknown_sku", "rejected:total_mismatch",
            "rejected:missing_field", "held:blocked_customer", "held:overdue",
            "held:credit_limit", "held:prepayment_due",
            "held:manager_approval"} <= set(outcomes), outcomes
    assert outcomes["fulfilled"] / sum(outcomes.values()) > 0.6, outcomes


def test_a_re_pushed_order_keeps_its_expectation() -> None:
    orders = generate_orders(200, seed=5, mix=Mix(duplicate=0.1))
    first = {}
    for o in orders:
        oid = o.order_id
        first.setdefault(oid, o.expected)
        assert o.expected == first[oid]


# --- the comparison ------------------------------------------------------------------------------

_offset = iter(range(1_000_000))


def _seen(topic: str, event: Any, event_id: str = "") -> SeenEvent:
    return SeenEvent(topic, 0, next(_offset), getattr(event, "order_id", None),
                     {"event_id": event_id or f"ev-{next(_offset)}"}, b"", event)


def _held(order_id: str, *codes: str) -> SeenEvent:
    return _seen("order.held", OrderHeld.model_construct(
        order_id=order_id, reasons=tuple(HoldReason(code=c, message=c)  # type: ignore[arg-type]
                                         for c in codes)))


def _rejected(order_id: str, *codes: str) -> SeenEvent:
    return _seen("order.rejected", OrderRejected.model_construct(
        order_id=order_id, reasons=tuple(Reason(code=c, message=c) for c in codes)))


class _Plain:
    def __init__(self, topic: str, order_id: str) -> None:
        self.order_id = order_id
        self.topic = topic


def _state(topic: str, order_id: str, event_id: str = "") -> SeenEvent:
    # a bare event with an order id: enough for the tracker's states that need no more
    return _seen(topic, _Plain(topic, order_id), event_id)


def _notified(source_event_id: str, status: str = "sent") -> SeenEvent:
    return _seen("notification.recorded", NotificationRecorded(
        order_id="O", source_event_id=source_event_id, source_event_type="X", channel="email",
        status=status))  # type: ignore[arg-type]


def test_wrong_outcomes_counts_orders_that_ended_elsewhere_or_for_another_reason() -> None:
    events = [
        _rejected("ok-rejected", "unknown_sku"),
        _held("ok-held", "overdue", "credit_limit"),
        _state("stock.backordered", "ok-backordered"),
        _held("wrong-reason", "credit_limit"),
        _held("meant-fulfilled", "manager_approval"),
        _rejected("meant-held", "total_mismatch"),
        _held("re-held", "overdue"), _held("re-held", "credit_limit"),  # the latest counts
    ]
    tracker = Tracker()
    tracker.feed(events)
    expected = {
        "ok-rejected": Expected("rejected", "unknown_sku"),
        "ok-held": Expected("held", "overdue"),
        "ok-backordered": Expected("fulfilled"),
        "wrong-reason": Expected("held", "overdue"),
        "meant-fulfilled": Expected("fulfilled"),
        "meant-held": Expected("held", "blocked_customer"),
        "re-held": Expected("held", "overdue"),
        "never-seen": Expected("fulfilled"),
    }
    wrong = {w["order_id"]: w for w in wrong_outcomes(expected, tracker, events)}
    assert set(wrong) == {"wrong-reason", "meant-fulfilled", "meant-held", "re-held",
                          "never-seen"}
    assert wrong["meant-fulfilled"] == {"order_id": "meant-fulfilled", "expected": "fulfilled",
                                        "got": "held:manager_approval"}
    assert wrong["wrong-reason"]["expected"] == "held:overdue"
    assert wrong["never-seen"]["got"] == "unseen"


def test_unnotified_counts_customer_facing_events_without_a_recorded_outcome() -> None:
    events = [
        _state("order.received", "A", "e1"), _notified("e1", "sent"),
        _state("order.approved", "A", "e2"), _notified("e2", "suppressed"),
        _state("stock.backordered", "A", "e3"), _notified("e3", "recorded"),
        _state("order.held", "B", "e4"), _notified("e4", "failed"),  # given up: not told
        _state("order.received", "C", "e5"),  # nothing recorded
        _state("order.received", "C", "e5"),  # redelivered: still one event
        _state("stock.reserved", "A", "e6"),  # not customer-facing
    ]
    missing = unnotified_events(events)
    assert sorted(m["event_id"] for m in missing) == ["e4", "e5"]
    assert {m["topic"] for m in missing} == {"order.held", "order.received"}
    assert unnotified_events([*events, _notified("e4"), _notified("e5")]) == []
