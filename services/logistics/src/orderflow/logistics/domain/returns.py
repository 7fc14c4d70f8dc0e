"""Returns (RMA), without I/O: a return request approved or refused as a whole by the company's
policy (the window, non-returnable SKUs, refused conditions, no more than was shipped), the
warehouses the units go back to and their refund, and a receipt's refund and exchange order."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from orderflow.contracts.events import (
    OrderSubmitted,
    Reason,
    RefundIssued,
    ReturnApproved,
    ReturnLine,
    ReturnReceived,
    ReturnRefused,
    ReturnRequested,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics.domain.dispatch import SHIPMENT_NAMESPACE
from orderflow.logistics.domain.orders import Note, OrderShipment, Outcome
from orderflow.logistics.domain.tracking import as_aware

REFUND_NAMESPACE = uuid.UUID("5f7c2b8e-9d14-4c3a-a6e1-2b9f0d4c8e17")

# --- the rules -----------------------------------------------------------------------------------


def shipped_units(shipments: Iterable[OrderShipment]) -> dict[str, dict[str, int]]:
    """{sku: {warehouse: units}} of the shipments that left with a carrier."""
    units: dict[str, dict[str, int]] = {}
    for s in shipments:
        if s.tracking_number is None:
            continue
        for sku, quantity in s.lines:
            per = units.setdefault(sku, {})
            per[s.warehouse_id] = per.get(s.warehouse_id, 0) + quantity
    return units


def return_window_start(shipments: Iterable[OrderShipment]) -> datetime | None:
    """When the order's return window opens: its last delivery, else its last dispatch, of the
    shipments that left with a carrier; None when none did."""
    starts = [s.delivered_at or s.dispatched_at for s in shipments
              if s.tracking_number is not None]
    return max(starts) if starts else None


@dataclass(frozen=True)
class ReturnPolicy:
    """The company's return rules: a window from delivery (from dispatch when no delivery was
    reported), SKUs that cannot come back, and item conditions that are refused."""

    window_days: int = 7
    non_returnable_skus: frozenset[str] = frozenset()
    refused_conditions: frozenset[str] = frozenset({"damaged_by_customer"})


@dataclass(frozen=True)
class RequestedReturn:
    sku: str
    quantity: int
    condition: str


@dataclass(frozen=True)
class ReturnPlanLine:
    sku: str
    warehouse_id: str
    quantity: int
    refund: Decimal


@dataclass(frozen=True)
class ReturnDecision:
    approved: bool
    lines: tuple[ReturnPlanLine, ...] = ()
    refund_amount: Decimal = Decimal("0.00")
    reasons: tuple[tuple[str, str | None, str], ...] = ()  # (code, field, message)


_CENT = Decimal("0.01")


def unit_refunds(order: CanonicalOrder, tax_rates: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """What one unit of each SKU refunds: its price net of its share of the line discount, with
    the SKU's tax; not the shipping fee. Unrounded (rounded once per returned line)."""
    totals: dict[str, tuple[Decimal, int]] = {}
    for line in order.lines:
        net, qty = totals.get(line.sku, (Decimal("0"), 0))
        totals[line.sku] = (net + line.unit_price * line.quantity - line.discount, qty + line.quantity)
    return {sku: net / qty * (1 + tax_rates.get(sku, Decimal("0")))
            for sku, (net, qty) in totals.items() if qty}


