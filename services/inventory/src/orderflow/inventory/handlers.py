"""Inventory's handlers: decode, lock and read through the repository, call the domain, store,
emit. The outcomes are events staged on the unit of work, never exceptions (except for an event
that cannot be true, which the consumer dead-letters).

Steps several handlers share, the HTTP routes and the expiry job use too: ``reserve`` (plan on the
stock, then take what the plan chose), ``release``, ``fill_backorders``, ``check_low``."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from orderflow.contracts.events import (
    OrderApproved,
    OrderCancelled,
    OrderChangeApproved,
    OrderChangeRejected,
    OrderChangeReserved,
    ProductUpdated,
    Reason,
    ReturnReceived,
    ShipmentDispatched,
    StockAdjusted,
    StockLow,
    StockReceived,
    StockReleased,
    StockStatus,
    WarehouseUpdated,
)
from orderflow.inventory import domain
from orderflow.inventory.repository import InventoryRepository
from orderflow.inventory.settings import InventoryPolicy
from orderflow.runtime import metrics
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class InventoryHandlers:
    """One handler per subscribed topic, sharing the company's policy."""

    def __init__(self, policy: InventoryPolicy) -> None:
        self.policy = policy

    async def lock_stock(self, uow: UnitOfWork, events: list[IncomingEvent[Any]]) -> None:
        """``prepare_batch``: the stock rows the batch's runs may touch (``domain.stock_touched``),
        locked at once in one sorted order before the first. Each run locks its own rows sorted
        too, but a batch holds several runs (approvals, shipments, approvals...): without this,
        two replicas' batches took them crosswise and deadlocked."""
        skus, holders = domain.stock_touched(incoming.event for incoming in events)
        await InventoryRepository(uow.session).lock_stock_ahead(skus, holders)

    async def on_orders_approved(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[OrderApproved]]) -> None:
        """A run of approvals, set-based (one approval is a run of one): the orders' keys locked
        in one sorted order, what is known of them read at once, the new ones planned in the
        run's order on the stock the ones before them left and taken at once, then written with
        one statement per table; each approval's events and log lines in its own context."""
        repo = InventoryRepository(uow.session)
        ids = [incoming.event.order_id for incoming in run]
        await repo.lock_order_keys(ids)
        admitted = domain.admit_approvals([i.event for i in run], await repo.approval_contexts(ids))
        new = [a for a in admitted if a.reserves]
        ranks = await rankings(repo, (a.order.shipping_address.province for a in new))
        reservations, rows = await reserve(repo, [
            domain.Want(a.order_id, domain.need_of(a.order), ranks[a.order.shipping_address.province])
            for a in new], self.policy)
        planned = domain.first_attempts(admitted, reservations, rows, now=_now(), ttl=ttl(self.policy))
        await repo.add_orders(planned.new)
        await repo.hold(reservations.holds)
        falls = planned.lows.falls(await repo.set_low_flags(planned.lows.flags()))
        for tag, (incoming, admission, attempt) in enumerate(
                zip(run, admitted, planned.attempts, strict=True)):
            with uow.handling(incoming):
                _announce_approval(uow, admission, attempt)
                announce_lows(uow, falls.get(tag, ()))

    async def on_order_cancelled(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderCancelled]) -> None:
        """The order's tombstone kept (a late approval is skipped), its reservations given back
        and it taken out of the backorder queue."""
        cancelled = incoming.event
        structlog.contextvars.bind_contextvars(order_id=cancelled.order_id)
        repo = InventoryRepository(uow.session)
        await repo.lock_order_keys([cancelled.order_id])
        if not await repo.add_cancelled(cancelled.order_id, cancelled.reason):
            log.info("order already cancelled; ignored")
            return
        await release(uow, self.policy, cancelled.order_id, f"cancelled: {cancelled.reason}"[:500])

    async def on_change_approved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeApproved]) -> None:
        """A change review accepted: only the difference moves, all or nothing
        (``domain.change_gate``, ``plan_change``, ``change_outcome``); publishes
        order.change-reserved, or order.change-rejected with the reason."""
        step = incoming.event
        structlog.contextvars.bind_contextvars(order_id=step.order_id)
        repo = InventoryRepository(uow.session)
        await repo.lock_order_keys([step.order_id])
        cancelled = (await repo.approval_contexts([step.order_id]))[step.order_id].cancelled
        record = None if cancelled else await repo.lock_order(step.order_id)
        gate = domain.change_gate(cancelled, record, step.order.revision)
        if gate.step == "refuse":
            _refuse_change(uow, step, gate.code, gate.message)
        elif gate.step == "keep_early":
            await repo.save_early_revision(step.order_id, step.order)
            _change_reserved(uow, step, "not_allocated")
            log.info("change of an order not approved here yet; kept for its approval",
                     change_id=step.change_id)
        elif record is not None and gate.step == "confirm":  # its approval brought this content
            _change_reserved(uow, step, "reserved" if record.status == "reserved"
                             else "backordered", await repo.holds(step.order_id))
        elif record is not None:
            await self._apply_change(uow, repo, step, record)

    async def _apply_change(self, uow: UnitOfWork, repo: InventoryRepository,
                            step: OrderChangeApproved, record: domain.OrderRecord) -> None:
        order_id, new = step.order_id, step.order
        need = domain.need_of(new)
        ranking = (await rankings(repo, [new.shipping_address.province]))[
            new.shipping_address.province]
        plan = domain.plan_change(need, await repo.holds(order_id), record.ordered, ranking)
        reason = f"changed: revision {new.revision}"
        savepoint = await uow.session.begin_nested()
        try:
            await repo.release_picks(order_id, plan.release, reason)
            await repo.change_order(order_id, new, plan.ordered, plan.short)
            extra = {sku: q for sku, q in plan.short.items() if q > 0}
            reservations, _ = await reserve(repo, [domain.Want(order_id, extra, ranking)],
                                            self.policy)
            allocation = reservations.allocations[0]
            assert allocation is not None
            short = domain.short_after(plan.short, allocation)
            outcome = domain.change_outcome(record.status, short)
            if outcome == "refused":
                await savepoint.rollback()
                missing = ", ".join(f"{k} short {v}" for k, v in sorted(short.items()) if v)
                _refuse_change(uow, step, "insufficient_stock", f"the extra units are not in "
                               f"stock ({missing}); the order stays as it was")
                return
            await repo.hold(reservations.holds)
            await repo.set_short(order_id, short)
        except BaseException:
            if savepoint.is_active:
                await savepoint.rollback()
            raise
        await savepoint.commit()
        if outcome == "reserved":
            now = _now()
            await repo.mark_reserved(order_id, now, domain.expires_at(now, ttl(self.policy)))
        # else: a backordered order stays backordered (a reserved one never gets here short)
        if plan.release:
            uow.emit(StockReleased(order_id=order_id, reservations=domain.reserved_lines(
                plan.release), reason=reason))
        _change_reserved(uow, step, "reserved" if outcome == "reserved" else "backordered",
                         await repo.holds(order_id), plan.release)
        log.info("change applied to the stock", change_id=step.change_id, outcome=outcome,
                 released=sum(p.quantity for p in plan.release),
                 short={k: v for k, v in short.items() if v})
        await check_low(uow, repo, set(need) | set(record.ordered), decreased=True)
        await fill_backorders(uow, repo, self.policy, {p.sku for p in plan.release})

    async def on_return_received(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ReturnReceived]) -> None:
        """Restocked units are a receipt (and may fill backorders), scrapped units a receipt
        written off by an adjustment, so the ledger shows both; an RMA is taken back once."""
        r = incoming.event
        structlog.contextvars.bind_contextvars(order_id=r.order_id)
        repo = InventoryRepository(uow.session)
        units = [(u.sku, u.quantity, u.outcome) for u in r.inspections]
        restocked = sum(q for _, q, outcome in units if outcome == "restock")
        scrapped = sum(q for _, q, outcome in units if outcome == "scrap")
        if not await repo.add_return(r.rma_id, r.order_id, r.warehouse_id, restocked, scrapped):
            log.info("return already taken back; ignored", rma_id=r.rma_id)
            return
        reference = f"return {r.rma_id}"
        for sku, quantity, outcome in sorted(units):
            await repo.receive(r.warehouse_id, sku, quantity, reference)
            if outcome == "scrap" and await repo.adjust(
                    r.warehouse_id, sku, -quantity, f"scrapped: {reference}") is None:
                raise domain.ImpossibleStockMovement(
                    f"scrapping {quantity} x {sku} of {reference}")
        skus = {sku for sku, _, outcome in units if outcome == "restock"}
        await check_low(uow, repo, skus, decreased=False)
        await fill_backorders(uow, repo, self.policy, skus)
        log.info("return taken back", rma_id=r.rma_id, restocked=restocked, scrapped=scrapped)

    async def on_stock_received(self, uow: UnitOfWork,
                                incoming: IncomingEvent[StockReceived]) -> None:
        r = incoming.event
        repo = InventoryRepository(uow.session)
        await repo.receive(r.warehouse_id, r.sku, r.quantity,
                           r.reference or incoming.headers.event_id)
        await check_low(uow, repo, {r.sku}, decreased=False)
        await fill_backorders(uow, repo, self.policy, {r.sku})

    async def on_stock_adjusted(self, uow: UnitOfWork,
                                incoming: IncomingEvent[StockAdjusted]) -> None:
        a = incoming.event
        if a.delta == 0:
            return
        repo = InventoryRepository(uow.session)
        if await repo.adjust(a.warehouse_id, a.sku, a.delta, a.reason) is None:
            free = await repo.free_units(a.warehouse_id, a.sku)
            raise domain.ImpossibleStockMovement(
                f"adjustment {a.delta} of {a.sku} in {a.warehouse_id} exceeds its {free} free "
                "units; release the reservations that hold the rest first, then replay this event")
        await check_low(uow, repo, {a.sku}, decreased=a.delta < 0)
        if a.delta > 0:
            await fill_backorders(uow, repo, self.policy, {a.sku})

    async def on_shipments_dispatched(self, uow: UnitOfWork,
                                      run: list[IncomingEvent[ShipmentDispatched]]) -> None:
        """A run of shipments, set-based (one shipment is a run of one): the orders, their holds
        and the shipped stock rows locked with one statement each (sorted), the domain's plan
        (each line's units from the hold first, then free stock) written with one statement;
        each shipment's warnings and stock.low in its own context. A line whose units are not
        there fails the run (``ImpossibleStockMovement``): the consumer applies its events one
        at a time and dead-letters that one."""
        shipments = [incoming.event for incoming in run]
        repo = InventoryRepository(uow.session)
        statuses, holds, free = await repo.lock_for_shipping(
            {s.order_id for s in shipments},
            {(line.warehouse_id, line.sku) for s in shipments for line in s.lines})
        plan = domain.plan_shipments(shipments, statuses, holds, free, await repo.stock_rows(
            {line.sku for s in shipments for line in s.lines}))
        await repo.ship(plan.lines, plan.shipped_orders)
        falls = plan.lows.falls(await repo.set_low_flags(plan.lows.flags()))
        for tag, (incoming, took_free) in enumerate(zip(run, plan.from_free_stock, strict=True)):
            with uow.handling(incoming):
                for line in took_free:
                    log.warning("dispatch without a reservation took free stock", sku=line.sku,
                                warehouse_id=line.warehouse_id, units=line.from_free_stock)
                announce_lows(uow, falls.get(tag, ()))

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        p = incoming.event
        repo = InventoryRepository(uow.session)
        previous = await repo.upsert_product(p.sku, p.reorder_point)
        await check_low(uow, repo, {p.sku},
                        decreased=domain.reorder_point_raised(previous, p.reorder_point))

    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await InventoryRepository(uow.session).upsert_warehouse(incoming.event)


