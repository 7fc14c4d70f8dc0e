"""Intake's rules, pure: turn a channel's payload into a checked canonical order with recomputed
totals, or into a list of machine-readable reasons. No I/O, no framework."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    OrderRevisionRejected,
    Reason,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockBackordered,
    StockReserved,
    TrackingUpdated,
)
from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for

ISO_CURRENCIES = frozenset({"CNY", "USD", "EUR", "HKD", "JPY", "GBP", "SGD", "KRW", "AUD", "CAD"})


@dataclass(frozen=True)
class Product:
    sku: str
    unit_price: Decimal
    tax_rate: Decimal
    weight_kg: Decimal
    active: bool


@dataclass(frozen=True)
class IntakePolicy:
    """Company settings for intake (documented in the README)."""

    total_tolerance: Decimal = Decimal("0.00")
    hold_on_total_mismatch: bool = False  # reserved: intake rejects; review may hold instead


@dataclass(frozen=True)
class Accepted:
    order: CanonicalOrder
    totals: OrderTotals


@dataclass(frozen=True)
class Refused:
    reasons: tuple[Reason, ...]


MAX_ORDER_TOTAL = Decimal(10) ** 14  # what every service's NUMERIC(16, 2) column holds

_CODE_BY_PYDANTIC_TYPE = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "greater_than": "not_positive",
    "greater_than_equal": "negative",
    "less_than_equal": "too_large",
    "decimal_max_places": "too_many_decimals",
    "decimal_max_digits": "too_large",
    "decimal_whole_digits": "too_large",
    "string_pattern_mismatch": "invalid_format",
    "string_too_short": "empty",
    "string_too_long": "too_long",
    "too_short": "empty",
    "too_long": "too_many",
    "int_parsing": "wrong_type",
    "int_type": "wrong_type",
    "int_from_float": "wrong_type",
    "decimal_parsing": "wrong_type",
    "decimal_type": "wrong_type",
    "string_type": "wrong_type",
    "datetime_from_date_parsing": "invalid_date",
    "datetime_parsing": "invalid_date",
    "datetime_type": "invalid_date",
    "date_from_datetime_parsing": "invalid_date",
    "date_parsing": "invalid_date",
    "date_type": "invalid_date",
    "literal_error": "invalid_value",
    "model_type": "wrong_type",
    "tuple_type": "wrong_type",
    "value_error": "invalid_value",
    "bool_type": "wrong_type",
}


def reasons_from_validation(exc: ValidationError) -> tuple[Reason, ...]:
    """Pydantic errors as reasons, without the input values (they may be personal data)."""
    reasons = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        code = _CODE_BY_PYDANTIC_TYPE.get(err["type"], "invalid_value")
        field_name = str(err.get("loc", ("",))[-1]) if err.get("loc") else ""
        if field_name == "quantity" and code in {"not_positive", "negative"}:
            code = "quantity_not_positive"
        elif field_name in {"unit_price", "discount", "shipping_fee", "stated_total"} and code == "negative":
            code = "negative_amount"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        reasons.append(Reason(code=code, field=loc or None, message=msg))
    return tuple(reasons)


def parse_canonical(data: Any) -> CanonicalOrder | Refused:
    if not isinstance(data, Mapping):
        return Refused((Reason(code="wrong_type", field=None,
                               message="the order must be a JSON object"),))
    try:
        return CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        return Refused(reasons_from_validation(exc))


def compute_totals(order: CanonicalOrder, catalogue: Mapping[str, Product]) -> OrderTotals:
    """Subtotal, discounts, tax (per-SKU rate on the discounted line), shipping, grand total;
    each figure rounded half up to cents. Prices are without tax."""
    subtotal = Decimal("0")
    discount = Decimal("0")
    tax = Decimal("0")
    for line in order.lines:
        gross = line.unit_price * line.quantity
        subtotal += gross
        discount += line.discount
        tax += round_money((gross - line.discount) * _rate(line.sku, catalogue))
    subtotal, discount = round_money(subtotal), round_money(discount)
    shipping = round_money(order.shipping_fee)
    grand = round_money(subtotal - discount + tax + shipping)
    return OrderTotals(subtotal=subtotal, discount=discount, tax=tax, shipping=shipping,
                       grand_total=grand)


def line_amounts(order: CanonicalOrder) -> tuple[Decimal, ...]:
    """Each line's amount before tax: unit price x quantity - discount, rounded half up."""
    return tuple(round_money(line.unit_price * line.quantity - line.discount)
                 for line in order.lines)


