"""Which warehouse ships an order: the nearest one that can fill all of it, measured by the
great-circle distance between provincial capitals (``PROVINCE_CAPITALS``); else a split across
warehouses or a backorder, as the policy says (``allocate``); and a sequence of orders planned
one after another on the stock the earlier ones left (``plan_reservations``). Pure."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from orderflow.contracts.provinces import province_key

# --- where the warehouses are -------------------------------------------------------------------

#: Latitude and longitude of each provincial-level division's capital (the province of a warehouse
#: and of a shipping address are located there). Keys are the short Chinese names; ``province_key``
#: maps full names ("广东省", "广西壮族自治区") and pinyin ("Guangdong") onto them.
PROVINCE_CAPITALS: dict[str, tuple[float, float]] = {
    "北京": (39.90, 116.40), "天津": (39.13, 117.20), "河北": (38.04, 114.51),
    "山西": (37.87, 112.55), "内蒙古": (40.84, 111.75), "辽宁": (41.80, 123.43),
    "吉林": (43.82, 125.32), "黑龙江": (45.80, 126.53), "上海": (31.23, 121.47),
    "江苏": (32.06, 118.80), "浙江": (30.27, 120.15), "安徽": (31.82, 117.23),
    "福建": (26.07, 119.30), "江西": (28.68, 115.86), "山东": (36.65, 117.12),
    "河南": (34.75, 113.63), "湖北": (30.59, 114.31), "湖南": (28.23, 112.94),
    "广东": (23.13, 113.26), "广西": (22.82, 108.37), "海南": (20.04, 110.32),
    "重庆": (29.56, 106.55), "四川": (30.57, 104.07), "贵州": (26.65, 106.63),
    "云南": (25.04, 102.71), "西藏": (29.65, 91.13), "陕西": (34.34, 108.94),
    "甘肃": (36.06, 103.83), "青海": (36.62, 101.78), "宁夏": (38.49, 106.23),
    "新疆": (43.83, 87.62), "香港": (22.32, 114.17), "澳门": (22.20, 113.54),
    "台湾": (25.03, 121.57),
}
UNKNOWN_DISTANCE_KM = 100_000.0


def distance_km(origin: str, destination: str) -> float:
    """Great-circle distance between two provinces' capitals; unknown ones are 'very far'."""
    a, b = province_key(origin), province_key(destination)
    if a is None or b is None:
        return UNKNOWN_DISTANCE_KM
    if a == b:
        return 0.0
    (lat1, lon1), (lat2, lon2) = PROVINCE_CAPITALS[a], PROVINCE_CAPITALS[b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * 6371.0 * math.asin(math.sqrt(h)), 1)


@dataclass(frozen=True)
class Warehouse:
    warehouse_id: str
    province: str


def rank_warehouses(destination_province: str, warehouses: Iterable[Warehouse]) -> list[str]:
    """Warehouse ids, nearest to the destination first (ties and unknowns by id)."""
    return [w.warehouse_id for w in sorted(
        warehouses, key=lambda w: (distance_km(w.province, destination_province), w.warehouse_id))]


# --- allocation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationPolicy:
    split_shipments: bool = True
    partial_reservation: bool = True


@dataclass(frozen=True, order=True)
class Pick:
    """Units of one SKU to reserve in one warehouse."""

    warehouse_id: str
    sku: str
    quantity: int


def merge_picks(picks: Iterable[Pick]) -> list[Pick]:
    """Picks summed per warehouse and SKU, in (warehouse, SKU) order, without empty ones: what
    the reservations table holds for them."""
    total: dict[tuple[str, str], int] = defaultdict(int)
    for p in picks:
        total[(p.warehouse_id, p.sku)] += p.quantity
    return [Pick(w, sku, q) for (w, sku), q in sorted(total.items()) if q > 0]


@dataclass(frozen=True)
class Allocation:
    picks: tuple[Pick, ...]
    short: Mapping[str, int]  # SKU -> units still missing (backordered)

    @property
    def complete(self) -> bool:
        return not any(self.short.values())


#: Available units per warehouse and SKU: ``{warehouse_id: {sku: units}}``.
Availability = Mapping[str, Mapping[str, int]]


def demand_of(lines: Iterable[tuple[str, int]]) -> dict[str, int]:
    """The units wanted per SKU (an order may name a SKU on several lines)."""
    need: Counter[str] = Counter()
    for sku, quantity in lines:
        need[sku] += quantity
    return dict(need)


