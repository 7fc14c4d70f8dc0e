"""Notify's handlers: remember what the event says about the order, ask the domain who is told
what on which channel, and stage the notifications (and the suppressed ones' records) in the
consumer's transaction, beside the inbox row. Nothing is sent here: the sender does that.

The customer-facing events are handled set-based, a run of consecutive events at a time: one
read per table for the whole run, each event decided in batch order on the state the events
before it left, one write per table. Customer and product updates stay one event at a time."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

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
from orderflow.notify.repository import (
    CustomerProfile,
    NewNotification,
    NotifyRepository,
    OrderRecord,
)
from orderflow.notify.settings import NotifySettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)
_T = TypeVar("_T")


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

    # -- customer-facing events, set-based -------------------------------------------------------
    async def on_events(self, uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        """Every customer-facing event of a run (consecutive events of a batch, of any of these
        topics, in batch order): the orders' state, the customers and the product names the run
        needs are read with one statement each (the orders locked in their sorted order), each
        event is decided in batch order on what the events before it left (as if one after
        another), and the notifications, the orders' new state and the released coalescing
        waits are written with one statement each."""
        repo = NotifyRepository(uow.session)
        order_ids: set[str] = set()
        saved: set[str] = set()
        skus: set[str] = set()
        customer_ids: set[str] = set()
        for incoming in run:
            e = incoming.event
            order_ids.add(e.order_id)
            if _saves_order(e):
                saved.add(e.order_id)
            order = getattr(e, "order", None)
            if isinstance(order, CanonicalOrder):
                skus.update(line.sku for line in order.lines)
                customer_ids.add(order.customer.id)
            if isinstance(e, StockBackordered):
                skus.update(line.sku for line in e.short_lines)
            elif isinstance(e, ShipmentDispatched):
                skus.update(line.sku for line in e.lines)
            customer = getattr(e, "customer", None)
            if isinstance(customer, Customer):
                customer_ids.add(customer.id)
        # orders the run saves are created first if missing (as the upsert would), then every
        # order of the run is locked, in the order of its id
        created = await repo.create_orders(saved)
        found = await repo.lock_orders(order_ids)
        orders: dict[str, OrderRecord | None] = {
            order_id: None if order_id in created else found.get(order_id) for order_id in order_ids}
        customer_ids.update(r.customer_id for r in found.values() if r.customer_id)
        profiles = await repo.customers(customer_ids, self.settings.default_language)
        state = _RunState(orders, profiles, await repo.product_names(skus))

        decided = [self._decide(state, incoming, self._occurrence(state, incoming))
                   for incoming in run]
        staged = await self._stage(repo, decided)
        await repo.save_orders([r for order_id, r in sorted(state.orders.items())
                                if order_id in state.touched and r is not None])
        for d in decided:
            self._report(uow, d, staged)

    def _occurrence(self, state: _RunState, incoming: IncomingEvent[Any]) -> Occurrence:
        """What one event changes in its order's state, and the occurrence it announces."""
        e = incoming.event
        if isinstance(e, (OrderReceived, OrderApproved)):
            kind: domain.Kind = "order_received" if isinstance(e, OrderReceived) else "order_approved"
            self._remember(state, e.order_id, e.channel, e.external_id, e.order, e.totals)
            return Occurrence(kind, e.order_id, {})
        if isinstance(e, OrderRejected):
            state.save(e.order_id, channel=e.channel, external_id=e.external_id, customer=e.customer)
            return Occurrence("order_rejected", e.order_id,
                              {"stage": e.stage, "reasons": reason_codes(e.reasons)},
                              customer=e.customer,
                              suppress=domain.rejected_suppression(r.code for r in e.reasons))
        if isinstance(e, OrderHeld):
            return self._held(state, e)
        if isinstance(e, StockBackordered):
            if e.customer is not None:
                state.save(e.order_id, customer=e.customer)
            short = [{"sku": s.sku, "name": state.names.get(s.sku, ""), "ordered": s.ordered,
                      "reserved": s.reserved, "short": s.short} for s in e.short_lines]
            return Occurrence(
                "stock_backordered", e.order_id,
                {"short_lines": short,
                 "expected_date": e.expected_date.isoformat() if e.expected_date else None},
                customer=e.customer)
        if isinstance(e, ShipmentDispatched):
            shipment = {
                "shipment_id": e.shipment_id, "carrier": e.carrier, "service": e.service,
                "tracking_number": e.tracking_number,
                "tracking_url": self._tracking_url(e.carrier, e.tracking_number),
                "dispatched_at": e.dispatched_at.isoformat(),
                "promised_date": e.promised_date.isoformat(),
                "lines": [{"sku": line.sku, "name": state.names.get(line.sku, ""),
                           "quantity": line.quantity} for line in e.lines],
            }
            state.add_shipment(e.order_id, e.shipment_id, shipment)
            return Occurrence("shipment_dispatched", e.order_id,
                              {"shipments": [shipment], "shipment_count": max(e.shipment_count, 1)})
        if isinstance(e, ShipmentDelayed):
            return Occurrence(
                "shipment_delayed", e.order_id,
                {"shipment_id": e.shipment_id, "reason": e.reason,
                 "promised_date": e.promised_date.isoformat(),
                 "expected_date": e.expected_date.isoformat() if e.expected_date else None,
                 **self._tracking(e.carrier, e.tracking_number)})
        if isinstance(e, ShipmentDelivered):
            return Occurrence(
                "shipment_delivered", e.order_id,
                {"shipment_id": e.shipment_id, "delivered_at": e.delivered_at.isoformat(),
                 "on_time": e.on_time, "order_delivered": e.order_delivered})
        if isinstance(e, ShipmentException):
            return Occurrence(
                "shipment_exception", e.order_id,
                {"shipment_id": e.shipment_id, "carrier": e.carrier, "code": e.code,
                 "tracking_number": e.tracking_number,
                 "tracking_url": self._tracking_url(e.carrier, e.tracking_number)})
        if isinstance(e, OrderCancelled):
            return Occurrence("order_cancelled", e.order_id,
                              {"reason": e.reason, "requested_by": e.requested_by},
                              customer=e.customer)
        if isinstance(e, OrderCancelRefused):
            return Occurrence("order_cancel_refused", e.order_id,
                              {"reasons": reason_codes(e.reasons),
                               "shipment_ids": list(e.shipment_ids)})
        if isinstance(e, OrderChanged):
            return self._changed(state, e)
        if isinstance(e, OrderChangeRejected):
            return Occurrence("order_change_rejected", e.order_id,
                              {"revision": e.revision, "stage": e.stage,
                               "reasons": reason_codes(e.reasons)},
                              customer=e.customer)
        if isinstance(e, ReturnApproved):
            return Occurrence(
                "return_approved", e.order_id,
                {"rma_id": e.rma_id, "resolution": e.resolution, "carrier": e.carrier,
                 "tracking_number": e.tracking_number, "refund_amount": str(e.refund_amount),
                 "currency": e.currency,
                 "lines": [{"sku": x.sku, "quantity": x.quantity} for x in e.lines]},
                customer=e.customer)
        if isinstance(e, ReturnRefused):
            return Occurrence("return_refused", e.order_id,
                              {"rma_id": e.rma_id, "reasons": reason_codes(e.reasons)},
                              customer=e.customer)
        if isinstance(e, RefundIssued):
            return Occurrence("refund_issued", e.order_id,
                              {"rma_id": e.rma_id, "amount": str(e.amount),
                               "currency": e.currency,
                               "exchange_order": e.exchange_order_external_id})
        raise TypeError(f"notify does not record {type(e).__name__}")

    def _held(self, state: _RunState, e: OrderHeld) -> Occurrence:
        state.save(e.order_id, customer=e.customer)  # keeps the review-notice flag
        record = state.orders.get(e.order_id)
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
            state.mark_review_notice(e.order_id)
        return Occurrence("order_held", e.order_id, facts, suppress=notice.suppress,
                          customer=e.customer)

    def _changed(self, state: _RunState, e: OrderChanged) -> Occurrence:
        # the order's new content: this message and every later one show it
        self._remember(state, e.order_id, e.channel, e.external_id, e.order, e.totals)
        address = e.order.shipping_address
        ship_to = " ".join(p for p in (address.province, address.city, address.district,
                                       address.line1) if p)
        date = e.order.requested_delivery_date
        return Occurrence(
            "order_changed", e.order_id,
            {"changes": list(e.changes), "revision": e.revision,
             "ship_to": ship_to if "shipping_address" in e.changes else None,
             "requested_delivery_date": date.isoformat()
             if date and "requested_delivery_date" in e.changes else None},
            customer=e.customer)

    # -- the common part -----------------------------------------------------------------------
    @staticmethod
    def _remember(state: _RunState, order_id: str, channel: str, external_id: str,
                  order: CanonicalOrder, totals: OrderTotals | None) -> None:
        state.save(order_id, channel=channel, external_id=external_id, customer=order.customer,
                   facts=order_facts(order_id, channel, external_id, order, totals, state.names))

    def _decide(self, state: _RunState, incoming: IncomingEvent[Any], o: Occurrence) -> _Decided:
        """Who is told what on which channel, from the order's state as the event finds it."""
        record = state.orders.get(o.order_id)
        customer_id = (record.customer_id if record else None) or (o.customer.id if o.customer else None)
        profile = state.profiles.get(customer_id) if customer_id else None
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
        return _Decided(incoming, o, plans, self._context(o, record, contact, incoming.event),
                        preferences.language, datetime.now(UTC))

    async def _stage(self, repo: NotifyRepository, decided: list[_Decided]) -> set[tuple[str, str]]:
        """Stage every planned notification of the run (one statement), with the coalescing
        waits of the dispatches decided in batch order; the (event id, channel) pairs staged
        (a pair staged before is skipped)."""
        keyed = sorted({(key, plan.channel) for d in decided for plan in d.plans
                        if plan.status == "pending"
                        and (key := domain.coalesce_key(d.occurrence.order_id, d.occurrence.kind))})
        waiting: dict[tuple[str, str], list[int]] = {}
        existing: set[tuple[str, str]] = set()
        if keyed:  # the waiting dispatches (locked) and the pairs already staged, in one read
            waiting, existing = await repo.waiting_and_staged(
                keyed, sorted({d.incoming.headers.event_id for d in decided}))
        dispatches: list[domain.Dispatch] = []
        rows: list[NewNotification] = []
        keyed_rows: list[int] = []  # the rows of ``dispatches``, by their index in ``rows``
        for d in decided:
            incoming, o = d.incoming, d.occurrence
            for plan in d.plans:
                key = domain.coalesce_key(o.order_id, o.kind) if plan.status == "pending" else None
                if key is not None:
                    keyed_rows.append(len(rows))
                    dispatches.append(domain.Dispatch(
                        key, plan.channel, d.now, int(o.event.get("shipment_count", 1)),
                        new=(incoming.headers.event_id, plan.channel) not in existing))
                rows.append(NewNotification(
                    source_event_id=incoming.headers.event_id, source_topic=incoming.topic,
                    source_event_type=incoming.headers.event_type, kind=o.kind,
                    order_id=o.order_id, channel=plan.channel, recipient=plan.recipient,
                    language=d.language, context=d.context, status=plan.status,
                    detail=plan.detail, next_attempt_at=d.now,
                    finished=plan.finished,
                    coalesce_key=key, raw_value=incoming.raw_value,
                    raw_headers=incoming.raw_headers))
        if dispatches:
            waits = domain.dispatch_waits(
                dispatches, window=self.window,
                waiting={(k, cast(domain.Channel, c)): ids for (k, c), ids in waiting.items()})
            for index, due in zip(keyed_rows, waits.due_at, strict=True):
                rows[index] = replace(rows[index], next_attempt_at=due)
            if waits.released:
                await repo.release(waits.released)
        return await repo.stage_all(rows)

    def _report(self, uow: UnitOfWork, d: _Decided, staged: set[tuple[str, str]]) -> None:
        """Wake the channels, record the suppressed ones and log, for one event, with its
        context bound as the runtime binds it for an event handled alone."""
        incoming, o = d.incoming, d.occurrence
        with uow.handling(incoming):
            for plan in d.plans:
                if (incoming.headers.event_id, plan.channel) not in staged:
                    log.debug("notification already staged for this event and channel",
                              channel=plan.channel)
                    continue
                if plan.status == "pending":
                    self.staged_channels.add(plan.channel)
                if plan.status == "suppressed":
                    uow.emit(NotificationRecorded(
                        order_id=o.order_id, source_event_id=incoming.headers.event_id,
                        source_event_type=incoming.headers.event_type, channel=plan.channel,
                        status="suppressed", detail=plan.detail), cause=incoming)
                log.debug("notification staged", kind=o.kind, channel=plan.channel,
                          status=plan.status, detail=plan.detail or None)

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