def _rate(sku: str, catalogue: Mapping[str, Product]) -> Decimal:
    product = catalogue.get(sku)
    return product.tax_rate if product else Decimal("0")


def net_of_tax(order: CanonicalOrder,
               catalogue: Mapping[str, Product]) -> tuple[CanonicalOrder, OrderTotals]:
    """An order whose prices include VAT (Douyin, Shopify ``taxes_included``) as OrderFlow's
    canonical order, whose prices never do, with its totals.

    Per line, the VAT contained in the amount paid for it, A = unit price x quantity - discount,
    is T = A x r / (1 + r), rounded half up (how a Chinese VAT invoice splits 价税合计); the line's
    net amount is N = A - T, exactly. The net unit price is the gross one divided by 1 + r,
    rounded half up to cents (one cent up if that would leave the net amount above the line), and
    the net discount is what remains: net unit price x quantity - N (a few cents at most when the
    channel gave no discount). So the canonical order's lines, plus the tax, plus shipping, come
    to exactly what the channel charged: grand total = sum of A + shipping, and the stated total
    is checked against that."""
    lines = []
    subtotal = discount = tax = Decimal("0")
    for line in order.lines:
        rate = _rate(line.sku, catalogue)
        paid = line.unit_price * line.quantity - line.discount
        contained = round_money(paid * rate / (1 + rate))
        net_amount = paid - contained
        unit = round_money(line.unit_price / (1 + rate))
        if unit * line.quantity < net_amount:
            unit += Decimal("0.01")
        net_discount = unit * line.quantity - net_amount
        lines.append(line.model_copy(update={"unit_price": unit, "discount": net_discount}))
        subtotal += unit * line.quantity
        discount += net_discount
        tax += contained
    shipping = round_money(order.shipping_fee)
    totals = OrderTotals(subtotal=round_money(subtotal), discount=round_money(discount),
                         tax=round_money(tax), shipping=shipping,
                         grand_total=round_money(subtotal - discount + tax + shipping))
    return order.model_copy(update={"lines": tuple(lines)}), totals


def check_order(order: CanonicalOrder, catalogue: Mapping[str, Product],
                policy: IntakePolicy = IntakePolicy(), *,
                prices_include_tax: bool = False) -> Accepted | Refused:
    """Completeness and form beyond the schema, the catalogue, and the totals. An order whose
    prices include tax is accepted as its net-of-tax canonical order (``net_of_tax``)."""
    reasons: list[Reason] = []
    if order.currency not in ISO_CURRENCIES:
        reasons.append(Reason(code="unknown_currency", field="currency",
                              message=f"currency {order.currency} is not one OrderFlow accepts"))
    seen: set[str] = set()
    for i, line in enumerate(order.lines):
        where = f"lines.{i}"
        if line.sku in seen:
            reasons.append(Reason(code="duplicate_line", field=f"{where}.sku",
                                  message=f"SKU {line.sku} appears on more than one line"))
        seen.add(line.sku)
        product = catalogue.get(line.sku)
        if product is None:
            reasons.append(Reason(code="unknown_sku", field=f"{where}.sku",
                                  message=f"SKU {line.sku} is not in the product catalogue"))
        elif not product.active:
            reasons.append(Reason(code="inactive_sku", field=f"{where}.sku",
                                  message=f"SKU {line.sku} is no longer sold"))
        if line.discount > line.unit_price * line.quantity:
            reasons.append(Reason(code="discount_exceeds_line", field=f"{where}.discount",
                                  message="the discount is larger than the line's amount"))
    if reasons:
        return Refused(tuple(reasons))
    if prices_include_tax:
        order, totals = net_of_tax(order, catalogue)
    else:
        totals = compute_totals(order, catalogue)
    if totals.grand_total >= MAX_ORDER_TOTAL:
        return Refused((Reason(
            code="total_too_large", field=None,
            message=(f"the lines come to {totals.grand_total} {order.currency}, more than an "
                     f"order may total ({MAX_ORDER_TOTAL - Decimal('0.01')})"),
        ),))
    if order.stated_total is not None:
        difference = abs(order.stated_total - totals.grand_total)
        if difference > policy.total_tolerance:
            basis = "including" if prices_include_tax else "plus"
            return Refused((Reason(
                code="total_mismatch", field="stated_total",
                message=(f"the channel states {order.stated_total} {order.currency} but the "
                         f"lines, discounts, tax and shipping come to {totals.grand_total} "
                         f"(prices {basis} tax)"),
            ),))
    return Accepted(order, totals)


