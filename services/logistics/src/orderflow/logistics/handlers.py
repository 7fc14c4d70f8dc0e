"""Logistics' handlers: decode, lock the order's record and load through the repository, call the
domain, store, emit. Outcomes (a shipment no carrier can take, a carrier exception, a delay) are
events; only an impossible event (tracking for a shipment logistics never made, a receipt for an
RMA it never approved) raises a domain error, and is dead-lettered with the reason."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from orderflow.contracts.events import (
    OrderCancelRequested,
    OrderChangeRejected,
    OrderChangeRequested,
    OrderChangeReserved,
    ProductUpdated,
    ReturnReceived,
    ReturnRequested,
    StockReserved,
    TrackingUpdated,
    WarehouseUpdated,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics import domain
from orderflow.logistics.repository import (
    MasterData,
    NewShipment,
    OrderRecords,
    Returns,
    Shipments,
)
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime import metrics
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def flag_delays(uow: UnitOfWork, shipments: Shipments, shipment: domain.ShipmentRecord,
                      findings: Sequence[domain.DelayFinding], *, observed_at: datetime,
                      source: str) -> list[domain.DelayFinding]:
    """Record each finding once per shipment and reason, and publish the new ones."""
    flagged = []
    for finding in findings:
        if await shipments.flag_delay(shipment, finding, observed_at=observed_at, source=source):
            uow.emit(domain.delay_event(shipment, finding))
            flagged.append(finding)
    if flagged:
        log.info("shipment delayed", shipment_id=shipment.shipment_id, source=source,
                 reasons=[f.reason for f in flagged])
    return flagged


async def _lock(orders: OrderRecords, order_id: str) -> domain.OrderLock:
    """The record of an event's one order, locked (``OrderRecords.lock``)."""
    return (await orders.lock([(order_id, None)]))[order_id]


async def _kept(orders: OrderRecords, lock: domain.OrderLock) -> CanonicalOrder | None:
    """The order's content as logistics keeps it (None: none yet)."""
    if lock.kept_revision is None:
        return None
    return (await orders.contents([lock.order_id]))[lock.order_id].order


async def _parked(orders: OrderRecords, lock: domain.OrderLock) -> domain.OrderContent | None:
    """The record's JSON when a reservation is parked on it (None: nothing parked)."""
    return (await orders.contents([lock.order_id]))[lock.order_id] if lock.parked else None


def _say(notes: Sequence[domain.Note]) -> None:
    for note in notes:
        getattr(log, note.level)(note.message, **note.fields)