# --- steps several handlers share -----------------------------------------------------------------


def ttl(policy: InventoryPolicy) -> timedelta:
    return timedelta(seconds=policy.reservation_ttl_s)


async def rankings(repo: InventoryRepository, provinces: Iterable[str]) -> dict[str, list[str]]:
    """The warehouses, nearest first, for each destination province."""
    wanted = set(provinces)
    if not wanted:
        return {}
    warehouses = await repo.warehouses()
    return {province: domain.rank_warehouses(province, warehouses) for province in wanted}


async def reserve(repo: InventoryRepository, wants: Sequence[domain.Want], policy: InventoryPolicy,
                  *, while_any_of: Collection[str] = ()) -> tuple[domain.Reservations,
                                                                   list[domain.StockRow]]:
    """The wants planned one after another on the stock as it is (``domain.plan_reservations``)
    and the units the plan chose taken, all or none; with the stock rows the plan was made on.
    When a concurrent writer took some of them meanwhile, the rows are locked, read again and
    the plan made again on them (which then holds)."""
    skus = {sku for want in wants for sku in want.need} | set(while_any_of)
    rows = await repo.stock_rows(skus)
    planned = domain.plan_reservations(wants, rows, policy.allocation(), while_any_of=while_any_of)
    if await repo.take(planned.units):
        return planned, rows
    log.info("stock taken by another transaction meanwhile; planned again on the locked rows")
    rows = await repo.lock_stock_rows(skus)
    planned = domain.plan_reservations(wants, rows, policy.allocation(), while_any_of=while_any_of)
    if not await repo.take(planned.units):
        raise RuntimeError("units of stock rows this transaction locked are not there")
    return planned, rows