def decide_return(*, requested: Sequence[RequestedReturn], shipped: Mapping[str, Mapping[str, int]],
                  already_returned: Mapping[str, int], delivered_or_dispatched_at: datetime | None,
                  requested_at: datetime, policy: ReturnPolicy,
                  refunds: Mapping[str, Decimal]) -> ReturnDecision:
    """Approve or refuse a return as a whole. ``shipped`` is {sku: {warehouse: units}} of the
    order's dispatched shipments, ``already_returned`` the units of earlier approved returns.
    The units go back to the warehouses they left, in warehouse order."""
    reasons: list[tuple[str, str | None, str]] = []
    if delivered_or_dispatched_at is None:
        reasons.append(("not_dispatched", None,
                        "nothing of this order was dispatched: cancel it instead"))
    elif requested_at - delivered_or_dispatched_at > timedelta(days=policy.window_days):
        reasons.append(("return_window_passed", None,
                        f"returns are accepted within {policy.window_days} days of delivery"))
    wanted: dict[str, int] = {}
    for i, line in enumerate(requested):
        where = f"lines.{i}"
        if line.sku in policy.non_returnable_skus:
            reasons.append(("sku_not_returnable", f"{where}.sku", f"{line.sku} cannot be returned"))
        if line.condition in policy.refused_conditions:
            reasons.append(("condition_not_accepted", f"{where}.condition",
                            f"items in condition '{line.condition}' are not taken back"))
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    for sku, units in sorted(wanted.items()):
        returnable = sum(shipped.get(sku, {}).values()) - already_returned.get(sku, 0)
        if units > returnable:
            reasons.append(("more_than_shipped", sku,
                            f"{units} x {sku} asked back, {max(returnable, 0)} can be returned"))
    if reasons or delivered_or_dispatched_at is None:
        return ReturnDecision(False, reasons=tuple(reasons))
    lines: list[ReturnPlanLine] = []
    for sku, units in sorted(wanted.items()):
        skip = already_returned.get(sku, 0)  # earlier returns took the first warehouses' units
        for warehouse_id, sent in sorted(shipped[sku].items()):
            usable = max(0, sent - skip)
            skip = max(0, skip - sent)
            take = min(usable, units)
            if take:
                refund = (refunds.get(sku, Decimal("0")) * take).quantize(_CENT, "ROUND_HALF_UP")
                lines.append(ReturnPlanLine(sku, warehouse_id, take, refund))
                units -= take
            if not units:
                break
    total = sum((line.refund for line in lines), Decimal("0.00"))
    return ReturnDecision(True, tuple(lines), total)


def return_tracking_number(rma_id: str, carrier: str) -> str:
    """The return shipment's tracking number: the carrier's code, R and 12 digits derived from
    the RMA (a replay gives the same number)."""
    serial = uuid.uuid5(SHIPMENT_NAMESPACE, f"return:{rma_id}").int % 10**12
    return f"{carrier}R{serial:012d}"


def exchange_external_id(external_id: str, rma_id: str) -> str:
    """The linked order an exchange creates: derived from the original and the RMA."""
    return f"{external_id}-X-{rma_id}"[:128]


@dataclass(frozen=True)
class ReturnedLine:
    """A line of a stored return: approved (with its warehouse and refund) or as requested."""

    sku: str
    quantity: int
    warehouse_id: str | None = None
    refund: Decimal | None = None


@dataclass(frozen=True)
class ReturnRecord:
    """A return (RMA) as stored: ``approved``, ``refused`` or ``received``."""

    rma_id: str
    order_id: str
    status: str
    resolution: str
    lines: tuple[ReturnedLine, ...]
    currency: str | None


def already_returned(returns: Iterable[ReturnRecord]) -> dict[str, int]:
    """The units per SKU earlier returns of the order take back (approved or received; a refused
    one takes nothing)."""
    total: dict[str, int] = {}
    for r in returns:
        if r.status in ("approved", "received"):
            for line in r.lines:
                total[line.sku] = total.get(line.sku, 0) + line.quantity
    return total


ReceiptCheck = Literal["never_requested", "refused", "other_order", "received", "open"]


def check_receipt(stored: ReturnRecord | None, order_id: str) -> ReceiptCheck:
    """Whether a receipt can settle its RMA: only an approved one of the same order (``open``);
    one already received is settled (the receipt says nothing new)."""
    if stored is None:
        return "never_requested"
    if stored.status == "refused":
        return "refused"
    if stored.order_id != order_id:
        return "other_order"
    return "received" if stored.status == "received" else "open"


@dataclass(frozen=True)
class ReceiptDecision:
    """What a receipt refunds: per SKU received, its share of the approved lines' refund; or the
    SKUs received beyond what was approved (``over``: the receipt is refused)."""

    lines: tuple[ReturnPlanLine, ...]
    received: dict[str, int]
    approved: dict[str, int]
    over: dict[str, int]

    @property
    def refund_amount(self) -> Decimal:
        return sum((line.refund for line in self.lines), Decimal("0.00"))


