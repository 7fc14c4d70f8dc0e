"""Integration events: frozen pydantic v2 models, named in the past tense.

Every event travels as the JSON of its model in the Kafka value, keyed by the order id (connectors
key ``order.inbound`` by ``<channel>:<external id>``), with the headers of ``headers.py``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from orderflow.contracts.money import Amount
from orderflow.contracts.order import STORE_PATTERN, Address, CanonicalOrder, Customer, OrderTotals


class Event(BaseModel):
    """Base of every integration event."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    def key(self) -> str:
        """The Kafka key: the order id (master-data events override it)."""
        order_id = getattr(self, "order_id", None)
        if not order_id:
            raise ValueError(f"{type(self).__name__} has no order_id to key by")
        return str(order_id)


class Reason(BaseModel):
    """A machine-readable reason: why an order was rejected or held, or a message dead-lettered."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable machine-readable code, e.g. quantity_not_positive")
    field: str | None = Field(default=None, description="The offending field's path, if any")
    message: str = Field(description="Plain words for a person")


class RuleOutcome(BaseModel):
    """One rule a decision evaluated, with its outcome and the figures it used."""

    model_config = ConfigDict(frozen=True)

    rule: str
    passed: bool
    figures: dict[str, str] = Field(default_factory=dict)
    message: str = ""


# --- intake -----------------------------------------------------------------------------------


class OrderSubmitted(Event):
    """A connector's raw order on ``order.inbound``, in its platform's own format, keyed
    ``<channel>:<external id>`` (the store is not part of the key: every push of an order lands
    on one partition whatever its store)."""

    EVENT_TYPE: ClassVar[str] = "OrderSubmitted"

    channel: str = Field(min_length=1, max_length=32,
                         description="canonical, desk, shopify, douyin, csv, xlsx, or an installed "
                                     "plugin's channel (an orderflow.channels entry point)")
    external_id: str = Field(min_length=1, max_length=128)
    store: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=STORE_PATTERN,
        description="The store (shop) of the channel the order belongs to: part of the order's "
                    "identity (its id is the uuid5 of <channel>:<store>:<external id>). Required "
                    "for the marketplace channels (shopify: the shop of the webhook URL; douyin: "
                    "when absent, the payload's shop_id, which must not differ from it); absent "
                    "for channels without stores")
    received_at: datetime
    payload: Any = Field(description="The platform's order exactly as it arrived")
    author: str | None = Field(
        default=None, max_length=200,
        description="Who entered the order: the operator at the console's order desk (channel "
                    "desk); intake keeps it for channel desk only, and null for any other")

    def key(self) -> str:
        return f"{self.channel}:{self.external_id}"


class OrderReceived(Event):
    """Intake accepted an order: normalised, checked, totals recomputed."""

    EVENT_TYPE: ClassVar[str] = "OrderReceived"

    order_id: str
    channel: str
    external_id: str
    order: CanonicalOrder
    totals: OrderTotals
    author: str | None = Field(
        default=None, max_length=200,
        description="The operator who entered the order at the console's order desk (channel "
                    "desk); null for every other channel")


class OrderRejected(Event):
    """An order refused, by intake (form, catalogue, totals) or review, with reasons."""

    EVENT_TYPE: ClassVar[str] = "OrderRejected"

    order_id: str
    channel: str
    external_id: str
    stage: Literal["intake", "review"]
    reasons: tuple[Reason, ...] = Field(min_length=1)
    customer: Customer | None = None
    decided_by: str | None = None
    comment: str | None = None


class OrderRevisionReceived(Event):
    """A connector re-pushed a newer revision of an order intake already has (a change request)."""

    EVENT_TYPE: ClassVar[str] = "OrderRevisionReceived"

    order_id: str
    channel: str
    external_id: str
    previous_revision: int
    revision: int
    order: CanonicalOrder
    author: str | None = Field(
        default=None, max_length=200,
        description="The operator who entered the revision at the console's order desk (channel "
                    "desk); null for every other channel")


class OrderRevisionRejected(Event):
    """A newer revision of a known order failed intake's checks; the order stays as it was."""

    EVENT_TYPE: ClassVar[str] = "OrderRevisionRejected"

    order_id: str
    channel: str
    external_id: str
    revision: int
    reasons: tuple[Reason, ...] = Field(min_length=1)


# --- review -----------------------------------------------------------------------------------