def _saves_order(e: Event) -> bool:
    """Whether handling ``e`` remembers something of its order (creating the row if missing)."""
    if isinstance(e, StockBackordered):
        return e.customer is not None
    return isinstance(e, (OrderReceived, OrderApproved, OrderChanged, OrderRejected, OrderHeld))


@dataclass(frozen=True)
class _Decided:
    """One event of a run, decided: its occurrence, its plans and what their rows say."""

    incoming: IncomingEvent[Any]
    occurrence: Occurrence
    plans: list[domain.Planned]
    context: dict[str, Any]
    language: domain.Language
    now: datetime


@dataclass
class _RunState:
    """What a run knows of its orders, customers and products, kept up to date event by event
    as the per-event statements would leave the rows (``None``: no row for the order yet)."""

    orders: dict[str, OrderRecord | None]
    profiles: dict[str, CustomerProfile]
    names: dict[str, str]
    touched: set[str] = field(default_factory=set)

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
                                                domain.Contact(name, email, phone), facts, {}, False)
        else:
            self.orders[order_id] = OrderRecord(
                order_id, _newer(channel, old.channel), _newer(external_id, old.external_id),
                _newer(customer_id, old.customer_id),
                domain.Contact(name or old.contact.name, _newer(email, old.contact.email),
                               _newer(phone, old.contact.phone)),
                _newer(facts, old.facts), old.shipments, old.review_notice_sent)
        self.touched.add(order_id)

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


def _newer(new: _T | None, old: _T | None) -> _T | None:
    return new if new is not None else old