def _announce(uow: UnitOfWork, outcome: domain.Outcome,
              cause: IncomingEvent[Any] | None = None) -> None:
    """Emit an outcome's events (answering ``cause``, else the event handled) and log its
    notes."""
    for event in outcome.events:
        uow.emit(event, cause=cause)
    _say(outcome.notes)


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
        reservation's fate decided (``domain.sort_reservations``), the parked ones stored with
        one statement and the others dispatched together (``_dispatch``) with the newest
        content. The notes of each reservation are logged after that, in order, in its event's
        log context."""
        orders = OrderRecords(uow.session)
        # the point of no return: a cancel request of these orders waits for these locks, or
        # this run waits for the cancel's and then finds the order cancelled
        locks = await orders.lock([(i.event.order_id, i.event.order) for i in run])
        sorted_run = domain.sort_reservations([(i.event, i.headers.event_id) for i in run], locks)
        await orders.park(sorted_run.parked)
        kept = await orders.contents(sorted_run.newer) if sorted_run.newer else {}
        requests = sorted_run.requests({order_id: c.order for order_id, c in kept.items()})
        notes = [list(n) for n in sorted_run.notes]
        dispatched = await self._dispatch(uow, [(run[p], request) for p, request in requests])
        for (position, _), outcome in zip(requests, dispatched, strict=True):
            notes[position] += outcome.notes
        for incoming, said in zip(run, notes, strict=True):
            with uow.handling(incoming):
                _say(said)

    async def _dispatch(self, uow: UnitOfWork,
                        requests: Sequence[tuple[IncomingEvent[Any], domain.DispatchRequest]],
                        ) -> list[domain.Outcome]:
        """Dispatch reservations (each with the event its events answer), as one after another
        (``domain.plan_dispatches``: an order with shipments already is not dispatched again):
        the orders' shipments counted and the warehouses and products read with one statement,
        a tracking number drawn per shipment a carrier takes, the shipments stored with one
        statement, then each one's events (``domain.announce_dispatch``). Returns each
        request's outcome, its notes not logged yet."""
        if not requests:
            return []
        shipments = Shipments(uow.session, self.randbelow)
        wanted = [request for _, request in requests]
        counts, sites, infos = await shipments.dispatch_data(
            (r.order_id for r in wanted),
            (line.warehouse_id for r in wanted for line in r.reservations),
            (line.sku for r in wanted for line in r.reservations))
        planned = domain.plan_dispatches(wanted, shipped=counts, warehouses=sites, products=infos,
                                         catalogue=self.settings.catalogue,
                                         dispatched_at=self.clock(), tz=self.settings.tz)
        new = [NewShipment.planned(plan, request, shipments.tracking_number(plan.choice))
               for request, plans in zip(wanted, planned, strict=True) for plan in plans or ()]
        stored = iter(await shipments.add(new, catalogue=self.settings.catalogue) if new else [])
        outcomes = []
        for (cause, request), plans in zip(requests, planned, strict=True):
            outcome = domain.announce_dispatch(request.order_id, None if plans is None else [
                (s.plan, s.tracking_number) for s in (next(stored) for _ in plans)])
            for event in outcome.events:
                uow.emit(event, cause=cause)
            outcomes.append(outcome)
        return outcomes

    async def _dispatch_one(self, uow: UnitOfWork, cause: IncomingEvent[Any],
                            request: domain.DispatchRequest | None) -> None:
        """The dispatch a settled or refused change releases, if any, logged at once."""
        if request is not None:
            for outcome in await self._dispatch(uow, [(cause, request)]):
                _say(outcome.notes)

    # -- changes: logistics admits them first and settles them last ------------------------------
    async def on_change_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderChangeRequested]) -> None:
        """A change request admitted or refused (``domain.admit_change``)."""
        change = incoming.event
        orders = OrderRecords(uow.session)
        # the same row lock as dispatch and cancel: a change racing a dispatch has one outcome
        lock = await _lock(orders, change.order_id)
        outcome = domain.admit_change(change, lock,
                                      await Shipments(uow.session).of_order(change.order_id))
        if outcome.pending:
            await orders.mark_change_pending(change.order_id, change.change_id,
                                             change.order.revision)
        _announce(uow, outcome)

    async def on_change_reserved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeReserved]) -> None:
        """A change every service applied, settled (``domain.settle_reserved_change``): refused
        if the order was cancelled meanwhile, else ``order.changed`` and the dispatch it
        brings."""
        step = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, step.order_id)
        outcome = domain.settle_reserved_change(step, lock, await _parked(orders, lock),
                                                incoming.headers.event_id)
        if outcome.settle:
            await orders.settle_change(step.order_id, outcome.content)
        _announce(uow, outcome)
        await self._dispatch_one(uow, incoming, outcome.dispatch)

    async def on_change_rejected(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeRejected]) -> None:
        """A later step refused the change: the order goes on as it was, and a reservation
        parked meanwhile is dispatched now (``domain.settle_refused_change``)."""
        refused = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, refused.order_id)
        outcome = domain.settle_refused_change(refused, lock, await _parked(orders, lock))
        if outcome.settle:
            await orders.settle_change(refused.order_id, outcome.content)
        _announce(uow, outcome)
        await self._dispatch_one(uow, incoming, outcome.dispatch)

    # -- cancellation ---------------------------------------------------------------------------
    async def on_cancel_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[OrderCancelRequested]) -> None:
        """A cancel request honoured until dispatch, else refused (``domain.cancel_order``)."""
        request = incoming.event
        orders = OrderRecords(uow.session)
        lock = await _lock(orders, request.order_id)
        outcome = domain.cancel_order(request, lock,
                                      await Shipments(uow.session).of_order(request.order_id),
                                      await _kept(orders, lock))
        if outcome.cancel:
            await orders.mark_cancelled(request.order_id, request.reason, request.requested_by)
        _announce(uow, outcome)

    # -- returns ------------------------------------------------------------------------------
    async def on_return_requested(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[ReturnRequested]) -> None:
        """A return request approved or refused as a whole (``domain.request_return``)."""
        request = incoming.event
        orders, returns = OrderRecords(uow.session), Returns(uow.session)
        lock = await _lock(orders, request.order_id)
        order = await _kept(orders, lock)
        outcome = domain.request_return(
            request, stored=await returns.lock(request.rma_id), order=order,
            shipments=await Shipments(uow.session).of_order(request.order_id),
            earlier=await returns.of_order(request.order_id),
            tax_rates=await MasterData(uow.session).tax_rates(
                line.sku for line in order.lines) if order else {},
            policy=self.settings.return_policy, tz=self.settings.tz,
            carrier=self.settings.return_carrier)
        if outcome.record is not None:
            await returns.add(outcome.record)
        _announce(uow, outcome)

    async def on_return_received(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ReturnReceived]) -> None:
        """The refund of the received units and, for an exchange, the new order pushed to
        intake (``domain.receive_return``)."""
        receipt = incoming.event
        orders, returns = OrderRecords(uow.session), Returns(uow.session)
        lock = await _lock(orders, receipt.order_id)
        outcome = domain.receive_return(receipt, await returns.lock(receipt.rma_id),
                                        await _kept(orders, lock), self.clock())
        if outcome.exchange is not None:
            uow.emit(outcome.exchange, correlation_id=receipt.order_id)
        if outcome.refund_id is not None:
            await returns.mark_received(receipt, outcome.refund_id)
        _announce(uow, outcome)

    # -- tracking -----------------------------------------------------------------------------
    async def on_tracking_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[TrackingUpdated]) -> None:
        """A carrier's update moves its shipment on (``domain.track_update``), kept in its
        history with its outcome; a delivery (``domain.announce_delivery``), an exception and
        the delays the scan reveals are published."""
        update = incoming.event
        shipments = Shipments(uow.session)
        shipment, occurred_at = domain.accept_update(await shipments.lock(update.shipment_id),
                                                     update, self.settings.tz)
        update_id = await shipments.record_tracking(shipment.shipment_id, update, occurred_at)
        if update_id is None:
            log.info("duplicate tracking update ignored", shipment_id=shipment.shipment_id,
                     status=update.status)
            return
        scan = domain.track_update(shipment, update, occurred_at, self.settings.delay_policy)
        await shipments.set_tracking_outcome(update_id, scan.outcome)
        if scan.move is not None:
            await shipments.move(shipment.shipment_id, scan.move)
        if scan.on_time is not None:  # delivered: told with the order's other shipments
            scan = domain.announce_delivery(shipment, scan,
                                            await shipments.of_order(shipment.order_id))
            uow.on_commit(metrics.SHIPMENTS_DELIVERED.labels(
                uow.service, "true" if scan.on_time else "false").inc)
        _announce(uow, scan)
        await flag_delays(uow, shipments, shipment, scan.findings, observed_at=occurred_at,
                          source="tracking")

    # -- master data ----------------------------------------------------------------------------
    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await MasterData(uow.session).upsert_warehouse(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await MasterData(uow.session).upsert_product(incoming.event)
