"""Logistics' handlers: decode, call the rules, store, stage the events. Outcomes (a shipment no
carrier can take, a carrier exception, a delay) are events; only an impossible event (tracking for
a shipment logistics never made) raises, and is dead-lettered with the reason."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
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
    ReservedLine,
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
from orderflow.contracts.order import CanonicalOrder, OrderLine
from orderflow.logistics import domain
from orderflow.logistics.carriers import CarrierChoice
from orderflow.logistics.repository import LogisticsRepository, NewShipment, ShipmentRecord
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


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


async def flag_delays(uow: UnitOfWork, repo: LogisticsRepository, shipment: ShipmentRecord,
                      findings: list[domain.DelayFinding], *, observed_at: datetime,
                      source: str) -> list[domain.DelayFinding]:
    """Record each finding once per shipment and reason, and publish the new ones."""
    flagged = []
    for finding in findings:
        if await repo.flag_delay(shipment, finding, observed_at=observed_at, source=source):
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



class LogisticsHandlers:
    """The subscriptions' handlers, with the settings, clock and randomness they use."""

    def __init__(self, settings: LogisticsSettings, clock: Clock = utc_now,
                 randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.settings = settings
        self.clock = clock
        self.randbelow = randbelow

    async def on_stocks_reserved(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[StockReserved]]) -> None:
        """A run of reservations, set-based: the orders' records created and locked in sorted
        order, their shipments counted and the warehouses and products read with one statement;
        then each reservation decided in the run's order as one at a time would (cancelled: not
        dispatched; a change pending: parked; dispatched already, by an earlier reservation of
        the run too: ignored; else planned by the domain); then the shipments stored with one
        statement and the parked reservations with one. The log lines of each reservation are
        written after that, in order, with its event's context."""
        repo = LogisticsRepository(uow.session, self.randbelow)
        # the point of no return: a cancel request of these orders waits for these locks, or
        # this run waits for the cancel's and then finds the order cancelled
        locks = await repo.lock_orders([(i.event.order_id, i.event.order) for i in run])
        to_dispatch = [i for i in run if locks[i.event.order_id].status != "cancelled"
                       and locks[i.event.order_id].pending_change_id is None]
        newer = {i.event.order_id for i in to_dispatch
                 if (locks[i.event.order_id].kept_revision or 0) > i.event.order.revision}
        # a settled change may have brought newer content (address, date) than a reservation
        kept = await repo.kept_orders(newer) if newer else {}
        counts, sites, infos = await repo.counts_and_master_data(
            (i.event.order_id for i in to_dispatch),
            (r.warehouse_id for i in to_dispatch for r in i.event.reservations),
            (r.sku for i in to_dispatch for r in i.event.reservations),
        ) if to_dispatch else ({}, {}, {})
        catalogue = self.settings.catalogue
        said: dict[str, list[tuple[Callable[..., Any], str, dict[str, Any]]]] = {}
        parked: dict[str, tuple[str, str, str]] = {}  # the last reservation of an order wins
        shipments: list[NewShipment] = []
        dispatching: set[str] = set()  # the reservations planned (with shipments or none)
        for incoming in run:
            reserved = incoming.event
            lines = said.setdefault(incoming.headers.event_id, [])
            lock = locks[reserved.order_id]
            if lock.status == "cancelled":
                lines.append((log.info, "order cancelled before dispatch; reservation not "
                              "dispatched", {"order_id": reserved.order_id}))
                continue
            if lock.pending_change_id is not None:
                # a change is being applied: dispatch waits until it is settled
                parked.pop(reserved.order_id, None)
                parked[reserved.order_id] = (reserved.order_id, reserved.model_dump_json(),
                                             incoming.headers.event_id)
                lines.append((log.info, "change pending; reservation parked",
                              {"order_id": reserved.order_id,
                               "change_id": lock.pending_change_id}))
                continue
            if counts.get(reserved.order_id, 0):
                # the order was already dispatched from a settled change's reservations (or
                # by an earlier reservation of this run)
                lines.append((log.info, "order already dispatched; reservation ignored",
                              {"order_id": reserved.order_id}))
                continue
            order = kept.get(reserved.order_id, reserved.order)
            plans = domain.plan_shipments(
                order_id=reserved.order_id, source_event_id=incoming.headers.event_id,
                order=order, reservations=reserved.reservations, warehouses=sites,
                products=infos, catalogue=catalogue, dispatched_at=self.clock(),
                tz=self.settings.tz)
            counts[reserved.order_id] = len(plans)
            dispatching.add(incoming.headers.event_id)
            for plan in plans:
                choice = plan.choice
                shipments.append(NewShipment(
                    plan, external_id=order.external_id, customer_id=order.customer.id,
                    priority=order.priority, ship_to=order.shipping_address,
                    source_event_id=incoming.headers.event_id,
                    tracking_number=repo.tracking_number(choice)
                    if isinstance(choice, CarrierChoice) else None))
        if parked:
            await repo.park_reservations(list(parked.values()))
        if shipments:
            shipments = await repo.add_shipments(shipments, catalogue=catalogue)
        by_event: dict[str, list[NewShipment]] = {}
        for shipment in shipments:
            by_event.setdefault(shipment.source_event_id, []).append(shipment)
        for incoming in run:
            event_id = incoming.headers.event_id
            lines = said[event_id]
            if event_id in dispatching:
                self._dispatched(uow, incoming, by_event.get(event_id, []), lines)
            with uow.handling(incoming):
                for say, message, fields in lines:
                    say(message, **fields)

    @staticmethod
    def _dispatched(uow: UnitOfWork, incoming: IncomingEvent[StockReserved],
                    stored: list[NewShipment],
                    lines: list[tuple[Callable[..., Any], str, dict[str, Any]]]) -> None:
        """The events of a reservation's stored shipments (in its plans' order), as ``_dispatch``
        emits them, and its log lines."""
        order_id = incoming.event.order_id
        plans = [s.plan for s in stored]
        count = len(plans)  # no shipment before: a reservation of an order with any is ignored
        for shipment in stored:
            plan = shipment.plan
            if plan.warehouse is None:
                lines.append((log.warning, "warehouse location unknown; zone taken as national",
                              {"warehouse_id": plan.warehouse_id}))
            event = _shipment_event(order_id, plan, shipment.tracking_number, count)
            uow.emit(event, cause=incoming)
            if isinstance(event, ShipmentException):
                lines.append((log.warning, "no carrier can take the shipment", {
                    "shipment_id": plan.shipment_id, "warehouse_id": plan.warehouse_id,
                    "reason": event.detail}))
        lines.append((log.debug, "order dispatched", {
            "shipments": len(plans), "shipment_count": count,
            "carriers": [p.choice.option.label if isinstance(p.choice, CarrierChoice)
                         else "none" for p in plans],
            "rules": sorted({p.choice.rule for p in plans
                             if isinstance(p.choice, CarrierChoice)})}))

    async def _dispatch(self, uow: UnitOfWork, repo: LogisticsRepository, order_id: str,
                        order: CanonicalOrder, reservations: Sequence[ReservedLine],
                        source_event_id: str, *, shipped_before: int | None = None) -> None:
        """``shipped_before``: the order's shipments so far, when the caller just counted them."""
        catalogue = self.settings.catalogue
        sites = await repo.warehouse_sites(r.warehouse_id for r in reservations)
        infos = await repo.product_infos(r.sku for r in reservations)
        plans = domain.plan_shipments(
            order_id=order_id, source_event_id=source_event_id, order=order,
            reservations=reservations, warehouses=sites, products=infos,
            catalogue=catalogue, dispatched_at=self.clock(), tz=self.settings.tz)
        if shipped_before is None:
            shipped_before = await repo.shipment_count(order_id)
        count = shipped_before + len(plans)
        for plan in plans:
            if plan.warehouse is None:
                log.warning("warehouse location unknown; zone taken as national",
                            warehouse_id=plan.warehouse_id)
            number = await repo.add_shipment(
                plan, external_id=order.external_id, customer_id=order.customer.id,
                priority=order.priority, ship_to=order.shipping_address, catalogue=catalogue,
                source_event_id=source_event_id)
            event = _shipment_event(order_id, plan, number, count)
            uow.emit(event)
            if isinstance(event, ShipmentException):
                log.warning("no carrier can take the shipment", shipment_id=plan.shipment_id,
                            warehouse_id=plan.warehouse_id, reason=event.detail)
        log.debug("order dispatched", shipments=len(plans), shipment_count=count,
                  carriers=[p.choice.option.label if isinstance(p.choice, CarrierChoice)
                            else "none" for p in plans],
                  rules=sorted({p.choice.rule for p in plans if isinstance(p.choice, CarrierChoice)}))

    # -- changes: logistics admits them first and settles them last ------------------------------
    async def on_change_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderChangeRequested]) -> None:
        change = incoming.event
        repo = LogisticsRepository(uow.session)
        # the same row lock as dispatch and cancel: a change racing a dispatch has one outcome
        record = await repo.lock_order(change.order_id)
        known = record.order.revision if record.order is not None else record.revision
        decision = domain.decide_change(
            order_status=record.status,
            dispatched_shipment_ids=await repo.dispatched_shipment_ids(change.order_id),
            pending_change_id=record.pending_change_id, known_revision=known,
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
        await repo.mark_change_pending(change.order_id, change.change_id, change.order.revision)
        uow.emit(OrderChangeAdmitted(**change.model_dump()))
        log.info("change admitted; dispatch waits for it", change_id=change.change_id,
                 revision=change.order.revision)

    async def on_change_reserved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeReserved]) -> None:
        step = incoming.event
        repo = LogisticsRepository(uow.session, self.randbelow)
        record = await repo.lock_order(step.order_id)
        if record.pending_change_id != step.change_id:
            log.info("change not pending here; step ignored", change_id=step.change_id,
                     pending=record.pending_change_id)
            return
        if record.status == "cancelled":
            # cancelled while the change was under way: the cancellation wins, the change is
            # refused (review undoes its part; inventory released everything on the cancel)
            await repo.settle_change(step.order_id, None)
            uow.emit(OrderChangeRejected(
                order_id=step.order_id, change_id=step.change_id, revision=step.order.revision,
                stage="logistics", reasons=(Reason(code="order_cancelled",
                                                   message="the order was cancelled"),),
                requested_by=step.requested_by, customer=step.order.customer))
            log.info("change refused: order cancelled meanwhile", change_id=step.change_id)
            return
        parked = StockReserved.model_validate(record.parked_reservation) \
            if record.parked_reservation else None
        source = domain.dispatch_after_change(
            parked_revision=parked.order.revision if parked else None,
            change_revision=step.order.revision, stock_status=step.stock_status)
        await repo.settle_change(step.order_id, step.order)
        uow.emit(OrderChanged(
            order_id=step.order_id, change_id=step.change_id, channel=step.channel,
            external_id=step.external_id, revision=step.order.revision,
            previous_revision=step.previous_revision, changes=step.changes, order=step.order,
            totals=step.totals, previous_totals=step.previous_totals,
            review_status=step.review_status, stock_status=step.stock_status,
            requested_by=step.requested_by, customer=step.order.customer))
        log.info("order changed", change_id=step.change_id, revision=step.order.revision,
                 changes=list(step.changes), dispatch=source)
        if source == "none" or await repo.shipment_count(step.order_id):
            return
        if source == "parked":
            assert parked is not None and record.parked_event_id is not None
            await self._dispatch(uow, repo, step.order_id, step.order, parked.reservations,
                                 record.parked_event_id)
        else:
            await self._dispatch(uow, repo, step.order_id, step.order, step.reservations,
                                 incoming.headers.event_id)

    async def on_change_rejected(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeRejected]) -> None:
        """A later step refused the change: the order goes on as it was, and a reservation
        parked meanwhile is dispatched now."""
        refused = incoming.event
        repo = LogisticsRepository(uow.session, self.randbelow)
        record = await repo.lock_order(refused.order_id)
        if record.pending_change_id != refused.change_id:
            return  # refused here (never pending), or already settled
        await repo.settle_change(refused.order_id, None)
        log.info("change refused downstream; pending mark cleared", change_id=refused.change_id,
                 stage=refused.stage, reasons=[r.code for r in refused.reasons])
        if record.parked_reservation is None or record.status == "cancelled" \
                or await repo.shipment_count(refused.order_id):
            return
        parked = StockReserved.model_validate(record.parked_reservation)
        order = record.order if record.order is not None and \
            record.order.revision > parked.order.revision else parked.order
        assert record.parked_event_id is not None
        await self._dispatch(uow, repo, refused.order_id, order, parked.reservations,
                             record.parked_event_id)

    async def on_tracking_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[TrackingUpdated]) -> None:
        update = incoming.event
        repo = LogisticsRepository(uow.session)
        shipment = await repo.lock_shipment(update.shipment_id)
        if shipment is None:
            raise UnknownShipment(f"no shipment {update.shipment_id} (tracking {update.tracking_number})")
        if (shipment.order_id, shipment.carrier, shipment.tracking_number) != (
                update.order_id, update.carrier, update.tracking_number):
            raise TrackingMismatch(
                f"update for shipment {update.shipment_id} says order {update.order_id}, "
                f"{update.carrier} {update.tracking_number}; the shipment is order "
                f"{shipment.order_id}, {shipment.carrier} {shipment.tracking_number}")
        tz = self.settings.tz
        occurred_at = domain.as_aware(update.occurred_at, tz)
        update_id = await repo.record_tracking(shipment.shipment_id, update, occurred_at)
        if update_id is None:
            log.info("duplicate tracking update ignored", shipment_id=shipment.shipment_id,
                     status=update.status)
            return
        decision = domain.apply_tracking(shipment.tracking, update.status, occurred_at)
        await repo.set_tracking_outcome(update_id, decision.outcome)
        if not decision.changed:
            log.info("tracking update kept in the history only", shipment_id=shipment.shipment_id,
                     status=update.status, outcome=decision.outcome, current=shipment.status)
            if decision.outcome != "repeated":
                return  # stale, or after delivery: says nothing about the shipment now
        if decision.outcome == "delivered":
            assert shipment.promised_date is not None
            on_time = domain.delivered_on_time(occurred_at, shipment.promised_date, tz)
            await repo.move(shipment.shipment_id, decision.state, delivered_at=occurred_at,
                            on_time=on_time)
            all_delivered = domain.order_delivered(await repo.statuses_of_order(shipment.order_id))
            uow.emit(ShipmentDelivered(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                                       delivered_at=occurred_at, on_time=on_time,
                                       order_delivered=all_delivered))
            log.info("shipment delivered", shipment_id=shipment.shipment_id, on_time=on_time,
                     order_delivered=all_delivered)
            return
        if decision.outcome == "exception":
            code = domain.exception_code(update.detail)
            await repo.move(shipment.shipment_id, decision.state, exception_code=code,
                            exception_detail=update.detail[:500])
            uow.emit(ShipmentException(order_id=shipment.order_id,
                                       shipment_id=shipment.shipment_id,
                                       tracking_number=update.tracking_number,
                                       carrier=update.carrier, code=code,
                                       detail=update.detail[:500]))
            log.info("carrier exception", shipment_id=shipment.shipment_id, code=code)
        elif decision.changed:
            await repo.move(shipment.shipment_id, decision.state)
            log.info("shipment moved on", shipment_id=shipment.shipment_id,
                     status=decision.state.status, outcome=decision.outcome)
        # the carrier's own clock is evidence too: a scan on the promised afternoon that is not
        # "out for delivery" (a repeated "in transit" included) says the shipment will be late,
        # before the watcher's next round
        findings = domain.assess_delays(
            status=decision.state.status, pickup_date=shipment.pickup_date,
            promised_date=shipment.promised_date, status_at=decision.state.status_at,
            now=occurred_at, policy=self.settings.delay_policy)
        await flag_delays(uow, repo, shipment, findings, observed_at=occurred_at, source="tracking")

    async def on_cancel_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderCancelRequested]) -> None:
        request = incoming.event
        repo = LogisticsRepository(uow.session)
        record = await repo.lock_order(request.order_id)
        dispatched = await repo.dispatched_shipment_ids(request.order_id)
        decision = domain.decide_cancel(order_status=record.status,
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
        await repo.mark_cancelled(request.order_id, request.reason, request.requested_by)
        uow.emit(OrderCancelled(order_id=request.order_id, reason=request.reason,
                                requested_by=request.requested_by,
                                customer=record.order.customer if record.order
                                else request.customer))
        log.info("order cancelled", order_id=request.order_id,
                 reserved_before=record.order is not None)

    async def on_return_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[ReturnRequested]) -> None:
        request = incoming.event
        repo = LogisticsRepository(uow.session)
        record = await repo.lock_order(request.order_id)
        if await repo.lock_return(request.rma_id) is not None:
            log.info("return already decided; request ignored", rma_id=request.rma_id)
            return
        shipped, window_start = await repo.shipped_units(request.order_id)
        order = record.order
        refunds = domain.unit_refunds(
            order, await repo.tax_rates(line.sku for line in order.lines)) if order else {}
        decision = domain.decide_return(
            requested=[domain.RequestedReturn(r.sku, r.quantity, r.condition) for r in request.lines],
            shipped=shipped, already_returned=await repo.returned_units(request.order_id),
            delivered_or_dispatched_at=window_start,
            requested_at=domain.as_aware(request.requested_at, self.settings.tz),
            policy=self.settings.return_policy, refunds=refunds)
        customer = order.customer if order else None
        if not decision.approved or order is None:
            reasons = tuple(Reason(code=c, field=f, message=m) for c, f, m in decision.reasons)
            await repo.add_return(
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
        await repo.add_return(
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
        receipt = incoming.event
        repo = LogisticsRepository(uow.session)
        record = await repo.lock_order(receipt.order_id)
        row = await repo.lock_return(receipt.rma_id)
        if row is None or row.status == "refused":
            raise UnknownReturn(f"return {receipt.rma_id} of order {receipt.order_id} was "
                                f"{'never requested' if row is None else 'refused'}")
        if row.order_id != receipt.order_id:
            raise ReturnMismatch(f"return {receipt.rma_id} belongs to order {row.order_id}")
        if row.status == "received":
            log.info("return already received; receipt ignored", rma_id=receipt.rma_id)
            return
        approved: dict[str, int] = {}
        refund_of: dict[str, Decimal] = {}
        for line in row.lines:
            approved[line["sku"]] = approved.get(line["sku"], 0) + int(line["quantity"])
            refund_of[line["sku"]] = refund_of.get(line["sku"], Decimal("0")) + Decimal(line["refund"])
        received: dict[str, int] = {}
        for unit in receipt.inspections:
            received[unit.sku] = received.get(unit.sku, 0) + unit.quantity
        over = {sku: q for sku, q in received.items() if q > approved.get(sku, 0)}
        if over:
            raise ReturnMismatch(f"return {receipt.rma_id} received {over}, approved {approved}")
        # what the received units refund: their share of the approved lines' refund
        lines = tuple(ReturnLine(
            sku=sku, warehouse_id=receipt.warehouse_id, quantity=q,
            refund=(refund_of[sku] * q / approved[sku]).quantize(Decimal("0.01"), "ROUND_HALF_UP"))
            for sku, q in sorted(received.items()))
        amount = sum((x.refund for x in lines), Decimal("0.00"))
        refund_id = str(uuid.uuid5(_REFUND_NAMESPACE, receipt.rma_id))
        order = record.order
        assert order is not None  # an approved return's order was reserved here
        exchange_id = None
        if row.resolution == "exchange":
            exchange_id = domain.exchange_external_id(order.external_id, receipt.rma_id)
            replacement = order.model_copy(update={
                "external_id": exchange_id, "placed_at": self.clock(), "revision": 1,
                "lines": tuple(line.model_copy(update={"discount": Decimal("0.00")})
                               for line in _replacement_lines(order, received)),
                "promo_code": None, "shipping_fee": Decimal("0.00"), "stated_total": None,
                "amount_paid": Decimal("0.00"),
                "notes": f"exchange for order {order.external_id}, return {receipt.rma_id}"})
            uow.emit(OrderSubmitted(channel="canonical", external_id=exchange_id,
                                    received_at=self.clock(),
                                    payload=replacement.model_dump(mode="json")),
                     correlation_id=receipt.order_id)
        await repo.mark_return_received(
            receipt.rma_id, received_at=receipt.received_at,
            inspections=[u.model_dump() for u in receipt.inspections], refund_id=refund_id)
        uow.emit(RefundIssued(refund_id=refund_id, order_id=receipt.order_id,
                              rma_id=receipt.rma_id, customer_id=order.customer.id, amount=amount,
                              currency=str(row.currency), lines=lines,
                              exchange_order_external_id=exchange_id))
        log.info("return received; refund issued", rma_id=receipt.rma_id, amount=str(amount),
                 exchange=exchange_id is not None)

    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await LogisticsRepository(uow.session).upsert_warehouse(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await LogisticsRepository(uow.session).upsert_product(incoming.event)


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


def _replacement_lines(order: CanonicalOrder, received: dict[str, int]) -> list[OrderLine]:
    """The exchange order's lines: the received units of each SKU, at the original unit price."""
    prices = {line.sku: line for line in order.lines}
    return [prices[sku].model_copy(update={"quantity": q}) for sku, q in sorted(received.items())
            if sku in prices]