def payload_fingerprint(payload: Any) -> str:
    """A stable hash of a raw payload: the same re-push is recognised as the same."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


# the channels whose pushes name who entered them: the console's order desk, whose operators sign
# in there; a connector's push is a platform's order, which nobody at OrderFlow entered
AUTHORED_CHANNELS = frozenset({"desk"})
MAX_AUTHOR_LENGTH = 200


def author_of(channel: str, claimed: str | None) -> str | None:
    """Who entered a push of ``channel``: the author it claims (trimmed, at most
    ``MAX_AUTHOR_LENGTH`` characters; blank is None) for a channel of ``AUTHORED_CHANNELS``;
    None for any other channel, whatever it claims."""
    if channel not in AUTHORED_CHANNELS or claimed is None:
        return None
    return claimed.strip()[:MAX_AUTHOR_LENGTH].strip() or None


@dataclass(frozen=True)
class KnownOrder:
    order_id: str
    revision: int
    status: str
    payload_sha256: str
    store: str = ""  # '' for an order without a store (or one received before stores counted)


LEGACY_STORES_VARIABLE = "ORDERFLOW_INTAKE_LEGACY_STORES"


@dataclass(frozen=True)
class Identity:
    """The order a push names: ``order_id`` under its store (``order_id_for(channel,
    external_id, store)``), and ``legacy_id``, the id the same order number had before the store
    was part of an order's identity (``order_id_for(channel, external_id)``); the same id for a
    push without a store."""

    channel: str
    external_id: str
    store: str  # '' without one
    order_id: str
    legacy_id: str

    @classmethod
    def of(cls, channel: str, external_id: str, store: str | None) -> Identity:
        legacy = order_id_for(channel, external_id)
        own = legacy if store is None else order_id_for(channel, external_id, store)
        return cls(channel, external_id, store or "", own, legacy)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids to look up (and lock) for this push."""
        return (self.order_id,) if self.order_id == self.legacy_id else (self.order_id,
                                                                          self.legacy_id)


def refused_id(channel: str, external_id: str, store: str | None) -> str:
    """The id a push refused for its store is rejected under: its store's id (when no order has
    it), or, without one, that of the empty store (an id no order has: nobody's order is
    touched)."""
    return order_id_for(channel, external_id, store or "")


@dataclass(frozen=True)
class StoreRefusal:
    """A push refused for its store: rejected under ``order_id`` (an id no order has), nothing
    recorded."""

    order_id: str
    refused: Refused


def find_order(identity: Identity, known: Mapping[str, KnownOrder | None]) -> (
        tuple[str, KnownOrder | None] | StoreRefusal):
    """Which order a push is, among the rows of ``identity.ids`` (``known``): the order under
    its store's id; else the order of its number intake received before stores counted, if that
    order was assigned this store (it keeps its id); else a new order under its store's id, unless
    that earlier order was assigned no store yet (``store_unassigned``: no store may take it
    over, so it is refused until the operator names its store). A push without a store never
    reaches an order of a store."""
    mine = known.get(identity.order_id)
    if mine is not None:
        if mine.store == identity.store:
            return identity.order_id, mine
        # another store's order under this id (a push without a store, an order of a store
        # assigned by the operator; or a number holding a colon): never that order
        return StoreRefusal(refused_id(identity.channel, identity.external_id, None), Refused((
            Reason(code="store_missing" if not identity.store else "store_mismatch",
                   field="store",
                   message=(f"{identity.channel} order {identity.external_id} is store "
                            f"{mine.store or '(none)'}'s; the push names "
                            f"{identity.store or 'no store'}")),)))
    if identity.order_id == identity.legacy_id:
        return identity.order_id, None
    legacy = known.get(identity.legacy_id)
    if legacy is None or legacy.store not in ("", identity.store):
        return identity.order_id, None
    if legacy.store == identity.store:
        return identity.legacy_id, legacy
    return StoreRefusal(identity.order_id, Refused((Reason(
        code="store_unassigned", field="store",
        message=(f"{identity.channel} order {identity.external_id} was received before stores "
                 f"were part of an order's identity, and no store was assigned to it, so no "
                 f"store's push may change it: assign its store with {LEGACY_STORES_VARIABLE}="
                 f'\'{{"{identity.channel}": "<store>"}}\' when intake\'s migration 0004 runs '
                 f"(every earlier {identity.channel} order gets that store), or afterwards "
                 f"UPDATE intake_orders SET store = '<store>' WHERE channel = "
                 f"'{identity.channel}' AND store = ''")),)))