def decide_receipt(approved_lines: Iterable[ReturnedLine], inspections: Iterable[tuple[str, int]],
                   warehouse_id: str) -> ReceiptDecision:
    """The received units (``inspections``: (sku, units), restocked or scrapped alike) refund
    their share of the approved lines' refund, rounded half up per SKU."""
    approved: dict[str, int] = {}
    refund_of: dict[str, Decimal] = {}
    for line in approved_lines:
        approved[line.sku] = approved.get(line.sku, 0) + line.quantity
        refund_of[line.sku] = refund_of.get(line.sku, Decimal("0")) + (line.refund or Decimal(0))
    received: dict[str, int] = {}
    for sku, units in inspections:
        received[sku] = received.get(sku, 0) + units
    over = {sku: q for sku, q in received.items() if q > approved.get(sku, 0)}
    if over:
        return ReceiptDecision((), received, approved, over)
    lines = tuple(ReturnPlanLine(sku, warehouse_id, q,
                                 (refund_of[sku] * q / approved[sku]).quantize(_CENT,
                                                                               "ROUND_HALF_UP"))
                  for sku, q in sorted(received.items()))
    return ReceiptDecision(lines, received, approved, {})


def exchange_order(order: CanonicalOrder, received: Mapping[str, int], rma_id: str,
                   placed_at: datetime) -> CanonicalOrder:
    """The order an exchange creates (``exchange_external_id``): the received units of each SKU
    the order has, at the original unit price, with no discount, no shipping fee and nothing paid
    (finance nets it against the refund)."""
    prices = {line.sku: line for line in order.lines}
    lines = tuple(prices[sku].model_copy(update={"quantity": q, "discount": Decimal("0.00")})
                  for sku, q in sorted(received.items()) if sku in prices)
    return order.model_copy(update={
        "external_id": exchange_external_id(order.external_id, rma_id), "placed_at": placed_at,
        "revision": 1, "lines": lines, "promo_code": None, "shipping_fee": Decimal("0.00"),
        "stated_total": None, "amount_paid": Decimal("0.00"),
        "notes": f"exchange for order {order.external_id}, return {rma_id}"})


# --- a request and a receipt, as the handlers carry them out ------------------------------------


@dataclass(frozen=True)
class NewReturn:
    """An RMA's decision as it is recorded: ``approved`` (its lines per warehouse, the carrier,
    the return tracking number, the refund) or ``refused`` (its reasons, the lines as
    requested)."""

    rma_id: str
    order_id: str
    status: Literal["approved", "refused"]
    resolution: str
    reasons: tuple[Reason, ...]
    lines: tuple[BaseModel, ...]
    carrier: str | None
    tracking_number: str | None
    refund_amount: Decimal | None
    currency: str | None
    requested_at: datetime


@dataclass(frozen=True, kw_only=True)
class ReturnOutcome(Outcome):
    """A return request's outcome: the RMA to record (None: it was decided already)."""

    record: NewReturn | None = None


def request_return(request: ReturnRequested, *, stored: ReturnRecord | None,
                   order: CanonicalOrder | None, shipments: Iterable[OrderShipment],
                   earlier: Iterable[ReturnRecord], tax_rates: Mapping[str, Decimal],
                   policy: ReturnPolicy, tz: ZoneInfo, carrier: str) -> ReturnOutcome:
    """A return request decided (``decide_return``): ignored when its RMA is already decided
    (``stored``); refused with its reasons (also when logistics never kept the order's
    content); else approved, collected by ``carrier`` under a tracking number derived from the
    RMA (``return_tracking_number``), refunding at ``unit_refunds``. ``earlier``: the order's
    other returns; a time without an offset is company time."""
    if stored is not None:
        return ReturnOutcome(notes=(Note("return already decided; request ignored",
                                         {"rma_id": request.rma_id}),))
    shipped = list(shipments)
    decision = decide_return(
        requested=[RequestedReturn(r.sku, r.quantity, r.condition) for r in request.lines],
        shipped=shipped_units(shipped), already_returned=already_returned(earlier),
        delivered_or_dispatched_at=return_window_start(shipped),
        requested_at=as_aware(request.requested_at, tz), policy=policy,
        refunds=unit_refunds(order, tax_rates) if order else {})
    customer = order.customer if order else None
    if not decision.approved or order is None:
        reasons = tuple(Reason(code=c, field=f, message=m) for c, f, m in decision.reasons)
        return ReturnOutcome(
            record=NewReturn(request.rma_id, request.order_id, "refused", request.resolution,
                             reasons, request.lines, None, None, None, None,
                             request.requested_at),
            events=(ReturnRefused(order_id=request.order_id, rma_id=request.rma_id,
                                  reasons=reasons, customer=customer),),
            notes=(Note("return refused", {"rma_id": request.rma_id,
                                           "reasons": [r.code for r in reasons]}),))
    lines = return_lines(decision.lines)
    number = return_tracking_number(request.rma_id, carrier)
    return ReturnOutcome(
        record=NewReturn(request.rma_id, request.order_id, "approved", request.resolution, (),
                         lines, carrier, number, decision.refund_amount, order.currency,
                         request.requested_at),
        events=(ReturnApproved(order_id=request.order_id, rma_id=request.rma_id, lines=lines,
                               resolution=request.resolution, carrier=carrier,
                               tracking_number=number, refund_amount=decision.refund_amount,
                               currency=order.currency, customer=customer),),
        notes=(Note("return approved", {"rma_id": request.rma_id,
                                        "units": sum(x.quantity for x in lines),
                                        "resolution": request.resolution}),))


