"""What each customer-facing event announces (its ``Occurrence``) and what it changes in what a run
knows of its order (``state.RunState``).

One small function per event class, in ``OCCURRENCES``: ``occurrence`` looks the event's class up
there. A run's events are taken one after another, each on the state the ones before it left, as
if each were handled alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orderflow.contracts.events import (
    Event,
    OrderApproved,
    OrderCancelled,
    OrderCancelRefused,
    OrderChanged,
    OrderChangeRejected,
    OrderHeld,
    OrderReceived,
    OrderRejected,
    Reason,
    RefundIssued,
    ReturnApproved,
    ReturnRefused,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockBackordered,
)
from orderflow.contracts.order import CanonicalOrder, Customer
from orderflow.notify.domain.plans import Kind, held_notice, rejected_suppression
from orderflow.notify.domain.state import OrderRecord, RunState


class CustomerFacing(Protocol):
    """A customer-facing event: each is about one order."""

    @property
    def order_id(self) -> str: ...


def reason_codes(reasons: Iterable[Reason]) -> list[dict[str, str | None]]:
    """What a message says of reasons: their codes and fields, never their free text."""
    return [{"code": r.code, "field": r.field} for r in reasons]


def tracking_url(carrier: str, tracking_number: str, *, default_template: str,
                 per_carrier: Mapping[str, str]) -> str:
    """The link a customer follows to track a shipment."""
    template = per_carrier.get(carrier) or per_carrier.get(carrier.upper()) or default_template
    return template.format(carrier=carrier, tracking_number=tracking_number)


@dataclass(frozen=True)
class Tracking:
    """The tracking links: a template per carrier, else the default one."""

    default_template: str
    per_carrier: Mapping[str, str] = field(default_factory=dict)

    def url(self, carrier: str, tracking_number: str) -> str:
        return tracking_url(carrier, tracking_number, default_template=self.default_template,
                            per_carrier=self.per_carrier)

    def facts(self, carrier: str | None, tracking_number: str | None) -> dict[str, str]:
        """The event's own carrier and tracking facts, when it carries them."""
        if not (carrier and tracking_number):
            return {}
        return {"carrier": carrier, "tracking_number": tracking_number,
                "tracking_url": self.url(carrier, tracking_number)}


@dataclass(frozen=True)
class Occurrence:
    """One customer-facing event, ready for planning."""

    kind: Kind
    order_id: str
    event: dict[str, Any]
    suppress: str | None = None
    customer: Customer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- one function per event class -----------------------------------------------------------------
# Each moves the run's state on as its event says and returns the occurrence the event announces.

_Occur = Callable[[RunState, Any, Tracking], Occurrence]
OCCURRENCES: dict[type[Event], _Occur] = {}


def _occurs(event_class: type[Event]) -> Callable[[_Occur], _Occur]:
    def register(make: _Occur) -> _Occur:
        OCCURRENCES[event_class] = make
        return make
    return register


def occurrence(state: RunState, event: Event, tracking: Tracking) -> Occurrence:
    """What one event changes in its order's state, and the occurrence it announces."""
    make = OCCURRENCES.get(type(event))
    if make is None:
        raise TypeError(f"notify does not record {type(event).__name__}")
    return make(state, event, tracking)


@_occurs(OrderReceived)
def _received(state: RunState, e: OrderReceived, tracking: Tracking) -> Occurrence:
    state.remember(e.order_id, e.channel, e.external_id, e.order, e.totals)
    return Occurrence("order_received", e.order_id, {})


@_occurs(OrderApproved)
def _approved(state: RunState, e: OrderApproved, tracking: Tracking) -> Occurrence:
    state.remember(e.order_id, e.channel, e.external_id, e.order, e.totals)
    return Occurrence("order_approved", e.order_id, {})


@_occurs(OrderRejected)
def _rejected(state: RunState, e: OrderRejected, tracking: Tracking) -> Occurrence:
    state.save(e.order_id, channel=e.channel, external_id=e.external_id, customer=e.customer)
    return Occurrence("order_rejected", e.order_id,
                      {"stage": e.stage, "reasons": reason_codes(e.reasons)}, customer=e.customer,
                      suppress=rejected_suppression(r.code for r in e.reasons))