HoldCode = Literal[
    "credit_limit",
    "overdue",
    "prepayment_due",
    "price_deviation",
    "promo_invalid",
    "date_infeasible",
    "manager_approval",
    "blocked_customer",
    # a reviewer approved it; above the policy's director thresholds a director approves it too
    "director_approval",
]


class HoldReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: HoldCode
    message: str
    figures: dict[str, str] = Field(default_factory=dict)


class OrderHeld(Event):
    """Review held an order for a person or for money."""

    EVENT_TYPE: ClassVar[str] = "OrderHeld"

    order_id: str
    reasons: tuple[HoldReason, ...] = Field(min_length=1)
    rules: tuple[RuleOutcome, ...] = ()
    customer: Customer | None = None
    amount_due: Amount | None = None
    currency: str | None = None


class OrderApproved(Event):
    """Review approved an order (automatically, or a reviewer did)."""

    EVENT_TYPE: ClassVar[str] = "OrderApproved"

    order_id: str
    channel: str
    external_id: str
    order: CanonicalOrder
    totals: OrderTotals
    approved_by: str = Field(description="'auto' or the reviewer's user name")
    comment: str | None = None
    rules: tuple[RuleOutcome, ...] = ()


# --- inventory --------------------------------------------------------------------------------


class ReservedLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    warehouse_id: str
    quantity: int = Field(gt=0)


class ShortLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    ordered: int
    reserved: int
    short: int


class StockReserved(Event):
    """Inventory set the order's goods aside, in one or more warehouses."""

    EVENT_TYPE: ClassVar[str] = "StockReserved"

    order_id: str
    order: CanonicalOrder
    reservations: tuple[ReservedLine, ...] = Field(min_length=1)
    filled_in_full_first_attempt: bool = Field(
        description="True when every line was reserved in full at the first attempt (fill rate)"
    )
    from_backorder: bool = False


class StockBackordered(Event):
    """Inventory could not fill the order now; it waits in the backorder queue."""

    EVENT_TYPE: ClassVar[str] = "StockBackordered"

    order_id: str
    short_lines: tuple[ShortLine, ...] = Field(min_length=1)
    customer: Customer | None = None
    expected_date: date | None = None


class StockReleased(Event):
    EVENT_TYPE: ClassVar[str] = "StockReleased"

    order_id: str
    reservations: tuple[ReservedLine, ...]
    reason: str


# --- logistics --------------------------------------------------------------------------------


class ShipmentDispatched(Event):
    """A shipment left a warehouse with a carrier and a tracking number."""

    EVENT_TYPE: ClassVar[str] = "ShipmentDispatched"

    order_id: str
    shipment_id: str
    warehouse_id: str
    carrier: str
    service: str
    tracking_number: str
    lines: tuple[ReservedLine, ...]
    weight_kg: Amount
    dispatched_at: datetime
    promised_date: date
    requested_date: date | None = None
    misses_requested_date: bool = False
    rule: str = Field(default="", description="The carrier rule that chose this service")
    shipment_count: int = Field(default=1, description="How many shipments the order has")


class ShipmentDelivered(Event):
    EVENT_TYPE: ClassVar[str] = "ShipmentDelivered"

    order_id: str
    shipment_id: str
    delivered_at: datetime
    on_time: bool
    order_delivered: bool = Field(description="True when every shipment of the order is delivered")


class ShipmentDelayed(Event):
    EVENT_TYPE: ClassVar[str] = "ShipmentDelayed"

    order_id: str
    shipment_id: str
    reason: str
    promised_date: date
    expected_date: date | None = None
    # The shipment's carrier and tracking number, so a consumer needs no earlier
    # ``ShipmentDispatched`` (another topic, so possibly not yet read) to say which parcel is late.
    carrier: str | None = None
    tracking_number: str | None = None


class ShipmentException(Event):
    """A carrier reported a problem (damaged, lost, refused, address unknown)."""

    EVENT_TYPE: ClassVar[str] = "ShipmentException"

    order_id: str
    shipment_id: str
    tracking_number: str
    carrier: str
    code: str
    detail: str = ""


TrackingStatus = Literal["picked_up", "in_transit", "out_for_delivery", "delivered", "exception"]


class TrackingUpdated(Event):
    """A carrier connector's tracking update for one shipment."""

    EVENT_TYPE: ClassVar[str] = "TrackingUpdated"

    order_id: str
    shipment_id: str
    tracking_number: str
    carrier: str
    status: TrackingStatus
    occurred_at: datetime
    location: str = ""
    detail: str = ""


# --- finance (pushed by a finance connector) ----------------------------------------------------


