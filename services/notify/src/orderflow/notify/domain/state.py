"""What a run knows of its orders, customers and products (``RunState``), kept up to date event
by event, and what a message may say of an order (its facts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, Customer, OrderTotals
from orderflow.notify.domain.plans import Contact, CustomerProfile

_T = TypeVar("_T")


@dataclass(frozen=True)
class OrderRecord:
    """What notify keeps of an order: where it came from, whom to tell, what messages may say of
    it (``facts``), its shipments' tracking and whether the review notice went out."""

    order_id: str
    channel: str | None
    external_id: str | None
    customer_id: str | None
    contact: Contact
    facts: dict[str, Any] | None
    shipments: dict[str, Any]
    review_notice_sent: bool


def order_facts(order_id: str, channel: str, external_id: str, order: CanonicalOrder,
                totals: OrderTotals | None, names: Mapping[str, str]) -> dict[str, Any]:
    """What a message may say about an order: its lines, amounts and dates (no address)."""
    return {
        "order_id": order_id,
        "external_id": external_id,
        "channel": channel,
        "placed_at": order.placed_at.isoformat(),
        "currency": order.currency,
        "lines": [{"sku": line.sku, "name": names.get(line.sku, ""), "quantity": line.quantity,
                   "unit_price": str(line.unit_price),
                   "line_total": str(round_money(line.unit_price * line.quantity - line.discount))}
                  for line in order.lines],
        "totals": totals.model_dump(mode="json") if totals else None,
        "requested_delivery_date": (order.requested_delivery_date.isoformat()
                                    if order.requested_delivery_date else None),
        "payment_terms": order.payment_terms,
    }


def bare_facts(order_id: str, channel: str | None, external_id: str | None) -> dict[str, Any]:
    """The facts of an order notify has not seen received (only what the event says)."""
    return {"order_id": order_id, "external_id": external_id or "", "channel": channel,
            "placed_at": None, "currency": None, "lines": [], "totals": None,
            "requested_delivery_date": None, "payment_terms": None}


@dataclass
class RunState:
    """What a run knows of its orders, customers and products, kept up to date event by event
    as the per-event statements would leave the rows (``None``: no row for the order yet)."""

    orders: dict[str, OrderRecord | None]
    profiles: dict[str, CustomerProfile]
    names: dict[str, str]
    touched: set[str] = field(default_factory=set)

    @classmethod
    def loaded(cls, order_ids: Iterable[str], *, created: Iterable[str],
               found: Mapping[str, OrderRecord], profiles: dict[str, CustomerProfile],
               names: dict[str, str]) -> RunState:
        """The state as the run finds it: an order whose row the run has just created (empty)
        has no row yet, as for the first event that saves it when handled alone."""
        new = set(created)
        return cls({order_id: None if order_id in new else found.get(order_id)
                    for order_id in order_ids}, profiles, names)

    def changed(self) -> list[OrderRecord]:
        """The orders the run's events changed, in the order of their ids."""
        return [r for order_id, r in sorted(self.orders.items())
                if order_id in self.touched and r is not None]

    def save(self, order_id: str, *, channel: str | None = None, external_id: str | None = None,
             customer: Customer | None = None, facts: dict[str, Any] | None = None) -> None:
        """Newer knowledge wins, gaps keep the old (an empty name too): a save without facts
        (held, rejected, backordered) keeps the order's lines and totals for later messages."""
        old = self.orders.get(order_id)
        name = customer.name if customer else ""
        customer_id = customer.id if customer else None
        email = customer.email if customer else None
        phone = customer.phone if customer else None
        if old is None:
            self.orders[order_id] = OrderRecord(order_id, channel, external_id, customer_id,
                                                Contact(name, email, phone), facts, {}, False)
        else:
            self.orders[order_id] = OrderRecord(
                order_id, newer(channel, old.channel), newer(external_id, old.external_id),
                newer(customer_id, old.customer_id),
                Contact(name or old.contact.name, newer(email, old.contact.email),
                        newer(phone, old.contact.phone)),
                newer(facts, old.facts), old.shipments, old.review_notice_sent)
        self.touched.add(order_id)

    def remember(self, order_id: str, channel: str, external_id: str, order: CanonicalOrder,
                 totals: OrderTotals | None) -> None:
        """The order's content, as every later message shows it."""
        self.save(order_id, channel=channel, external_id=external_id, customer=order.customer,
                  facts=order_facts(order_id, channel, external_id, order, totals, self.names))

    def add_shipment(self, order_id: str, shipment_id: str, shipment: dict[str, Any]) -> None:
        old = self.orders.get(order_id)
        if old is not None:  # an order never saved has no row to add it to
            self.orders[order_id] = replace(old, shipments={**old.shipments, shipment_id: shipment})
            self.touched.add(order_id)

    def mark_review_notice(self, order_id: str) -> None:
        old = self.orders.get(order_id)
        if old is not None:
            self.orders[order_id] = replace(old, review_notice_sent=True)
            self.touched.add(order_id)


def newer(new: _T | None, old: _T | None) -> _T | None:
    return new if new is not None else old