@_occurs(OrderHeld)
def _held(state: RunState, e: OrderHeld, tracking: Tracking) -> Occurrence:
    state.save(e.order_id, customer=e.customer)  # keeps the review-notice flag
    record = state.orders.get(e.order_id)
    notice = held_notice((r.code for r in e.reasons),
                         review_notice_already_sent=bool(record and record.review_notice_sent))
    facts: dict[str, Any] = {"notice": notice.notice, "amount_due": None, "currency": e.currency}
    if notice.notice == "payment_due":
        facts["amount_due"] = _amount_due(e, record)
    elif notice.suppress is None:
        state.mark_review_notice(e.order_id)
    return Occurrence("order_held", e.order_id, facts, suppress=notice.suppress,
                      customer=e.customer)


def _amount_due(e: OrderHeld, record: OrderRecord | None) -> str | None:
    """What a prepayment hold asks for: the event's amount due, else the prepayment's figures,
    else the order's total."""
    if e.amount_due is not None:
        return str(e.amount_due)
    figure = next((r.figures.get("amount_due") for r in e.reasons
                   if r.code == "prepayment_due" and r.figures.get("amount_due")), None)
    totals = (record.facts or {}).get("totals") if record else None
    return figure or (totals or {}).get("grand_total")


@_occurs(StockBackordered)
def _backordered(state: RunState, e: StockBackordered, tracking: Tracking) -> Occurrence:
    if e.customer is not None:
        state.save(e.order_id, customer=e.customer)
    short = [{"sku": s.sku, "name": state.names.get(s.sku, ""), "ordered": s.ordered,
              "reserved": s.reserved, "short": s.short} for s in e.short_lines]
    return Occurrence(
        "stock_backordered", e.order_id,
        {"short_lines": short,
         "expected_date": e.expected_date.isoformat() if e.expected_date else None},
        customer=e.customer)


@_occurs(ShipmentDispatched)
def _dispatched(state: RunState, e: ShipmentDispatched, tracking: Tracking) -> Occurrence:
    shipment = {
        "shipment_id": e.shipment_id, "carrier": e.carrier, "service": e.service,
        "tracking_number": e.tracking_number,
        "tracking_url": tracking.url(e.carrier, e.tracking_number),
        "dispatched_at": e.dispatched_at.isoformat(),
        "promised_date": e.promised_date.isoformat(),
        "lines": [{"sku": line.sku, "name": state.names.get(line.sku, ""),
                   "quantity": line.quantity} for line in e.lines],
    }
    state.add_shipment(e.order_id, e.shipment_id, shipment)
    return Occurrence("shipment_dispatched", e.order_id,
                      {"shipments": [shipment], "shipment_count": max(e.shipment_count, 1)})


@_occurs(ShipmentDelayed)
def _delayed(state: RunState, e: ShipmentDelayed, tracking: Tracking) -> Occurrence:
    return Occurrence(
        "shipment_delayed", e.order_id,
        {"shipment_id": e.shipment_id, "reason": e.reason,
         "promised_date": e.promised_date.isoformat(),
         "expected_date": e.expected_date.isoformat() if e.expected_date else None,
         **tracking.facts(e.carrier, e.tracking_number)})


@_occurs(ShipmentDelivered)
def _delivered(state: RunState, e: ShipmentDelivered, tracking: Tracking) -> Occurrence:
    return Occurrence(
        "shipment_delivered", e.order_id,
        {"shipment_id": e.shipment_id, "delivered_at": e.delivered_at.isoformat(),
         "on_time": e.on_time, "order_delivered": e.order_delivered})


@_occurs(ShipmentException)
def _exception(state: RunState, e: ShipmentException, tracking: Tracking) -> Occurrence:
    return Occurrence(
        "shipment_exception", e.order_id,
        {"shipment_id": e.shipment_id, "carrier": e.carrier, "code": e.code,
         "tracking_number": e.tracking_number,
         "tracking_url": tracking.url(e.carrier, e.tracking_number)})


@_occurs(OrderCancelled)
def _cancelled(state: RunState, e: OrderCancelled, tracking: Tracking) -> Occurrence:
    return Occurrence("order_cancelled", e.order_id,
                      {"reason": e.reason, "requested_by": e.requested_by}, customer=e.customer)