async def release(uow: UnitOfWork, policy: InventoryPolicy, order_id: str,
                  reason: str) -> StockReleased | None:
    """Give back what the order holds and take it out of the backorder queue (a cancellation,
    an expiry, an operator). None when there is nothing to release."""
    repo = InventoryRepository(uow.session)
    if not domain.releasable(await repo.lock_order(order_id)):
        return None
    released = await repo.release_holds(order_id, reason)
    await repo.set_short(order_id, {})
    await repo.mark_released(order_id, reason)
    event = StockReleased(order_id=order_id, reservations=domain.reserved_lines(released),
                          reason=reason)
    uow.emit(event)
    log.info("reservation released", reason=reason, units=sum(p.quantity for p in released))
    skus = {p.sku for p in released}
    await check_low(uow, repo, skus, decreased=False)
    await fill_backorders(uow, repo, policy, skus)
    return event


async def expire_stalled(uow: UnitOfWork, policy: InventoryPolicy,
                         now: datetime | None = None) -> list[str]:
    """Release the reservations of orders not dispatched before their expiry (a batch of
    ``expiry_batch_size`` at most)."""
    repo = InventoryRepository(uow.session)
    expired = await repo.expired_orders(now or _now(), policy.expiry_batch_size)
    for order_id in expired:
        with structlog.contextvars.bound_contextvars(order_id=order_id):
            await release(uow, policy, order_id, "expired")
    return expired


