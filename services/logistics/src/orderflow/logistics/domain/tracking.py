"""Tracking, without I/O: a carrier's update moving its shipment on (dispatched -> ... ->
delivered, or an exception), the delivery of an order, the delays worth telling the customer
about before they call, and the shipments the delay watcher looks at."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import (
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentException,
    TrackingStatus,
    TrackingUpdated,
)
from orderflow.logistics.domain.orders import Note, OrderShipment, Outcome

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
class ShipmentRecord:
    """A shipment as stored, as the tracking and delay rules see it."""

    shipment_id: str
    order_id: str
    external_id: str
    warehouse_id: str
    status: ShipmentStatus
    status_at: datetime | None
    carrier: str | None
    service: str | None
    tracking_number: str | None
    pickup_date: date | None
    promised_date: date | None

    @property
    def tracking(self) -> TrackingState:
        return TrackingState(self.status, self.status_at)


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


# --- a carrier's update, as the handler carries it out ------------------------------------------


class UnknownShipment(LookupError):
    """A tracking update names a shipment logistics does not have."""


class TrackingMismatch(ValueError):
    """A tracking update's order, carrier or tracking number disagrees with the shipment's."""


def accept_update(shipment: ShipmentRecord | None, update: TrackingUpdated,
                  tz: ZoneInfo) -> tuple[ShipmentRecord, datetime]:
    """The shipment a carrier's update is for, and the update's time (company time when it has
    no offset); raises ``UnknownShipment`` for a shipment logistics never made and
    ``TrackingMismatch`` for an update of some other parcel (``same_parcel``): both are
    dead-lettered with the reason."""
    if shipment is None:
        raise UnknownShipment(f"no shipment {update.shipment_id} (tracking {update.tracking_number})")
    if not same_parcel(
            order_id=shipment.order_id, carrier=shipment.carrier,
            tracking_number=shipment.tracking_number, update_order_id=update.order_id,
            update_carrier=update.carrier, update_tracking_number=update.tracking_number):
        raise TrackingMismatch(
            f"update for shipment {update.shipment_id} says order {update.order_id}, "
            f"{update.carrier} {update.tracking_number}; the shipment is order "
            f"{shipment.order_id}, {shipment.carrier} {shipment.tracking_number}")
    return shipment, as_aware(update.occurred_at, tz)


EXCEPTION_DETAIL_LENGTH = 500


@dataclass(frozen=True)
class ShipmentMove:
    """A shipment's new tracking state, and the columns the step sets with it (only those not
    None)."""

    state: TrackingState
    delivered_at: datetime | None = None
    on_time: bool | None = None
    exception_code: str | None = None
    exception_detail: str | None = None

    def columns(self) -> dict[str, Any]:
        extra = {"delivered_at": self.delivered_at, "on_time": self.on_time,
                 "exception_code": self.exception_code,
                 "exception_detail": self.exception_detail}
        return {name: value for name, value in extra.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class ScanOutcome(Outcome):
    """A carrier's update carried out: its outcome (kept in the history), how the shipment moves
    (``move``: None when it does not), for a delivery whether it is on time (announced once the
    order's other shipments are read: ``announce_delivery``), and the delays it reveals."""

    outcome: TrackingOutcome
    move: ShipmentMove | None = None
    on_time: bool | None = None
    findings: tuple[DelayFinding, ...] = ()


def track_update(shipment: ShipmentRecord, update: TrackingUpdated, occurred_at: datetime,
                 policy: DelayPolicy) -> ScanOutcome:
    """A new carrier update of ``shipment`` (``track``): a delivery, an exception (published,
    its detail cut to ``EXCEPTION_DETAIL_LENGTH``), a step forward, or kept in the history
    only; with the delays the scan reveals."""
    step = track(shipment.tracking, status=update.status, occurred_at=occurred_at,
                 detail=update.detail, pickup_date=shipment.pickup_date,
                 promised_date=shipment.promised_date, policy=policy)
    decision = step.decision
    if step.on_time is not None:  # delivered
        return ScanOutcome(outcome=decision.outcome, on_time=step.on_time,
                           move=ShipmentMove(decision.state, delivered_at=occurred_at,
                                             on_time=step.on_time))
    if not decision.changed:  # stale, after delivery, or a repeat of the current step
        return ScanOutcome(
            outcome=decision.outcome, findings=step.findings,
            notes=(Note("tracking update kept in the history only", {
                "shipment_id": shipment.shipment_id, "status": update.status,
                "outcome": decision.outcome, "current": shipment.status}),))
    if step.exception_code is not None:
        detail = update.detail[:EXCEPTION_DETAIL_LENGTH]
        return ScanOutcome(
            outcome=decision.outcome, findings=step.findings,
            move=ShipmentMove(decision.state, exception_code=step.exception_code,
                              exception_detail=detail),
            events=(ShipmentException(order_id=shipment.order_id,
                                      shipment_id=shipment.shipment_id,
                                      tracking_number=update.tracking_number,
                                      carrier=update.carrier, code=step.exception_code,
                                      detail=detail),),
            notes=(Note("carrier exception", {"shipment_id": shipment.shipment_id,
                                              "code": step.exception_code}),))
    return ScanOutcome(
        outcome=decision.outcome, findings=step.findings, move=ShipmentMove(decision.state),
        notes=(Note("shipment moved on", {"shipment_id": shipment.shipment_id,
                                          "status": decision.state.status,
                                          "outcome": decision.outcome}),))


def announce_delivery(shipment: ShipmentRecord, scan: ScanOutcome,
                      shipments: Iterable[OrderShipment]) -> ScanOutcome:
    """A delivery's ``shipment.delivered``, with whether the whole order is delivered
    (``order_delivered``; ``shipments``: the order's, read once this one moved)."""
    assert scan.move is not None and scan.move.delivered_at is not None \
        and scan.on_time is not None
    whole = order_delivered(s.status for s in shipments)
    return replace(scan, events=(ShipmentDelivered(
        order_id=shipment.order_id, shipment_id=shipment.shipment_id,
        delivered_at=scan.move.delivered_at, on_time=scan.on_time, order_delivered=whole),),
        notes=(Note("shipment delivered", {"shipment_id": shipment.shipment_id,
                                           "on_time": scan.on_time,
                                           "order_delivered": whole}),))


def delay_event(shipment: ShipmentRecord, finding: DelayFinding) -> ShipmentDelayed:
    """What a delay flagged for the first time publishes (a shipment a carrier took has a
    promised date)."""
    assert shipment.promised_date is not None
    return ShipmentDelayed(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                           reason=finding.reason, promised_date=shipment.promised_date,
                           expected_date=finding.expected_date, carrier=shipment.carrier,
                           tracking_number=shipment.tracking_number)