Repush = Literal["new", "duplicate", "revision", "retry"]


def classify_repush(known: KnownOrder | None, revision: int, fingerprint: str) -> Repush:
    """What a push of a (channel, external id) intake may already have is:

    - ``new``: intake has never seen it;
    - ``duplicate``: the same or an older revision (or the very same payload): nothing to do;
    - ``revision``: a newer revision of an order intake received: a change of that order;
    - ``retry``: a newer revision of an order intake rejected: checked afresh, since no order
      exists yet to change (a Douyin order pushed before it was paid, a corrected sheet)."""
    if known is None:
        return "new"
    if revision > known.revision and fingerprint != known.payload_sha256:
        return "retry" if known.status == "rejected" else "revision"
    return "duplicate"


# --- a run of pushes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalised:
    """A push's order as its channel's adapter and the canonical schema read it."""

    order: CanonicalOrder
    prices_include_tax: bool


@dataclass(frozen=True)
class Push:
    """One push as read before any order is looked at: the order it names (or its refusal for
    its store), its payload's fingerprint, and its order (or why it cannot be read)."""

    identity: Identity | StoreRefusal
    fingerprint: str
    read: Normalised | Refused

    @property
    def revision(self) -> int:
        """The revision it pushes; 1 when its order cannot be read."""
        return self.read.order.revision if isinstance(self.read, Normalised) else 1


@dataclass(frozen=True)
class OrderRow:
    """An order's row in ``intake_orders`` as a run of pushes leaves it."""

    order_id: str
    channel: str
    external_id: str
    store: str  # '' without one
    revision: int
    status: str  # received | rejected
    fingerprint: str


@dataclass(frozen=True)
class RevisionRow:
    """A revision's row in ``intake_revisions``: received, rejected, change or refused."""

    order_id: str
    revision: int
    fingerprint: str
    status: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Outcome:
    """What one push of a run comes to, decided against the orders as the pushes before it in
    the run left them."""

    order_id: str
    revision: int
    kind: Repush
    known: KnownOrder | None
    result: Accepted | Refused | None  # None: a duplicate, or refused for its store
    store_refused: StoreRefusal | None = None


@dataclass(frozen=True)
class RunDecision:
    """A run of pushes decided: each push's outcome, in the run's order, and the rows to write
    (each order and each revision once)."""

    outcomes: tuple[Outcome, ...]
    added: tuple[OrderRow, ...]  # orders intake had not seen
    updated: tuple[OrderRow, ...]  # orders whose revision, status or fingerprint change
    recorded: tuple[RevisionRow, ...]  # revisions not recorded before (the first record stays)