async def fill_backorders(uow: UnitOfWork, repo: InventoryRepository, policy: InventoryPolicy,
                          skus: Iterable[str]) -> None:
    """Stock of ``skus`` arrived or was given back: the waiting orders served in queue order
    (rush first, then the oldest) until none of it is left; each order filled in full publishes
    stock.reserved (from_backorder)."""
    wanted = set(skus)
    if not wanted or not any(row.available > 0 for row in await repo.stock_rows(wanted)):
        return
    waiting = await repo.waiting_orders(wanted, policy.backorder_scan_limit)
    records = await repo.lock_orders(w.order_id for w in waiting)
    queue = [records[w.order_id] for w in domain.queue_order(waiting)
             if w.order_id in records and records[w.order_id].status == "backordered"]
    if not queue:
        return
    ranks = await rankings(repo, (record.destination_province for record in queue))
    reservations, _ = await reserve(repo, [
        domain.Want(r.order_id, r.short, ranks[r.destination_province]) for r in queue], policy,
        while_any_of=wanted)
    fills = domain.fill_backorders(queue, reservations)
    await repo.hold(reservations.holds)
    now = _now()
    for fill in fills:
        if fill.picks or fill.complete:
            await repo.set_short(fill.record.order_id, fill.short)
        if fill.complete:
            await repo.mark_reserved(fill.record.order_id, now, domain.expires_at(now, ttl(policy)))
    holds = await repo.holds_of(f.record.order_id for f in fills if f.complete)
    for fill in fills:
        if fill.complete:
            record = fill.record
            with structlog.contextvars.bound_contextvars(backorder_id=record.order_id):
                _announce_reserved(uow, record.order_id, record.order,
                                   holds.get(record.order_id, []), first=False)
    await check_low(uow, repo, {sku for f in fills if f.picks for sku in f.record.short},
                    decreased=True)


