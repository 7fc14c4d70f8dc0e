"""An order as logistics records it, and the cancellation: the order's locked record and kept
content, its shipments as the cancel, change, delivery and return rules see them, the notes an
outcome asks the log for, and the decision on a cancel request (logistics is the point of no
return)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from orderflow.contracts.events import (
    Event,
    OrderCancelled,
    OrderCancelRefused,
    OrderCancelRequested,
    Reason,
    StockReserved,
)
from orderflow.contracts.order import CanonicalOrder

# --- records and outcomes ------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLock:
    """An order's locked record, without its JSON: open or cancelled, the revision of the content
    it keeps (None: none yet) and the revision logistics knows, the pending change, and whether a
    reservation is parked (and its event)."""

    order_id: str
    status: str
    kept_revision: int | None
    revision: int | None
    pending_change_id: str | None
    parked: bool
    parked_event_id: str | None

    @property
    def known_revision(self) -> int | None:
        """The order's revision as logistics knows it: its kept content's, else a settled
        change's."""
        return self.kept_revision if self.kept_revision is not None else self.revision


@dataclass(frozen=True)
class OrderContent:
    """What an order's record keeps as JSON: the order, and a reservation parked meanwhile."""

    order: CanonicalOrder | None
    parked: StockReserved | None


Level = Literal["debug", "info", "warning"]


@dataclass(frozen=True)
class Note:
    """A log line an outcome asks for: its message, fields and level."""

    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    level: Level = "info"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a handler publishes and logs once it stored what a decision says (the subclasses
    add what to store)."""

    events: tuple[Event, ...] = ()
    notes: tuple[Note, ...] = ()


# --- shipments ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderShipment:
    """One of an order's shipments as the cancel, change, delivery and return rules see it."""

    shipment_id: str
    warehouse_id: str
    status: str
    tracking_number: str | None  # None: no carrier took it
    lines: tuple[tuple[str, int], ...]  # (sku, units)
    dispatched_at: datetime
    delivered_at: datetime | None


def dispatched_shipment_ids(shipments: Iterable[OrderShipment]) -> list[str]:
    """The shipments that left with a carrier (a tracking number), by id: what makes an order
    too late to cancel or change."""
    return sorted(s.shipment_id for s in shipments if s.tracking_number is not None)


# --- cancellation: logistics is the arbiter of the point of no return ----------------------------


@dataclass(frozen=True)
class CancelDecision:
    """Whether a cancel request is honoured; when refused, why (in the contract's words)."""

    honoured: bool
    code: str = ""
    message: str = ""


def decide_cancel(*, order_status: str, dispatched_shipment_ids: Sequence[str]) -> CancelDecision:
    """Honoured until dispatch: once any shipment of the order has left with a carrier it is
    refused (the customer may return the goods instead). Cancelling twice is honoured once (the
    caller publishes nothing the second time)."""
    if dispatched_shipment_ids:
        return CancelDecision(
            False, "already_dispatched",
            f"{len(dispatched_shipment_ids)} shipment(s) already left with a carrier; "
            "the order can be returned once delivered")
    if order_status == "cancelled":
        return CancelDecision(True, "already_cancelled", "the order is already cancelled")
    return CancelDecision(True)


@dataclass(frozen=True, kw_only=True)
class Cancellation(Outcome):
    """A cancel request's outcome: whether the order is marked cancelled (``cancel``)."""

    cancel: bool = False


def cancel_order(request: OrderCancelRequested, lock: OrderLock,
                 shipments: Iterable[OrderShipment], kept: CanonicalOrder | None) -> Cancellation:
    """A cancel request decided (``decide_cancel``): refused with the dispatched shipments'
    ids; said nothing for an order already cancelled; else the order is cancelled, announced
    with the customer of the content logistics keeps (``kept``), else of the request."""
    dispatched = dispatched_shipment_ids(shipments)
    decision = decide_cancel(order_status=lock.status, dispatched_shipment_ids=dispatched)
    if not decision.honoured:
        return Cancellation(
            events=(OrderCancelRefused(
                order_id=request.order_id, requested_by=request.requested_by,
                reasons=(Reason(code=decision.code, message=decision.message),),
                shipment_ids=tuple(dispatched)),),
            notes=(Note("cancel refused", {"order_id": request.order_id,
                                           "reason": decision.code}),))
    if decision.code == "already_cancelled":
        return Cancellation(notes=(Note("order already cancelled; request ignored",
                                        {"order_id": request.order_id}),))
    return Cancellation(
        cancel=True,
        events=(OrderCancelled(order_id=request.order_id, reason=request.reason,
                               requested_by=request.requested_by,
                               customer=kept.customer if kept else request.customer),),
        notes=(Note("order cancelled", {"order_id": request.order_id,
                                        "reserved_before": kept is not None}),))
