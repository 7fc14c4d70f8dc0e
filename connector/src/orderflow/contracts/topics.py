"""The topic catalogue, as code: name, partitions, key, value model, dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow.contracts import events as ev


@dataclass(frozen=True)
class Topic:
    name: str
    model: type[ev.Event]
    partitions: int
    key: str
    description: str

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


MAIN_PARTITIONS = 6

ORDER_INBOUND = Topic("order.inbound", ev.OrderSubmitted, MAIN_PARTITIONS,
                      "<channel>:<external id>", "Raw orders pushed by channel connectors")
ORDER_RECEIVED = Topic("order.received", ev.OrderReceived, MAIN_PARTITIONS, "order id",
                       "Orders intake normalised and accepted")
ORDER_REJECTED = Topic("order.rejected", ev.OrderRejected, 3, "order id",
                       "Orders refused by intake or review, with reasons")
ORDER_REVISED = Topic("order.revision-received", ev.OrderRevisionReceived, 3, "order id",
                      "Newer revisions of known orders re-pushed by a connector")
ORDER_REVISION_REJECTED = Topic("order.revision-rejected", ev.OrderRevisionRejected, 3, "order id",
                                "Newer revisions of known orders that failed intake's checks")
ORDER_HELD = Topic("order.held", ev.OrderHeld, 3, "order id",
                   "Orders held by review for a person or for money")
ORDER_APPROVED = Topic("order.approved", ev.OrderApproved, MAIN_PARTITIONS, "order id",
                       "Orders review approved")
STOCK_RESERVED = Topic("stock.reserved", ev.StockReserved, MAIN_PARTITIONS, "order id",
                       "Orders whose goods inventory set aside")
STOCK_BACKORDERED = Topic("stock.backordered", ev.StockBackordered, 3, "order id",
                          "Orders waiting for stock")
STOCK_RELEASED = Topic("stock.released", ev.StockReleased, 3, "order id",
                       "Reservations given back")
SHIPMENT_DISPATCHED = Topic("shipment.dispatched", ev.ShipmentDispatched, MAIN_PARTITIONS,
                            "order id", "Shipments handed to a carrier")
SHIPMENT_DELIVERED = Topic("shipment.delivered", ev.ShipmentDelivered, 3, "order id",
                           "Shipments the customer signed for")
SHIPMENT_DELAYED = Topic("shipment.delayed", ev.ShipmentDelayed, 3, "order id",
                         "Shipments that will miss or missed their promised date")
SHIPMENT_EXCEPTION = Topic("shipment.exception", ev.ShipmentException, 3, "order id",
                            "Carrier exceptions: damaged, lost, refused")
TRACKING_UPDATED = Topic("shipment.tracking-updated", ev.TrackingUpdated, 3, "order id",
                         "Carrier tracking updates pushed by carrier connectors")
INVOICE_ISSUED = Topic("finance.invoice-issued", ev.InvoiceIssued, 3, "customer id",
                       "Invoices from the finance connector")
PAYMENT_RECEIVED = Topic("finance.payment-received", ev.PaymentReceived, 3, "customer id",
                         "Payments from the finance connector")
STOCK_ADJUSTED = Topic("stock.adjusted", ev.StockAdjusted, 3, "sku",
                       "Stock counts, damage and write-offs")
STOCK_LOW = Topic("stock.low", ev.StockLow, 1, "sku", "SKUs under their reorder point")
NOTIFICATION_RECORDED = Topic("notification.recorded", ev.NotificationRecorded, 3, "order id",
                              "What notify did with each customer-facing event")
CHANNEL_WEBHOOK_SET = Topic("channel.webhook-set", ev.ChannelWebhookSet, 1, "channel",
                            "Outcome webhooks channels registered or removed (URL, no secret)")
PRODUCT_UPDATED = Topic("product.updated", ev.ProductUpdated, 1, "sku", "Product master data")
CUSTOMER_UPDATED = Topic("customer.updated", ev.CustomerUpdated, 1, "customer id",
                         "Customer master data and credit profile")
WAREHOUSE_UPDATED = Topic("warehouse.updated", ev.WarehouseUpdated, 1, "warehouse id",
                          "Warehouse master data")
STOCK_RECEIVED = Topic("stock.received", ev.StockReceived, 3, "sku", "Goods received into stock")

ORDER_CANCEL_REQUESTED = Topic("order.cancel-requested", ev.OrderCancelRequested, 3, "order id",
                              "Requests to cancel an order, from connectors or the console")
ORDER_CANCELLED = Topic("order.cancelled", ev.OrderCancelled, 3, "order id",
                        "Orders cancelled before dispatch")
ORDER_CANCEL_REFUSED = Topic("order.cancel-refused", ev.OrderCancelRefused, 3, "order id",
                             "Cancel requests refused (already dispatched), with reasons")
RETURN_REQUESTED = Topic("order.return-requested", ev.ReturnRequested, 3, "order id",
                         "Return (RMA) requests from connectors or the console")
RETURN_APPROVED = Topic("order.return-approved", ev.ReturnApproved, 3, "order id",
                        "Returns approved by policy, with the return shipment's tracking number")
RETURN_REFUSED = Topic("order.return-refused", ev.ReturnRefused, 3, "order id",
                       "Returns refused by policy, with reasons")
RETURN_RECEIVED = Topic("order.return-received", ev.ReturnReceived, 3, "order id",
                        "Returns received and inspected: each unit restocked or scrapped")
REFUND_ISSUED = Topic("refund.issued", ev.RefundIssued, 3, "order id",
                      "Refunds owed to customers, for finance connectors")
ORDER_CHANGE_REQUESTED = Topic("order.change-requested", ev.OrderChangeRequested, 3, "order id",
                               "Changes of orders not yet dispatched: the new content, versioned")
ORDER_CHANGE_ADMITTED = Topic("order.change-admitted", ev.OrderChangeAdmitted, 3, "order id",
                              "Changes logistics admitted (nothing dispatched; dispatch waits)")
ORDER_CHANGE_APPROVED = Topic("order.change-approved", ev.OrderChangeApproved, 3, "order id",
                              "Changes review accepted: credit for the difference, prices, date")
ORDER_CHANGE_RESERVED = Topic("order.change-reserved", ev.OrderChangeReserved, 3, "order id",
                              "Changes inventory applied: the stock difference reserved/released")
ORDER_CHANGED = Topic("order.changed", ev.OrderChanged, 3, "order id",
                      "Changes applied as a whole: the order's new content")
ORDER_CHANGE_REJECTED = Topic("order.change-rejected", ev.OrderChangeRejected, 3, "order id",
                              "Changes refused as a whole, with reasons and the refusing stage")

CATALOGUE: tuple[Topic, ...] = (
    ORDER_INBOUND,
    ORDER_RECEIVED,
    ORDER_REJECTED,
    ORDER_REVISED,
    ORDER_REVISION_REJECTED,
    ORDER_HELD,
    ORDER_APPROVED,
    STOCK_RESERVED,
    STOCK_BACKORDERED,
    STOCK_RELEASED,
    SHIPMENT_DISPATCHED,
    SHIPMENT_DELIVERED,
    SHIPMENT_DELAYED,
    SHIPMENT_EXCEPTION,
    TRACKING_UPDATED,
    INVOICE_ISSUED,
    PAYMENT_RECEIVED,
    STOCK_ADJUSTED,
    STOCK_LOW,
    NOTIFICATION_RECORDED,
    CHANNEL_WEBHOOK_SET,
    PRODUCT_UPDATED,
    CUSTOMER_UPDATED,
    WAREHOUSE_UPDATED,
    STOCK_RECEIVED,
    ORDER_CANCEL_REQUESTED,
    ORDER_CANCELLED,
    ORDER_CANCEL_REFUSED,
    RETURN_REQUESTED,
    RETURN_APPROVED,
    RETURN_REFUSED,
    RETURN_RECEIVED,
    REFUND_ISSUED,
    ORDER_CHANGE_REQUESTED,
    ORDER_CHANGE_ADMITTED,
    ORDER_CHANGE_APPROVED,
    ORDER_CHANGE_RESERVED,
    ORDER_CHANGED,
    ORDER_CHANGE_REJECTED,
)
BY_NAME: dict[str, Topic] = {t.name: t for t in CATALOGUE}
TOPIC_OF_EVENT: dict[type[ev.Event], Topic] = {t.model: t for t in CATALOGUE}


# the largest message a topic takes. Apache Kafka's default (1 MiB) for the catalogue's topics,
# above the consumers' own limit (ServiceSettings.max_message_bytes), so an oversized event
# reaches its consumer and is dead-lettered with its reason instead of being refused at the
# producer unseen; a DLQ takes 4 MiB, room for that payload and the headers that explain it
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def topic_config(name: str) -> dict[str, str]:
    """The topic-level settings a topic is created with (beyond the broker's defaults)."""
    if name.endswith(".dlq"):
        return {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)}
    return {}


def all_topic_names() -> list[tuple[str, int]]:
    """Every topic to create, with its partitions: the catalogue and one DLQ per topic."""
    names = [(t.name, t.partitions) for t in CATALOGUE]
    names += [(t.dlq, 1) for t in CATALOGUE]
    return names
