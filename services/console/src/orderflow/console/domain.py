"""The console's read model, pure: every event of an order becomes a timeline entry, and an
order's view (state, amounts, dates, shipments, holds, rejections, notifications, time per stage)
is a function of the *set* of its entries, so replaying the topics in any interleaving into an
empty read model gives the same views. No I/O, no framework."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field

from orderflow.connector import StoreRefused, store_of
from orderflow.console.i18n import translate
from orderflow.contracts import events as ev
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import OrderState, order_id_for

# review's hold of an order a reviewer approved that a director approves too, and the reason of an
# order a reviewer sent back for rework (whoever entered it reworks it; its next revision is
# reviewed again)
DIRECTOR_APPROVAL = "director_approval"
REWORK = "rework"

# The furthest state an event proves; the highest rank wins. Events of one order are causal, but
# the console reads many topics and their interleaving differs between runs: ranking makes the
# state independent of it (the same idea as ``orderflow.devstack.tracking``).
STATE_RANK: dict[OrderState, int] = {
    OrderState.RECEIVED: 1, OrderState.HELD: 2, OrderState.APPROVED: 3,
    OrderState.BACKORDERED: 4, OrderState.RESERVED: 5, OrderState.DISPATCHED: 6,
    OrderState.DELIVERED: 7, OrderState.REJECTED: 8, OrderState.CANCELLED: 9,
    OrderState.RETURNED: 10,
}

# the order of events of one order that share a timestamp (the causal order of the pipeline)
_EVENT_ORDER: dict[str, int] = {name: i for i, name in enumerate((
    "OrderSubmitted", "OrderReceived", "OrderRevisionReceived", "OrderHeld", "OrderRejected",
    "OrderApproved", "StockBackordered", "StockReserved", "StockReleased", "InvoiceIssued",
    "PaymentReceived", "ShipmentDispatched", "TrackingUpdated", "ShipmentDelayed",
    "ShipmentException", "ShipmentDelivered", "OrderRevisionRejected", "OrderCancelRequested",
    "OrderCancelRefused", "OrderCancelled", "ReturnRequested", "ReturnRefused", "ReturnApproved",
    "ReturnReceived", "RefundIssued", "OrderChangeRequested", "OrderChangeAdmitted",
    "OrderChangeApproved", "OrderChangeReserved", "OrderChangeRejected", "OrderChanged",
    "NotificationRecorded",
))}

# the stages an order passes, each from one milestone to the next (cycle times)
STAGES: tuple[tuple[str, str, str], ...] = (
    ("intake", "submitted", "received"),
    ("review", "received", "approved"),
    ("allocation", "approved", "reserved"),
    ("fulfilment", "reserved", "dispatched"),
    ("transit", "dispatched", "delivered"),
)


class TimelineEntry(BaseModel):
    """One event of one order, as stored: enough to re-project the order at any time."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    order_id: str
    topic: str
    event_type: str
    producer: str
    occurred_at: datetime
    payload: dict[str, Any]

    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, _EVENT_ORDER.get(self.event_type, 99), self.event_id)


class LineView(BaseModel):
    sku: str
    quantity: int
    unit_price: Decimal
    discount: Decimal
    amount: Decimal


class HoldView(BaseModel):
    code: str
    message: str
    figures: dict[str, str] = Field(default_factory=dict)
    at: datetime


class RejectionView(BaseModel):
    stage: str
    code: str
    field: str | None = None
    message: str
    decided_by: str | None = None
    comment: str | None = None
    at: datetime


class ShortLineView(BaseModel):
    sku: str
    ordered: int
    reserved: int
    short: int


class ReservationView(BaseModel):
    sku: str
    warehouse_id: str
    quantity: int


class ShipmentView(BaseModel):
    shipment_id: str
    warehouse_id: str | None = None
    carrier: str | None = None
    service: str | None = None
    tracking_number: str | None = None
    dispatched_at: datetime | None = None
    promised_date: date | None = None
    status: str = "dispatched"  # dispatched | in_transit | out_for_delivery | delayed | exception | delivered
    delivered_at: datetime | None = None
    on_time: bool | None = None
    delay_reason: str | None = None
    delayed_since: datetime | None = None
    expected_date: date | None = None
    exception_code: str | None = None
    exception_detail: str | None = None
    exception_since: datetime | None = None
    last_tracking: str | None = None


class NotificationView(BaseModel):
    channel: str
    status: str
    source_event_type: str
    detail: str = ""
    at: datetime


