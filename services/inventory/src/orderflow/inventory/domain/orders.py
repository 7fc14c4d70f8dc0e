"""The orders inventory reserves: which approvals of a run are reserved and with what content
(``admit_approvals``), their first attempts (``first_attempts``), backorders filled when stock
comes (``fill_backorders``), when an order's stock may be released, and the events that say so.
Pure.

A single approval is a run of one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from orderflow.contracts.events import (
    OrderApproved,
    ReservedLine,
    ShortLine,
    StockBackordered,
    StockReserved,
)
from orderflow.contracts.order import CanonicalOrder
from orderflow.inventory.domain.allocation import (
    Pick,
    Reservations,
    StockRow,
    demand_of,
    merge_picks,
)
from orderflow.inventory.domain.stock import LowStock, expires_at, shortages

#: an order that holds stock or waits for it (its stock may still move)
OPEN_STATUSES = ("backordered", "reserved")


@dataclass(frozen=True)
class OrderRecord:
    """An order as inventory holds it: its content, status, and units ordered and still short
    per SKU."""

    order_id: str
    status: str
    priority: str
    destination_province: str
    order: CanonicalOrder
    filled_first_attempt: bool | None
    ordered: Mapping[str, int]
    short: Mapping[str, int]


def releasable(record: OrderRecord | None) -> bool:
    """Whether the order holds stock or waits for it: only then is there anything to release."""
    return record is not None and record.status in OPEN_STATUSES


def need_of(order: CanonicalOrder) -> dict[str, int]:
    return demand_of((line.sku, line.quantity) for line in order.lines)


# --- a run of approvals -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalContext:
    """What an approval needs to know of its order before reserving it."""

    cancelled: bool
    early: CanonicalOrder | None  # a change's newer revision that came before the approval
    known: bool  # approved here already


@dataclass(frozen=True)
class Admission:
    """An ``order.approved`` of a run as inventory takes it: skipped (cancelled here before its
    approval; known here already, or earlier in the run), or reserved with ``order`` (its own
    content, or a newer revision a change brought first: ``early_revision``)."""

    order_id: str
    order: CanonicalOrder
    skip: Literal["cancelled", "known"] | None = None
    early_revision: int | None = None

    @property
    def reserves(self) -> bool:
        return self.skip is None


def admit_approvals(approvals: Sequence[OrderApproved],
                    contexts: Mapping[str, ApprovalContext]) -> list[Admission]:
    """What inventory does with each approval of a run, in the run's order."""
    admitted: list[Admission] = []
    seen: set[str] = set()
    for approval in approvals:
        order_id, order = approval.order_id, approval.order
        context = contexts[order_id]
        if context.cancelled:
            admitted.append(Admission(order_id, order, "cancelled"))
            continue
        early = context.early
        revision = None
        if early is not None and early.revision > order.revision:
            order, revision = early, early.revision
        if context.known or order_id in seen:
            admitted.append(Admission(order_id, order, "known", revision))
            continue
        seen.add(order_id)
        admitted.append(Admission(order_id, order, None, revision))
    return admitted


@dataclass(frozen=True)
class FirstAttempt:
    """A newly approved order as its first attempt leaves it: what it holds, what it is short
    of, and its status with that status's stamps."""

    order_id: str
    order: CanonicalOrder
    ordered: Mapping[str, int]
    short: Mapping[str, int]
    picks: Sequence[Pick]
    reserved_at: datetime | None  # set: reserved in full; None: backordered at backordered_at
    expires_at: datetime | None
    backordered_at: datetime | None


@dataclass(frozen=True)
class FirstAttempts:
    """A run's first attempts (None for the approvals it skips) and its low-stock checks
    (tagged by the approval's place in the run)."""

    attempts: list[FirstAttempt | None]
    lows: LowStock

    @property
    def new(self) -> list[FirstAttempt]:
        return [a for a in self.attempts if a is not None]


def first_attempts(admitted: Sequence[Admission], reservations: Reservations,
                   rows: Iterable[StockRow], *, now: datetime, ttl: timedelta) -> FirstAttempts:
    """The first attempt of each order a run reserves, from the run's reservations (planned in
    the run's order: ``plan_reservations`` on ``rows``), and the low-stock checks after each
    approval as its units leave the available stock."""
    lows = LowStock(rows)
    allocations = iter(reservations.allocations)
    attempts: list[FirstAttempt | None] = []
    for tag, admission in enumerate(admitted):
        if not admission.reserves:
            attempts.append(None)
            continue
        allocation = next(allocations)
        assert allocation is not None
        need = need_of(admission.order)
        for pick in allocation.picks:
            lows.took(pick.sku, pick.quantity)
        complete = allocation.complete
        attempts.append(FirstAttempt(
            order_id=admission.order_id, order=admission.order, ordered=need,
            short=dict(allocation.short), picks=allocation.picks,
            reserved_at=now if complete else None,
            expires_at=expires_at(now, ttl) if complete else None,
            backordered_at=None if complete else now))
        lows.check(tag, need, decreased=True)
    return FirstAttempts(attempts, lows)


# --- backorders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """A waiting order served from stock that came: the units it got, what it is still short of
    (every line), and whether it is now reserved in full."""

    record: OrderRecord
    picks: tuple[Pick, ...]
    short: Mapping[str, int]

    @property
    def complete(self) -> bool:
        return not any(self.short.values())


def fill_backorders(waiting: Sequence[OrderRecord], reservations: Reservations) -> list[Fill]:
    """The waiting orders (in queue order) the reservations tried, as they leave them."""
    fills = []
    for record, allocation in zip(waiting, reservations.allocations, strict=True):
        if allocation is None:
            break
        short = dict(allocation.short) if allocation.picks else dict(record.short)
        fills.append(Fill(record, allocation.picks, short))
    return fills


# --- what inventory publishes -------------------------------------------------------------------


def reserved_lines(picks: Iterable[Pick]) -> tuple[ReservedLine, ...]:
    return tuple(ReservedLine(sku=p.sku, warehouse_id=p.warehouse_id, quantity=p.quantity)
                 for p in picks if p.quantity > 0)


def reserved_event(order_id: str, order: CanonicalOrder, holds: Sequence[Pick], *,
                   first: bool) -> StockReserved:
    """An order fully reserved: on its first attempt, or from the backorder queue."""
    return StockReserved(order_id=order_id, order=order, reservations=reserved_lines(holds),
                         filled_in_full_first_attempt=first, from_backorder=not first)


def backordered_event(attempt: FirstAttempt) -> StockBackordered:
    """A new order's first attempt left it short: what it waits for, line by line."""
    return StockBackordered(
        order_id=attempt.order_id,
        short_lines=tuple(ShortLine(sku=s.sku, ordered=s.ordered, reserved=s.reserved,
                                    short=s.short)
                          for s in shortages(attempt.ordered, attempt.short)),
        customer=attempt.order.customer)


def first_attempt_event(attempt: FirstAttempt) -> StockReserved | StockBackordered:
    if attempt.reserved_at is not None:
        return reserved_event(attempt.order_id, attempt.order, merge_picks(attempt.picks),
                              first=True)
    return backordered_event(attempt)
