"""Events of one order as the console would store them (for unit tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from orderflow.console.domain import TimelineEntry, entry_for
from orderflow.contracts import events as ev
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.catalogue import canonical_order

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


class OrderStory:
    """Builds the entries of one order, one event at a time, ``minutes`` after T0."""

    def __init__(self, external_id: str = "SO-1", *, customer_id: str = "C0002",
                 lines: list[tuple[str, int]] | None = None, channel: str = "canonical") -> None:
        self.external_id = external_id
        self.channel = channel
        self.order_id = order_id_for(channel, external_id)
        self.order = CanonicalOrder.model_validate(
            canonical_order(external_id, customer_id=customer_id, lines=lines or [("TEA-001", 2)]))
        subtotal = sum((line.unit_price * line.quantity for line in self.order.lines), Decimal(0))
        self.totals = OrderTotals(subtotal=subtotal, discount=Decimal("0.00"), tax=Decimal("0.00"),
                                  shipping=Decimal("10.00"), grand_total=subtotal + Decimal("10.00"))
        self.entries: list[TimelineEntry] = []
        self.events: list[ev.Event] = []

    def add(self, event: ev.Event, minutes: float, producer: str = "test") -> OrderStory:
        headers = EventHeaders(event_id=str(uuid.uuid4()), event_type=event.EVENT_TYPE,
                               schema_version=1, occurred_at=T0 + timedelta(minutes=minutes),
                               producer=producer, correlation_id=self.order_id)
        entry = entry_for(TOPIC_OF_EVENT[type(event)].name, headers, event)
        assert entry is not None
        self.entries.append(entry)
        self.events.append(event)
        return self

    def submitted(self, minutes: float = 0) -> OrderStory:
        return self.add(ev.OrderSubmitted(channel=self.channel, external_id=self.external_id,
                                          received_at=T0, payload=self.order.model_dump(mode="json")),
                        minutes, "connector")

    def received(self, minutes: float = 0.1, author: str | None = None) -> OrderStory:
        return self.add(ev.OrderReceived(order_id=self.order_id, channel=self.channel,
                                         external_id=self.external_id, order=self.order,
                                         totals=self.totals, author=author), minutes, "intake")

    def held(self, minutes: float = 1, code: str = "credit_limit") -> OrderStory:
        return self.add(ev.OrderHeld(order_id=self.order_id, reasons=(ev.HoldReason(
            code=code, message=f"{code} breached"),)), minutes, "review")  # type: ignore[arg-type]

    def approved(self, minutes: float = 2, by: str = "auto") -> OrderStory:
        return self.add(ev.OrderApproved(order_id=self.order_id, channel=self.channel,
                                         external_id=self.external_id, order=self.order,
                                         totals=self.totals, approved_by=by), minutes, "review")

    def rejected(self, minutes: float = 2, stage: str = "review", code: str = "credit_limit") -> OrderStory:
        return self.add(ev.OrderRejected(order_id=self.order_id, channel=self.channel,
                                         external_id=self.external_id, stage=stage,  # type: ignore[arg-type]
                                         reasons=(ev.Reason(code=code, message="no"),),
                                         decided_by="rita", comment="over limit"), minutes, "review")

    def backordered(self, minutes: float = 3, short: int = 1) -> OrderStory:
        line = self.order.lines[0]
        return self.add(ev.StockBackordered(order_id=self.order_id, short_lines=(ev.ShortLine(
            sku=line.sku, ordered=line.quantity, reserved=line.quantity - short, short=short),)),
                        minutes, "inventory")

    def reserved(self, minutes: float = 4, *, in_full: bool = True,
                 from_backorder: bool = False) -> OrderStory:
        res = tuple(ev.ReservedLine(sku=line.sku, warehouse_id="WH-SH", quantity=line.quantity)
                    for line in self.order.lines)
        return self.add(ev.StockReserved(order_id=self.order_id, order=self.order, reservations=res,
                                         filled_in_full_first_attempt=in_full,
                                         from_backorder=from_backorder), minutes, "inventory")

    def dispatched(self, minutes: float = 10, shipment: str = "S1", count: int = 1) -> OrderStory:
        return self.add(ev.ShipmentDispatched(
            order_id=self.order_id, shipment_id=shipment, warehouse_id="WH-SH", carrier="SF",
            service="express", tracking_number=f"SF{shipment}", lines=(), weight_kg=Decimal("1.5"),
            dispatched_at=T0 + timedelta(minutes=minutes), promised_date=date(2026, 11, 22),
            shipment_count=count), minutes, "logistics")

    def delivered(self, minutes: float = 100, shipment: str = "S1", *, on_time: bool = True,
                  whole: bool = True) -> OrderStory:
        return self.add(ev.ShipmentDelivered(order_id=self.order_id, shipment_id=shipment,
                                             delivered_at=T0 + timedelta(minutes=minutes),
                                             on_time=on_time, order_delivered=whole),
                        minutes, "logistics")

    def delayed(self, minutes: float = 50, shipment: str = "S1") -> OrderStory:
        return self.add(ev.ShipmentDelayed(order_id=self.order_id, shipment_id=shipment,
                                           reason="weather", promised_date=date(2026, 11, 22),
                                           expected_date=date(2026, 11, 24)), minutes, "logistics")

    def carrier_exception(self, minutes: float = 60, shipment: str = "S1") -> OrderStory:
        return self.add(ev.ShipmentException(order_id=self.order_id, shipment_id=shipment,
                                             tracking_number=f"SF{shipment}", carrier="SF",
                                             code="damaged", detail="box crushed"),
                        minutes, "logistics")

    def notified(self, minutes: float = 0.2, status: str = "sent") -> OrderStory:
        return self.add(ev.NotificationRecorded(order_id=self.order_id, source_event_id="x",
                                                source_event_type="OrderReceived",
                                                channel="email", status=status),  # type: ignore[arg-type]
                        minutes, "notify")

    def happy(self) -> OrderStory:
        return (self.submitted().received().notified().approved().reserved().dispatched()
                .delivered())


def projection_stories() -> list[OrderStory]:
    """Orders whose histories exercise most of the projection: the happy path; a split order
    held, backordered, reserved, dispatched in two shipments, delayed, hit by a carrier exception,
    delivered, then cancelled (a state past DELIVERED, where the projection leaves ``on_time``
    unset); an order held then rejected."""
    rich = (OrderStory("SO-RICH", lines=[("TEA-001", 3), ("FAN-030", 1)]).submitted().received()
            .notified().held().approved(by="rita").backordered()
            .reserved(in_full=False, from_backorder=True).dispatched(shipment="S1", count=2)
            .dispatched(minutes=11, shipment="S2", count=2).delayed().carrier_exception()
            .delivered(shipment="S1", whole=False).delivered(minutes=120, shipment="S2"))
    rich.add(ev.OrderCancelled(order_id=rich.order_id, reason="test", requested_by="rita"),
             130, "logistics")
    rejected = OrderStory("SO-REJ").submitted().received().notified().held().rejected(minutes=5)
    return [OrderStory("SO-HAPPY").happy(), rich, rejected]