def return_lines(lines: Iterable[ReturnPlanLine]) -> tuple[ReturnLine, ...]:
    """Planned return lines as the contract carries them."""
    return tuple(ReturnLine(sku=x.sku, warehouse_id=x.warehouse_id, quantity=x.quantity,
                            refund=x.refund) for x in lines)


class UnknownReturn(LookupError):
    """A return receipt names an RMA logistics never approved (dead-lettered for a person)."""


class ReturnMismatch(ValueError):
    """A return receipt disagrees with its RMA (another order, more units than approved)."""


def refund_id_for(rma_id: str) -> str:
    """The refund of a return: one per RMA, derived from its id (a replay names the same)."""
    return str(uuid.uuid5(REFUND_NAMESPACE, rma_id))


@dataclass(frozen=True, kw_only=True)
class ReceiptOutcome(Outcome):
    """A receipt's outcome: the refund that settles the RMA (None: settled already), and for an
    exchange the new order pushed to intake (published before the refund, correlated with the
    original order)."""

    refund_id: str | None = None
    exchange: OrderSubmitted | None = None


def receive_return(receipt: ReturnReceived, stored: ReturnRecord | None,
                   order: CanonicalOrder | None, now: datetime) -> ReceiptOutcome:
    """A receipt checked against its RMA (``check_receipt``: ``UnknownReturn`` for an RMA never
    approved, ``ReturnMismatch`` for another order's or more units than approved; once received
    it says nothing), then the refund of the received units (``decide_receipt``) and, for an
    exchange, the new order (``exchange_order``, placed ``now``)."""
    check = check_receipt(stored, receipt.order_id)
    if check in ("never_requested", "refused"):
        raise UnknownReturn(f"return {receipt.rma_id} of order {receipt.order_id} was "
                            f"{check.replace('_', ' ')}")
    assert stored is not None
    if check == "other_order":
        raise ReturnMismatch(f"return {receipt.rma_id} belongs to order {stored.order_id}")
    if check == "received":
        return ReceiptOutcome(notes=(Note("return already received; receipt ignored",
                                          {"rma_id": receipt.rma_id}),))
    decision = decide_receipt(stored.lines, ((u.sku, u.quantity) for u in receipt.inspections),
                              receipt.warehouse_id)
    if decision.over:
        raise ReturnMismatch(f"return {receipt.rma_id} received {decision.over}, approved "
                             f"{decision.approved}")
    assert order is not None  # an approved return's order was reserved here
    exchange = None
    if stored.resolution == "exchange":
        replacement = exchange_order(order, decision.received, receipt.rma_id, now)
        exchange = OrderSubmitted(channel="canonical", external_id=replacement.external_id,
                                  received_at=now, payload=replacement.model_dump(mode="json"))
    refund_id = refund_id_for(receipt.rma_id)
    return ReceiptOutcome(
        refund_id=refund_id, exchange=exchange,
        events=(RefundIssued(refund_id=refund_id, order_id=receipt.order_id,
                             rma_id=receipt.rma_id, customer_id=order.customer.id,
                             amount=decision.refund_amount, currency=str(stored.currency),
                             lines=return_lines(decision.lines),
                             exchange_order_external_id=exchange.external_id
                             if exchange else None),),
        notes=(Note("return received; refund issued", {
            "rma_id": receipt.rma_id, "amount": str(decision.refund_amount),
            "exchange": exchange is not None}),))