def decide_pushes(pushes: Sequence[Push], known: Mapping[str, KnownOrder],
                  catalogue: Mapping[str, Product],
                  policy: IntakePolicy = IntakePolicy()) -> RunDecision:
    """A run of pushes, with the outcome of pushing them one after another: each push is found
    among the orders (``find_order``), classified (``classify_repush``) and checked
    (``check_order``) against the orders as the pushes before it in the run left them, so the
    same order pushed twice in the run is a duplicate the second time. ``known``: the rows of
    every push's ``Identity.ids`` that exist.

    A new order is recorded ``received`` or ``rejected``; a newer revision of a rejected order
    (``retry``) is checked afresh and recorded the same way; a newer revision of a received order
    is a ``change`` (it becomes the order's current revision) or ``refused`` (the order stays as
    it was)."""
    state: dict[str, KnownOrder] = dict(known)
    outcomes: list[Outcome] = []
    added: dict[str, OrderRow] = {}
    updated: dict[str, OrderRow] = {}
    recorded: dict[tuple[str, int], RevisionRow] = {}
    for push in pushes:
        revision = push.revision
        found = push.identity if isinstance(push.identity, StoreRefusal) else \
            find_order(push.identity, state)
        if isinstance(found, StoreRefusal):
            outcomes.append(Outcome(found.order_id, revision, "new", None, None, found))
            continue
        assert isinstance(push.identity, Identity)
        order_id, order = found
        kind = classify_repush(order, revision, push.fingerprint)
        if kind == "duplicate":
            outcomes.append(Outcome(order_id, revision, kind, order, None))
            continue
        read = push.read
        result = read if isinstance(read, Refused) else check_order(
            read.order, catalogue, policy, prices_include_tax=read.prices_include_tax)
        outcomes.append(Outcome(order_id, revision, kind, order, result))
        reasons = result.reasons if isinstance(result, Refused) else ()
        if kind == "revision":
            assert order is not None
            status = "refused" if isinstance(result, Refused) else "change"
            recorded.setdefault((order_id, revision), RevisionRow(
                order_id, revision, push.fingerprint, status, reasons))
            if status == "change":
                state[order_id] = KnownOrder(order_id, revision, order.status, push.fingerprint,
                                             order.store)
                updated[order_id] = OrderRow(order_id, push.identity.channel,
                                             push.identity.external_id, order.store, revision,
                                             order.status, push.fingerprint)
            continue
        status = "received" if isinstance(result, Accepted) else "rejected"
        row = OrderRow(order_id, push.identity.channel, push.identity.external_id,
                       push.identity.store, revision, status, push.fingerprint)
        if kind == "retry":
            updated[order_id] = row
        else:
            added[order_id] = row
        state[order_id] = KnownOrder(order_id, revision, status, push.fingerprint,
                                     push.identity.store)
        recorded.setdefault((order_id, revision), RevisionRow(
            order_id, revision, push.fingerprint, status, reasons))
    return RunDecision(tuple(outcomes), tuple(added.values()), tuple(updated.values()),
                       tuple(recorded.values()))


# --- an order's status as its channel sees it ----------------------------------------------------
#
# The channel order API's ``GET /api/v1/channels/{channel}/orders/{external_id}`` answers from a
# projection intake keeps of the outcome topics (``handlers.on_outcomes``): per order, its state,
# the reasons behind it, its shipments with their tracking numbers and its last events.
# ``apply_outcome`` is what one event does to that status.

StatusState = Literal["received", "rejected", "held", "approved", "backordered", "reserved",
                      "dispatched", "delivered", "cancelled"]
# the order's way forward: a state only gives way to one further on (events of several topics
# reach intake in no guaranteed order: a late approval never takes a dispatched order back)
_FORWARD: dict[str, int] = {"received": 0, "held": 1, "approved": 2, "backordered": 3,
                            "reserved": 4, "dispatched": 5, "delivered": 6}
# what a refusal or a cancellation can still end: an order not yet handed to a carrier
_BEFORE_DISPATCH = frozenset({"received", "held", "approved", "backordered", "reserved",
                              "rejected"})
MAX_STATUS_EVENTS = 20


class StatusShipment(BaseModel):
    """One shipment of an order, as its channel is told of it."""

    model_config = ConfigDict(frozen=True)

    shipment_id: str
    carrier: str = ""
    service: str = ""
    tracking_number: str = ""
    status: str = Field(default="dispatched", description=(
        "dispatched, picked_up, in_transit, out_for_delivery, delayed, exception or delivered"))
    dispatched_at: datetime | None = None
    promised_date: date | None = None
    delivered_at: datetime | None = None
    detail: str = Field(default="", description="The carrier's last word: a delay's reason, "
                                                "an exception's code, a tracking location")


