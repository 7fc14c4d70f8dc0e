"""Logistics rules, without I/O: shipments from reservations, tracking moving a shipment on, the
delivery of an order, and the delays worth telling the customer about before they call.

The carrier catalogue and the choice of carrier live in ``carriers.py``."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import ReservedLine, TrackingStatus
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics.carriers import (
    CarrierCatalogue,
    CarrierChoice,
    Consignment,
    NoCarrier,
    choose_service,
)

WEIGHT_QUANTUM = Decimal("0.001")
_SHIPMENT_NAMESPACE = uuid.UUID("8d0f3c52-1e4b-4a57-9b1c-3f6e2a7d9c41")

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
    return str(uuid.uuid5(_SHIPMENT_NAMESPACE, f"{source_event_id}:{warehouse_id}"))


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


# --- tracking ------------------------------------------------------------------------------------

ShipmentStatus = Literal["no_carrier", "dispatched", "picked_up", "in_transit", "out_for_delivery",
                         "delivered", "exception"]
PROGRESS_RANK: dict[str, int] = {"dispatched": 0, "picked_up": 1, "in_transit": 2,
                                 "out_for_delivery": 3, "delivered": 4}
TrackingOutcome = Literal["advanced", "resumed", "exception", "delivered", "stale", "repeated",
                          "after_delivery"]
CHANGING_OUTCOMES: frozenset[str] = frozenset({"advanced", "resumed", "exception", "delivered"})


@dataclass(frozen=True)
class TrackingState:
    status: ShipmentStatus
    status_at: datetime | None  # when the carrier reported the current status


@dataclass(frozen=True)
class TrackingDecision:
    outcome: TrackingOutcome
    state: TrackingState

    @property
    def changed(self) -> bool:
        return self.outcome in CHANGING_OUTCOMES


def apply_tracking(state: TrackingState, status: TrackingStatus,
                   occurred_at: datetime) -> TrackingDecision:
    """How a carrier's update moves a shipment (dispatched -> picked_up -> in_transit ->
    out_for_delivery -> delivered, or exception from any of them):

    - delivered is final: later updates are kept in the history but change nothing
      (``after_delivery``); a delivery scan is accepted whatever came before (carriers skip scans);
    - progress moves forward only, skipping steps if the carrier did (``advanced``); an update for
      the current step is ``repeated``, one for an earlier step ``stale`` (it arrived late);
    - an exception applies unless it is older than what the shipment already knows (``stale``);
    - after an exception, a progress update that happened later resumes the shipment (``resumed``),
      at whatever step the carrier reports."""
    current = state.status
    if current == "delivered":
        return TrackingDecision("after_delivery", state)
    if status == "delivered":
        return TrackingDecision("delivered", TrackingState("delivered", occurred_at))
    known_at = state.status_at
    if status == "exception":
        if known_at is not None and occurred_at < known_at:
            return TrackingDecision("stale", state)
        return TrackingDecision("exception", TrackingState("exception", occurred_at))
    if current == "exception":
        if known_at is None or occurred_at > known_at:
            return TrackingDecision("resumed", TrackingState(status, occurred_at))
        return TrackingDecision("stale", state)
    new_rank, old_rank = PROGRESS_RANK[status], PROGRESS_RANK.get(current, 0)
    if new_rank > old_rank:
        latest = occurred_at if known_at is None else max(occurred_at, known_at)
        return TrackingDecision("advanced", TrackingState(status, latest))
    return TrackingDecision("repeated" if new_rank == old_rank else "stale", state)


EXCEPTION_CODES: dict[str, tuple[str, ...]] = {
    "damaged": ("damaged", "damage", "broken", "破损", "损坏"),
    "lost": ("lost", "missing", "丢失", "遗失"),
    "refused": ("refused", "rejected by recipient", "拒收"),
    "address_unknown": ("address", "地址"),
    "recipient_unavailable": ("unavailable", "no one", "failed attempt", "无人", "联系不上"),
    "weather": ("weather", "typhoon", "snow", "天气", "台风", "暴雪"),
}
_CODE_PREFIX = re.compile(r"^\s*([a-z_]+)\s*(?::|$)")


def exception_code(detail: str) -> str:
    """A stable code for a carrier's exception: ``code: text`` when the connector sends one of the
    known codes first, else recognised words in the text, else ``carrier_exception``."""
    match = _CODE_PREFIX.match(detail)
    if match and match.group(1) in EXCEPTION_CODES:
        return match.group(1)
    lowered = detail.lower()
    for code, words in EXCEPTION_CODES.items():
        if any(word in lowered for word in words):
            return code
    return "carrier_exception"


def as_aware(moment: datetime, tz: ZoneInfo) -> datetime:
    """A carrier's time without an offset is taken as company time."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def delivered_on_time(delivered_at: datetime, promised: date, tz: ZoneInfo) -> bool:
    """On time when delivered on or before the promised day (company time)."""
    return delivered_at.astimezone(tz).date() <= promised


def order_delivered(statuses: Iterable[str]) -> bool:
    """An order is delivered when every one of its shipments is."""
    seen = list(statuses)
    return bool(seen) and all(s == "delivered" for s in seen)


