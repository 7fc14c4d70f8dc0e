"""What inventory does with each fact it learns: the service layer between the thin handlers (and
the HTTP routes and background jobs) and the repository. Rules come from ``domain``; the outcomes
are events staged on the unit of work, never exceptions (except for an event that cannot be true,
which the consumer dead-letters)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from orderflow.contracts.events import (
    Event,
    OrderApproved,
    OrderCancelled,
    OrderChangeApproved,
    OrderChangeRejected,
    OrderChangeReserved,
    Reason,
    ReservedLine,
    ReturnReceived,
    ShipmentDispatched,
    ShortLine,
    StockAdjusted,
    StockBackordered,
    StockLow,
    StockReceived,
    StockReleased,
    StockReserved,
    StockStatus,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.inventory import domain
from orderflow.inventory.policy import InventoryPolicy
from orderflow.inventory.repository import (
    FirstAttempt,
    InventoryRepository,
    OrderRecord,
    ShippedLine,
    StockRow,
)
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

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


@dataclass
class _Level:
    """A SKU's low-stock figures as a run goes (stock_levels' row)."""

    reorder_point: int
    flagged: bool
    available: int = 0


#: stock.low to publish after an event: (SKU, available, reorder point)
_Lows = list[tuple[str, int, int]]


class _LowChecks:
    """``_check_low(skus, decreased=True)`` after each event of a run, against the run's own
    figures (the stock rows read once, less what the run took): which SKUs fall below or recover
    after which event; the flags are then set with one statement (``settle``)."""

    def __init__(self, rows: Iterable[StockRow]) -> None:
        self.levels: dict[str, _Level] = {}
        for row in rows:
            level = self.levels.setdefault(row.sku, _Level(row.reorder_point, row.low_flagged))
            level.available += row.available
        self.changes: dict[str, list[tuple[_Lows, domain.LowStockChange, int, int]]] = {}

    def took(self, sku: str, units: int) -> None:
        self.levels[sku].available -= units

    def check(self, lows: _Lows, skus: Iterable[str]) -> None:
        for sku in sorted(set(skus)):
            level = self.levels.get(sku)
            if level is None:  # no stock row: stock_levels has no row for it
                continue
            change = domain.low_stock_change(level.available, level.reorder_point,
                                             level.flagged, decreased=True)
            if change is not None:
                level.flagged = change == "fell_below"
                self.changes.setdefault(sku, []).append(
                    (lows, change, level.available, level.reorder_point))

    async def settle(self, repo: InventoryRepository) -> None:
        """Set the flags as the checks left them; a fall is published where, one by one, it
        would have flipped the flag: a SKU's first change if it flips the flag now, a later one
        always (this transaction set it the other way and holds the row)."""
        flipped = await repo.set_low_flags(
            {sku: seq[-1][1] == "fell_below" for sku, seq in self.changes.items()})
        for sku, seq in self.changes.items():
            for index, (lows, what, units, reorder_point) in enumerate(seq):
                if what == "fell_below" and (index > 0 or sku in flipped):
                    lows.append((sku, units, reorder_point))


@dataclass
class _Approval:
    """One approval of a run: what reserve_order would log, write and publish for it."""

    incoming: IncomingEvent[OrderApproved]
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # info lines first
    order: CanonicalOrder | None = None  # set: a new order (its early revision if newer)
    need: dict[str, int] = field(default_factory=dict)
    attempt: FirstAttempt | None = None
    lows: _Lows = field(default_factory=list)  # stock.low after it


class Stockroom:
    """Inventory's operations on one unit of work."""

    def __init__(self, uow: UnitOfWork, policy: InventoryPolicy) -> None:
        self.uow = uow
        self.policy = policy
        self.repo = InventoryRepository(uow.session)

    async def lock_stock_ahead(self, events: Iterable[Event]) -> None:
        """Before a batch's first run: the stock rows its events reserve, ship, receive, adjust,
        take back or release, in every warehouse of their SKUs (where an approval's units come
        from is decided later), locked at once in one sorted order. Each run locks its own rows
        sorted too, but a batch holds several runs (approvals, shipments, approvals...): without
        this, two replicas' batches took them crosswise and deadlocked. Not covered (their runs
        still lock sorted; a deadlock there is retried as transient): the other SKUs of
        backordered orders a receipt or a release fills, and the lines of a change that arrived
        before its order's approval (reserved instead of the approved ones)."""
        skus: set[str] = set()
        holders: set[str] = set()
        for event in events:
            if isinstance(event, OrderApproved):
                skus.update(line.sku for line in event.order.lines)
            elif isinstance(event, ShipmentDispatched):
                skus.update(line.sku for line in event.lines)
            elif isinstance(event, StockReceived | StockAdjusted):
                skus.add(event.sku)
            elif isinstance(event, ReturnReceived):
                skus.update(u.sku for u in event.inspections)
            elif isinstance(event, OrderChangeApproved):
                skus.update(line.sku for line in event.order.lines)
                holders.add(event.order_id)
            elif isinstance(event, OrderCancelled):
                holders.add(event.order_id)
        await self.repo.lock_stock_ahead(skus, holders)

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

    async def reserve_orders(self, run: Sequence[IncomingEvent[OrderApproved]]) -> None:
        """A run of approvals, set-based, with the outcome of ``reserve_order`` for each in turn:
        the run's order keys locked in one sorted order, their cancellations, early revisions and
        whether they are known read at once; each new order allocated in the run's order by the
        same rules against the stock the orders before it left; the stock of the whole run taken
        with one statement, then the orders, lines, holds and ledger lines written with one; the
        events and log lines as ``reserve_order`` publishes them, event by event. When a
        concurrent writer took units the run chose, the take changes nothing and the run is
        reserved one approval at a time by ``reserve_order`` instead (correctness first)."""
        ids = [incoming.event.order_id for incoming in run]
        await self.repo.lock_order_keys(ids)
        contexts = await self.repo.approval_contexts(ids)
        approvals: list[_Approval] = []
        seen: set[str] = set()
        for incoming in run:
            approval = _Approval(incoming)
            approvals.append(approval)
            order_id, order = incoming.event.order_id, incoming.event.order
            context = contexts[order_id]
            if context.cancelled:
                approval.notes.append(
                    ("order cancelled before its approval arrived; approval skipped", {}))
                continue
            early = context.early
            if early is not None and early.revision > order.revision:
                approval.notes.append(
                    ("approval of an order changed meanwhile; the new content is reserved",
                     {"revision": early.revision}))
                order = early
            if context.known or order_id in seen:
                approval.notes.append(("order already known to inventory; approval ignored", {}))
                continue
            seen.add(order_id)
            approval.order = order
            approval.need = domain.demand_of((line.sku, line.quantity) for line in order.lines)
        new = [a for a in approvals if a.order is not None]
        if new and not await self._first_attempts(new):
            for incoming in run:
                with self.uow.handling(incoming):
                    await self.reserve_order(incoming.event.order_id, incoming.event.order)
            return
        for approval in approvals:
            with self.uow.handling(approval.incoming):
                for message, fields in approval.notes:
                    log.info(message, **fields)
                attempt = approval.attempt
                if attempt is None:
                    continue
                if attempt.reserved_at is not None:
                    self._announce_reserved(attempt.order_id, attempt.order,
                                            domain.merge_picks(attempt.picks), first=True)
                else:
                    self._announce_backordered(attempt.order_id, attempt.order, attempt.ordered,
                                               attempt.short, attempt.picks)
                for sku, available, reorder_point in sorted(approval.lows):
                    self._announce_low(sku, available, reorder_point)

    async def _first_attempts(self, new: Sequence[_Approval]) -> bool:
        """Decide and write the first attempt of each new order of a run, in the run's order
        (each order's availability is what the orders before it left), and the low-stock checks
        after each; False (nothing written) when the stock the run chose is no longer there."""
        ranking_of: dict[str, list[str]] = {}
        warehouses = await self.repo.warehouses()
        available: dict[str, dict[str, int]] = defaultdict(dict)
        rows = await self.repo.stock_rows({sku for a in new for sku in a.need})
        for row in rows:
            available[row.warehouse_id][row.sku] = row.available
        lows = _LowChecks(rows)
        rules = self.policy.allocation()
        ttl = timedelta(seconds=self.policy.reservation_ttl_s)
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for approval in new:
            order, need = approval.order, approval.need
            assert order is not None
            province = order.shipping_address.province
            ranking = ranking_of.get(province)
            if ranking is None:
                ranking = ranking_of[province] = domain.rank_warehouses(province, warehouses)
            # what availability(need) would read now: this order's SKUs with units, per warehouse
            # (looked up by the order's few SKUs, not by every SKU of the run)
            view: dict[str, dict[str, int]] = {}
            for warehouse_id, in_warehouse in available.items():
                mine = {sku: q for sku in need if (q := in_warehouse.get(sku, 0)) > 0}
                if mine:
                    view[warehouse_id] = mine
            allocation = domain.allocate(need, view, ranking, rules)
            reserved: tuple[domain.Pick, ...] = ()
            short = dict(need)
            if allocation.picks:
                reserved, short = allocation.picks, dict(allocation.short)
                for pick in reserved:
                    available[pick.warehouse_id][pick.sku] -= pick.quantity
                    lows.took(pick.sku, pick.quantity)
                    taken[(pick.warehouse_id, pick.sku)] += pick.quantity
            now = _now()
            complete = not any(short.values())
            approval.attempt = FirstAttempt(
                order_id=approval.incoming.event.order_id, order=order, ordered=need, short=short,
                picks=reserved, reserved_at=now if complete else None,
                expires_at=domain.expires_at(now, ttl) if complete else None,
                backordered_at=None if complete else now)
            lows.check(approval.lows, need)
        if not await self.repo.take_all(taken):
            return False
        await self.repo.add_first_attempts([a.attempt for a in new if a.attempt is not None])
        await lows.settle(self.repo)
        return True

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
            self._announce_reserved(record.order_id, record.order, holds, first=first)
        elif first:
            await self.repo.mark_backordered(record.order_id, now, first_attempt=True)
            self._announce_backordered(record.order_id, record.order, record.ordered, short,
                                       reserved)
        return sum(p.quantity for p in reserved)

    def _announce_reserved(self, order_id: str, order: CanonicalOrder, holds: Sequence[domain.Pick],
                           *, first: bool) -> None:
        self.uow.emit(StockReserved(
            order_id=order_id, order=order, reservations=_lines(holds),
            filled_in_full_first_attempt=first, from_backorder=not first))
        log.debug("stock reserved", warehouses=sorted({p.warehouse_id for p in holds}),
                  from_backorder=not first)

    def _announce_backordered(self, order_id: str, order: CanonicalOrder,
                              ordered: Mapping[str, int], short: Mapping[str, int],
                              reserved: Iterable[domain.Pick]) -> None:
        self.uow.emit(StockBackordered(
            order_id=order_id,
            short_lines=tuple(ShortLine(sku=s.sku, ordered=s.ordered, reserved=s.reserved,
                                        short=s.short)
                              for s in domain.shortages(ordered, short)),
            customer=order.customer))
        log.info("order backordered", short={k: v for k, v in short.items() if v},
                 held=sum(p.quantity for p in reserved))

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

    async def dispatch_all(self, run: Sequence[IncomingEvent[ShipmentDispatched]]) -> None:
        """A run of shipments, set-based, with the outcome of ``dispatch`` for each in turn: the
        orders, their holds and the shipped stock rows locked with one statement each (sorted),
        each line's units taken from the hold first and free stock for the rest in Python, all
        written with one statement; warnings and stock.low as ``dispatch`` publishes them, event
        by event. A line whose units are not there sends the run through ``dispatch`` one event
        at a time, which refuses it (nothing was written)."""
        shipments = [incoming.event for incoming in run]
        statuses, holds, free = await self.repo.lock_for_shipping(
            {s.order_id for s in shipments},
            {(line.warehouse_id, line.sku) for s in shipments for line in s.lines})
        lows = _LowChecks(await self.repo.stock_rows(
            {line.sku for s in shipments for line in s.lines}))
        holding: dict[str, int] = defaultdict(int)  # the units each order still holds
        for (order_id, _, _), units in holds.items():
            holding[order_id] += units
        lines: list[ShippedLine] = []
        shipped_orders: list[str] = []
        outcomes: list[tuple[list[tuple[str, str, int]], _Lows]] = []
        for shipment in shipments:
            order_id = shipment.order_id
            from_free_stock: list[tuple[str, str, int]] = []
            for line in sorted(shipment.lines, key=lambda x: (x.warehouse_id, x.sku)):
                row = (line.warehouse_id, line.sku)
                hold = (order_id, line.warehouse_id, line.sku)
                from_res = min(line.quantity, holds.get(hold, 0))
                if row not in free or free[row] < line.quantity - from_res:
                    for incoming in run:  # dispatch refuses it, with what is free by then
                        with self.uow.handling(incoming):
                            await self.dispatch(incoming.event)
                    return
                free[row] -= line.quantity - from_res
                if from_res:
                    holds[hold] -= from_res
                    holding[order_id] -= from_res
                lines.append(ShippedLine(order_id, line.warehouse_id, line.sku, line.quantity,
                                         from_res, shipment.shipment_id))
                if line.quantity - from_res:
                    lows.took(line.sku, line.quantity - from_res)
                    from_free_stock.append((line.sku, line.warehouse_id,
                                            line.quantity - from_res))
            if statuses.get(order_id) == "reserved" and holding[order_id] <= 0:
                statuses[order_id] = "shipped"
                shipped_orders.append(order_id)
            shipped_lows: _Lows = []
            lows.check(shipped_lows, {line.sku for line in shipment.lines})
            outcomes.append((from_free_stock, shipped_lows))
        await self.repo.ship_all(lines, shipped_orders)
        await lows.settle(self.repo)
        for incoming, (from_free_stock, shipped_lows) in zip(run, outcomes, strict=True):
            with self.uow.handling(incoming):
                for sku, warehouse_id, units in from_free_stock:
                    log.warning("dispatch without a reservation took free stock", sku=sku,
                                warehouse_id=warehouse_id, units=units)
                for sku, available, reorder_point in sorted(shipped_lows):
                    self._announce_low(sku, available, reorder_point)

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
                self._announce_low(level.sku, level.available, level.reorder_point)
            elif change == "recovered":
                await self.repo.flag_low(level.sku, False)

    def _announce_low(self, sku: str, available: int, reorder_point: int) -> None:
        self.uow.emit(StockLow(sku=sku, available=available, reorder_point=reorder_point))
        log.info("stock low", sku=sku, available=available, reorder_point=reorder_point)