class StatusEvent(BaseModel):
    """One event of an order, in a line."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    type: str = Field(description="The event's type, e.g. ShipmentDispatched")
    at: datetime
    summary: str


class OrderStatus(BaseModel):
    """What intake knows of an order's progress from the outcome topics."""

    model_config = ConfigDict(frozen=True)

    state: StatusState
    reasons: tuple[Reason, ...] = ()
    shipments: tuple[StatusShipment, ...] = ()
    events: tuple[StatusEvent, ...] = Field(default=(), description=(
        f"The last {MAX_STATUS_EVENTS} events, oldest first"))


def _codes(reasons: Sequence[Any]) -> str:
    return ", ".join(r.code for r in reasons)


def _state_after(current: str | None, new: str) -> str:
    """The state an order is in after an event that would put it in ``new``."""
    if current is None:
        return new
    if new in ("rejected", "cancelled"):
        return new if current in _BEFORE_DISPATCH else current
    if current == "rejected" and new == "received":
        return new  # a newer revision of a rejected order, accepted
    if current in ("rejected", "cancelled"):
        return current
    return new if _FORWARD[new] >= _FORWARD[current] else current


def _with_shipment(shipments: tuple[StatusShipment, ...], shipment_id: str,
                   **changes: Any) -> tuple[StatusShipment, ...]:
    """The shipments with one created or changed (a tracking update may come before its
    dispatch: the dispatch then fills in the rest)."""
    found = next((s for s in shipments if s.shipment_id == shipment_id), None)
    changed = {k: v for k, v in changes.items() if v is not None}
    if found is None:
        return (*shipments, StatusShipment(shipment_id=shipment_id, **changed))
    if found.status == "delivered" and changed.get("status") not in (None, "delivered"):
        changed.pop("status")  # a late tracking line never undoes a delivery
    return tuple(s.model_copy(update=changed) if s is found else s for s in shipments)


def _outcome_of(event: Any) -> tuple[str | None, tuple[Reason, ...] | None, str]:
    """An event's state (None: unchanged), its reasons (None: unchanged) and its summary."""
    if isinstance(event, OrderReceived):
        return ("received", (), f"received: {len(event.order.lines)} line(s), total "
                                f"{event.totals.grand_total} {event.order.currency}")
    if isinstance(event, OrderRejected):
        return ("rejected", tuple(event.reasons),
                f"rejected by {event.stage}: {_codes(event.reasons)}")
    if isinstance(event, OrderHeld):
        return ("held", tuple(Reason(code=r.code, message=r.message) for r in event.reasons),
                f"held: {_codes(event.reasons)}")
    if isinstance(event, OrderApproved):
        return "approved", (), f"approved ({event.approved_by})"
    if isinstance(event, StockReserved):
        return "reserved", (), "stock reserved" + (" from backorder" if event.from_backorder
                                                    else "")
    if isinstance(event, StockBackordered):
        short = tuple(Reason(code="backordered", field="sku",
                             message=f"{s.sku}: {s.short} of {s.ordered} wait for stock")
                      for s in event.short_lines)
        expected = f", expected {event.expected_date}" if event.expected_date else ""
        return "backordered", short, f"backordered: {len(short)} line(s) short{expected}"
    if isinstance(event, OrderCancelled):
        return ("cancelled", (Reason(code="cancelled", message=event.reason),),
                f"cancelled by {event.requested_by}: {event.reason}")
    if isinstance(event, OrderCancelRefused):
        return None, None, f"cancel refused: {_codes(event.reasons)}"
    if isinstance(event, OrderChanged):
        return None, None, f"changed to revision {event.revision}"
    if isinstance(event, OrderChangeRejected):
        return None, None, (f"change to revision {event.revision} refused by {event.stage}: "
                            f"{_codes(event.reasons)}")
    if isinstance(event, OrderRevisionRejected):
        return None, None, f"revision {event.revision} refused: {_codes(event.reasons)}"
    if isinstance(event, ShipmentDispatched):
        return "dispatched", (), (f"shipment {event.shipment_id} dispatched: {event.carrier} "
                                  f"{event.service}, tracking {event.tracking_number}")
    if isinstance(event, ShipmentDelivered):
        return ("delivered" if event.order_delivered else None, None,
                f"shipment {event.shipment_id} delivered"
                + (": every shipment of the order" if event.order_delivered else ""))
    if isinstance(event, ShipmentDelayed):
        expected = f", expected {event.expected_date}" if event.expected_date else ""
        return None, None, f"shipment {event.shipment_id} delayed: {event.reason}{expected}"
    if isinstance(event, ShipmentException):
        return None, None, f"shipment {event.shipment_id}: carrier exception {event.code}"
    if isinstance(event, TrackingUpdated):
        where = f" at {event.location}" if event.location else ""
        return None, None, (f"{event.carrier} {event.tracking_number}: "
                            f"{event.status.replace('_', ' ')}{where}")
    raise TypeError(f"{type(event).__name__} is not an outcome of an order")