class ContactView(BaseModel):
    """How to reach the customer, as a rejection named them: shown to signed-in staff (so a
    rejected order can be fixed with the customer), masked in logs like all personal data."""

    name: str = ""
    email: str | None = None
    phone: str | None = None


class RefusalView(BaseModel):
    """A refused change or cancel nobody has followed up yet (a later request of the same kind,
    or the change or cancel done, closes it)."""

    kind: str  # change | cancel
    ref: str  # the change's id; a cancel refusal's time
    codes: list[str]
    requested_by: str | None = None
    at: datetime


class StageTime(BaseModel):
    stage: str
    started_at: datetime
    ended_at: datetime | None
    seconds: float | None = Field(description="None while the order is still in this stage")


class TimelineItem(BaseModel):
    at: datetime
    service: str
    event_type: str
    topic: str
    summary: str = Field(description="In English")
    details: dict[str, Any] = Field(default_factory=dict)


class Said(NamedTuple):
    """A timeline summary: its message id and values (``orderflow.console.i18n``), in no
    language yet; the API's ``summary`` is its English text, the page shows it in the reader's."""

    key: str
    values: dict[str, Any]

    def text(self, lang: str = "en") -> str:
        return translate(self.key, lang, **self.values)


def _said(key: str, **values: Any) -> Said:
    return Said(key, values)


class OrderView(BaseModel):
    """What the console knows of one order."""

    order_id: str
    state: OrderState | None = Field(default=None, description="None: pushed, not yet through intake")
    state_since: datetime | None = None
    channel: str | None = None
    external_id: str | None = None
    customer_id: str | None = None
    customer_name: str | None = None
    currency: str | None = None
    subtotal: Decimal | None = None
    discount: Decimal | None = None
    tax: Decimal | None = None
    shipping: Decimal | None = None
    grand_total: Decimal | None = None
    priority: str | None = None
    payment_terms: str | None = None
    placed_at: datetime | None = None
    requested_delivery_date: date | None = None
    promised_date: date | None = None
    destination: str | None = None
    revision: int = 1
    lines: list[LineView] = Field(default_factory=list)
    holds: list[HoldView] = Field(default_factory=list)
    hold_codes: list[str] = Field(default_factory=list, description="Reasons of the latest hold")
    rejections: list[RejectionView] = Field(default_factory=list)
    rework: RejectionView | None = Field(
        default=None, description="The order sent back for rework, until its next revision is "
                                  "reviewed (whoever entered it reworks it)")
    resubmitted: int | None = Field(
        default=None, description="The newer revision of a rejected order (its fix), until it "
                                  "moves the order on")
    entered_by: str | None = Field(
        default=None, description="The operator who entered the latest revision at the order "
                                  "desk (the events' author); a send-back goes back to them")
    approved_by: str | None = None
    approval_comment: str | None = None
    cancellation: str | None = Field(default=None, description="Why and by whom, once cancelled")
    returns: list[str] = Field(default_factory=list, description="Return (RMA) ids and outcomes")
    open_returns: dict[str, datetime] = Field(
        default_factory=dict, description="Returns requested without an outcome yet: RMA -> when")
    open_refusals: list[RefusalView] = Field(default_factory=list)
    contact: ContactView | None = Field(
        default=None, description="The customer's contact a rejection named (staff only)")
    reservations: list[ReservationView] = Field(default_factory=list)
    filled_in_full_first_attempt: bool | None = None
    first_attempt_short: list[ShortLineView] = Field(default_factory=list)
    backorder_expected_date: date | None = None
    shipments: list[ShipmentView] = Field(default_factory=list)
    shipment_count: int = 0
    delivered_at: datetime | None = None
    on_time: bool | None = None
    notifications: list[NotificationView] = Field(default_factory=list)
    milestones: dict[str, datetime] = Field(default_factory=dict)
    stage_times: list[StageTime] = Field(default_factory=list)
    first_seen_at: datetime | None = None
    last_event_at: datetime | None = None
    event_count: int = 0
    timeline: list[TimelineItem] = Field(default_factory=list)

    @property
    def in_full(self) -> bool | None:
        return self.filled_in_full_first_attempt

    @property
    def tracking_numbers(self) -> list[str]:
        return [s.tracking_number for s in self.shipments if s.tracking_number]


# --- from a consumed event to a stored entry --------------------------------------------------

_PERSONAL = {"email", "phone"}


def _trim_order(order: dict[str, Any]) -> dict[str, Any]:
    """The canonical order without personal data: the customer's id and name, the destination's
    province and city only (the console shows where, not who lives there)."""
    trimmed = {k: v for k, v in order.items() if k not in {"shipping_address", "notes"}}
    customer = order.get("customer") or {}
    trimmed["customer"] = {k: v for k, v in customer.items() if k not in _PERSONAL}
    address = order.get("shipping_address") or {}
    trimmed["destination"] = {"province": address.get("province", ""),
                              "city": address.get("city", "")}
    return trimmed


