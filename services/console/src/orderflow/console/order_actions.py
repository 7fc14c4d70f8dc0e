"""What an order specialist may do to an order, decided from what the console knows of it (pure:
no I/O). Each check answers the refused fields with their reasons; an empty answer lets the
action's event be published.

- ``may_change``: a new revision is accepted while nothing of the order has left (logistics
  refuses a change once a shipment is dispatched, or the order is cancelled); an order review
  rejected takes its fix as a new revision, reviewed again. Only the desk's own orders are
  revised at the desk: an order's identity is its channel, store and external id, so the desk's
  revision of a connector's order would be another order; its channel pushes the revision. An
  order intake rejected has no content the console could revise: its channel pushes it again.
- ``returnable``: per SKU, the units dispatched minus those of earlier returns not refused.
- ``refundable``: the order's total minus the refunds issued for it.
- ``check_return``, ``check_payment``, ``check_scan``: the forms' rules.
- ``receipt_for``: the warehouse receipt of an approved return the console entered, with the
  inspection the operator recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orderflow.console.domain import OrderView, TimelineEntry
from orderflow.contracts.events import InspectedUnits, ReturnApproved, ReturnReceived
from orderflow.contracts.order import OrderState

# the states in which a change (a new revision through intake) can still be admitted
CHANGEABLE_STATES: frozenset[OrderState] = frozenset({
    OrderState.RECEIVED, OrderState.HELD, OrderState.APPROVED, OrderState.BACKORDERED,
    OrderState.RESERVED})
# the codes logistics recognises first in a carrier exception's detail ("code: text")
EXCEPTION_CODES: tuple[str, ...] = ("damaged", "lost", "refused", "address_unknown",
                                    "recipient_unavailable", "weather", "carrier_exception")
SCAN_STATUSES: tuple[str, ...] = ("in_transit", "delivered", "exception")
# a scan may be dated this far ahead of the console's clock (carriers' clocks drift)
SCAN_FUTURE_SLACK = timedelta(minutes=5)
_PAYMENT_IDS = uuid.UUID("6f0c7a52-4d0e-4c55-9a57-2f6f4cbe1d31")

Refusals = dict[str, str]  # the field's path (``lines.0.quantity``) -> why


DESK_CHANNEL = "desk"


def may_change(view: OrderView) -> bool:
    if view.shipments or view.channel != DESK_CHANNEL:
        return False
    if view.state is OrderState.REJECTED:
        return bool(view.rejections) and view.rejections[-1].stage == "review"
    return view.state in CHANGEABLE_STATES


def returnable(entries: Iterable[TimelineEntry]) -> dict[str, int]:
    """Units of each SKU dispatched, less those of the order's returns not refused."""
    units: dict[str, int] = {}
    requested: dict[str, list[dict[str, Any]]] = {}
    refused: set[str] = set()
    for e in entries:
        if e.event_type == "ShipmentDispatched":
            for line in e.payload.get("lines") or ():
                units[line["sku"]] = units.get(line["sku"], 0) + int(line["quantity"])
        elif e.event_type == "ReturnRequested":
            requested[str(e.payload.get("rma_id"))] = list(e.payload.get("lines") or ())
        elif e.event_type == "ReturnRefused":
            refused.add(str(e.payload.get("rma_id")))
    for rma, lines in requested.items():
        if rma not in refused:
            for line in lines:
                units[line["sku"]] = units.get(line["sku"], 0) - int(line["quantity"])
    return {sku: n for sku, n in sorted(units.items()) if n > 0}


def refundable(view: OrderView, entries: Iterable[TimelineEntry]) -> Decimal:
    refunded = sum((Decimal(str(e.payload.get("amount", "0"))) for e in entries
                    if e.event_type == "RefundIssued"), Decimal(0))
    return max(Decimal(0), (view.grand_total or Decimal(0)) - refunded)


def payment_ids(entries: Iterable[TimelineEntry], audited: Iterable[Mapping[str, Any]]) -> set[str]:
    """The ids of the order's payments: those on the bus and those the console published (its
    audit log: a payment not read back from the bus yet)."""
    ids = {str(e.payload.get("payment_id")) for e in entries if e.event_type == "PaymentReceived"}
    return ids | {str((a.get("detail") or {}).get("payment_id")) for a in audited
                  if a.get("action") == "payment" and a.get("outcome") == "published"}


