"""Logistics' handlers: decode, lock the order's record, call the rules (``domain``), store, stage
the events. Outcomes (a shipment no carrier can take, a carrier exception, a delay) are events;
only an impossible event (tracking for a shipment logistics never made) raises, and is
dead-lettered with the reason."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from orderflow.contracts.events import (
    OrderCancelled,
    OrderCancelRefused,
    OrderCancelRequested,
    OrderChangeAdmitted,
    OrderChanged,
    OrderChangeRejected,
    OrderChangeRequested,
    OrderChangeReserved,
    OrderSubmitted,
    ProductUpdated,
    Reason,
    RefundIssued,
    ReturnApproved,
    ReturnLine,
    ReturnReceived,
    ReturnRefused,
    ReturnRequested,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockReserved,
    TrackingUpdated,
    WarehouseUpdated,
)
from orderflow.logistics import domain
from orderflow.logistics.carriers import CarrierChoice
from orderflow.logistics.repository import (
    MasterData,
    NewShipment,
    OrderLock,
    OrderRecords,
    Returns,
    ShipmentRecord,
    Shipments,
)
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
# a log line to write once the run is stored, in its event's log context
Said = tuple[Callable[..., Any], str, dict[str, Any]]


def utc_now() -> datetime:
    return datetime.now(UTC)


class UnknownShipment(LookupError):
    """A tracking update names a shipment logistics does not have."""


class TrackingMismatch(ValueError):
    """A tracking update's order, carrier or tracking number disagrees with the shipment's."""


class UnknownReturn(LookupError):
    """A return receipt names an RMA logistics never approved (dead-lettered for a person)."""


class ReturnMismatch(ValueError):
    """A return receipt disagrees with its RMA (another order, more units than approved)."""


_REFUND_NAMESPACE = uuid.UUID("5f7c2b8e-9d14-4c3a-a6e1-2b9f0d4c8e17")


async def flag_delays(uow: UnitOfWork, shipments: Shipments, shipment: ShipmentRecord,
                      findings: Sequence[domain.DelayFinding], *, observed_at: datetime,
                      source: str) -> list[domain.DelayFinding]:
    """Record each finding once per shipment and reason, and publish the new ones."""
    flagged = []
    for finding in findings:
        if await shipments.flag_delay(shipment, finding, observed_at=observed_at, source=source):
            assert shipment.promised_date is not None
            uow.emit(ShipmentDelayed(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                                     reason=finding.reason, promised_date=shipment.promised_date,
                                     expected_date=finding.expected_date, carrier=shipment.carrier,
                                     tracking_number=shipment.tracking_number))
            flagged.append(finding)
    if flagged:
        log.info("shipment delayed", shipment_id=shipment.shipment_id, source=source,
                 reasons=[f.reason for f in flagged])
    return flagged


async def _lock(orders: OrderRecords, order_id: str) -> OrderLock:
    """The record of an event's one order, locked (``OrderRecords.lock``)."""
    return (await orders.lock([(order_id, None)]))[order_id]


def _say(lines: Sequence[Said]) -> None:
    for say, message, fields in lines:
        say(message, **fields)


