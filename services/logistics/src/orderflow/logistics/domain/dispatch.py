"""Dispatch, without I/O: a run of reservations sorted as if handled one after another (each one's
fate: cancelled, parked, dispatched with the newest content), the shipments of a reservation (one
per warehouse, its lines, weight and carrier choice), and what a dispatch announces."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import (
    ReservedLine,
    ShipmentDispatched,
    ShipmentException,
    StockReserved,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics.domain.carriers import (
    CarrierCatalogue,
    CarrierChoice,
    Consignment,
    NoCarrier,
    choose_service,
)
from orderflow.logistics.domain.orders import Note, OrderLock, Outcome

WEIGHT_QUANTUM = Decimal("0.001")
SHIPMENT_NAMESPACE = uuid.UUID("8d0f3c52-1e4b-4a57-9b1c-3f6e2a7d9c41")

# --- shipments from a reservation ----------------------------------------------------------------


@dataclass(frozen=True)
class WarehouseSite:
    warehouse_id: str
    name: str
    province: str
    city: str


@dataclass(frozen=True)
class ProductInfo:
    sku: str
    name: str
    weight_kg: Decimal


@dataclass(frozen=True)
class ShipmentLine:
    sku: str
    quantity: int
    name: str
    unit_weight_kg: Decimal | None  # None: unknown, the catalogue's default was used


@dataclass(frozen=True)
class PlannedShipment:
    """One shipment: the goods one warehouse holds for the order, and how they travel."""

    shipment_id: str
    order_id: str
    warehouse_id: str
    warehouse: WarehouseSite | None
    lines: tuple[ShipmentLine, ...]
    weight_kg: Decimal
    weight_estimated: bool
    requested_date: date | None
    dispatched_at: datetime
    choice: CarrierChoice | NoCarrier

    @property
    def reserved_lines(self) -> tuple[ReservedLine, ...]:
        return tuple(ReservedLine(sku=line.sku, warehouse_id=self.warehouse_id,
                                  quantity=line.quantity) for line in self.lines)

    @property
    def misses_requested_date(self) -> bool:
        return isinstance(self.choice, CarrierChoice) and self.choice.misses_requested_date


def shipment_id_for(source_event_id: str, warehouse_id: str) -> str:
    """Stable per reservation event and warehouse: a redelivered event names the same shipment,
    a later reservation of the same order (a filled backorder) a new one."""
    return str(uuid.uuid5(SHIPMENT_NAMESPACE, f"{source_event_id}:{warehouse_id}"))


def group_by_warehouse(reservations: Iterable[ReservedLine]) -> dict[str, dict[str, int]]:
    """Warehouse -> SKU -> quantity, in the order the reservation lists them."""
    grouped: dict[str, dict[str, int]] = {}
    for line in reservations:
        skus = grouped.setdefault(line.warehouse_id, {})
        skus[line.sku] = skus.get(line.sku, 0) + line.quantity
    return grouped


def shipment_weight(lines: Sequence[ShipmentLine], catalogue: CarrierCatalogue) -> tuple[Decimal, bool]:
    """Goods (unit weight times quantity; the catalogue's default for an unknown SKU) plus the
    packaging; and whether any weight was estimated."""
    goods = Decimal(0)
    estimated = False
    for line in lines:
        unit = line.unit_weight_kg
        if unit is None:
            unit, estimated = catalogue.default_item_weight_kg, True
        goods += unit * line.quantity
    return (goods + catalogue.packaging_kg).quantize(WEIGHT_QUANTUM), estimated


def plan_shipments(*, order_id: str, source_event_id: str, order: CanonicalOrder,
                   reservations: Iterable[ReservedLine], warehouses: Mapping[str, WarehouseSite],
                   products: Mapping[str, ProductInfo], catalogue: CarrierCatalogue,
                   dispatched_at: datetime, tz: ZoneInfo) -> list[PlannedShipment]:
    """One shipment per warehouse holding a reservation of the order, each with its lines, weight,
    destination and carrier choice. The hand-off to the warehouse is immediate in this system, so
    ``dispatched_at`` is when the reservation is handled."""
    planned = []
    address = order.shipping_address
    for warehouse_id, skus in group_by_warehouse(reservations).items():
        lines = tuple(
            ShipmentLine(sku, qty, products[sku].name if sku in products else sku,
                         products[sku].weight_kg if sku in products else None)
            for sku, qty in skus.items())
        weight, estimated = shipment_weight(lines, catalogue)
        site = warehouses.get(warehouse_id)
        consignment = Consignment(
            weight_kg=weight, origin_province=site.province if site else None,
            destination_province=address.province, destination_country=address.country,
            rush=order.priority == "rush", requested_date=order.requested_delivery_date)
        planned.append(PlannedShipment(
            shipment_id=shipment_id_for(source_event_id, warehouse_id), order_id=order_id,
            warehouse_id=warehouse_id, warehouse=site, lines=lines, weight_kg=weight,
            weight_estimated=estimated, requested_date=order.requested_delivery_date,
            dispatched_at=dispatched_at,
            choice=choose_service(consignment, catalogue, dispatched_at, tz)))
    return planned


@dataclass(frozen=True)
class DispatchRequest:
    """A reservation to dispatch: the order's content that ships, its reserved lines, and the
    reservation event its shipments are named after (``shipment_id_for``)."""

    order_id: str
    order: CanonicalOrder
    reservations: tuple[ReservedLine, ...]
    source_event_id: str


ReservationFate = Literal["cancelled", "parked", "dispatch"]


def reservation_fate(*, order_status: str, pending_change_id: str | None) -> ReservationFate:
    """What becomes of a reservation when logistics handles it: nothing once the order is
    cancelled (dispatch is the point of no return, and the cancel came first); parked while a
    change of the order is pending (the change's settlement dispatches it); else dispatched."""
    if order_status == "cancelled":
        return "cancelled"
    if pending_change_id is not None:
        return "parked"
    return "dispatch"


def kept_is_newer(kept_revision: int | None, revision: int) -> bool:
    """Whether the order as logistics keeps it (a settled change's content) is newer than the
    revision a reservation brings."""
    return (kept_revision or 0) > revision


def content_to_ship(kept: CanonicalOrder | None, reserved: CanonicalOrder) -> CanonicalOrder:
    """What a reservation ships: the order logistics keeps when a settled change made it newer
    than the reservation's (its address, its requested date), else the reservation's."""
    if kept is not None and kept_is_newer(kept.revision, reserved.revision):
        return kept
    return reserved


def plan_dispatches(requests: Sequence[DispatchRequest], *, shipped: Mapping[str, int],
                    warehouses: Mapping[str, WarehouseSite], products: Mapping[str, ProductInfo],
                    catalogue: CarrierCatalogue, dispatched_at: datetime,
                    tz: ZoneInfo) -> list[list[PlannedShipment] | None]:
    """Each request in turn, as one after another: None when its order has shipments already
    (``shipped``: each order's shipments so far; or an earlier request of the list planned them):
    an order is dispatched once; else its shipments (``plan_shipments``)."""
    counts = dict(shipped)
    planned: list[list[PlannedShipment] | None] = []
    for request in requests:
        if counts.get(request.order_id, 0):
            planned.append(None)
            continue
        plans = plan_shipments(
            order_id=request.order_id, source_event_id=request.source_event_id,
            order=request.order, reservations=request.reservations, warehouses=warehouses,
            products=products, catalogue=catalogue, dispatched_at=dispatched_at, tz=tz)
        counts[request.order_id] = len(plans)
        planned.append(plans)
    return planned


# --- a run of reservations -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReservationRun:
    """A run of reservations sorted as if handled one after another: the ones to park (per
    order the last one parked: (order id, reservation, its event id)), the ones to dispatch
    (position in the run, reservation, event id), the orders whose kept content is newer than
    their reservation's (read before dispatch), and each reservation's notes."""

    parked: tuple[tuple[str, StockReserved, str], ...]
    dispatching: tuple[tuple[int, StockReserved, str], ...]
    newer: frozenset[str]
    notes: tuple[tuple[Note, ...], ...]

    def requests(self, kept: Mapping[str, CanonicalOrder | None],
                 ) -> list[tuple[int, DispatchRequest]]:
        """The dispatches (position in the run, request), each with the content it ships
        (``content_to_ship``; ``kept``: the content of the ``newer`` orders)."""
        return [(position, DispatchRequest(reserved.order_id,
                                           content_to_ship(kept.get(reserved.order_id),
                                                           reserved.order),
                                           reserved.reservations, event_id))
                for position, reserved, event_id in self.dispatching]


def sort_reservations(run: Sequence[tuple[StockReserved, str]],
                      locks: Mapping[str, OrderLock]) -> ReservationRun:
    """Each reservation of a run (with its event id) and its fate (``reservation_fate``)
    against its order's locked record: not dispatched once the order is cancelled, parked while
    a change is pending (the last parked reservation of an order stays parked), else
    dispatched."""
    parked: dict[str, tuple[str, StockReserved, str]] = {}
    dispatching: list[tuple[int, StockReserved, str]] = []
    notes: list[tuple[Note, ...]] = []
    for position, (reserved, event_id) in enumerate(run):
        lock = locks[reserved.order_id]
        fate = reservation_fate(order_status=lock.status,
                                pending_change_id=lock.pending_change_id)
        if fate == "cancelled":
            notes.append((Note("order cancelled before dispatch; reservation not dispatched",
                               {"order_id": reserved.order_id}),))
        elif fate == "parked":
            parked.pop(reserved.order_id, None)
            parked[reserved.order_id] = (reserved.order_id, reserved, event_id)
            notes.append((Note("change pending; reservation parked",
                               {"order_id": reserved.order_id,
                                "change_id": lock.pending_change_id}),))
        else:
            dispatching.append((position, reserved, event_id))
            notes.append(())
    newer = frozenset(reserved.order_id for _, reserved, _ in dispatching
                      if kept_is_newer(locks[reserved.order_id].kept_revision,
                                       reserved.order.revision))
    return ReservationRun(tuple(parked.values()), tuple(dispatching), newer, tuple(notes))


# --- what a dispatch announces -------------------------------------------------------------------


def announce_dispatch(order_id: str,
                      stored: Sequence[tuple[PlannedShipment, str | None]] | None) -> Outcome:
    """The events and notes of a reservation's dispatch: its stored shipments (each with its
    tracking number, None when no carrier took it) in its plans' order, or None when the order
    was dispatched already (``plan_dispatches``)."""
    if stored is None:
        return Outcome(notes=(Note("order already dispatched; reservation ignored",
                                   {"order_id": order_id}),))
    count = len(stored)  # an order is dispatched once: these are all its shipments
    events: list[ShipmentDispatched | ShipmentException] = []
    notes: list[Note] = []
    for plan, number in stored:
        if plan.warehouse is None:
            notes.append(Note("warehouse location unknown; zone taken as national",
                              {"warehouse_id": plan.warehouse_id}, "warning"))
        event = shipment_event(order_id, plan, number, count)
        events.append(event)
        if isinstance(event, ShipmentException):
            notes.append(Note("no carrier can take the shipment", {
                "shipment_id": plan.shipment_id, "warehouse_id": plan.warehouse_id,
                "reason": event.detail}, "warning"))
    plans = [plan for plan, _ in stored]
    notes.append(Note("order dispatched", {
        "shipments": len(plans), "shipment_count": count,
        "carriers": [p.choice.option.label if isinstance(p.choice, CarrierChoice)
                     else "none" for p in plans],
        "rules": sorted({p.choice.rule for p in plans if isinstance(p.choice, CarrierChoice)})},
        "debug"))
    return Outcome(events=tuple(events), notes=tuple(notes))


def shipment_event(order_id: str, plan: PlannedShipment, number: str | None,
                   count: int) -> ShipmentDispatched | ShipmentException:
    """What a stored shipment announces: dispatched with its tracking number, or a
    ``no_carrier`` exception when no carrier took it (no number drawn); ``count``: the order's
    shipments in all, this one included."""
    choice = plan.choice
    if number is None or not isinstance(choice, CarrierChoice):
        reason = choice.reason if not isinstance(choice, CarrierChoice) else ""
        return ShipmentException(order_id=order_id, shipment_id=plan.shipment_id,
                                 tracking_number="", carrier="", code="no_carrier", detail=reason)
    option = choice.option
    return ShipmentDispatched(
        order_id=order_id, shipment_id=plan.shipment_id, warehouse_id=plan.warehouse_id,
        carrier=option.carrier.code, service=option.service.code, tracking_number=number,
        lines=plan.reserved_lines, weight_kg=plan.weight_kg, dispatched_at=plan.dispatched_at,
        promised_date=option.promised_date, requested_date=plan.requested_date,
        misses_requested_date=choice.misses_requested_date, rule=choice.rule,
        shipment_count=count)