def allocate(need: Mapping[str, int], available: Availability, ranking: Sequence[str],
             policy: AllocationPolicy) -> Allocation:
    """Decide where ``need`` is reserved.

    1. The nearest warehouse (in ``ranking`` order) that can fill every unit ships it all.
    2. Otherwise, if splitting is allowed, warehouses are chosen greedily: the one that can fill
       the most still-open lines completely, then the most units, then the nearest; repeated
       until nothing more can be filled. Without splitting, the whole need waits.
    3. What is still missing is short. With partial reservation the picks stand and the rest is
       backordered; without it nothing is reserved and the whole need is short.
    """
    wanted = {sku: q for sku, q in need.items() if q > 0}
    if not wanted:
        return Allocation((), {})
    order = list(ranking) + sorted(set(available) - set(ranking))
    for warehouse_id in order:
        stock = available.get(warehouse_id, {})
        if all(stock.get(sku, 0) >= q for sku, q in wanted.items()):
            return Allocation(tuple(Pick(warehouse_id, sku, q) for sku, q in sorted(wanted.items())),
                              {})
    if not policy.split_shipments:
        return Allocation((), dict(wanted))
    remaining = dict(wanted)
    left = {w: dict(available.get(w, {})) for w in order}
    picks: list[Pick] = []
    while any(remaining.values()):
        best: tuple[int, int, int] | None = None
        best_warehouse = ""
        for distance_rank, warehouse_id in enumerate(order):
            stock = left[warehouse_id]
            full_lines = sum(1 for sku, q in remaining.items() if q and stock.get(sku, 0) >= q)
            units = sum(min(q, max(stock.get(sku, 0), 0)) for sku, q in remaining.items())
            if units == 0:
                continue
            score = (full_lines, units, -distance_rank)
            if best is None or score > best:
                best, best_warehouse = score, warehouse_id
        if best is None:
            break
        stock = left[best_warehouse]
        for sku, q in sorted(remaining.items()):
            take = min(q, max(stock.get(sku, 0), 0))
            if take:
                picks.append(Pick(best_warehouse, sku, take))
                stock[sku] -= take
                remaining[sku] -= take
    short = {sku: q for sku, q in remaining.items() if q}
    if short and not policy.partial_reservation:
        return Allocation((), dict(wanted))
    return Allocation(tuple(sorted(picks)), short)


# --- a sequence of reservations -------------------------------------------------------------


@dataclass(frozen=True)
class StockRow:
    """One warehouse's figures for a SKU, with the SKU's reorder point and low-stock flag."""

    warehouse_id: str
    sku: str
    available: int
    reorder_point: int
    low_flagged: bool


@dataclass(frozen=True)
class Want:
    """What an order still needs reserved (units per SKU), and its warehouses, nearest first."""

    order_id: str
    need: Mapping[str, int]
    ranking: Sequence[str]


@dataclass(frozen=True)
class Reservations:
    """Where each want's units are reserved (None: not tried, see ``plan_reservations``)."""

    wants: tuple[Want, ...]
    allocations: tuple[Allocation | None, ...]

    @property
    def units(self) -> dict[tuple[str, str], int]:
        """The units taken from each (warehouse, SKU): what the stock gives up, all or none."""
        taken: dict[tuple[str, str], int] = defaultdict(int)
        for allocation in self.allocations:
            for pick in allocation.picks if allocation is not None else ():
                taken[(pick.warehouse_id, pick.sku)] += pick.quantity
        return dict(taken)

    @property
    def holds(self) -> list[tuple[str, Pick]]:
        """Each want's picks, as (order id, pick), in the wants' order, each's picks sorted."""
        return [(want.order_id, pick)
                for want, allocation in zip(self.wants, self.allocations, strict=True)
                if allocation is not None for pick in sorted(allocation.picks) if pick.quantity]


def plan_reservations(wants: Sequence[Want], rows: Iterable[StockRow], policy: AllocationPolicy,
                      *, while_any_of: Collection[str] = ()) -> Reservations:
    """Each want allocated (``allocate``) in turn on the available units of ``rows`` less what
    the wants before it took, as if reserved one after another. With ``while_any_of`` (stock of
    these SKUs arrived), the wants after the first that finds none of them left are not tried."""
    available: dict[str, dict[str, int]] = defaultdict(dict)
    for row in rows:
        available[row.warehouse_id][row.sku] = row.available
    allocations: list[Allocation | None] = []
    for want in wants:
        if while_any_of and not any(stock.get(sku, 0) > 0 for stock in available.values()
                                    for sku in while_any_of):
            allocations += [None] * (len(wants) - len(allocations))
            break
        # this want's SKUs with units, per warehouse
        view: dict[str, dict[str, int]] = {}
        for warehouse_id, stock in available.items():
            mine = {sku: q for sku in want.need if (q := stock.get(sku, 0)) > 0}
            if mine:
                view[warehouse_id] = mine
        allocation = allocate(want.need, view, want.ranking, policy)
        for pick in allocation.picks:
            available[pick.warehouse_id][pick.sku] -= pick.quantity
        allocations.append(allocation)
    return Reservations(tuple(wants), tuple(allocations))