def stored_payload(event: ev.Event) -> dict[str, Any]:
    """The part of an event the read model keeps (no raw channel payloads, no personal data but a
    rejected order's contact: the worklist shows it to staff who fix the order with the
    customer)."""
    data = event.model_dump(mode="json")
    if isinstance(event, ev.OrderSubmitted):
        data.pop("payload", None)
    if isinstance(data.get("order"), dict):
        data["order"] = _trim_order(data["order"])
    if isinstance(data.get("customer"), dict) and not isinstance(event, ev.OrderRejected):
        data["customer"] = {k: v for k, v in data["customer"].items() if k not in _PERSONAL}
    return data


def order_of(event: ev.Event) -> str | None:
    """The order an event belongs to, if any (connectors' raw orders are keyed by channel): a
    push's is its channel, store and external id's, as intake names it (a push refused for its
    store, under the store it named, else the empty one). A later push of an order intake
    received before stores counted, which keeps its earlier id, is filed under its store's id."""
    if isinstance(event, ev.OrderSubmitted):
        try:
            store = store_of(event.channel, event.payload, event.store)
        except StoreRefused:
            store = event.store or ""
        return order_id_for(event.channel, event.external_id, store)
    order_id = getattr(event, "order_id", None)
    return str(order_id) if order_id else None


def entry_for(topic: str, headers: EventHeaders, event: ev.Event) -> TimelineEntry | None:
    order_id = order_of(event)
    if order_id is None:
        return None
    return TimelineEntry(event_id=headers.event_id, order_id=order_id, topic=topic,
                         event_type=event.EVENT_TYPE, producer=headers.producer or "unknown",
                         occurred_at=headers.occurred_at, payload=stored_payload(event))


# --- projection -------------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


# each field's default, or the factory that makes it (pydantic's ``get_default`` costs ~10 µs a
# field): a draft's defaults are those ``OrderView(order_id=...)`` gets
_VIEW_DEFAULTS = {name: field.default for name, field in OrderView.model_fields.items()
                  if field.default_factory is None}
_VIEW_FACTORIES: tuple[tuple[str, Callable[[], Any]], ...] = tuple(
    (name, cast(Callable[[], Any], field.default_factory))
    for name, field in OrderView.model_fields.items() if field.default_factory is not None)


class _Draft:
    """An order's view while it is projected: ``OrderView``'s fields as plain attributes, made
    into the view once at the end. A projection sets about thirty fields, and pydantic's
    ``__setattr__`` (which validates nothing here either) made it 7.5 % slower."""

    def __init__(self, order_id: str) -> None:
        self.__dict__.update(_VIEW_DEFAULTS)
        for name, factory in _VIEW_FACTORIES:
            self.__dict__[name] = factory()
        self.order_id = order_id


