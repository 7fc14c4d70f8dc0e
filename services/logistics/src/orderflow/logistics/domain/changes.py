"""Changes of an order, without I/O: logistics admits them first (until dispatch, one at a time,
only a newer revision) and settles them last (``order.changed`` and the dispatch it brings, or
refused when a cancel won meanwhile); a change refused downstream releases a parked
reservation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from orderflow.contracts.events import (
    OrderChangeAdmitted,
    OrderChanged,
    OrderChangeRejected,
    OrderChangeRequested,
    OrderChangeReserved,
    Reason,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics.domain.dispatch import DispatchRequest, content_to_ship
from orderflow.logistics.domain.orders import (
    Note,
    OrderContent,
    OrderLock,
    OrderShipment,
    Outcome,
    dispatched_shipment_ids,
)

# --- the rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeDecision:
    """Whether logistics admits a change (the first step of the change saga); when refused, why."""

    admitted: bool
    code: str = ""
    message: str = ""


def decide_change(*, order_status: str, dispatched_shipment_ids: Sequence[str],
                  pending_change_id: str | None, known_revision: int | None, change_id: str,
                  revision: int) -> ChangeDecision:
    """A change is admitted until dispatch, one at a time, and only for a newer revision. The
    same change twice is neither admitted nor refused again (code ``duplicate``: say nothing)."""
    if pending_change_id == change_id:
        return ChangeDecision(False, "duplicate", "this change is already being applied")
    if dispatched_shipment_ids:
        return ChangeDecision(
            False, "already_dispatched",
            f"{len(dispatched_shipment_ids)} shipment(s) already left with a carrier; the order "
            "can no longer change (it can be returned once delivered)")
    if order_status == "cancelled":
        return ChangeDecision(False, "order_cancelled", "the order is cancelled")
    if pending_change_id is not None:
        return ChangeDecision(False, "change_in_progress",
                              "another change of this order is being applied; send it again "
                              "once that one is settled")
    if known_revision is not None and revision <= known_revision:
        return ChangeDecision(False, "stale_revision",
                              f"revision {revision} is not newer than revision {known_revision}")
    return ChangeDecision(True)


DispatchSource = Literal["parked", "change", "none"]


def dispatch_after_change(*, parked_revision: int | None, change_revision: int,
                          stock_status: str) -> DispatchSource:
    """What to dispatch when a change is settled: a reservation parked while the change was
    pending if it already reflects the change (inventory reserved the new content), else the
    reservations the change itself reports when every unit is reserved, else nothing (the order
    still waits for stock, or for its approval; its ``stock.reserved`` will come)."""
    if parked_revision is not None and parked_revision >= change_revision:
        return "parked"
    if stock_status == "reserved":
        return "change"
    return "none"


Settlement = Literal["refused", "parked", "change", "none"]


def settle_change(*, order_status: str, parked_revision: int | None, change_revision: int,
                  stock_status: str) -> Settlement:
    """A change every service applied, settled by logistics: refused when the order was
    cancelled while the change was under way (the cancellation wins: review undoes its part,
    inventory released everything on the cancel); else applied, and what it dispatches
    (``dispatch_after_change``)."""
    if order_status == "cancelled":
        return "refused"
    return dispatch_after_change(parked_revision=parked_revision,
                                 change_revision=change_revision, stock_status=stock_status)


def release_parked(*, order_status: str, parked: bool) -> bool:
    """A change refused downstream: the order goes on as it was, so a reservation parked while
    the change was pending is dispatched, unless the order was cancelled meanwhile."""
    return parked and order_status != "cancelled"


# --- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Admission(Outcome):
    """A change request's outcome: whether the order is marked with the pending change."""

    pending: bool = False


def admit_change(change: OrderChangeRequested, lock: OrderLock,
                 shipments: Iterable[OrderShipment]) -> Admission:
    """A change request decided (``decide_change``) against the order's locked record and its
    shipments: admitted (the order marked with the pending change, ``order.change-admitted``),
    refused (``order.change-rejected`` at stage ``logistics``), or a duplicate (nothing said)."""
    decision = decide_change(
        order_status=lock.status, dispatched_shipment_ids=dispatched_shipment_ids(shipments),
        pending_change_id=lock.pending_change_id, known_revision=lock.known_revision,
        change_id=change.change_id, revision=change.order.revision)
    if decision.code == "duplicate":
        return Admission(notes=(Note("change already pending; request ignored",
                                     {"change_id": change.change_id}),))
    if not decision.admitted:
        return Admission(
            events=(OrderChangeRejected(
                order_id=change.order_id, change_id=change.change_id,
                revision=change.order.revision, stage="logistics",
                reasons=(Reason(code=decision.code, message=decision.message),),
                requested_by=change.requested_by, customer=change.order.customer),),
            notes=(Note("change refused", {"change_id": change.change_id,
                                           "reason": decision.code}),))
    return Admission(pending=True, events=(OrderChangeAdmitted(**change.model_dump()),),
                     notes=(Note("change admitted; dispatch waits for it",
                                 {"change_id": change.change_id,
                                  "revision": change.order.revision}),))


