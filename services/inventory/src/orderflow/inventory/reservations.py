"""What inventory does with each fact it learns: the service layer between the thin handlers (and
the HTTP routes and background jobs) and the repository. Rules come from ``domain``; the outcomes
are events staged on the unit of work, never exceptions (except for an event that cannot be true,
which the consumer dead-letters)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import structlog

from orderflow.contracts.events import (
    OrderChangeApproved,
    OrderChangeRejected,
    OrderChangeReserved,
    Reason,
    ReservedLine,
    ShipmentDispatched,
    ShortLine,
    StockBackordered,
    StockLow,
    StockReleased,
    StockReserved,
    StockStatus,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.inventory import domain
from orderflow.inventory.policy import InventoryPolicy
from orderflow.inventory.repository import InventoryRepository, OrderRecord
from orderflow.runtime.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

#: How many times a reservation re-reads the stock after a concurrent one took the units it chose.
MAX_RESERVE_ATTEMPTS = 25


class ImpossibleStockMovement(Exception):
    """An event that would take units that are not there (dead-lettered with this message)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _lines(picks: Iterable[domain.Pick]) -> tuple[ReservedLine, ...]:
    return tuple(ReservedLine(sku=p.sku, warehouse_id=p.warehouse_id, quantity=p.quantity)
                 for p in picks if p.quantity > 0)


