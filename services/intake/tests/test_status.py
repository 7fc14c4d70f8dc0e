"""What each outcome event does to an order's status as its channel sees it
(``domain.apply_outcome``), and which URLs an outcome webhook may be registered with; without a
broker or a database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orderflow.contracts import events as ev
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.devstack.catalogue import canonical_order
from orderflow.intake import channel_api, domain

pytestmark = pytest.mark.unit

ORDER_ID = "order-1"
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def order() -> CanonicalOrder:
    parsed = domain.parse_canonical(canonical_order("SO-1"))
    assert isinstance(parsed, CanonicalOrder), parsed
    return parsed


def totals() -> OrderTotals:
    o = order()
    return domain.compute_totals(o, {line.sku: domain.Product(
        line.sku, line.unit_price, Decimal("0.09"), Decimal("1"), True) for line in o.lines})


def received() -> ev.OrderReceived:
    return ev.OrderReceived(order_id=ORDER_ID, channel="canonical", external_id="SO-1",
                            order=order(), totals=totals())


def approved() -> ev.OrderApproved:
    return ev.OrderApproved(order_id=ORDER_ID, channel="canonical", external_id="SO-1",
                            order=order(), totals=totals(), approved_by="auto")


def reserved() -> ev.StockReserved:
    return ev.StockReserved(order_id=ORDER_ID, order=order(), filled_in_full_first_attempt=True,
                            reservations=(
        ev.ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1),))


def dispatched(shipment_id: str = "S-1", tracking: str = "SF100") -> ev.ShipmentDispatched:
    return ev.ShipmentDispatched(
        order_id=ORDER_ID, shipment_id=shipment_id, warehouse_id="WH-SH", carrier="SF",
        service="standard", tracking_number=tracking, lines=(), weight_kg=Decimal("1"),
        dispatched_at=T0, promised_date=date(2026, 11, 22))


def tracking(status: str, shipment_id: str = "S-1") -> ev.TrackingUpdated:
    return ev.TrackingUpdated(order_id=ORDER_ID, shipment_id=shipment_id, tracking_number="SF100",
                              carrier="SF", status=status, occurred_at=T0,  # type: ignore[arg-type]
                              location="上海市")


def fold(*events: ev.Event) -> domain.OrderStatus:
    """The events applied in this order, a minute apart."""
    status: domain.OrderStatus | None = None
    for i, event in enumerate(events):
        status = domain.apply_outcome(status, event, str(uuid.uuid4()), T0 + timedelta(minutes=i))
    assert status is not None
    return status


def test_an_order_goes_from_received_to_dispatched_with_its_tracking_number() -> None:
    status = fold(received(), approved(), reserved(), dispatched())
    assert status.state == "dispatched" and status.reasons == ()
    [shipment] = status.shipments
    assert (shipment.shipment_id, shipment.carrier, shipment.tracking_number, shipment.status) \
        == ("S-1", "SF", "SF100", "dispatched")
    assert [e.type for e in status.events] == ["OrderReceived", "OrderApproved",
                                                "StockReserved", "ShipmentDispatched"]
    assert "tracking SF100" in status.events[-1].summary


def test_a_late_event_never_takes_the_order_back() -> None:
    # topics reach intake in no guaranteed order: the approval consumed after the dispatch
    status = fold(received(), dispatched(), approved(), reserved())
    assert status.state == "dispatched"
    assert [e.type for e in status.events][-1] == "StockReserved"


def test_a_rejection_carries_its_reasons_and_a_later_accepted_revision_clears_them() -> None:
    reason = ev.Reason(code="unknown_sku", field="lines.0.sku", message="SKU X is unknown")
    rejected = ev.OrderRejected(order_id=ORDER_ID, channel="canonical", external_id="SO-1",
                                stage="intake", reasons=(reason,))
    status = fold(rejected)
    assert status.state == "rejected" and status.reasons == (reason,)
    assert status.events[0].summary == "rejected by intake: unknown_sku"
    retried = fold(rejected, received())
    assert retried.state == "received" and retried.reasons == ()


def test_a_hold_gives_its_reasons_and_the_approval_clears_them() -> None:
    held = ev.OrderHeld(order_id=ORDER_ID, reasons=(ev.HoldReason(
        code="credit_limit", message="over the credit limit"),))
    status = fold(received(), held)
    assert status.state == "held"
    assert [(r.code, r.message) for r in status.reasons] == [("credit_limit",
                                                              "over the credit limit")]
    assert fold(received(), held, approved()).reasons == ()


def test_a_backorder_names_the_short_lines() -> None:
    short = ev.StockBackordered(order_id=ORDER_ID, short_lines=(
        ev.ShortLine(sku="TEA-001", ordered=3, reserved=1, short=2),))
    status = fold(received(), approved(), short)
    assert status.state == "backordered"
    assert [(r.code, r.message) for r in status.reasons] == [
        ("backordered", "TEA-001: 2 of 3 wait for stock")]
    assert fold(received(), approved(), short, reserved()).state == "reserved"


def test_a_cancellation_ends_an_order_not_dispatched_but_not_a_dispatched_one() -> None:
    cancelled = ev.OrderCancelled(order_id=ORDER_ID, reason="customer changed their mind",
                                  requested_by="customer")
    status = fold(received(), approved(), cancelled)
    assert status.state == "cancelled"
    assert [r.code for r in status.reasons] == ["cancelled"]
    assert fold(received(), dispatched(), cancelled).state == "dispatched"


def test_tracking_and_delivery_update_the_shipment_and_the_last_shipment_delivers_the_order(
        ) -> None:
    two = (received(), dispatched("S-1", "SF100"), dispatched("S-2", "SF200"))
    status = fold(*two, tracking("in_transit"))
    assert [(s.shipment_id, s.status, s.detail) for s in status.shipments] == [
        ("S-1", "in_transit", "上海市"), ("S-2", "dispatched", "")]
    first = ev.ShipmentDelivered(order_id=ORDER_ID, shipment_id="S-1", delivered_at=T0,
                                 on_time=True, order_delivered=False)
    status = fold(*two, first)
    assert status.state == "dispatched" and status.shipments[0].status == "delivered"
    last = ev.ShipmentDelivered(order_id=ORDER_ID, shipment_id="S-2", delivered_at=T0,
                                on_time=True, order_delivered=True)
    status = fold(*two, first, last, tracking("in_transit"))
    assert status.state == "delivered"
    assert [s.status for s in status.shipments] == ["delivered", "delivered"]  # never undone


def test_a_tracking_update_before_its_dispatch_is_completed_by_the_dispatch() -> None:
    status = fold(received(), tracking("picked_up"), dispatched())
    [shipment] = status.shipments
    assert shipment.status == "picked_up" and shipment.service == "standard"
    assert shipment.promised_date == date(2026, 11, 22)


def test_exceptions_and_delays_show_on_the_shipment_without_changing_the_state() -> None:
    delayed = ev.ShipmentDelayed(order_id=ORDER_ID, shipment_id="S-1", reason="weather",
                                 promised_date=date(2026, 11, 22))
    exception = ev.ShipmentException(order_id=ORDER_ID, shipment_id="S-1",
                                     tracking_number="SF100", carrier="SF", code="damaged")
    status = fold(received(), dispatched(), delayed)
    assert status.state == "dispatched" and status.shipments[0].status == "delayed"
    assert status.shipments[0].detail == "weather"
    status = fold(received(), dispatched(), delayed, exception)
    assert status.shipments[0].status == "exception"
    assert status.events[-1].summary == "shipment S-1: carrier exception damaged"


def test_refused_cancels_and_changes_are_events_that_leave_the_state_as_it_was() -> None:
    refused = ev.OrderCancelRefused(order_id=ORDER_ID, requested_by="customer", reasons=(
        ev.Reason(code="already_dispatched", message="dispatched"),))
    status = fold(received(), dispatched(), refused)
    assert status.state == "dispatched" and status.reasons == ()
    assert status.events[-1].summary == "cancel refused: already_dispatched"


def test_the_same_event_twice_changes_nothing_and_only_the_last_events_are_kept() -> None:
    status = domain.apply_outcome(None, received(), "e-1", T0)
    assert domain.apply_outcome(status, received(), "e-1", T0) is status
    for i in range(domain.MAX_STATUS_EVENTS + 5):
        status = domain.apply_outcome(status, tracking("in_transit"), f"t-{i}",
                                      T0 + timedelta(seconds=i + 1))
    assert len(status.events) == domain.MAX_STATUS_EVENTS
    assert status.events[-1].event_id == f"t-{domain.MAX_STATUS_EVENTS + 4}"
    assert [e.at for e in status.events] == sorted(e.at for e in status.events)


def test_every_outcome_event_has_a_topic_and_another_event_is_refused() -> None:
    from orderflow.contracts.topics import TOPIC_OF_EVENT

    assert all(event in TOPIC_OF_EVENT for event in domain.OUTCOME_EVENTS)
    with pytest.raises(TypeError):
        domain.apply_outcome(None, ev.StockReleased(order_id=ORDER_ID, reservations=(),
                                                    reason="x"), "e", T0)


# --- the URL an outcome webhook may be registered with (channel_api.read_webhook_url) ----------

DEV_HOSTS = frozenset({"127.0.0.1"})


@pytest.mark.parametrize("url", ["https://hooks.example.com/outcomes?channel=desk",
                                 "https://hooks.example.com:8443/x", "http://127.0.0.1:9000/x"])
def test_https_urls_and_plain_http_to_a_development_host_are_taken(url: str) -> None:
    read = channel_api.read_webhook_url(json.dumps({"url": f" {url} "}).encode(), DEV_HOSTS)
    assert read == channel_api.WebhookUrl(url)


@pytest.mark.parametrize(("body", "code"), [
    ({"url": "http://localhost:9000/x"}, "insecure_url"),
    ({"url": "https://hooks.example.com:port/x"}, "invalid_url"),
    ({"url": "https://hooks.example.com/a b"}, "invalid_url"),
    ({"url": "//hooks.example.com/x"}, "invalid_url"),
    ({"url": 42}, "missing_field"),
    ([], "missing_field"),
])
def test_a_url_notify_may_not_post_to_is_refused_with_its_reason(body: object,
                                                                  code: str) -> None:
    read = channel_api.read_webhook_url(json.dumps(body).encode(), DEV_HOSTS)
    assert isinstance(read, domain.Refused)
    assert [r.code for r in read.reasons] == [code]
    assert all(r.message for r in read.reasons)


def test_a_stores_key_cannot_own_the_channels_webhook() -> None:
    assert channel_api.webhook_owner(channel_api.Caller("desk", "desk", None)) is None
    denied = channel_api.webhook_owner(channel_api.Caller("shopify/a", "shopify", "a"))
    assert denied is not None and denied.status == 403
