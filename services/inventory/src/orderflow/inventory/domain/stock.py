"""Stock over time: the backorder queue's order (rush first, then the oldest), when a reservation
has stalled, when a SKU crossed its reorder point (``low_stock_change``, and ``LowStock`` over a
sequence of movements), what a backorder says, and which stock rows a batch's events may touch.
Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from orderflow.contracts.events import (
    Event,
    OrderApproved,
    OrderCancelled,
    OrderChangeApproved,
    ReturnReceived,
    ShipmentDispatched,
    StockAdjusted,
    StockReceived,
)
from orderflow.inventory.domain.allocation import StockRow


class ImpossibleStockMovement(Exception):
    """An event that would take units that are not there (dead-lettered with this message)."""


# --- the backorder queue ------------------------------------------------------------------------

PRIORITY_RANK: dict[str, int] = {"rush": 0, "normal": 1}


@dataclass(frozen=True)
class WaitingOrder:
    """An order in the backorder queue."""

    order_id: str
    priority: str
    backordered_at: datetime
    sequence: int  # arrival order, breaks ties between orders backordered at the same instant
    short: Mapping[str, int] = field(default_factory=dict)


def queue_rank(priority: str) -> int:
    return PRIORITY_RANK.get(priority, len(PRIORITY_RANK))


def queue_order(waiting: Iterable[WaitingOrder]) -> list[WaitingOrder]:
    """The order in which waiting orders are served: rush first, then the oldest."""
    return sorted(waiting, key=lambda w: (queue_rank(w.priority), w.backordered_at, w.sequence))


# --- expiry ---------------------------------------------------------------------------------


def expires_at(reserved_at: datetime, ttl: timedelta) -> datetime:
    return reserved_at + ttl


def is_expired(expiry: datetime | None, now: datetime) -> bool:
    return expiry is not None and expiry <= now


# --- low stock ------------------------------------------------------------------------------

LowStockChange = Literal["fell_below", "recovered"]


def low_stock_change(available: int, reorder_point: int, flagged: bool, *,
                     decreased: bool) -> LowStockChange | None:
    """Once per crossing: a SKU not yet flagged whose available units just went down (``decreased``:
    a reservation, a negative adjustment, a higher reorder point) under its reorder point fell
    below; a flagged one back at or above it recovered, and may be reported again next time.

    A receipt never reports a fall: stock that is still low after goods arrived is not news."""
    if flagged and (reorder_point <= 0 or available >= reorder_point):
        return "recovered"
    if not flagged and decreased and reorder_point > 0 and available < reorder_point:
        return "fell_below"
    return None


def reorder_point_raised(previous: int | None, reorder_point: int) -> bool:
    """A raised reorder point is a crossing (its SKU may fall below it); a new SKU's first
    reorder point is not."""
    return previous is not None and reorder_point > previous


@dataclass
class _Level:
    reorder_point: int
    flagged: bool
    available: int = 0


#: a fall to publish: (SKU, available, reorder point)
Fall = tuple[str, int, int]


class LowStock:
    """Low-stock crossings over a sequence of movements (each tagged: the event it follows),
    from the SKUs' stock rows read once: ``took`` what each movement took of the available units,
    ``check`` after it. ``flags`` is each SKU's flag as the checks leave it, to be stored;
    ``falls`` says which falls to publish once the store said whose flag it changed."""

    def __init__(self, rows: Iterable[StockRow]) -> None:
        self.levels: dict[str, _Level] = {}
        for row in rows:
            level = self.levels.setdefault(row.sku, _Level(row.reorder_point, row.low_flagged))
            level.available += row.available
        self.changes: dict[str, list[tuple[int, LowStockChange, int, int]]] = {}

    def took(self, sku: str, units: int) -> None:
        self.levels[sku].available -= units

    def check(self, tag: int, skus: Iterable[str], *, decreased: bool) -> None:
        """``low_stock_change`` of each SKU (with stock rows) after movement ``tag``."""
        for sku in sorted(set(skus)):
            level = self.levels.get(sku)
            if level is None:  # no stock row: nothing to report
                continue
            change = low_stock_change(level.available, level.reorder_point, level.flagged,
                                      decreased=decreased)
            if change is not None:
                level.flagged = change == "fell_below"
                self.changes.setdefault(sku, []).append(
                    (tag, change, level.available, level.reorder_point))

    def flags(self) -> dict[str, bool]:
        """Each SKU's low-stock flag as the checks left it (only SKUs they changed)."""
        return {sku: seq[-1][1] == "fell_below" for sku, seq in self.changes.items()}

    def falls(self, flipped: Iterable[str]) -> dict[int, list[Fall]]:
        """The falls to publish after each movement, by tag, each SKU once per crossing: a SKU's
        first change if storing ``flags`` flipped its flag (``flipped``; another transaction may
        have crossed first), a later one always (this one set it the other way meanwhile)."""
        flipped = set(flipped)
        out: dict[int, list[Fall]] = {}
        for sku, seq in sorted(self.changes.items()):
            for index, (tag, what, units, reorder_point) in enumerate(seq):
                if what == "fell_below" and (index > 0 or sku in flipped):
                    out.setdefault(tag, []).append((sku, units, reorder_point))
        return {tag: sorted(falls) for tag, falls in out.items()}


# --- what a backorder says --------------------------------------------------------------------


@dataclass(frozen=True)
class Shortage:
    sku: str
    ordered: int
    reserved: int
    short: int


def shortages(ordered: Mapping[str, int], short: Mapping[str, int]) -> list[Shortage]:
    """The lines an order is short of, with what was reserved of each."""
    return [Shortage(sku, ordered[sku], ordered[sku] - short[sku], short[sku])
            for sku in sorted(short) if short[sku] > 0]


# --- what a batch locks up front ---------------------------------------------------------------


def stock_touched(events: Iterable[Event]) -> tuple[set[str], set[str]]:
    """The SKUs whose stock rows a batch's events reserve, ship, receive, adjust or take back
    (in every warehouse: where an approval's units come from is decided later), and the orders
    whose holds they release or change. Not covered: the other SKUs of backordered orders a
    receipt or a release fills, and the lines of a change that arrived before its order's
    approval (reserved instead of the approved ones)."""
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
    return skus, holders