def payment_id_for(order_id: str, reference: str) -> str:
    """The payment's id, the same for the same order and reference (review records a payment
    once by its id)."""
    return f"DESK-{uuid.uuid5(_PAYMENT_IDS, f'{order_id}:{reference.strip().casefold()}')}"


def new_rma_id(now: datetime) -> str:
    return f"RMA-{now:%Y%m%d}-{uuid.uuid4().hex[:10].upper()}"


def _decimals(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def check_return(reason: str, lines: list[tuple[str, int]], refund: Decimal,
                 can_return: Mapping[str, int], can_refund: Decimal) -> Refusals:
    """``lines`` as (SKU, units); every SKU's units at most what may still come back."""
    out: Refusals = {}
    if not reason.strip():
        out["reason"] = "give the customer's reason"
    if not lines:
        out["lines"] = "nothing of the order was dispatched" if not can_return \
            else "choose at least one line"
    asked: dict[str, int] = {}
    for i, (sku, quantity) in enumerate(lines):
        asked[sku] = asked.get(sku, 0) + quantity
        if sku not in can_return:
            out[f"lines.{i}.sku"] = f"{sku} was not dispatched to the customer"
        elif quantity <= 0:
            out[f"lines.{i}.quantity"] = "at least 1"
        elif asked[sku] > can_return[sku]:
            out[f"lines.{i}.quantity"] = f"at most {can_return[sku]} of {sku} can come back"
    if refund < 0:
        out["refund"] = "not negative"
    elif _decimals(refund) > 2:
        out["refund"] = "at most 2 decimals"
    elif refund > can_refund:
        out["refund"] = f"at most {can_refund} (the order's total less earlier refunds)"
    return out


def check_payment(order_id: str, amount: Decimal, currency: str, reference: str,
                  order_currency: str | None, used_ids: set[str]) -> Refusals:
    """``used_ids``: the order's payments (``payment_ids``); a reference is used once."""
    out: Refusals = {}
    if amount <= 0:
        out["amount"] = "a positive amount"
    elif _decimals(amount) > 2:
        out["amount"] = "at most 2 decimals"
    if order_currency is None:
        out["currency"] = "the order's currency is not known yet"
    elif currency.strip().upper() != order_currency:
        out["currency"] = f"the order is in {order_currency}"
    ref = reference.strip()
    if not ref:
        out["reference"] = "the bank or payment reference"
    elif payment_id_for(order_id, ref) in used_ids:
        out["reference"] = f"a payment {ref} is already recorded for this order"
    return out


def check_scan(view: OrderView, shipment_id: str, status: str, code: str | None,
               at: datetime, now: datetime) -> Refusals:
    out: Refusals = {}
    if shipment_id not in {s.shipment_id for s in view.shipments}:
        out["shipment_id"] = "not a shipment of this order"
    if status == "exception" and code not in EXCEPTION_CODES:
        out["code"] = "choose what went wrong"
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if moment > now + SCAN_FUTURE_SLACK:
        out["at"] = "not in the future"
    return out



def receipt_for(approved: ReturnApproved, inspection: Mapping[str, str],
                now: datetime) -> ReturnReceived:
    """The receipt of an approved return with the operator's inspection (SKU -> restock or
    scrap), at the warehouse most of its units go back to (a receipt names one warehouse)."""
    per_warehouse: dict[str, int] = {}
    units: dict[str, int] = {}
    for line in approved.lines:
        per_warehouse[line.warehouse_id] = per_warehouse.get(line.warehouse_id, 0) + line.quantity
        units[line.sku] = units.get(line.sku, 0) + line.quantity
    warehouse = max(sorted(per_warehouse), key=lambda w: per_warehouse[w])
    outcome = {sku: "scrap" if inspection.get(sku) == "scrap" else "restock" for sku in units}
    return ReturnReceived(
        order_id=approved.order_id, rma_id=approved.rma_id, warehouse_id=warehouse,
        inspections=tuple(InspectedUnits(sku=sku, quantity=n, outcome=outcome[sku])  # type: ignore[arg-type]
                          for sku, n in units.items()), received_at=now)