class LogisticsHandlers:
    """The subscriptions' handlers, with the settings, clock and randomness they use."""

    def __init__(self, settings: LogisticsSettings, clock: Clock = utc_now,
                 randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.settings = settings
        self.clock = clock
        self.randbelow = randbelow

    # -- dispatch -----------------------------------------------------------------------------
    async def on_stocks_reserved(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[StockReserved]]) -> None:
        """A run of reservations (a single one is a run of one), with the outcome of handling
        them one after another: the orders' records created and locked in sorted order, each
        reservation's fate decided (``domain.reservation_fate``: cancelled, parked, dispatched;
        the last parked reservation of an order stays parked), the parked ones stored with one
        statement and the others dispatched together (``_dispatch``). The log lines of each
        reservation are written after that, in order, in its event's log context."""
        orders = OrderRecords(uow.session)
        # the point of no return: a cancel request of these orders waits for these locks, or
        # this run waits for the cancel's and then finds the order cancelled
        locks = await orders.lock([(i.event.order_id, i.event.order) for i in run])
        said: dict[str, list[Said]] = {i.headers.event_id: [] for i in run}
        parked: dict[str, tuple[str, str, str]] = {}
        dispatching: list[IncomingEvent[StockReserved]] = []
        for incoming in run:
            reserved, lines = incoming.event, said[incoming.headers.event_id]
            lock = locks[reserved.order_id]
            fate = domain.reservation_fate(order_status=lock.status,
                                           pending_change_id=lock.pending_change_id)
            if fate == "cancelled":
                lines.append((log.info, "order cancelled before dispatch; reservation not "
                              "dispatched", {"order_id": reserved.order_id}))
            elif fate == "parked":
                parked.pop(reserved.order_id, None)
                parked[reserved.order_id] = (reserved.order_id, reserved.model_dump_json(),
                                             incoming.headers.event_id)
                lines.append((log.info, "change pending; reservation parked",
                              {"order_id": reserved.order_id,
                               "change_id": lock.pending_change_id}))
            else:
                dispatching.append(incoming)
        await orders.park(list(parked.values()))
        # a settled change may have brought newer content (address, date) than a reservation
        newer = {i.event.order_id for i in dispatching
                 if domain.kept_is_newer(locks[i.event.order_id].kept_revision,
                                         i.event.order.revision)}
        kept = await orders.contents(newer) if newer else {}
        requests = [(i, domain.DispatchRequest(
            i.event.order_id,
            domain.content_to_ship(kept[i.event.order_id].order if i.event.order_id in kept
                                   else None, i.event.order),
            i.event.reservations, i.headers.event_id)) for i in dispatching]
        for (incoming, _), lines in zip(requests, await self._dispatch(uow, requests),
                                        strict=True):
            said[incoming.headers.event_id] += lines
        for incoming in run:
            with uow.handling(incoming):
                _say(said[incoming.headers.event_id])

    async def _dispatch(self, uow: UnitOfWork,
                        requests: Sequence[tuple[IncomingEvent[Any], domain.DispatchRequest]],
                        ) -> list[list[Said]]:
        """Dispatch reservations (each with the event its events answer), as one after another
        (``domain.plan_dispatches``: an order with shipments already is not dispatched again):
        the orders' shipments counted and the warehouses and products read with one statement,
        a tracking number drawn per shipment a carrier takes, the shipments stored with one
        statement, then each one's ``shipment.dispatched`` (or ``shipment.exception`` when no
        carrier takes it). Returns each request's log lines."""
        if not requests:
            return []
        shipments = Shipments(uow.session, self.randbelow)
        wanted = [request for _, request in requests]
        counts, sites, infos = await shipments.dispatch_data(
            (r.order_id for r in wanted),
            (line.warehouse_id for r in wanted for line in r.reservations),
            (line.sku for r in wanted for line in r.reservations))
        catalogue = self.settings.catalogue
        planned = domain.plan_dispatches(wanted, shipped=counts, warehouses=sites, products=infos,
                                         catalogue=catalogue, dispatched_at=self.clock(),
                                         tz=self.settings.tz)
        new = [NewShipment(plan, external_id=request.order.external_id,
                           customer_id=request.order.customer.id,
                           priority=request.order.priority,
                           ship_to=request.order.shipping_address,
                           source_event_id=request.source_event_id,
                           tracking_number=shipments.tracking_number(plan.choice)
                           if isinstance(plan.choice, CarrierChoice) else None)
               for request, plans in zip(wanted, planned, strict=True) for plan in plans or ()]
        stored = iter(await shipments.add(new, catalogue=catalogue) if new else [])
        said: list[list[Said]] = []
        for (cause, request), plans in zip(requests, planned, strict=True):
            if plans is None:
                said.append([(log.info, "order already dispatched; reservation ignored",
                              {"order_id": request.order_id})])
            else:
                said.append(_dispatched(uow, cause, request.order_id,
                                        [next(stored) for _ in plans]))
        return said

    # -- changes: logistics admits them first and settles them last ------------------------------
    async def on_change_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderChangeRequested]) -> None:
        change = incoming.event
        orders = OrderRecords(uow.session)
        # the same row lock as dispatch and cancel: a change racing a dispatch has one outcome
        lock = await _lock(orders, change.order_id)
        shipped = await Shipments(uow.session).of_order(change.order_id)
        decision = domain.decide_change(
            order_status=lock.status, dispatched_shipment_ids=domain.dispatched_shipment_ids(shipped),
            pending_change_id=lock.pending_change_id, known_revision=lock.known_revision,
            change_id=change.change_id, revision=change.order.revision)
        if decision.code == "duplicate":
            log.info("change already pending; request ignored", change_id=change.change_id)
            return
        if not decision.admitted:
            uow.emit(OrderChangeRejected(
                order_id=change.order_id, change_id=change.change_id,
                revision=change.order.revision, stage="logistics",
                reasons=(Reason(code=decision.code, message=decision.message),),
                requested_by=change.requested_by, customer=change.order.customer))
            log.info("change refused", change_id=change.change_id, reason=decision.code)
            return
        await orders.mark_change_pending(change.order_id, change.change_id, change.order.revision)
        uow.emit(OrderChangeAdmitted(**change.model_dump()))
        log.info("change admitted; dispatch waits for it", change_id=change.change_id,
                 revision=change.order.revision)

    async def on_change_reserved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeReserved]) -> None:
        """A change every service applied, settled (``domain.settle_change``): refused if the
        order was cancelled meanwhile, else ``order.changed`` and the dispatch it brings."""
        step = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, step.order_id)
        if lock.pending_change_id != step.change_id:
            log.info("change not pending here; step ignored", change_id=step.change_id,
                     pending=lock.pending_change_id)
            return
        parked = (await orders.contents([step.order_id]))[step.order_id].parked \
            if lock.parked else None
        settlement = domain.settle_change(
            order_status=lock.status, parked_revision=parked.order.revision if parked else None,
            change_revision=step.order.revision, stock_status=step.stock_status)
        if settlement == "refused":
            await orders.settle_change(step.order_id, None)
            uow.emit(OrderChangeRejected(
                order_id=step.order_id, change_id=step.change_id, revision=step.order.revision,
                stage="logistics", reasons=(Reason(code="order_cancelled",
                                                   message="the order was cancelled"),),
                requested_by=step.requested_by, customer=step.order.customer))
            log.info("change refused: order cancelled meanwhile", change_id=step.change_id)
            return
        await orders.settle_change(step.order_id, step.order)
        uow.emit(OrderChanged(
            order_id=step.order_id, change_id=step.change_id, channel=step.channel,
            external_id=step.external_id, revision=step.order.revision,
            previous_revision=step.previous_revision, changes=step.changes, order=step.order,
            totals=step.totals, previous_totals=step.previous_totals,
            review_status=step.review_status, stock_status=step.stock_status,
            requested_by=step.requested_by, customer=step.order.customer))
        log.info("order changed", change_id=step.change_id, revision=step.order.revision,
                 changes=list(step.changes), dispatch=settlement)
        if settlement == "parked":
            assert parked is not None and lock.parked_event_id is not None
            request = domain.DispatchRequest(step.order_id, step.order, parked.reservations,
                                             lock.parked_event_id)
        elif settlement == "change":
            request = domain.DispatchRequest(step.order_id, step.order, step.reservations,
                                             incoming.headers.event_id)
        else:
            return
        for lines in await self._dispatch(uow, [(incoming, request)]):
            _say(lines)

    async def on_change_rejected(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeRejected]) -> None:
        """A later step refused the change: the order goes on as it was, and a reservation
        parked meanwhile is dispatched now (``domain.release_parked``)."""
        refused = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, refused.order_id)
        if lock.pending_change_id != refused.change_id:
            return  # refused here (never pending), or already settled
        content = (await orders.contents([refused.order_id]))[refused.order_id] \
            if lock.parked else None
        await orders.settle_change(refused.order_id, None)
        log.info("change refused downstream; pending mark cleared", change_id=refused.change_id,
                 stage=refused.stage, reasons=[r.code for r in refused.reasons])
        if content is None or content.parked is None or \
                not domain.release_parked(order_status=lock.status, parked=lock.parked):
            return
        parked = content.parked
        assert lock.parked_event_id is not None
        request = domain.DispatchRequest(refused.order_id,
                                         domain.content_to_ship(content.order, parked.order),
                                         parked.reservations, lock.parked_event_id)
        for lines in await self._dispatch(uow, [(incoming, request)]):
            _say(lines)

    # -- cancellation ---------------------------------------------------------------------------
    async def on_cancel_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderCancelRequested]) -> None:
        request = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, request.order_id)
        dispatched = domain.dispatched_shipment_ids(
            await Shipments(uow.session).of_order(request.order_id))
        decision = domain.decide_cancel(order_status=lock.status,
                                        dispatched_shipment_ids=dispatched)
        if not decision.honoured:
            uow.emit(OrderCancelRefused(
                order_id=request.order_id, requested_by=request.requested_by,
                reasons=(Reason(code=decision.code, message=decision.message),),
                shipment_ids=tuple(dispatched)))
            log.info("cancel refused", order_id=request.order_id, reason=decision.code)
            return
        if decision.code == "already_cancelled":
            log.info("order already cancelled; request ignored", order_id=request.order_id)
            return
        await orders.mark_cancelled(request.order_id, request.reason, request.requested_by)
        kept = (await orders.contents([request.order_id]))[request.order_id].order \
            if lock.kept_revision is not None else None
        uow.emit(OrderCancelled(order_id=request.order_id, reason=request.reason,
                                requested_by=request.requested_by,
                                customer=kept.customer if kept else request.customer))
        log.info("order cancelled", order_id=request.order_id, reserved_before=kept is not None)

    # -- returns ------------------------------------------------------------------------------
    async def on_return_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[ReturnRequested]) -> None:
        request = incoming.event
        orders, returns = OrderRecords(uow.session), Returns(uow.session)
        lock = await _lock(orders, request.order_id)
        if await returns.lock(request.rma_id) is not None:
            log.info("return already decided; request ignored", rma_id=request.rma_id)
            return
        shipped = await Shipments(uow.session).of_order(request.order_id)
        order = (await orders.contents([request.order_id]))[request.order_id].order \
            if lock.kept_revision is not None else None
        refunds = domain.unit_refunds(order, await MasterData(uow.session).tax_rates(
            line.sku for line in order.lines)) if order else {}
        decision = domain.decide_return(
            requested=[domain.RequestedReturn(r.sku, r.quantity, r.condition) for r in request.lines],
            shipped=domain.shipped_units(shipped),
            already_returned=domain.already_returned(await returns.of_order(request.order_id)),
            delivered_or_dispatched_at=domain.return_window_start(shipped),
            requested_at=domain.as_aware(request.requested_at, self.settings.tz),
            policy=self.settings.return_policy, refunds=refunds)
        customer = order.customer if order else None
        if not decision.approved or order is None:
            reasons = tuple(Reason(code=c, field=f, message=m) for c, f, m in decision.reasons)
            await returns.add(
                rma_id=request.rma_id, order_id=request.order_id, status="refused",
                resolution=request.resolution, reasons=[r.model_dump() for r in reasons],
                lines=[r.model_dump() for r in request.lines], carrier=None, tracking_number=None,
                refund_amount=None, currency=None, requested_at=request.requested_at)
            uow.emit(ReturnRefused(order_id=request.order_id, rma_id=request.rma_id,
                                   reasons=reasons, customer=customer))
            log.info("return refused", rma_id=request.rma_id, reasons=[r.code for r in reasons])
            return
        lines = tuple(ReturnLine(sku=x.sku, warehouse_id=x.warehouse_id, quantity=x.quantity,
                                 refund=x.refund) for x in decision.lines)
        carrier = self.settings.return_carrier
        number = domain.return_tracking_number(request.rma_id, carrier)
        await returns.add(
            rma_id=request.rma_id, order_id=request.order_id, status="approved",
            resolution=request.resolution, reasons=[],
            lines=[x.model_dump(mode="json") for x in lines], carrier=carrier,
            tracking_number=number, refund_amount=decision.refund_amount,
            currency=order.currency, requested_at=request.requested_at)
        uow.emit(ReturnApproved(order_id=request.order_id, rma_id=request.rma_id, lines=lines,
                                resolution=request.resolution, carrier=carrier,
                                tracking_number=number, refund_amount=decision.refund_amount,
                                currency=order.currency, customer=customer))
        log.info("return approved", rma_id=request.rma_id, units=sum(x.quantity for x in lines),
                 resolution=request.resolution)

    async def on_return_received(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ReturnReceived]) -> None:
        """The refund of the received units (``domain.decide_receipt``) and, for an exchange,
        the new order (``domain.exchange_order``) pushed to intake."""
        receipt = incoming.event
        orders, returns = OrderRecords(uow.session), Returns(uow.session)
        await _lock(orders, receipt.order_id)
        stored = await returns.lock(receipt.rma_id)
        check = domain.check_receipt(stored, receipt.order_id)
        if check in ("never_requested", "refused"):
            raise UnknownReturn(f"return {receipt.rma_id} of order {receipt.order_id} was "
                                f"{check.replace('_', ' ')}")
        assert stored is not None
        if check == "other_order":
            raise ReturnMismatch(f"return {receipt.rma_id} belongs to order {stored.order_id}")
        if check == "received":
            log.info("return already received; receipt ignored", rma_id=receipt.rma_id)
            return
        decision = domain.decide_receipt(stored.lines,
                                         ((u.sku, u.quantity) for u in receipt.inspections),
                                         receipt.warehouse_id)
        if decision.over:
            raise ReturnMismatch(f"return {receipt.rma_id} received {decision.over}, approved "
                                 f"{decision.approved}")
        lines = tuple(ReturnLine(sku=x.sku, warehouse_id=x.warehouse_id, quantity=x.quantity,
                                 refund=x.refund) for x in decision.lines)
        refund_id = str(uuid.uuid5(_REFUND_NAMESPACE, receipt.rma_id))
        order = (await orders.contents([receipt.order_id]))[receipt.order_id].order
        assert order is not None  # an approved return's order was reserved here
        exchange_id = None
        if stored.resolution == "exchange":
            now = self.clock()
            replacement = domain.exchange_order(order, decision.received, receipt.rma_id, now)
            exchange_id = replacement.external_id
            uow.emit(OrderSubmitted(channel="canonical", external_id=exchange_id, received_at=now,
                                    payload=replacement.model_dump(mode="json")),
                     correlation_id=receipt.order_id)
        await returns.mark_received(
            receipt.rma_id, received_at=receipt.received_at,
            inspections=[u.model_dump() for u in receipt.inspections], refund_id=refund_id)
        uow.emit(RefundIssued(refund_id=refund_id, order_id=receipt.order_id,
                              rma_id=receipt.rma_id, customer_id=order.customer.id,
                              amount=decision.refund_amount, currency=str(stored.currency),
                              lines=lines, exchange_order_external_id=exchange_id))
        log.info("return received; refund issued", rma_id=receipt.rma_id,
                 amount=str(decision.refund_amount), exchange=exchange_id is not None)

    # -- tracking -----------------------------------------------------------------------------
    async def on_tracking_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[TrackingUpdated]) -> None:
        """A carrier's update moves its shipment on (``domain.track``), kept in its history
        with its outcome; a delivery, an exception and the delays the scan reveals are
        published."""
        update = incoming.event
        shipments = Shipments(uow.session)
        shipment = await shipments.lock(update.shipment_id)
        if shipment is None:
            raise UnknownShipment(f"no shipment {update.shipment_id} (tracking {update.tracking_number})")
        if not domain.same_parcel(
                order_id=shipment.order_id, carrier=shipment.carrier,
                tracking_number=shipment.tracking_number, update_order_id=update.order_id,
                update_carrier=update.carrier, update_tracking_number=update.tracking_number):
            raise TrackingMismatch(
                f"update for shipment {update.shipment_id} says order {update.order_id}, "
                f"{update.carrier} {update.tracking_number}; the shipment is order "
                f"{shipment.order_id}, {shipment.carrier} {shipment.tracking_number}")
        occurred_at = domain.as_aware(update.occurred_at, self.settings.tz)
        update_id = await shipments.record_tracking(shipment.shipment_id, update, occurred_at)
        if update_id is None:
            log.info("duplicate tracking update ignored", shipment_id=shipment.shipment_id,
                     status=update.status)
            return
        step = domain.track(shipment.tracking, status=update.status, occurred_at=occurred_at,
                            detail=update.detail, pickup_date=shipment.pickup_date,
                            promised_date=shipment.promised_date,
                            policy=self.settings.delay_policy)
        decision = step.decision
        await shipments.set_tracking_outcome(update_id, decision.outcome)
        if step.on_time is not None:  # delivered
            await shipments.move(shipment.shipment_id, decision.state, delivered_at=occurred_at,
                                 on_time=step.on_time)
            all_delivered = domain.order_delivered(
                s.status for s in await shipments.of_order(shipment.order_id))
            uow.emit(ShipmentDelivered(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                                       delivered_at=occurred_at, on_time=step.on_time,
                                       order_delivered=all_delivered))
            log.info("shipment delivered", shipment_id=shipment.shipment_id, on_time=step.on_time,
                     order_delivered=all_delivered)
            return
        if not decision.changed:  # stale, after delivery, or a repeat of the current step
            log.info("tracking update kept in the history only", shipment_id=shipment.shipment_id,
                     status=update.status, outcome=decision.outcome, current=shipment.status)
        elif step.exception_code is not None:
            detail = update.detail[:500]
            await shipments.move(shipment.shipment_id, decision.state,
                                 exception_code=step.exception_code, exception_detail=detail)
            uow.emit(ShipmentException(order_id=shipment.order_id,
                                       shipment_id=shipment.shipment_id,
                                       tracking_number=update.tracking_number,
                                       carrier=update.carrier, code=step.exception_code,
                                       detail=detail))
            log.info("carrier exception", shipment_id=shipment.shipment_id,
                     code=step.exception_code)
        else:
            await shipments.move(shipment.shipment_id, decision.state)
            log.info("shipment moved on", shipment_id=shipment.shipment_id,
                     status=decision.state.status, outcome=decision.outcome)
        await flag_delays(uow, shipments, shipment, step.findings, observed_at=occurred_at,
                          source="tracking")

    # -- master data ----------------------------------------------------------------------------
    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await MasterData(uow.session).upsert_warehouse(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await MasterData(uow.session).upsert_product(incoming.event)


def _dispatched(uow: UnitOfWork, cause: IncomingEvent[Any], order_id: str,
                stored: list[NewShipment]) -> list[Said]:
    """The events of a reservation's stored shipments, in its plans' order, answering ``cause``,
    and its log lines."""
    plans = [s.plan for s in stored]
    count = len(plans)  # an order is dispatched once: these are all its shipments
    said: list[Said] = []
    for shipment in stored:
        plan = shipment.plan
        if plan.warehouse is None:
            said.append((log.warning, "warehouse location unknown; zone taken as national",
                         {"warehouse_id": plan.warehouse_id}))
        event = _shipment_event(order_id, plan, shipment.tracking_number, count)
        uow.emit(event, cause=cause)
        if isinstance(event, ShipmentException):
            said.append((log.warning, "no carrier can take the shipment", {
                "shipment_id": plan.shipment_id, "warehouse_id": plan.warehouse_id,
                "reason": event.detail}))
    said.append((log.debug, "order dispatched", {
        "shipments": len(plans), "shipment_count": count,
        "carriers": [p.choice.option.label if isinstance(p.choice, CarrierChoice)
                     else "none" for p in plans],
        "rules": sorted({p.choice.rule for p in plans if isinstance(p.choice, CarrierChoice)})}))
    return said


def _shipment_event(order_id: str, plan: domain.PlannedShipment, number: str | None,
                    count: int) -> ShipmentDispatched | ShipmentException:
    """What a stored shipment announces: dispatched with its tracking number, or a
    ``no_carrier`` exception when no carrier took it (no number drawn); ``count``: the order's
    shipments in all, this one included."""
    choice = plan.choice
    if number is None or not isinstance(choice, CarrierChoice):
        reason = choice.reason if not isinstance(choice, CarrierChoice) else ""
        return ShipmentException(order_id=order_id, shipment_id=plan.shipment_id,
                                 tracking_number="", carrier="", code="no_carrier", detail=reason)
    option = choice.option
    return ShipmentDispatched(
        order_id=order_id, shipment_id=plan.shipment_id, warehouse_id=plan.warehouse_id,
        carrier=option.carrier.code, service=option.service.code, tracking_number=number,
        lines=plan.reserved_lines, weight_kg=plan.weight_kg, dispatched_at=plan.dispatched_at,
        promised_date=option.promised_date, requested_date=plan.requested_date,
        misses_requested_date=choice.misses_requested_date, rule=choice.rule,
        shipment_count=count)