class _Projector:
    def __init__(self, order_id: str) -> None:
        # typed as the view it becomes: the same attributes, read and written the same way
        self.view = cast(OrderView, _Draft(order_id))
        self.shipments: dict[str, ShipmentView] = {}
        self.first_attempt_seen = False

    @classmethod
    def resume(cls, view: OrderView) -> _Projector:
        """The projector as it was when it finished ``view`` (taken over, not copied): its own
        state is in the view (the shipments; a first attempt seen is the milestone it set), and
        what ``finish`` derives is derived again."""
        projector = cls(view.order_id)
        projector.view.__dict__.update(view.__dict__)
        projector.view.on_time, projector.view.timeline = None, []
        projector.shipments = {s.shipment_id: s for s in view.shipments}
        projector.first_attempt_seen = any(m in view.milestones for m in ("backordered", "reserved"))
        return projector

    def advance(self, state: OrderState, at: datetime) -> None:
        current = self.view.state
        # a rejected order is refused until its next revision, its fix, goes on: once it was
        # sent back for rework or a newer revision came, any later state moves it on
        fixing = current is OrderState.REJECTED and (
            self.view.rework is not None or self.view.resubmitted is not None)
        if current is None or fixing or STATE_RANK[state] > STATE_RANK[current]:
            self.view.state = state
            self.view.state_since = at
            if state is not OrderState.REJECTED:
                self.view.rework = self.view.resubmitted = None

    def resubmit(self, revision: int) -> None:
        """A newer revision of a rejected order came (its fix): its later states move it on."""
        if self.view.state is OrderState.REJECTED and revision > self.view.revision:
            self.view.resubmitted = revision

    def milestone(self, name: str, at: datetime) -> None:
        self.view.milestones.setdefault(name, at)

    def take_order(self, order: dict[str, Any], totals: dict[str, Any] | None) -> None:
        v = self.view
        customer = order.get("customer") or {}
        v.customer_id = customer.get("id") or v.customer_id
        v.customer_name = customer.get("name") or v.customer_name
        v.currency = order.get("currency") or v.currency
        v.priority = order.get("priority") or v.priority
        v.payment_terms = order.get("payment_terms") or v.payment_terms
        v.placed_at = _dt(order.get("placed_at")) or v.placed_at
        v.requested_delivery_date = _date(order.get("requested_delivery_date"))
        v.revision = max(v.revision, int(order.get("revision") or 1))
        dest = order.get("destination") or {}
        if dest:
            v.destination = " ".join(p for p in (dest.get("province"), dest.get("city")) if p)
        lines = []
        for line in order.get("lines") or ():
            price, disc = Decimal(str(line["unit_price"])), Decimal(str(line.get("discount", "0")))
            lines.append(LineView(sku=line["sku"], quantity=int(line["quantity"]), unit_price=price,
                                  discount=disc, amount=price * int(line["quantity"]) - disc))
        if lines:
            v.lines = lines
        if totals:
            v.subtotal, v.discount = _dec(totals.get("subtotal")), _dec(totals.get("discount"))
            v.tax, v.shipping = _dec(totals.get("tax")), _dec(totals.get("shipping"))
            v.grand_total = _dec(totals.get("grand_total"))

    def shipment(self, shipment_id: str) -> ShipmentView:
        if shipment_id not in self.shipments:
            self.shipments[shipment_id] = ShipmentView(shipment_id=shipment_id)
        return self.shipments[shipment_id]

    def apply(self, e: TimelineEntry) -> Said:
        """Apply one entry (by its event's class, ``_PROJECTIONS``); return its one-line summary
        for the timeline. An event with no projection is named only."""
        projection = _PROJECTIONS.get(ev.EVENTS_BY_TYPE.get(e.event_type, ev.Event))
        if projection is None:
            return _said(e.event_type)
        return projection(self, e.payload, e.occurred_at)

    def finish(self, first_seen_at: datetime | None, last_event_at: datetime | None,
               event_count: int) -> OrderView:
        v = self.view
        v.shipments = sorted(self.shipments.values(), key=lambda s: s.shipment_id)
        delivered = [s for s in v.shipments if s.status == "delivered"]
        if v.state == OrderState.DELIVERED and delivered:
            v.on_time = all(bool(s.on_time) for s in delivered)
        v.first_seen_at, v.last_event_at = first_seen_at, last_event_at
        v.event_count = event_count
        v.stage_times = stage_times(v.milestones)
        # the values are the projection's own (as when they were set on an OrderView, unvalidated)
        return OrderView.model_construct(**vars(v))


# --- one projection per event class -------------------------------------------------------------
# Each reads the entry's stored payload (``stored_payload``: the event without personal data, so
# not the event itself), moves the order's view on and returns the timeline's one-line summary.

_Projection = Callable[[_Projector, dict[str, Any], datetime], Said]
_PROJECTIONS: dict[type[ev.Event], _Projection] = {}


def _projects(event_class: type[ev.Event]) -> Callable[[_Projection], _Projection]:
    def register(projection: _Projection) -> _Projection:
        _PROJECTIONS[event_class] = projection
        return projection
    return register


