"""Notify's handlers: decode, remember what the event says about the order, ask the domain who is
told what on which channel, and stage the notifications (and the suppressed ones' records) in
the consumer's transaction, beside the inbox row. Nothing is sent here: the sender does that."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from orderflow.contracts.events import (
    CustomerUpdated,
    Event,
    NotificationRecorded,
    OrderApproved,
    OrderCancelled,
    OrderCancelRefused,
    OrderChanged,
    OrderChangeRejected,
    OrderHeld,
    OrderReceived,
    OrderRejected,
    ProductUpdated,
    Reason,
    RefundIssued,
    ReturnApproved,
    ReturnRefused,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockBackordered,
)
from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, Customer, OrderTotals
from orderflow.notify import domain
from orderflow.notify.repository import NewNotification, NotifyRepository, OrderRecord
from orderflow.notify.settings import NotifySettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)


def order_facts(order_id: str, channel: str, external_id: str, order: CanonicalOrder,
                totals: OrderTotals | None, names: dict[str, str]) -> dict[str, Any]:
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


def reason_codes(reasons: Iterable[Reason]) -> list[dict[str, str | None]]:
    """What a message says of reasons: their codes and fields, never their free text."""
    return [{"code": r.code, "field": r.field} for r in reasons]


@dataclass(frozen=True)
class Occurrence:
    """One customer-facing event, ready for planning."""

    kind: domain.Kind
    order_id: str
    event: dict[str, Any]
    suppress: str | None = None
    customer: Customer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Notifier:
    """The handlers, with the settings they need (webhook channels, window, links)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.window = timedelta(seconds=settings.coalesce_window_s)
        # channels with a pending notification staged since the last commit: their senders are
        # woken once the batch is committed (a rolled-back batch only gives a needless wake)
        self.staged_channels: set[str] = set()

    def take_staged_channels(self) -> set[str]:
        staged, self.staged_channels = self.staged_channels, set()
        return staged

    def _tracking(self, carrier: str | None, tracking_number: str | None) -> dict[str, str]:
        """The event's own carrier and tracking facts, when it carries them."""
        if not (carrier and tracking_number):
            return {}
        return {"carrier": carrier, "tracking_number": tracking_number,
                "tracking_url": self._tracking_url(carrier, tracking_number)}

    def _tracking_url(self, carrier: str, tracking_number: str) -> str:
        return domain.tracking_url(carrier, tracking_number,
                                   default_template=self.settings.tracking_url_template,
                                   per_carrier=self.settings.tracking_urls)

    # -- master data ---------------------------------------------------------------------------
    async def on_customer_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[CustomerUpdated]) -> None:
        await NotifyRepository(uow.session).upsert_customer(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await NotifyRepository(uow.session).upsert_product(incoming.event.sku, incoming.event.name)

    # -- customer-facing events ----------------------------------------------------------------
    async def on_order_received(self, uow: UnitOfWork,
                                incoming: IncomingEvent[OrderReceived]) -> None:
        e = incoming.event
        await self._remember(uow, e.order_id, e.channel, e.external_id, e.order, e.totals)
        await self._notify(uow, incoming, Occurrence("order_received", e.order_id, {}))

    async def on_order_approved(self, uow: UnitOfWork,
                                incoming: IncomingEvent[OrderApproved]) -> None:
        e = incoming.event
        await self._remember(uow, e.order_id, e.channel, e.external_id, e.order, e.totals)
        await self._notify(uow, incoming, Occurrence("order_approved", e.order_id, {}))

    async def on_order_rejected(self, uow: UnitOfWork,
                                incoming: IncomingEvent[OrderRejected]) -> None:
        e = incoming.event
        await NotifyRepository(uow.session).save_order(
            e.order_id, channel=e.channel, external_id=e.external_id, customer=e.customer)
        reasons = reason_codes(e.reasons)
        await self._notify(uow, incoming, Occurrence(
            "order_rejected", e.order_id, {"stage": e.stage, "reasons": reasons}, customer=e.customer))

    async def on_order_held(self, uow: UnitOfWork, incoming: IncomingEvent[OrderHeld]) -> None:
        e = incoming.event
        repo = NotifyRepository(uow.session)
        await repo.save_order(e.order_id, customer=e.customer)  # keeps the review-notice flag
        record = await repo.lock_order(e.order_id)
        notice = domain.held_notice(
            (r.code for r in e.reasons),
            review_notice_already_sent=bool(record and record.review_notice_sent))
        facts: dict[str, Any] = {"notice": notice.notice, "amount_due": None, "currency": e.currency}
        if notice.notice == "payment_due":
            due = e.amount_due
            if due is None:  # the prepayment's figures, else the order's total
                figure = next((r.figures.get("amount_due") for r in e.reasons
                               if r.code == "prepayment_due" and r.figures.get("amount_due")), None)
                totals = (record.facts or {}).get("totals") if record else None
                due_text = figure or (totals or {}).get("grand_total")
                facts["amount_due"] = due_text
            else:
                facts["amount_due"] = str(due)
        elif notice.suppress is None:
            await repo.mark_review_notice(e.order_id)
        await self._notify(uow, incoming, Occurrence("order_held", e.order_id, facts,
                                                     suppress=notice.suppress, customer=e.customer))

    async def on_stock_backordered(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[StockBackordered]) -> None:
        e = incoming.event
        repo = NotifyRepository(uow.session)
        if e.customer is not None:
            await repo.save_order(e.order_id, customer=e.customer)
        names = await repo.product_names(line.sku for line in e.short_lines)
        short = [{"sku": s.sku, "name": names.get(s.sku, ""), "ordered": s.ordered,
                  "reserved": s.reserved, "short": s.short} for s in e.short_lines]
        await self._notify(uow, incoming, Occurrence(
            "stock_backordered", e.order_id,
            {"short_lines": short,
             "expected_date": e.expected_date.isoformat() if e.expected_date else None},
            customer=e.customer))

    async def on_shipment_dispatched(self, uow: UnitOfWork,
                                     incoming: IncomingEvent[ShipmentDispatched]) -> None:
        e = incoming.event
        repo = NotifyRepository(uow.session)
        names = await repo.product_names(line.sku for line in e.lines)
        shipment = {
            "shipment_id": e.shipment_id, "carrier": e.carrier, "service": e.service,
            "tracking_number": e.tracking_number,
            "tracking_url": self._tracking_url(e.carrier, e.tracking_number),
            "dispatched_at": e.dispatched_at.isoformat(), "promised_date": e.promised_date.isoformat(),
            "lines": [{"sku": line.sku, "name": names.get(line.sku, ""), "quantity": line.quantity}
                      for line in e.lines],
        }
        await repo.add_shipment(e.order_id, e.shipment_id, shipment)
        await self._notify(uow, incoming, Occurrence(
            "shipment_dispatched", e.order_id,
            {"shipments": [shipment], "shipment_count": max(e.shipment_count, 1)}))

    async def on_shipment_delayed(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[ShipmentDelayed]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "shipment_delayed", e.order_id,
            {"shipment_id": e.shipment_id, "reason": e.reason,
             "promised_date": e.promised_date.isoformat(),
             "expected_date": e.expected_date.isoformat() if e.expected_date else None,
             **self._tracking(e.carrier, e.tracking_number)}))

    async def on_shipment_delivered(self, uow: UnitOfWork,
                                    incoming: IncomingEvent[ShipmentDelivered]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "shipment_delivered", e.order_id,
            {"shipment_id": e.shipment_id, "delivered_at": e.delivered_at.isoformat(),
             "on_time": e.on_time, "order_delivered": e.order_delivered}))

    async def on_shipment_exception(self, uow: UnitOfWork,
                                    incoming: IncomingEvent[ShipmentException]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "shipment_exception", e.order_id,
            {"shipment_id": e.shipment_id, "carrier": e.carrier, "code": e.code,
             "tracking_number": e.tracking_number,
             "tracking_url": self._tracking_url(e.carrier, e.tracking_number)}))

    async def on_order_cancelled(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderCancelled]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "order_cancelled", e.order_id, {"reason": e.reason, "requested_by": e.requested_by},
            customer=e.customer))

    async def on_order_cancel_refused(self, uow: UnitOfWork,
                                      incoming: IncomingEvent[OrderCancelRefused]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "order_cancel_refused", e.order_id,
            {"reasons": reason_codes(e.reasons),
             "shipment_ids": list(e.shipment_ids)}))

    async def on_order_changed(self, uow: UnitOfWork,
                               incoming: IncomingEvent[OrderChanged]) -> None:
        e = incoming.event
        # the order's new content: this message and every later one show it
        await self._remember(uow, e.order_id, e.channel, e.external_id, e.order, e.totals)
        address = e.order.shipping_address
        ship_to = " ".join(p for p in (address.province, address.city, address.district,
                                       address.line1) if p)
        date = e.order.requested_delivery_date
        await self._notify(uow, incoming, Occurrence(
            "order_changed", e.order_id,
            {"changes": list(e.changes), "revision": e.revision,
             "ship_to": ship_to if "shipping_address" in e.changes else None,
             "requested_delivery_date": date.isoformat()
             if date and "requested_delivery_date" in e.changes else None},
            customer=e.customer))

    async def on_order_change_rejected(self, uow: UnitOfWork,
                                       incoming: IncomingEvent[OrderChangeRejected]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "order_change_rejected", e.order_id,
            {"revision": e.revision, "stage": e.stage,
             "reasons": reason_codes(e.reasons)},
            customer=e.customer))

    async def on_return_approved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ReturnApproved]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "return_approved", e.order_id,
            {"rma_id": e.rma_id, "resolution": e.resolution, "carrier": e.carrier,
             "tracking_number": e.tracking_number, "refund_amount": str(e.refund_amount),
             "currency": e.currency,
             "lines": [{"sku": x.sku, "quantity": x.quantity} for x in e.lines]},
            customer=e.customer))

    async def on_return_refused(self, uow: UnitOfWork,
                                incoming: IncomingEvent[ReturnRefused]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "return_refused", e.order_id,
            {"rma_id": e.rma_id,
             "reasons": reason_codes(e.reasons)},
            customer=e.customer))

    async def on_refund_issued(self, uow: UnitOfWork,
                               incoming: IncomingEvent[RefundIssued]) -> None:
        e = incoming.event
        await self._notify(uow, incoming, Occurrence(
            "refund_issued", e.order_id,
            {"rma_id": e.rma_id, "amount": str(e.amount), "currency": e.currency,
             "exchange_order": e.exchange_order_external_id}))

    # -- the common part -----------------------------------------------------------------------
    async def _remember(self, uow: UnitOfWork, order_id: str, channel: str, external_id: str,
                        order: CanonicalOrder, totals: OrderTotals | None) -> None:
        repo = NotifyRepository(uow.session)
        names = await repo.product_names(line.sku for line in order.lines)
        await repo.save_order(order_id, channel=channel, external_id=external_id,
                              customer=order.customer,
                              facts=order_facts(order_id, channel, external_id, order, totals, names))

    async def _notify(self, uow: UnitOfWork, incoming: IncomingEvent[Any], o: Occurrence) -> None:
        repo = NotifyRepository(uow.session)
        record = await repo.lock_order(o.order_id)
        customer_id = (record.customer_id if record else None) or (o.customer.id if o.customer else None)
        profile = await repo.customer(customer_id, self.settings.default_language)
        preferences = profile.preferences if profile else domain.Preferences(
            language=self.settings.default_language)
        known = record is not None and bool(record.customer_id or record.contact.email
                                            or record.contact.phone)
        order_contact = record.contact if record is not None and known else (
            domain.Contact(o.customer.name, o.customer.email, o.customer.phone) if o.customer else None)
        contact = domain.merge_contact(order_contact, profile.contact if profile else None)
        sales_channel = record.channel if record else getattr(incoming.event, "channel", None)
        plans = domain.plan_notifications(
            o.kind, contact=contact, preferences=preferences, sales_channel=sales_channel,
            webhook_channels=self.settings.webhook_urls, suppress=o.suppress)
        context = self._context(o, record, contact, incoming.event)
        now = datetime.now(UTC)
        for plan in plans:
            key = domain.coalesce_key(o.order_id, o.kind) if plan.status == "pending" else None
            due = now
            if key is not None:
                waiting = await repo.waiting(key, plan.channel)
                due, release = domain.dispatch_due_at(
                    now, window=self.window, already_waiting=waiting,
                    shipment_count=int(o.event.get("shipment_count", 1)))
                if release:
                    await repo.release_waiting(key, plan.channel)
            staged = await repo.stage(NewNotification(
                source_event_id=incoming.headers.event_id, source_topic=incoming.topic,
                source_event_type=incoming.headers.event_type, kind=o.kind, order_id=o.order_id,
                channel=plan.channel, recipient=plan.recipient, language=preferences.language,
                context=context, status=plan.status, detail=plan.detail, next_attempt_at=due,
                coalesce_key=key, raw_value=incoming.raw_value, raw_headers=incoming.raw_headers))
            if staged is None:
                log.debug("notification already staged for this event and channel",
                         channel=plan.channel)
                continue
            if plan.status == "pending":
                self.staged_channels.add(plan.channel)
            if plan.status == "suppressed":
                uow.emit(NotificationRecorded(
                    order_id=o.order_id, source_event_id=incoming.headers.event_id,
                    source_event_type=incoming.headers.event_type, channel=plan.channel,
                    status="suppressed", detail=plan.detail))
            log.debug("notification staged", kind=o.kind, channel=plan.channel, status=plan.status,
                     detail=plan.detail or None)

    @staticmethod
    def _context(o: Occurrence, record: OrderRecord | None, contact: domain.Contact | None,
                 event: Event) -> dict[str, Any]:
        facts = (record.facts if record and record.facts else None) or bare_facts(
            o.order_id, getattr(event, "channel", None) or (record.channel if record else None),
            getattr(event, "external_id", None) or (record.external_id if record else None))
        details = dict(o.event)
        shipment_id = details.get("shipment_id")
        if record and shipment_id and "tracking_number" not in details:
            known = record.shipments.get(str(shipment_id), {})
            details["tracking_number"] = known.get("tracking_number")
            details["tracking_url"] = known.get("tracking_url")
            details.setdefault("carrier", known.get("carrier"))
        return {"order": facts, "customer_name": contact.name if contact else "", "event": details}