class InvoiceIssued(Event):
    """Finance invoiced an order: its amount moves from approved-not-invoiced to receivables."""

    EVENT_TYPE: ClassVar[str] = "InvoiceIssued"

    invoice_id: str
    customer_id: str
    order_id: str | None = None
    amount: Amount
    currency: str
    due_date: date | None = None

    def key(self) -> str:
        return self.customer_id


class PaymentReceived(Event):
    """Money received from a customer, against an order (prepayment) or their receivables."""

    EVENT_TYPE: ClassVar[str] = "PaymentReceived"

    payment_id: str
    customer_id: str
    order_id: str | None = None
    amount: Amount
    currency: str

    def key(self) -> str:
        return self.customer_id


# --- inventory side events ---------------------------------------------------------------------


class StockAdjusted(Event):
    """A stock count, damage or write-off: changes on-hand by ``delta`` (may be negative)."""

    EVENT_TYPE: ClassVar[str] = "StockAdjusted"

    warehouse_id: str
    sku: str
    delta: int
    reason: str

    def key(self) -> str:
        return self.sku


class StockLow(Event):
    """Available stock of a SKU fell under its reorder point: purchasing should act."""

    EVENT_TYPE: ClassVar[str] = "StockLow"

    sku: str
    available: int
    reorder_point: int
    warehouse_id: str | None = None

    def key(self) -> str:
        return self.sku


# --- notify -----------------------------------------------------------------------------------


class NotificationRecorded(Event):
    """Notify recorded what it did with one customer-facing event on one channel."""

    EVENT_TYPE: ClassVar[str] = "NotificationRecorded"

    order_id: str
    source_event_id: str
    source_event_type: str
    channel: str
    status: Literal["sent", "failed", "suppressed", "recorded"]
    detail: str = ""


class ChannelWebhookSet(Event):
    """A channel's outcome webhook, registered or removed through intake's channel order API
    (``PUT``/``DELETE /api/v1/channels/{channel}/webhook``): notify delivers the channel's
    outcome notifications to ``url`` instead of the URL it is configured with, signed with the
    secret notify is configured with for the channel (a secret never travels in an event)."""

    EVENT_TYPE: ClassVar[str] = "ChannelWebhookSet"

    channel: str = Field(min_length=1, max_length=32)
    url: str | None = Field(max_length=2048, description="The URL; null: the registration is "
                                                         "removed (the configured URL, if any, "
                                                         "serves again)")
    set_by: str = Field(max_length=200, description="The name of the channel key that set it")
    set_at: datetime

    def key(self) -> str:
        return self.channel


# --- master data ------------------------------------------------------------------------------


class ProductUpdated(Event):
    EVENT_TYPE: ClassVar[str] = "ProductUpdated"

    sku: str
    name: str
    spec: str = ""
    unit_price: Amount
    currency: str
    tax_rate: Decimal = Field(ge=0, le=1)
    weight_kg: Decimal = Field(ge=0)
    active: bool = True
    reorder_point: int = 0

    def key(self) -> str:
        return self.sku


class CustomerUpdated(Event):
    EVENT_TYPE: ClassVar[str] = "CustomerUpdated"

    customer_id: str
    name: str
    email: str | None = None
    phone: str | None = None
    language: str = "zh-CN"
    credit_limit: Amount
    currency: str
    payment_terms: str
    open_receivables: Amount = Decimal("0")
    overdue_amount: Amount = Decimal("0")
    overdue_days: int = 0
    blocked: bool = False
    preferred_channel: str = "email"
    opt_out_marketing: bool = False
    delivery_address: Address | None = Field(
        default=None, description="Where the customer's goods go unless an order says otherwise "
                                  "(the order desk fills a new order's address from it)")

    def key(self) -> str:
        return self.customer_id


class WarehouseUpdated(Event):
    EVENT_TYPE: ClassVar[str] = "WarehouseUpdated"

    warehouse_id: str
    name: str
    province: str
    city: str

    def key(self) -> str:
        return self.warehouse_id


class StockReceived(Event):
    """A receipt of goods into a warehouse: adds to on-hand."""

    EVENT_TYPE: ClassVar[str] = "StockReceived"

    warehouse_id: str
    sku: str
    quantity: int = Field(gt=0)
    reference: str = ""

    def key(self) -> str:
        return self.sku


# --- order lifecycle: cancellation, returns ---------------------------------------------------