@_projects(ev.OrderSubmitted)
def _order_submitted(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.channel = v.channel or p.get("channel")
    v.external_id = v.external_id or p.get("external_id")
    pr.milestone("submitted", at)
    return _said("tl.submitted", channel=p.get("channel"))


@_projects(ev.OrderReceived)
def _order_received(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.channel, v.external_id = p.get("channel"), p.get("external_id")
    pr.resubmit(int((p.get("order") or {}).get("revision") or 1))
    pr.take_order(p.get("order") or {}, p.get("totals"))
    pr.advance(OrderState.RECEIVED, at)
    pr.milestone("received", at)
    figures = {"lines": len(v.lines), "total": p.get("totals", {}).get("grand_total"),
               "currency": v.currency}
    v.entered_by = p.get("author") or v.entered_by
    if p.get("author"):  # entered at the order desk: by whom
        return _said("tl.received_at_desk", author=p["author"], **figures)
    return _said("tl.received", **figures)


@_projects(ev.OrderRevisionReceived)
def _order_revision_received(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    # intake publishes it with the change request of the same revision, and first: a rejected
    # order's fix is resubmitted by it, before its revision is taken
    pr.resubmit(int(p.get("revision") or 1))
    v.revision = max(v.revision, int(p.get("revision") or 1))
    v.entered_by = p.get("author") or v.entered_by
    if p.get("author"):  # entered at the order desk: by whom
        return _said("tl.revision_at_desk", author=p["author"], revision=p.get("revision"),
                     previous=p.get("previous_revision"))
    return _said("tl.revision_received", revision=p.get("revision"),
                 previous=p.get("previous_revision"))


@_projects(ev.OrderRejected)
def _order_rejected(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.channel = v.channel or p.get("channel")
    v.external_id = v.external_id or p.get("external_id")
    customer = p.get("customer") or {}
    v.customer_id = v.customer_id or customer.get("id")
    v.customer_name = v.customer_name or customer.get("name")
    if customer:
        v.contact = ContactView(name=customer.get("name") or "", email=customer.get("email"),
                                phone=customer.get("phone"))
    for r in p.get("reasons") or ():
        v.rejections.append(RejectionView(
            stage=p.get("stage", ""), code=r.get("code", ""), field=r.get("field"),
            message=r.get("message", ""), decided_by=p.get("decided_by"),
            comment=p.get("comment"), at=at))
    pr.advance(OrderState.REJECTED, at)
    codes = _codes(p)
    sent_back = bool(codes) and set(codes) == {REWORK}
    v.rework = v.rejections[-1] if sent_back else None
    if sent_back:
        return _said("tl.sent_back", by=p.get("decided_by") or "", comment=p.get("comment") or "")
    if p.get("decided_by"):
        return _said("tl.rejected_by", stage=p.get("stage"), by=p["decided_by"], codes=codes)
    return _said("tl.rejected", stage=p.get("stage"), codes=codes)


@_projects(ev.OrderHeld)
def _order_held(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    customer = p.get("customer") or {}
    v.customer_id = v.customer_id or customer.get("id")
    v.customer_name = v.customer_name or customer.get("name")
    reasons = p.get("reasons") or ()
    for r in reasons:
        v.holds.append(HoldView(code=r.get("code", ""), message=r.get("message", ""),
                                figures=r.get("figures") or {}, at=at))
    v.hold_codes = [r.get("code", "") for r in reasons]
    pr.advance(OrderState.HELD, at)
    pr.milestone("held", at)
    if v.hold_codes == [DIRECTOR_APPROVAL]:
        return _said("tl.awaiting_director", by=v.holds[-1].figures.get("approved_by", ""))
    return _said("tl.held", codes=list(v.hold_codes),
                 reasons="; ".join(f"{r.get('code')}: {r.get('message')}" for r in reasons))


@_projects(ev.OrderApproved)
def _order_approved(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.channel, v.external_id = p.get("channel") or v.channel, p.get("external_id") or v.external_id
    if not v.lines:
        pr.take_order(p.get("order") or {}, p.get("totals"))
    v.approved_by, v.approval_comment = p.get("approved_by"), p.get("comment")
    pr.advance(OrderState.APPROVED, at)
    pr.milestone("approved", at)
    if p.get("comment"):
        return _said("tl.approved_note", by=p.get("approved_by"), comment=p["comment"])
    return _said("tl.approved", by=p.get("approved_by"))


@_projects(ev.StockBackordered)
def _stock_backordered(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    shorts = [ShortLineView(**s) for s in p.get("short_lines") or ()]
    if not pr.first_attempt_seen:
        pr.first_attempt_seen = True
        v.first_attempt_short = shorts
    v.backorder_expected_date = _date(p.get("expected_date"))
    pr.advance(OrderState.BACKORDERED, at)
    pr.milestone("backordered", at)
    return _said("tl.backordered", skus=[s.sku for s in shorts],
                 shorts=", ".join(f"{s.sku} short {s.short}" for s in shorts))


@_projects(ev.StockReserved)
def _stock_reserved(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.reservations = [ReservationView(**r) for r in p.get("reservations") or ()]
    v.filled_in_full_first_attempt = bool(p.get("filled_in_full_first_attempt"))
    if not pr.first_attempt_seen:
        pr.first_attempt_seen = True
        v.first_attempt_short = _short_of(v.lines, v.reservations)
    if not v.lines:
        pr.take_order(p.get("order") or {}, None)
    pr.advance(OrderState.RESERVED, at)
    pr.milestone("reserved", at)
    where = ", ".join(sorted({r.warehouse_id for r in v.reservations}))
    how = "backorder" if p.get("from_backorder") else (
        "full" if v.filled_in_full_first_attempt else "partly")
    return _said(f"tl.reserved_{how}", where=where)


@_projects(ev.ShipmentDispatched)
def _shipment_dispatched(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    s = pr.shipment(p["shipment_id"])
    s.warehouse_id, s.carrier, s.service = p.get("warehouse_id"), p.get("carrier"), p.get("service")
    s.tracking_number = p.get("tracking_number")
    s.dispatched_at = _dt(p.get("dispatched_at")) or at
    s.promised_date = _date(p.get("promised_date"))
    v.shipment_count = max(v.shipment_count, int(p.get("shipment_count") or 1))
    dispatched = [x for x in pr.shipments.values() if x.dispatched_at is not None]
    promised = [x.promised_date for x in dispatched if x.promised_date]
    v.promised_date = max(promised) if promised else v.promised_date
    if v.requested_delivery_date is None:
        v.requested_delivery_date = _date(p.get("requested_date"))
    if len(dispatched) >= v.shipment_count:
        pr.advance(OrderState.DISPATCHED, at)
        pr.milestone("dispatched", at)
    return _said("tl.dispatched", shipment=s.shipment_id, warehouse=s.warehouse_id,
                 carrier=s.carrier, service=s.service, tracking=s.tracking_number,
                 promised=s.promised_date)


@_projects(ev.TrackingUpdated)
def _tracking_updated(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    s = pr.shipment(p["shipment_id"])
    s.tracking_number = s.tracking_number or p.get("tracking_number")
    s.carrier = s.carrier or p.get("carrier")
    status = p.get("status", "")
    s.last_tracking = f"{status} {p.get('location', '')}".strip()
    if s.status not in {"delivered", "delayed", "exception"} and status in {
            "picked_up", "in_transit", "out_for_delivery"}:
        s.status = "in_transit" if status == "picked_up" else status
    if p.get("location"):
        return _said("tl.tracking_at", status=status, location=p["location"])
    return _said("tl.tracking", status=status)


@_projects(ev.ShipmentDelayed)
def _shipment_delayed(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    s = pr.shipment(p["shipment_id"])
    if s.status != "delivered":
        s.status = "delayed"
    s.delay_reason, s.delayed_since = p.get("reason"), s.delayed_since or at
    s.expected_date = _date(p.get("expected_date"))
    return _said("tl.delayed", shipment=s.shipment_id, reason=p.get("reason"),
                 codes=[p.get("reason") or ""], expected=s.expected_date)


@_projects(ev.ShipmentException)
def _shipment_exception(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    s = pr.shipment(p["shipment_id"])
    if s.status != "delivered":
        s.status = "exception"
    s.exception_code, s.exception_detail = p.get("code"), p.get("detail")
    s.exception_since = s.exception_since or at
    return _said("tl.carrier_exception", shipment=s.shipment_id, code=p.get("code"),
                 codes=[p.get("code") or ""], detail=p.get("detail", ""))


@_projects(ev.ShipmentDelivered)
def _shipment_delivered(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    s = pr.shipment(p["shipment_id"])
    s.status, s.on_time = "delivered", bool(p.get("on_time"))
    s.delivered_at = _dt(p.get("delivered_at")) or at
    if p.get("order_delivered"):
        v.delivered_at = s.delivered_at
        pr.advance(OrderState.DELIVERED, at)
        pr.milestone("delivered", at)
    return _said("tl.delivered_on_time" if s.on_time else "tl.delivered_late",
                 shipment=s.shipment_id)


@_projects(ev.NotificationRecorded)
def _notification_recorded(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.notifications.append(NotificationView(
        channel=p.get("channel", ""), status=p.get("status", ""),
        source_event_type=p.get("source_event_type", ""), detail=p.get("detail", ""), at=at))
    return _said("tl.notification", status=p.get("status"), channel=p.get("channel"),
                 event=p.get("source_event_type"))


@_projects(ev.OrderCancelled)
def _order_cancelled(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.cancellation = f"{p.get('reason')} (by {p.get('requested_by')})"
    _close_refusals(pr, "cancel")
    pr.advance(OrderState.CANCELLED, at)
    return _said("tl.cancelled", reason=p.get("reason"), by=p.get("requested_by"))


@_projects(ev.OrderChanged)
def _order_changed(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    v = pr.view
    v.revision = max(v.revision, int(p.get("revision") or 1))
    pr.take_order(p.get("order") or {}, p.get("totals"))
    _close_refusals(pr, "change")
    return _said("tl.changed", revision=p.get("revision"),
                 changes=", ".join(p.get("changes") or ()) or "content")


# --- events a view only names on its timeline ---------------------------------------------------


def _codes(p: dict[str, Any]) -> list[str]:
    return [r.get("code", "") for r in p.get("reasons") or ()]


def _stock_released(p: dict[str, Any]) -> Said:
    return _said("tl.stock_released", reason=p.get("reason"))


def _order_revision_rejected(p: dict[str, Any]) -> Said:
    return _said("tl.revision_rejected", revision=p.get("revision"), codes=_codes(p))


def _close_refusals(pr: _Projector, kind: str) -> None:
    pr.view.open_refusals = [r for r in pr.view.open_refusals if r.kind != kind]


@_projects(ev.OrderCancelRequested)
def _order_cancel_requested(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    _close_refusals(pr, "cancel")
    return _said("tl.cancel_requested", by=p.get("requested_by"), reason=p.get("reason"))


@_projects(ev.OrderCancelRefused)
def _order_cancel_refused(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    _close_refusals(pr, "cancel")
    pr.view.open_refusals.append(RefusalView(kind="cancel", ref=at.isoformat(), codes=_codes(p),
                                             requested_by=p.get("requested_by"), at=at))
    return _said("tl.cancel_refused", codes=_codes(p))


@_projects(ev.OrderChangeRequested)
def _order_change_requested(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    _close_refusals(pr, "change")
    pr.resubmit(int((p.get("order") or {}).get("revision") or 1))
    return _said("tl.change_requested", revision=(p.get("order") or {}).get("revision"),
                 by=p.get("requested_by"))


@_projects(ev.OrderChangeRejected)
def _order_change_rejected(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
    _close_refusals(pr, "change")
    pr.view.open_refusals.append(RefusalView(
        kind="change", ref=str(p.get("change_id") or p.get("revision")), codes=_codes(p),
        requested_by=p.get("requested_by"), at=at))
    return _said("tl.change_rejected", revision=p.get("revision"), stage=p.get("stage"),
                 codes=_codes(p))


def _order_change_admitted(p: dict[str, Any]) -> Said:
    return _said("tl.change_admitted")


def _order_change_approved(p: dict[str, Any]) -> Said:
    return _said("tl.change_approved", status=p.get("review_status"),
                 delta=p.get("exposure_delta"))


def _order_change_reserved(p: dict[str, Any]) -> Said:
    released = sum(int(r.get("quantity", 0)) for r in p.get("released") or ())
    if released:
        return _said("tl.change_reserved_released", status=p.get("stock_status"),
                     released=released)
    return _said("tl.change_reserved", status=p.get("stock_status"))


def _refund_issued(p: dict[str, Any]) -> Said:
    return _said("tl.refund", id=p.get("refund_id"), amount=p.get("amount"),
                 currency=p.get("currency"))


def _invoice_issued(p: dict[str, Any]) -> Said:
    return _said("tl.invoice", id=p.get("invoice_id"), amount=p.get("amount"),
                 currency=p.get("currency"))


def _payment_received(p: dict[str, Any]) -> Said:
    return _said("tl.payment", id=p.get("payment_id"), amount=p.get("amount"),
                 currency=p.get("currency"))


def _summary_only(summary: Callable[[dict[str, Any]], Said]) -> _Projection:
    return lambda _projector, payload, _at: summary(payload)


_PROJECTIONS.update({
    ev.StockReleased: _summary_only(_stock_released),
    ev.OrderRevisionRejected: _summary_only(_order_revision_rejected),
    ev.OrderChangeAdmitted: _summary_only(_order_change_admitted),
    ev.OrderChangeApproved: _summary_only(_order_change_approved),
    ev.OrderChangeReserved: _summary_only(_order_change_reserved),
    ev.RefundIssued: _summary_only(_refund_issued),
    ev.InvoiceIssued: _summary_only(_invoice_issued),
    ev.PaymentReceived: _summary_only(_payment_received),
})


def _return(outcome: str, state: OrderState | None = None) -> _Projection:
    def project_return(pr: _Projector, p: dict[str, Any], at: datetime) -> Said:
        rma = str(p.get("rma_id"))
        pr.view.returns.append(f"{rma}: {outcome}")
        if outcome == "requested":
            pr.view.open_returns[rma] = at
        else:
            pr.view.open_returns.pop(rma, None)
        if state is not None:
            pr.advance(state, at)
        if outcome == "received":
            return _said("tl.return_received", rma=p.get("rma_id"),
                         warehouse=p.get("warehouse_id"), **_inspected(p))
        return _said(f"tl.return_{outcome}", rma=p.get("rma_id"))
    return project_return


def _inspected(p: dict[str, Any]) -> dict[str, int]:
    """A warehouse receipt's units by the inspection's result."""
    units = {"restocked": 0, "scrapped": 0}
    for i in p.get("inspections") or ():
        key = "scrapped" if i.get("outcome") == "scrap" else "restocked"
        units[key] += int(i.get("quantity", 0))
    return units


_PROJECTIONS[ev.ReturnRequested] = _return("requested")
_PROJECTIONS[ev.ReturnApproved] = _return("approved")
_PROJECTIONS[ev.ReturnRefused] = _return("refused")
_PROJECTIONS[ev.ReturnReceived] = _return("received", OrderState.RETURNED)


def _short_of(lines: list[LineView], reservations: list[ReservationView]) -> list[ShortLineView]:
    reserved: dict[str, int] = {}
    for r in reservations:
        reserved[r.sku] = reserved.get(r.sku, 0) + r.quantity
    out = []
    for line in lines:
        got = min(reserved.get(line.sku, 0), line.quantity)
        if got < line.quantity:
            out.append(ShortLineView(sku=line.sku, ordered=line.quantity, reserved=got,
                                     short=line.quantity - got))
    return out


def stage_times(milestones: dict[str, datetime]) -> list[StageTime]:
    """Time spent in each stage the order entered: from its milestone to the next one reached."""
    out = []
    for stage, start, end in STAGES:
        started = milestones.get(start)
        if started is None:
            continue
        ended = milestones.get(end)
        seconds = max(0.0, (ended - started).total_seconds()) if ended else None
        out.append(StageTime(stage=stage, started_at=started, ended_at=ended, seconds=seconds))
    return out


def _details(e: TimelineEntry) -> dict[str, Any]:
    """The entry's payload for the timeline, without the bulky order (shown once on the page)."""
    return {k: v for k, v in e.payload.items() if k not in {"order", "order_id", "totals"}}


def project(order_id: str, entries: Iterable[TimelineEntry], *,
            timeline: bool = True) -> OrderView:
    """The view of one order from all its entries, whatever order they were consumed in; with
    ``timeline=False`` without its timeline (an item per entry, two thirds of the view's JSON):
    the view as the console stores it, the timeline being made again from the stored entries
    when one order is read."""
    return _projected(order_id, entries, timeline)[0]


def timeline_said(order_id: str,
                  entries: Iterable[TimelineEntry]) -> list[tuple[TimelineItem, Said]]:
    """The order's timeline (``project``'s), each item with its summary in no language yet."""
    view, said = _projected(order_id, entries, True)
    return list(zip(view.timeline, said, strict=True))


def _projected(order_id: str, entries: Iterable[TimelineEntry],
               timeline: bool) -> tuple[OrderView, list[Said]]:
    unique = {e.event_id: e for e in entries if e.order_id == order_id}
    ordered = sorted(unique.values(), key=TimelineEntry.sort_key)
    projector = _Projector(order_id)
    items: list[TimelineItem] = []
    summaries: list[Said] = []
    for e in ordered:
        said = projector.apply(e)
        if timeline:
            items.append(TimelineItem(at=e.occurred_at, service=e.producer,
                                      event_type=e.event_type, topic=e.topic,
                                      summary=said.text(), details=_details(e)))
            summaries.append(said)
    view = projector.finish(ordered[0].occurred_at if ordered else None,
                            ordered[-1].occurred_at if ordered else None, len(ordered))
    view.timeline = items
    return view, summaries


def advance(view: OrderView, entries: Iterable[TimelineEntry]) -> OrderView | None:
    """A stored view (``project(..., timeline=False)`` of the order's entries so far; taken over)
    moved on by new entries without reading the old ones again: the view ``project`` would give
    for all of them, when every new entry happened after the last the view was made from (the
    usual case: an order's events follow each other). None when one did not (consumed out of
    order, or at the very same instant): then only projecting all of them gives the view."""
    unique = {e.event_id: e for e in entries if e.order_id == view.order_id}
    ordered = sorted(unique.values(), key=TimelineEntry.sort_key)
    if not ordered:
        return view
    if view.last_event_at is None or ordered[0].occurred_at <= view.last_event_at:
        return None
    projector = _Projector.resume(view)
    for e in ordered:
        projector.apply(e)
    return projector.finish(view.first_seen_at, ordered[-1].occurred_at,
                            view.event_count + len(ordered))


def state_label(state: OrderState | None) -> str:
    return state.value if state is not None else "submitted"
