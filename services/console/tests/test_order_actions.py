"""The order actions' rules (pure): when a change is offered, what may come back and be refunded,
and the return, payment and carrier-scan forms' refusals; the receipt of an approved return."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from console_factories import T0, OrderStory

from orderflow.console import order_actions as rules
from orderflow.console.domain import project
from orderflow.contracts import events as ev


def dispatched_story() -> OrderStory:
    story = OrderStory("SO-ACT", lines=[("TEA-001", 3)]).submitted().received().approved().reserved()
    story.add(ev.ShipmentDispatched(
        order_id=story.order_id, shipment_id="S1", warehouse_id="WH-SH", carrier="SF",
        service="express", tracking_number="SF1", weight_kg=Decimal("1"),
        lines=(ev.ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=3),),
        dispatched_at=T0, promised_date=T0.date()), 10, "logistics")
    return story


def test_a_change_is_offered_until_something_is_dispatched_and_for_a_review_rejection() -> None:
    held = OrderStory("SO-H", channel="desk").submitted().received().held()
    assert rules.may_change(project(held.order_id, held.entries))
    story = dispatched_story()
    assert not rules.may_change(project(story.order_id, story.entries))
    # rejected by review: its fix is a new revision, reviewed again
    rejected = OrderStory("SO-R", channel="desk").submitted().received().rejected()
    assert rules.may_change(project(rejected.order_id, rejected.entries))
    # rejected by intake: no content to revise (its channel pushes it again)
    refused = OrderStory("SO-I", channel="desk").submitted().rejected(stage="intake",
                                                                      code="unknown_sku")
    assert not rules.may_change(project(refused.order_id, refused.entries))


def test_a_connectors_order_is_not_revised_at_the_desk() -> None:
    """Its identity is its channel's: the desk's revision of it would be another order."""
    held = OrderStory("SO-SHOP", channel="canonical").submitted().received().held()
    assert not rules.may_change(project(held.order_id, held.entries))


def test_what_may_come_back_counts_earlier_returns_not_refused() -> None:
    story = dispatched_story()
    assert rules.returnable(story.entries) == {"TEA-001": 3}
    story.add(ev.ReturnRequested(order_id=story.order_id, rma_id="R1", requested_at=T0,
                                 lines=(ev.ReturnRequestLine(sku="TEA-001", quantity=2),)), 20)
    assert rules.returnable(story.entries) == {"TEA-001": 1}
    story.add(ev.ReturnRefused(order_id=story.order_id, rma_id="R1", reasons=(
        ev.Reason(code="return_window_passed", message="late"),)), 21)
    assert rules.returnable(story.entries) == {"TEA-001": 3}
    assert rules.returnable(OrderStory("SO-N").received().entries) == {}


def test_a_return_is_refused_field_by_field() -> None:
    can = {"TEA-001": 3}
    assert rules.check_return("broken", [("TEA-001", 3)], Decimal("10.00"), can,
                              Decimal("50")) == {}
    refused = rules.check_return(" ", [("TEA-001", 4), ("FAN-030", 1)], Decimal("50.01"), can,
                                 Decimal("50"))
    assert set(refused) == {"reason", "lines.0.quantity", "lines.1.sku", "refund"}
    assert "at most 3" in refused["lines.0.quantity"]
    # the same SKU on two lines counts together
    assert set(rules.check_return("x", [("TEA-001", 2), ("TEA-001", 2)], Decimal(0), can,
                                  Decimal(0))) == {"lines.1.quantity"}
    assert rules.check_return("x", [], Decimal("1.001"), {}, Decimal(5)) == {
        "lines": "nothing of the order was dispatched", "refund": "at most 2 decimals"}


def test_a_payment_is_refused_field_by_field_and_a_reference_used_once() -> None:
    ok = rules.check_payment("O1", Decimal("12.50"), "cny", "BANK-1", "CNY", set())
    assert ok == {}
    used = {rules.payment_id_for("O1", "bank-1 ")}
    refused = rules.check_payment("O1", Decimal("1.005"), "USD", "BANK-1", "CNY", used)
    assert set(refused) == {"amount", "currency", "reference"}
    assert rules.check_payment("O2", Decimal("-1"), "CNY", "BANK-1", "CNY", used) == {
        "amount": "a positive amount"}  # another order's reference is its own
    assert set(rules.check_payment("O1", Decimal("1"), "CNY", "", "CNY", set())) == {"reference"}


def test_a_scan_names_a_shipment_of_the_order_and_an_exception_its_code() -> None:
    story = dispatched_story()
    view = project(story.order_id, story.entries)
    now = T0 + timedelta(days=1)
    assert rules.check_scan(view, "S1", "delivered", None, now, now) == {}
    assert set(rules.check_scan(view, "S9", "exception", None, now + timedelta(hours=1),
                                now)) == {"shipment_id", "code", "at"}
    assert rules.check_scan(view, "S1", "exception", "damaged", now, now) == {}


def test_the_receipt_of_an_approved_return_carries_the_inspection() -> None:
    approved = ev.ReturnApproved(
        order_id="O1", rma_id="R1", resolution="refund", carrier="SF", tracking_number="SFR1",
        refund_amount=Decimal("30"), currency="CNY", lines=(
            ev.ReturnLine(sku="TEA-001", warehouse_id="WH-SH", quantity=2, refund=Decimal("20")),
            ev.ReturnLine(sku="FAN-030", warehouse_id="WH-SH", quantity=1, refund=Decimal("10"))))
    receipt = rules.receipt_for(approved, {"TEA-001": "restock", "FAN-030": "scrap"}, T0)
    assert receipt.warehouse_id == "WH-SH" and receipt.rma_id == "R1"
    assert {(u.sku, u.quantity, u.outcome) for u in receipt.inspections} == {
        ("TEA-001", 2, "restock"), ("FAN-030", 1, "scrap")}