def same_parcel(*, order_id: str, carrier: str | None, tracking_number: str | None,
                update_order_id: str, update_carrier: str, update_tracking_number: str) -> bool:
    """Whether a carrier's update names the shipment's order, carrier and tracking number (an
    update that disagrees is refused: it is for some other parcel)."""
    return (order_id, carrier, tracking_number) == (update_order_id, update_carrier,
                                                    update_tracking_number)


# --- delays --------------------------------------------------------------------------------------

DelayReason = Literal["not_picked_up", "carrier_exception", "not_out_for_delivery_on_promised_day",
                      "promised_date_missed"]


@dataclass(frozen=True)
class DelayFinding:
    reason: DelayReason
    expected_date: date | None


@dataclass(frozen=True)
class DelayPolicy:
    tz: ZoneInfo
    out_for_delivery_deadline_hour: int = 12
    exception_grace_hours: int = 12


def assess_delays(*, status: str, pickup_date: date | None, promised_date: date | None,
                  status_at: datetime | None, now: datetime,
                  policy: DelayPolicy) -> list[DelayFinding]:
    """The reasons a shipment will miss, or has missed, its promised date, as of ``now``:

    - ``promised_date_missed``: the promised day is over and it is not delivered (expected
      tomorrow at the earliest); once missed, no other reason is added;
    - ``carrier_exception``: the carrier reported a problem that is still unresolved
      ``exception_grace_hours`` later (12 by default; the exception itself is published at once);
    - ``not_picked_up``: the carrier did not scan it on its collection day (expected late by as
      many days as the collection is late);
    - ``not_out_for_delivery_on_promised_day``: on the promised day, past the deadline hour
      (12:00 company time by default), it is not out for delivery (expected the day after)."""
    if status in ("delivered", "no_carrier") or promised_date is None:
        return []
    local = now.astimezone(policy.tz)
    today = local.date()
    if today > promised_date:
        return [DelayFinding("promised_date_missed", today + timedelta(days=1))]
    findings = []
    if status == "exception" and (
            status_at is None
            or now - status_at >= timedelta(hours=policy.exception_grace_hours)):
        findings.append(DelayFinding("carrier_exception", None))
    if status == "dispatched" and pickup_date is not None and today > pickup_date:
        late_by = (today - pickup_date).days
        findings.append(DelayFinding("not_picked_up", promised_date + timedelta(days=late_by)))
    if (today == promised_date and local.hour >= policy.out_for_delivery_deadline_hour
            and status != "out_for_delivery"):
        findings.append(DelayFinding("not_out_for_delivery_on_promised_day",
                                     promised_date + timedelta(days=1)))
    return findings


@dataclass(frozen=True)
class TrackingStep:
    """What a carrier's update does to a shipment: how it moves it (``apply_tracking``), whether
    a delivery is on time, an exception's code, and the delays the scan itself reveals."""

    decision: TrackingDecision
    on_time: bool | None = None  # a delivery: on or before the promised day
    exception_code: str | None = None  # an exception: its code (``exception_code``)
    findings: tuple[DelayFinding, ...] = ()


def track(state: TrackingState, *, status: TrackingStatus, occurred_at: datetime, detail: str,
          pickup_date: date | None, promised_date: date | None,
          policy: DelayPolicy) -> TrackingStep:
    """A carrier's update of a shipment. A delivery is on time or not; an update that changes
    nothing and is not a repeat of the current step (stale, or after delivery) says nothing
    about the shipment now; any other is checked against the delay rules as of the scan's own
    time: a scan on the promised afternoon that is not "out for delivery" (a repeated "in
    transit" included) says the shipment will be late, before the watcher looks."""
    decision = apply_tracking(state, status, occurred_at)
    if decision.outcome == "delivered":
        assert promised_date is not None  # a shipment a carrier took has a promised date
        return TrackingStep(decision, on_time=delivered_on_time(occurred_at, promised_date,
                                                                policy.tz))
    if not decision.changed and decision.outcome != "repeated":
        return TrackingStep(decision)
    code = exception_code(detail) if decision.outcome == "exception" else None
    findings = assess_delays(status=decision.state.status, pickup_date=pickup_date,
                             promised_date=promised_date, status_at=decision.state.status_at,
                             now=occurred_at, policy=policy)
    return TrackingStep(decision, exception_code=code, findings=tuple(findings))


UNDELIVERED: tuple[ShipmentStatus, ...] = ("dispatched", "picked_up", "in_transit",
                                           "out_for_delivery", "exception")


@dataclass(frozen=True)
class WatchList:
    """The shipments the delay rules might flag as of a day, as a filter the repository applies
    (``assess_delays`` decides): undelivered ones promised by that day, whose collection day is
    past, or in an exception whatever the dates; none already flagged with ``final_reason`` (no
    other reason follows it)."""

    statuses: tuple[ShipmentStatus, ...]
    promised_by: date
    collection_before: date
    any_date: tuple[ShipmentStatus, ...]
    final_reason: DelayReason


def watch_list(today: date) -> WatchList:
    return WatchList(UNDELIVERED, promised_by=today, collection_before=today,
                     any_date=("exception",), final_reason="promised_date_missed")


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


# --- changes ---------------------------------------------------------------------------------


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


# --- returns (RMA) -----------------------------------------------------------------------------


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
    serial = uuid.uuid5(_SHIPMENT_NAMESPACE, f"return:{rma_id}").int % 10**12
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
