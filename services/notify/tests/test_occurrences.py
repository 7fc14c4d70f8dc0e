"""What each customer-facing event announces and changes in its order's state, and a run of them
decided one after another: the domain alone, without a broker or a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orderflow.contracts.events import (
    CustomerUpdated,
    HoldReason,
    OrderChanged,
    OrderHeld,
    OrderReceived,
    ReservedLine,
    ShipmentDispatched,
)
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.catalogue import canonical_order
from orderflow.notify import domain
from orderflow.notify.app import create_service

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
TOTALS = OrderTotals(subtotal=Decimal("200.00"), discount=Decimal("0.00"), tax=Decimal("18.00"),
                     shipping=Decimal("10.00"), grand_total=Decimal("228.00"))
TRACKING = domain.Tracking("https://track.example/{carrier}/{tracking_number}")
SETTINGS = domain.RunSettings(default_language="zh-CN", webhook_channels=frozenset(),
                              tracking=TRACKING)


def an_order(external_id: str = "EXT-1", *, address_index: int = 0,
             requested_delivery_date: str | None = None) -> CanonicalOrder:
    return CanonicalOrder.model_validate(canonical_order(
        external_id, address_index=address_index, requested_delivery_date=requested_delivery_date))


def received(order: CanonicalOrder) -> OrderReceived:
    return OrderReceived(order_id=order_id_for("canonical", order.external_id), channel="canonical",
                         external_id=order.external_id, order=order, totals=TOTALS)


def held(order_id: str, code: str, *, amount_due: Decimal | None = None,
         figures: dict[str, str] | None = None) -> OrderHeld:
    return OrderHeld(order_id=order_id, amount_due=amount_due, currency="CNY",
                     reasons=(HoldReason(code=code, message="m", figures=figures or {}),))  # type: ignore[arg-type]


def changed(order: CanonicalOrder, *changes: str) -> OrderChanged:
    return OrderChanged(order_id=order_id_for("canonical", order.external_id), change_id="CH-1",
                        channel="canonical", external_id=order.external_id, revision=2,
                        changes=changes, order=order, totals=TOTALS, review_status="approved",
                        stock_status="reserved", requested_by="customer")


def dispatched(order_id: str, shipment: str, *, count: int) -> ShipmentDispatched:
    return ShipmentDispatched(
        order_id=order_id, shipment_id=shipment, warehouse_id="WH-SH", carrier="SF",
        service="express", tracking_number=f"T-{shipment}",
        lines=(ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1),),
        weight_kg=Decimal("1.0"), dispatched_at=datetime(2026, 11, 21, 2, tzinfo=UTC),
        promised_date=date(2026, 11, 23), shipment_count=count)


def empty_state(*order_ids: str) -> domain.RunState:
    return domain.RunState.loaded(order_ids, created=(), found={}, profiles={}, names={})


def occur(state: domain.RunState, event: object) -> domain.Occurrence:
    return domain.occurrence(state, event, TRACKING)  # type: ignore[arg-type]


# --- the table ----------------------------------------------------------------------------------


def test_every_customer_facing_event_class_has_an_entry() -> None:
    event_of_topic = {topic.name: event_class for event_class, topic in TOPIC_OF_EVENT.items()}
    customer_facing = {event_of_topic[s.topic.name] for s in create_service().subscriptions
                       if s.batch_handler is not None}
    assert set(domain.OCCURRENCES) == customer_facing
    assert len(domain.OCCURRENCES) == len(domain.KINDS)  # one kind of message per event class


def test_an_event_notify_does_not_record_has_no_occurrence() -> None:
    update = CustomerUpdated(customer_id="C1", name="Anna", email=None, phone=None,
                             language="en", credit_limit=Decimal("0"), currency="CNY",
                             payment_terms="prepaid", preferred_channel="email",
                             opt_out_marketing=False)
    with pytest.raises(TypeError, match="does not record CustomerUpdated"):
        occur(empty_state(), update)


def test_a_received_order_is_remembered_with_its_facts() -> None:
    order = an_order()
    event = received(order)
    state = empty_state(event.order_id)
    o = occur(state, event)
    assert (o.kind, o.order_id, o.event) == ("order_received", event.order_id, {})
    record = state.orders[event.order_id]
    assert record is not None and record.facts is not None
    assert record.facts["totals"]["grand_total"] == "228.00"
    assert record.contact.email == order.customer.email
    assert state.changed() == [record]


# --- holds --------------------------------------------------------------------------------------


def test_a_held_order_is_asked_for_the_events_amount_due() -> None:
    event = received(an_order())
    state = empty_state(event.order_id)
    occur(state, event)
    o = occur(state, held(event.order_id, "prepayment_due", amount_due=Decimal("50.00"),
                          figures={"amount_due": "80.00"}))
    assert (o.kind, o.suppress) == ("order_held", None)
    assert o.event == {"notice": "payment_due", "amount_due": "50.00", "currency": "CNY"}


def test_without_an_amount_the_prepayments_figure_then_the_orders_total_is_asked_for() -> None:
    event = received(an_order())
    state = empty_state(event.order_id)
    occur(state, event)
    from_figure = occur(state, held(event.order_id, "prepayment_due",
                                    figures={"amount_due": "80.00"}))
    assert from_figure.event["amount_due"] == "80.00"
    from_total = occur(state, held(event.order_id, "prepayment_due"))
    assert from_total.event["amount_due"] == "228.00"
    unknown = occur(empty_state("O-UNSEEN"), held("O-UNSEEN", "prepayment_due"))
    assert unknown.event["amount_due"] is None


def test_a_payment_hold_does_not_use_up_the_review_notice() -> None:
    state = empty_state("O-1")
    occur(state, held("O-1", "prepayment_due", amount_due=Decimal("10.00")))
    record = state.orders["O-1"]
    assert record is not None and not record.review_notice_sent
    assert occur(state, held("O-1", "credit_limit")).suppress is None


def test_an_internal_hold_is_told_once_per_order() -> None:
    state = empty_state("O-1")
    first = occur(state, held("O-1", "credit_limit", figures={"limit": "5000"}))
    assert first.event == {"notice": "under_review", "amount_due": None, "currency": "CNY"}
    assert first.suppress is None
    again = occur(state, held("O-1", "overdue"))
    assert again.event["notice"] == "under_review"
    assert again.suppress is not None and "already told" in again.suppress


# --- changes ------------------------------------------------------------------------------------


def test_a_change_names_the_new_address_only_when_the_address_changed() -> None:
    order = an_order(address_index=1, requested_delivery_date="2026-12-01")
    state = empty_state(order_id_for("canonical", order.external_id))
    address = order.shipping_address
    moved = occur(state, changed(order, "shipping_address"))
    assert moved.kind == "order_changed"
    assert moved.event["ship_to"] == " ".join(
        p for p in (address.province, address.city, address.district, address.line1) if p)
    assert address.line1 in moved.event["ship_to"]
    assert moved.event["requested_delivery_date"] is None
    lines_only = occur(state, changed(order, "lines"))
    assert lines_only.event["ship_to"] is None
    assert lines_only.event["changes"] == ["lines"]
    dated = occur(state, changed(order, "requested_delivery_date"))
    assert (dated.event["ship_to"], dated.event["requested_delivery_date"]) == (None, "2026-12-01")


def test_a_change_replaces_what_later_messages_show() -> None:
    first, bigger = an_order(), CanonicalOrder.model_validate(
        canonical_order("EXT-1", lines=[("TEA-001", 5)]))
    state = empty_state(order_id_for("canonical", "EXT-1"))
    occur(state, received(first))
    occur(state, changed(bigger, "lines"))
    record = state.orders[order_id_for("canonical", "EXT-1")]
    assert record is not None and record.facts is not None
    assert [line["quantity"] for line in record.facts["lines"]] == [5]


# --- a run --------------------------------------------------------------------------------------


def test_a_run_is_decided_event_by_event_on_what_the_ones_before_left() -> None:
    event = received(an_order())
    state = empty_state(event.order_id)
    decided = domain.decide_run(state, [event, held(event.order_id, "credit_limit"),
                                        held(event.order_id, "overdue")], SETTINGS, NOW)
    assert [(d.occurrence.kind, [(p.channel, p.status) for p in d.plans]) for d in decided] == [
        ("order_received", [("email", "pending")]),
        ("order_held", [("email", "pending")]),
        ("order_held", [("email", "suppressed")]),
    ]
    # the hold carries no order of its own: its message shows the one received before it
    assert decided[1].context["order"]["totals"]["grand_total"] == "228.00"
    assert all(d.keys == [None] for d in decided)


def test_an_orders_dispatches_wait_for_each_other_within_a_run() -> None:
    event = received(an_order())
    state = empty_state(event.order_id)
    window = timedelta(seconds=2)
    run = [event, dispatched(event.order_id, "S1", count=2),
           dispatched(event.order_id, "S2", count=2)]
    decided = domain.decide_run(state, run, SETTINGS, NOW)
    key = f"{event.order_id}:shipment_dispatched"
    assert [d.keys for d in decided] == [[None], [key], [key]]
    assert domain.waiting_pairs(decided) == [(key, "email")]
    waits = domain.run_waits(decided, stored=[set(), set(), set()], window=window, waiting={})
    # the second shipment completes the order: it is due at once and lets the first go with it
    assert waits == domain.RunWaits([[NOW], [None], [NOW]], [])
    alone = domain.run_waits(decided[:2], stored=[set(), set()], window=window, waiting={})
    assert alone.due_at == [[NOW], [NOW + window]]
    # a dispatch whose row is stored already does not count as waiting a second time
    stored = domain.run_waits(decided, stored=[set(), {"email"}, set()], window=window,
                              waiting={(key, "email"): [7]})
    assert stored.released == [7]
    # the shipment's tracking link comes from the configured template
    assert decided[1].context["event"]["shipments"][0]["tracking_url"] == \
        "https://track.example/SF/T-S1"