class OrderCancelRequested(Event):
    """A request to cancel an order (a connector or the console). Logistics decides: honoured
    until dispatch (``order.cancelled``), refused after (``order.cancel-refused``)."""

    EVENT_TYPE: ClassVar[str] = "OrderCancelRequested"

    order_id: str
    reason: str = Field(min_length=1, max_length=500, description="Why, in plain words")
    requested_by: str = Field(default="customer", max_length=128,
                              description="'customer', a connector's name or a console user")
    requested_at: datetime | None = None
    customer: Customer | None = Field(
        default=None, description="Who to tell, when the requester knows (a cancel may come first)")


class OrderCancelled(Event):
    """The order is cancelled: nothing was dispatched, nothing will be. Review releases the credit
    exposure, inventory the reservations and backorders, notify tells the customer."""

    EVENT_TYPE: ClassVar[str] = "OrderCancelled"

    order_id: str
    reason: str
    requested_by: str
    customer: Customer | None = Field(default=None, description="When logistics knows it")


class OrderCancelRefused(Event):
    """A cancel request came too late (something was dispatched); the order goes on."""

    EVENT_TYPE: ClassVar[str] = "OrderCancelRefused"

    order_id: str
    reasons: tuple[Reason, ...] = Field(min_length=1)
    requested_by: str
    shipment_ids: tuple[str, ...] = ()


ItemCondition = Literal["unopened", "opened", "defective", "damaged_by_customer"]


class ReturnRequestLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int = Field(gt=0)
    condition: ItemCondition = "unopened"


class ReturnRequested(Event):
    """A customer asks to send goods back (an RMA request), for a refund or an exchange."""

    EVENT_TYPE: ClassVar[str] = "ReturnRequested"

    order_id: str
    rma_id: str = Field(min_length=1, max_length=64, description="The return's id, unique")
    lines: tuple[ReturnRequestLine, ...] = Field(min_length=1)
    reason: str = Field(default="", max_length=500)
    resolution: Literal["refund", "exchange"] = "refund"
    requested_at: datetime


class ReturnLine(BaseModel):
    """Units of one SKU coming back to the warehouse they left, with what they refund."""

    model_config = ConfigDict(frozen=True)

    sku: str
    warehouse_id: str
    quantity: int = Field(gt=0)
    refund: Amount = Field(description="What these units refund (net of their discount, with tax)")


class ReturnApproved(Event):
    """Logistics approved a return by policy: a return shipment with a tracking number."""

    EVENT_TYPE: ClassVar[str] = "ReturnApproved"

    order_id: str
    rma_id: str
    lines: tuple[ReturnLine, ...] = Field(min_length=1)
    resolution: Literal["refund", "exchange"]
    carrier: str
    tracking_number: str
    refund_amount: Amount
    currency: str
    customer: Customer | None = None


class ReturnRefused(Event):
    """A return refused by policy (window, condition, non-returnable SKU), with reasons."""

    EVENT_TYPE: ClassVar[str] = "ReturnRefused"

    order_id: str
    rma_id: str
    reasons: tuple[Reason, ...] = Field(min_length=1)
    customer: Customer | None = None