def _shipments_after(shipments: tuple[StatusShipment, ...],
                     event: Any) -> tuple[StatusShipment, ...]:
    if isinstance(event, ShipmentDispatched):
        return _with_shipment(shipments, event.shipment_id, carrier=event.carrier,
                              service=event.service, tracking_number=event.tracking_number,
                              dispatched_at=event.dispatched_at,
                              promised_date=event.promised_date,
                              status=None if any(s.shipment_id == event.shipment_id
                                                 for s in shipments) else "dispatched")
    if isinstance(event, TrackingUpdated):
        return _with_shipment(shipments, event.shipment_id, carrier=event.carrier,
                              tracking_number=event.tracking_number, status=event.status,
                              detail=event.location or event.detail or None,
                              delivered_at=event.occurred_at if event.status == "delivered"
                              else None)
    if isinstance(event, ShipmentDelivered):
        return _with_shipment(shipments, event.shipment_id, status="delivered",
                              delivered_at=event.delivered_at)
    if isinstance(event, ShipmentDelayed):
        return _with_shipment(shipments, event.shipment_id, status="delayed",
                              carrier=event.carrier, tracking_number=event.tracking_number,
                              detail=event.reason)
    if isinstance(event, ShipmentException):
        return _with_shipment(shipments, event.shipment_id, status="exception",
                              carrier=event.carrier, tracking_number=event.tracking_number,
                              detail=f"{event.code}: {event.detail}" if event.detail
                              else event.code)
    return shipments


OUTCOME_EVENTS: tuple[type[Event], ...] = (
    OrderReceived, OrderRejected, OrderRevisionRejected, OrderHeld, OrderApproved,
    StockReserved, StockBackordered, ShipmentDispatched, TrackingUpdated, ShipmentDelayed,
    ShipmentException, ShipmentDelivered, OrderCancelled, OrderCancelRefused, OrderChanged,
    OrderChangeRejected)


def apply_outcome(status: OrderStatus | None, event: Event, event_id: str,
                  at: datetime) -> OrderStatus:
    """An order's status after one of its outcome events (``OUTCOME_EVENTS``): its state (only
    ever forward, ``_state_after``), its reasons (those of the state it is in), its shipments,
    and its last ``MAX_STATUS_EVENTS`` events in time order. An event already applied (its id
    among the events kept) changes nothing."""
    if status is not None and any(e.event_id == event_id for e in status.events):
        return status
    new_state, reasons, summary = _outcome_of(event)
    current = status.state if status is not None else None
    state = current if new_state is None else _state_after(current, new_state)
    if state is None:  # an order's first word is not a state (a tracking line came first)
        state = "received"
    kept_reasons = status.reasons if status is not None else ()
    if state != current and reasons is not None:
        kept_reasons = reasons
    elif state == current == new_state and reasons is not None and reasons:
        kept_reasons = reasons  # held again, backordered again: the latest reasons
    line = StatusEvent(event_id=event_id, type=type(event).EVENT_TYPE, at=at, summary=summary)
    events = sorted((*(status.events if status is not None else ()), line),
                    key=lambda e: e.at)[-MAX_STATUS_EVENTS:]
    shipments = _shipments_after(status.shipments if status is not None else (), event)
    return OrderStatus(state=state, reasons=kept_reasons,  # type: ignore[arg-type]
                       shipments=shipments, events=tuple(events))