@_occurs(OrderCancelRefused)
def _cancel_refused(state: RunState, e: OrderCancelRefused, tracking: Tracking) -> Occurrence:
    return Occurrence("order_cancel_refused", e.order_id,
                      {"reasons": reason_codes(e.reasons), "shipment_ids": list(e.shipment_ids)})


@_occurs(OrderChanged)
def _changed(state: RunState, e: OrderChanged, tracking: Tracking) -> Occurrence:
    # the order's new content: this message and every later one show it
    state.remember(e.order_id, e.channel, e.external_id, e.order, e.totals)
    address = e.order.shipping_address
    ship_to = " ".join(p for p in (address.province, address.city, address.district,
                                   address.line1) if p)
    date = e.order.requested_delivery_date
    return Occurrence(
        "order_changed", e.order_id,
        {"changes": list(e.changes), "revision": e.revision,
         "ship_to": ship_to if "shipping_address" in e.changes else None,
         "requested_delivery_date": date.isoformat()
         if date and "requested_delivery_date" in e.changes else None},
        customer=e.customer)


@_occurs(OrderChangeRejected)
def _change_rejected(state: RunState, e: OrderChangeRejected, tracking: Tracking) -> Occurrence:
    return Occurrence("order_change_rejected", e.order_id,
                      {"revision": e.revision, "stage": e.stage,
                       "reasons": reason_codes(e.reasons)},
                      customer=e.customer)


@_occurs(ReturnApproved)
def _return_approved(state: RunState, e: ReturnApproved, tracking: Tracking) -> Occurrence:
    return Occurrence(
        "return_approved", e.order_id,
        {"rma_id": e.rma_id, "resolution": e.resolution, "carrier": e.carrier,
         "tracking_number": e.tracking_number, "refund_amount": str(e.refund_amount),
         "currency": e.currency,
         "lines": [{"sku": x.sku, "quantity": x.quantity} for x in e.lines]},
        customer=e.customer)


@_occurs(ReturnRefused)
def _return_refused(state: RunState, e: ReturnRefused, tracking: Tracking) -> Occurrence:
    return Occurrence("return_refused", e.order_id,
                      {"rma_id": e.rma_id, "reasons": reason_codes(e.reasons)},
                      customer=e.customer)


@_occurs(RefundIssued)
def _refund_issued(state: RunState, e: RefundIssued, tracking: Tracking) -> Occurrence:
    return Occurrence("refund_issued", e.order_id,
                      {"rma_id": e.rma_id, "amount": str(e.amount), "currency": e.currency,
                       "exchange_order": e.exchange_order_external_id})


# --- what a run reads ---------------------------------------------------------------------------


def saves_order(e: CustomerFacing) -> bool:
    """Whether handling ``e`` remembers something of its order (creating the row if missing)."""
    if isinstance(e, StockBackordered):
        return e.customer is not None
    return isinstance(e, (OrderReceived, OrderApproved, OrderChanged, OrderRejected, OrderHeld))


@dataclass(frozen=True)
class RunNeeds:
    """What a run's events need read: their orders (``saved``: the ones whose row the run
    creates when missing), the product names of their lines and their customers."""

    order_ids: set[str]
    saved: set[str]
    skus: set[str]
    customer_ids: set[str]

    def customers_of(self, found: Iterable[OrderRecord]) -> set[str]:
        """The customers to read: the events' and their stored orders'."""
        return self.customer_ids | {r.customer_id for r in found if r.customer_id}


def run_needs(events: Iterable[CustomerFacing]) -> RunNeeds:
    order_ids: set[str] = set()
    saved: set[str] = set()
    skus: set[str] = set()
    customer_ids: set[str] = set()
    for e in events:
        order_ids.add(e.order_id)
        if saves_order(e):
            saved.add(e.order_id)
        order = getattr(e, "order", None)
        if isinstance(order, CanonicalOrder):
            skus.update(line.sku for line in order.lines)
            customer_ids.add(order.customer.id)
        if isinstance(e, StockBackordered):
            skus.update(line.sku for line in e.short_lines)
        elif isinstance(e, ShipmentDispatched):
            skus.update(line.sku for line in e.lines)
        customer = getattr(e, "customer", None)
        if isinstance(customer, Customer):
            customer_ids.add(customer.id)
    return RunNeeds(order_ids, saved, skus, customer_ids)