class Stockroom:
    """Inventory's operations on one unit of work."""

    def __init__(self, uow: UnitOfWork, policy: InventoryPolicy) -> None:
        self.uow = uow
        self.policy = policy
        self.repo = InventoryRepository(uow.session)

    # -- orders -------------------------------------------------------------------------------
    async def reserve_order(self, order_id: str, order: CanonicalOrder) -> None:
        """An approved order: reserve it where the rules say, or backorder what is missing."""
        need = domain.demand_of((line.sku, line.quantity) for line in order.lines)
        await self.repo.lock_order_key(order_id)
        cancelled, early = await self.repo.approval_context(order_id)
        if cancelled:
            log.info("order cancelled before its approval arrived; approval skipped")
            return
        if early is not None and early.revision > order.revision:
            log.info("approval of an order changed meanwhile; the new content is reserved",
                     revision=early.revision)
            order = early
            need = domain.demand_of((line.sku, line.quantity) for line in order.lines)
        if not await self.repo.add_order(order_id, order, need):
            log.info("order already known to inventory; approval ignored")
            return
        # the row this transaction just inserted, as lock_order would read it back
        record = OrderRecord(order_id=order_id, status="backordered", priority=order.priority,
                             destination_province=order.shipping_address.province, order=order,
                             filled_first_attempt=None, ordered=dict(need), short=dict(need))
        await self._attempt(record, first=True)
        await self._check_low(need, decreased=True)

    async def _attempt(self, record: OrderRecord, *, first: bool) -> int:
        """Try to reserve what the order is still short of; publish the outcome. Returns the
        units reserved by this attempt."""
        short = dict(record.short)
        ranking = domain.rank_warehouses(record.destination_province, await self.repo.warehouses())
        reserved: tuple[domain.Pick, ...] = ()
        for _ in range(MAX_RESERVE_ATTEMPTS):
            available = await self.repo.availability(short)
            allocation = domain.allocate(short, available, ranking, self.policy.allocation())
            if not allocation.picks:
                break
            if await self.repo.reserve(record.order_id, allocation.picks):
                reserved, short = allocation.picks, dict(allocation.short)
                break
        else:
            log.warning("stock kept changing under the reservation; the order waits",
                        attempts=MAX_RESERVE_ATTEMPTS)
        await self.repo.set_short(record.order_id, short)
        now = _now()
        if not any(short.values()):
            expiry = domain.expires_at(now, timedelta(seconds=self.policy.reservation_ttl_s))
            await self.repo.mark_reserved(record.order_id, now, expiry, first_attempt=first)
            # a first attempt holds exactly what it just reserved (the order was new)
            holds = domain.merge_picks(reserved) if first \
                else await self.repo.holds(record.order_id)
            self.uow.emit(StockReserved(
                order_id=record.order_id, order=record.order, reservations=_lines(holds),
                filled_in_full_first_attempt=first, from_backorder=not first))
            log.debug("stock reserved", warehouses=sorted({p.warehouse_id for p in holds}),
                      from_backorder=not first)
        elif first:
            await self.repo.mark_backordered(record.order_id, now, first_attempt=True)
            self.uow.emit(StockBackordered(
                order_id=record.order_id,
                short_lines=tuple(ShortLine(sku=s.sku, ordered=s.ordered, reserved=s.reserved,
                                            short=s.short)
                                  for s in domain.shortages(record.ordered, short)),
                customer=record.order.customer))
            log.info("order backordered", short={k: v for k, v in short.items() if v},
                     held=sum(p.quantity for p in reserved))
        return sum(p.quantity for p in reserved)

    async def apply_change(self, step: OrderChangeApproved) -> None:
        """A change review accepted: only the difference moves, all or nothing (``domain.
        plan_change`` and ``domain.change_outcome``); publishes order.change-reserved, or
        order.change-rejected with the reason."""
        order_id, new = step.order_id, step.order
        await self.repo.lock_order_key(order_id)

        def passed(status: StockStatus, reservations: Iterable[domain.Pick] = (),
                   released: Iterable[domain.Pick] = ()) -> None:
            self.uow.emit(OrderChangeReserved(**step.model_dump(), stock_status=status,
                                              reservations=_lines(reservations),
                                              released=_lines(released)))

        def refuse(code: str, message: str) -> None:
            self.uow.emit(OrderChangeRejected(
                order_id=order_id, change_id=step.change_id, revision=new.revision,
                stage="inventory", reasons=(Reason(code=code, message=message),),
                requested_by=step.requested_by, customer=new.customer))
            log.info("change refused", change_id=step.change_id, reason=code)

        if await self.repo.is_cancelled(order_id):
            refuse("order_cancelled", "the order is cancelled")
            return
        record = await self.repo.lock_order(order_id)
        if record is None:
            await self.repo.save_early_revision(order_id, new)
            passed("not_allocated")
            log.info("change of an order not approved here yet; kept for its approval",
                     change_id=step.change_id)
            return
        if record.order.revision >= new.revision:  # its approval already brought this content
            holds = await self.repo.holds(order_id)
            passed("reserved" if record.status == "reserved" else "backordered", holds)
            return
        if record.status not in ("backordered", "reserved"):
            code = "already_dispatched" if record.status == "shipped" else "order_released"
            refuse(code, f"the order's stock is {record.status}; it can no longer change")
            return
        need = domain.demand_of((line.sku, line.quantity) for line in new.lines)
        ranking = domain.rank_warehouses(new.shipping_address.province,
                                         await self.repo.warehouses())
        plan = domain.plan_change(need, await self.repo.holds(order_id), record.ordered, ranking)
        reason = f"changed: revision {new.revision}"
        savepoint = await self.uow.session.begin_nested()
        try:
            await self.repo.release_picks(order_id, plan.release, reason)
            await self.repo.change_order(order_id, new, plan.ordered, plan.short)
            short = dict(plan.short)
            for _ in range(MAX_RESERVE_ATTEMPTS):
                wanted = {k: v for k, v in short.items() if v > 0}
                if not wanted:
                    break
                allocation = domain.allocate(wanted, await self.repo.availability(wanted),
                                             ranking, self.policy.allocation())
                if not allocation.picks:
                    break
                if await self.repo.reserve(order_id, allocation.picks):
                    short = {**short, **{k: 0 for k in wanted}, **dict(allocation.short)}
                    break
            outcome = domain.change_outcome(record.status, short)
            if outcome == "refused":
                await savepoint.rollback()
                missing = ", ".join(f"{k} short {v}" for k, v in sorted(short.items()) if v)
                refuse("insufficient_stock",
                       f"the extra units are not in stock ({missing}); the order stays as it was")
                return
            await self.repo.set_short(order_id, short)
        except BaseException:
            if savepoint.is_active:
                await savepoint.rollback()
            raise
        await savepoint.commit()
        if outcome == "reserved":
            now = _now()
            expiry = domain.expires_at(now, timedelta(seconds=self.policy.reservation_ttl_s))
            await self.repo.mark_reserved(order_id, now, expiry, first_attempt=False)
        # else: a backordered order stays backordered (a reserved one never gets here short)
        if plan.release:
            self.uow.emit(StockReleased(order_id=order_id, reservations=_lines(plan.release),
                                        reason=reason))
        holds = await self.repo.holds(order_id)
        passed("reserved" if outcome == "reserved" else "backordered", holds, plan.release)
        log.info("change applied to the stock", change_id=step.change_id, outcome=outcome,
                 released=sum(p.quantity for p in plan.release),
                 short={k: v for k, v in short.items() if v})
        await self._check_low(set(need) | set(record.ordered), decreased=True)
        await self.fill_backorders({p.sku for p in plan.release})

    async def fill_backorders(self, skus: Iterable[str]) -> None:
        """Stock of ``skus`` arrived or was given back: serve the waiting orders, rush first,
        then the oldest; each order filled publishes stock.reserved (from_backorder)."""
        wanted = set(skus)
        if not wanted or not await self.repo.availability(wanted):
            return
        waiting = await self.repo.waiting_orders(wanted, self.policy.backorder_scan_limit)
        touched: set[str] = set()
        for candidate in domain.queue_order(waiting):
            if not await self.repo.availability(wanted):
                break
            record = await self.repo.lock_order(candidate.order_id)
            if record is None or record.status != "backordered":
                continue
            structlog.contextvars.bind_contextvars(backorder_id=record.order_id)
            try:
                if await self._attempt(record, first=False):
                    touched |= set(record.short)
            finally:
                structlog.contextvars.unbind_contextvars("backorder_id")
        await self._check_low(touched, decreased=True)

    async def release(self, order_id: str, reason: str) -> StockReleased | None:
        """Give back what the order holds and take it out of the backorder queue (a cancellation,
        an expiry, an operator). None when there is nothing to release."""
        record = await self.repo.lock_order(order_id)
        if record is None or record.status not in ("backordered", "reserved"):
            return None
        released = await self.repo.release_holds(order_id, reason)
        await self.repo.set_short(order_id, {})
        await self.repo.mark_released(order_id, reason)
        event = StockReleased(order_id=order_id, reservations=_lines(released), reason=reason)
        self.uow.emit(event)
        log.info("reservation released", reason=reason, units=sum(p.quantity for p in released))
        skus = {p.sku for p in released}
        await self._check_low(skus, decreased=False)
        await self.fill_backorders(skus)
        return event

    async def cancel_order(self, order_id: str, reason: str) -> StockReleased | None:
        """The order is cancelled: keep its tombstone (a late approval is skipped), give back its
        reservations and take it out of the backorder queue."""
        await self.repo.lock_order_key(order_id)
        if not await self.repo.add_cancelled(order_id, reason):
            log.info("order already cancelled; ignored")
            return None
        return await self.release(order_id, f"cancelled: {reason}"[:500])

    async def take_back_return(self, rma_id: str, order_id: str, warehouse_id: str,
                               inspections: Iterable[tuple[str, int, str]]) -> bool:
        """A return received and inspected: restocked units are a receipt (and may fill
        backorders), scrapped units a receipt written off by an adjustment, so the ledger shows
        both. False when this RMA was already taken back."""
        units = list(inspections)
        restocked = sum(q for _, q, outcome in units if outcome == "restock")
        scrapped = sum(q for _, q, outcome in units if outcome == "scrap")
        if not await self.repo.add_return(rma_id, order_id, warehouse_id, restocked, scrapped):
            log.info("return already taken back; ignored", rma_id=rma_id)
            return False
        reference = f"return {rma_id}"
        for sku, quantity, outcome in sorted(units):
            await self.repo.receive(warehouse_id, sku, quantity, reference)
            if outcome == "scrap" and await self.repo.adjust(
                    warehouse_id, sku, -quantity, f"scrapped: {reference}") is None:
                raise ImpossibleStockMovement(f"scrapping {quantity} x {sku} of {reference}")
        skus = {sku for sku, _, outcome in units if outcome == "restock"}
        await self._check_low(skus, decreased=False)
        await self.fill_backorders(skus)
        log.info("return taken back", rma_id=rma_id, restocked=restocked, scrapped=scrapped)
        return True

    async def expire_stalled(self, now: datetime | None = None) -> list[str]:
        """Release the reservations of orders not dispatched before their expiry."""
        expired = await self.repo.expired_orders(now or _now(), self.policy.expiry_batch_size)
        for order_id in expired:
            structlog.contextvars.bind_contextvars(order_id=order_id)
            try:
                await self.release(order_id, "expired")
            finally:
                structlog.contextvars.unbind_contextvars("order_id")
        return expired

    async def dispatch(self, shipment: ShipmentDispatched) -> None:
        """The shipment's units left the warehouse: on hand and reserved both go down."""
        status = await self.repo.order_status(shipment.order_id)
        for line in sorted(shipment.lines, key=lambda x: (x.warehouse_id, x.sku)):
            shipped = await self.repo.ship(shipment.order_id, line.warehouse_id, line.sku,
                                           line.quantity, reference=shipment.shipment_id)
            if shipped is None:
                free = await self.repo.free_units(line.warehouse_id, line.sku)
                raise ImpossibleStockMovement(
                    f"shipment {shipment.shipment_id} takes {line.quantity} x {line.sku} from "
                    f"{line.warehouse_id}, more than the order's reservation plus {free} free units")
            if shipped.from_free_stock:
                log.warning("dispatch without a reservation took free stock", sku=line.sku,
                            warehouse_id=line.warehouse_id, units=shipped.from_free_stock)
        if status == "reserved" and not await self.repo.holds(shipment.order_id):
            await self.repo.mark_shipped(shipment.order_id)
        await self._check_low({line.sku for line in shipment.lines}, decreased=True)

    # -- stock movements ------------------------------------------------------------------------
    async def receive(self, warehouse_id: str, sku: str, quantity: int, reference: str) -> None:
        await self.repo.receive(warehouse_id, sku, quantity, reference)
        await self._check_low({sku}, decreased=False)
        await self.fill_backorders({sku})

    async def adjust(self, warehouse_id: str, sku: str, delta: int, reason: str) -> None:
        if delta == 0:
            return
        if await self.repo.adjust(warehouse_id, sku, delta, reason) is None:
            free = await self.repo.free_units(warehouse_id, sku)
            raise ImpossibleStockMovement(
                f"adjustment {delta} of {sku} in {warehouse_id} exceeds its {free} free units; "
                "release the reservations that hold the rest first, then replay this event")
        await self._check_low({sku}, decreased=delta < 0)
        if delta > 0:
            await self.fill_backorders({sku})

    async def product_updated(self, sku: str, reorder_point: int) -> None:
        previous = await self.repo.upsert_product(sku, reorder_point)
        # a raised reorder point is a crossing; a new SKU's first reorder point is not
        await self._check_low({sku}, decreased=previous is not None and reorder_point > previous)

    # -- low stock -----------------------------------------------------------------------------
    async def _check_low(self, skus: Iterable[str], *, decreased: bool) -> None:
        for level in await self.repo.stock_levels(skus):
            change = domain.low_stock_change(level.available, level.reorder_point,
                                             level.low_flagged, decreased=decreased)
            if change == "fell_below" and await self.repo.flag_low(level.sku, True):
                self.uow.emit(StockLow(sku=level.sku, available=level.available,
                                       reorder_point=level.reorder_point))
                log.info("stock low", sku=level.sku, available=level.available,
                         reorder_point=level.reorder_point)
            elif change == "recovered":
                await self.repo.flag_low(level.sku, False)