async def check_low(uow: UnitOfWork, repo: InventoryRepository, skus: Iterable[str], *,
                    decreased: bool) -> None:
    """stock.low for each of ``skus`` that just fell under its reorder point (once per
    crossing); the flags of those that fell or recovered stored."""
    wanted = set(skus)
    lows = domain.LowStock(await repo.stock_rows(wanted))
    lows.check(0, wanted, decreased=decreased)
    announce_lows(uow, lows.falls(await repo.set_low_flags(lows.flags())).get(0, ()))


# --- what is published --------------------------------------------------------------------------


def announce_lows(uow: UnitOfWork, falls: Iterable[domain.Fall]) -> None:
    for sku, available, reorder_point in falls:
        uow.emit(StockLow(sku=sku, available=available, reorder_point=reorder_point))
        log.info("stock low", sku=sku, available=available, reorder_point=reorder_point)


def _announce_reserved(uow: UnitOfWork, order_id: str, order: Any,
                       holds: Sequence[domain.Pick], *, first: bool) -> None:
    uow.emit(domain.reserved_event(order_id, order, holds, first=first))
    log.debug("stock reserved", warehouses=sorted({p.warehouse_id for p in holds}),
              from_backorder=not first)


def _announce_approval(uow: UnitOfWork, admission: domain.Admission,
                       attempt: domain.FirstAttempt | None) -> None:
    """An approval of a run: what became of it, published and logged."""
    if admission.skip == "cancelled":
        log.info("order cancelled before its approval arrived; approval skipped")
        return
    if admission.early_revision is not None:
        log.info("approval of an order changed meanwhile; the new content is reserved",
                 revision=admission.early_revision)
    if admission.skip == "known" or attempt is None:
        log.info("order already known to inventory; approval ignored")
        return
    filled = attempt.reserved_at is not None
    uow.on_commit(metrics.ORDERS_ALLOCATED.labels(
        uow.service, "filled" if filled else "backordered").inc)
    if filled:
        _announce_reserved(uow, attempt.order_id, attempt.order,
                           domain.merge_picks(attempt.picks), first=True)
        return
    uow.emit(domain.backordered_event(attempt))
    log.info("order backordered", short={k: v for k, v in attempt.short.items() if v},
             held=sum(p.quantity for p in attempt.picks))


def _change_reserved(uow: UnitOfWork, step: OrderChangeApproved, status: StockStatus,
                     reservations: Iterable[domain.Pick] = (),
                     released: Iterable[domain.Pick] = ()) -> None:
    uow.emit(OrderChangeReserved(**step.model_dump(), stock_status=status,
                                 reservations=domain.reserved_lines(reservations),
                                 released=domain.reserved_lines(released)))


def _refuse_change(uow: UnitOfWork, step: OrderChangeApproved, code: str, message: str) -> None:
    uow.emit(OrderChangeRejected(
        order_id=step.order_id, change_id=step.change_id, revision=step.order.revision,
        stage="inventory", reasons=(Reason(code=code, message=message),),
        requested_by=step.requested_by, customer=step.order.customer))
    log.info("change refused", change_id=step.change_id, reason=code)