@dataclass(frozen=True, kw_only=True)
class ChangeSettlement(Outcome):
    """How a change's last step leaves the order: ``settle`` says whether the pending change is
    cleared, ``content`` is the order the change makes (None: refused, the order stays as it
    was), ``dispatch`` the reservation it dispatches, if any."""

    settle: bool = False
    content: CanonicalOrder | None = None
    dispatch: DispatchRequest | None = None


def settle_reserved_change(step: OrderChangeReserved, lock: OrderLock,
                           content: OrderContent | None, event_id: str) -> ChangeSettlement:
    """A change every service applied (``step``, handled as event ``event_id``), settled
    (``settle_change``): ignored unless it is the order's pending change; refused if the order
    was cancelled meanwhile; else ``order.changed`` and the dispatch it brings: the parked
    reservation (``content``: the record's JSON, read when a reservation is parked) or the
    change's own reservations."""
    if lock.pending_change_id != step.change_id:
        return ChangeSettlement(notes=(Note("change not pending here; step ignored",
                                            {"change_id": step.change_id,
                                             "pending": lock.pending_change_id}),))
    parked = content.parked if content is not None else None
    settlement = settle_change(
        order_status=lock.status, parked_revision=parked.order.revision if parked else None,
        change_revision=step.order.revision, stock_status=step.stock_status)
    if settlement == "refused":
        return ChangeSettlement(
            settle=True,
            events=(OrderChangeRejected(
                order_id=step.order_id, change_id=step.change_id, revision=step.order.revision,
                stage="logistics", reasons=(Reason(code="order_cancelled",
                                                   message="the order was cancelled"),),
                requested_by=step.requested_by, customer=step.order.customer),),
            notes=(Note("change refused: order cancelled meanwhile",
                        {"change_id": step.change_id}),))
    dispatch = None
    if settlement == "parked":
        assert parked is not None and lock.parked_event_id is not None
        dispatch = DispatchRequest(step.order_id, step.order, parked.reservations,
                                   lock.parked_event_id)
    elif settlement == "change":
        dispatch = DispatchRequest(step.order_id, step.order, step.reservations, event_id)
    return ChangeSettlement(
        settle=True, content=step.order, dispatch=dispatch,
        events=(OrderChanged(
            order_id=step.order_id, change_id=step.change_id, channel=step.channel,
            external_id=step.external_id, revision=step.order.revision,
            previous_revision=step.previous_revision, changes=step.changes, order=step.order,
            totals=step.totals, previous_totals=step.previous_totals,
            review_status=step.review_status, stock_status=step.stock_status,
            requested_by=step.requested_by, customer=step.order.customer),),
        notes=(Note("order changed", {"change_id": step.change_id,
                                      "revision": step.order.revision,
                                      "changes": list(step.changes), "dispatch": settlement}),))


def settle_refused_change(refused: OrderChangeRejected, lock: OrderLock,
                          content: OrderContent | None) -> ChangeSettlement:
    """A later step refused the change: nothing when it is not the order's pending change
    (refused here, never pending, or settled already); else the pending mark cleared and a
    reservation parked meanwhile dispatched as it was (``release_parked``), with the newest
    content logistics keeps (``content_to_ship``)."""
    if lock.pending_change_id != refused.change_id:
        return ChangeSettlement()
    notes = (Note("change refused downstream; pending mark cleared",
                  {"change_id": refused.change_id, "stage": refused.stage,
                   "reasons": [r.code for r in refused.reasons]}),)
    parked = content.parked if content is not None else None
    if content is None or parked is None or \
            not release_parked(order_status=lock.status, parked=lock.parked):
        return ChangeSettlement(settle=True, notes=notes)
    assert lock.parked_event_id is not None
    return ChangeSettlement(
        settle=True, notes=notes,
        dispatch=DispatchRequest(refused.order_id, content_to_ship(content.order, parked.order),
                                 parked.reservations, lock.parked_event_id))