class InspectedUnits(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int = Field(gt=0)
    outcome: Literal["restock", "scrap"]


class ReturnReceived(Event):
    """The warehouse received a return and inspected it: each unit restocked or scrapped."""

    EVENT_TYPE: ClassVar[str] = "ReturnReceived"

    order_id: str
    rma_id: str
    warehouse_id: str
    inspections: tuple[InspectedUnits, ...] = Field(min_length=1)
    received_at: datetime


class RefundIssued(Event):
    """Money owed back to the customer for a received return, for finance connectors."""

    EVENT_TYPE: ClassVar[str] = "RefundIssued"

    refund_id: str
    order_id: str
    rma_id: str
    customer_id: str
    amount: Amount
    currency: str
    lines: tuple[ReturnLine, ...] = ()
    exchange_order_external_id: str | None = Field(
        default=None, description="For an exchange: the new linked order's external id")


# --- order lifecycle: changes ---------------------------------------------------------------------

ChangeStage = Literal["intake", "logistics", "review", "inventory"]
ReviewStatus = Literal["approved", "held", "not_reviewed"]
StockStatus = Literal["reserved", "backordered", "not_allocated"]


class OrderChangeRequested(Event):
    """A change of an order not yet dispatched: its new full content (quantities, lines, shipping
    address, requested date), versioned by ``order.revision``. Intake publishes it for a newer
    revision a connector re-pushed, with the content checked and the totals recomputed. Logistics
    decides first whether the order can still change (``order.change-admitted``)."""

    EVENT_TYPE: ClassVar[str] = "OrderChangeRequested"

    order_id: str
    change_id: str = Field(min_length=1, max_length=64, description="The change's id, unique")
    channel: str
    external_id: str
    previous_revision: int | None = Field(default=None, description="The revision it replaces")
    order: CanonicalOrder = Field(description="The order's new full content; order.revision is "
                                              "the change's version")
    totals: OrderTotals
    requested_by: str = Field(default="customer", max_length=128)
    reason: str = Field(default="", max_length=500)


class OrderChangeAdmitted(OrderChangeRequested):
    """Logistics admitted a change: nothing of the order is dispatched, and it will not be until
    the change is settled (the change is pending). Review checks it next."""

    EVENT_TYPE: ClassVar[str] = "OrderChangeAdmitted"


class OrderChangeApproved(Event):
    """Review accepted a change: credit for the difference, prices, terms and date checked again;
    the exposure moved by ``exposure_delta``. Inventory adjusts the stock next."""

    EVENT_TYPE: ClassVar[str] = "OrderChangeApproved"

    order_id: str
    change_id: str
    channel: str
    external_id: str
    previous_revision: int | None = None
    order: CanonicalOrder
    totals: OrderTotals
    previous_totals: OrderTotals | None = None
    changes: tuple[str, ...] = Field(default=(), description="What changed, as codes")
    review_status: ReviewStatus = Field(
        description="approved: in the exposure; held: still in the review queue; not_reviewed: "
                    "review had not seen the order yet (it reviews the new content when it does)")
    exposure_delta: Amount = Decimal("0.00")
    requested_by: str = "customer"


class OrderChangeReserved(OrderChangeApproved):
    """Inventory applied a change to the stock: the difference reserved or released (all or
    nothing). Logistics settles the change next (``order.changed``)."""

    EVENT_TYPE: ClassVar[str] = "OrderChangeReserved"

    stock_status: StockStatus = Field(
        description="reserved: every unit is reserved (``reservations``); backordered: some wait "
                    "for stock; not_allocated: inventory has not had the order approved yet")
    reservations: tuple[ReservedLine, ...] = ()
    released: tuple[ReservedLine, ...] = ()


class OrderChanged(Event):
    """A change applied as a whole by every service; the order goes on with its new content."""

    EVENT_TYPE: ClassVar[str] = "OrderChanged"

    order_id: str
    change_id: str
    channel: str
    external_id: str
    revision: int
    previous_revision: int | None = None
    changes: tuple[str, ...] = ()
    order: CanonicalOrder
    totals: OrderTotals
    previous_totals: OrderTotals | None = None
    review_status: ReviewStatus
    stock_status: StockStatus
    requested_by: str
    customer: Customer | None = None


class OrderChangeRejected(Event):
    """A change refused as a whole, with reasons; the order stays exactly as it was (a service
    that had applied its part undoes it)."""

    EVENT_TYPE: ClassVar[str] = "OrderChangeRejected"

    order_id: str
    change_id: str
    revision: int
    stage: ChangeStage
    reasons: tuple[Reason, ...] = Field(min_length=1)
    requested_by: str
    customer: Customer | None = None


ALL_EVENTS: tuple[type[Event], ...] = (
    OrderSubmitted,
    OrderReceived,
    OrderRejected,
    OrderRevisionReceived,
    OrderRevisionRejected,
    OrderHeld,
    OrderApproved,
    StockReserved,
    StockBackordered,
    StockReleased,
    ShipmentDispatched,
    ShipmentDelivered,
    ShipmentDelayed,
    ShipmentException,
    TrackingUpdated,
    InvoiceIssued,
    PaymentReceived,
    StockAdjusted,
    StockLow,
    NotificationRecorded,
    ChannelWebhookSet,
    ProductUpdated,
    CustomerUpdated,
    WarehouseUpdated,
    StockReceived,
    OrderCancelRequested,
    OrderCancelled,
    OrderCancelRefused,
    ReturnRequested,
    ReturnApproved,
    ReturnRefused,
    ReturnReceived,
    RefundIssued,
    OrderChangeRequested,
    OrderChangeAdmitted,
    OrderChangeApproved,
    OrderChangeReserved,
    OrderChanged,
    OrderChangeRejected,
)
EVENTS_BY_TYPE: dict[str, type[Event]] = {e.EVENT_TYPE: e for e in ALL_EVENTS}
