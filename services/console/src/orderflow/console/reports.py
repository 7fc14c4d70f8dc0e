"""Reports, pure: computed from order views (the read model), tested without a database.

- fill rate (订单满足率) by order, line and unit: what inventory reserved at the first attempt,
  out of what was ordered, over the orders that reached inventory;
- on-time delivery rate (配送及时率): delivered shipments on time against their promised date, and
  orders whose every shipment was on time; on-time-in-full (OTIF): orders delivered on time *and*
  reserved in full at the first attempt, over delivered orders;
- cycle time per stage, p50 and p95 (nearest-rank percentiles);
- volumes by channel and day, top customers and SKUs by amount, holds and rejections by reason.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from orderflow.console.domain import STAGES, OrderView, state_label
from orderflow.contracts.order import OrderState

INVENTORY_STATES = {OrderState.BACKORDERED, OrderState.RESERVED, OrderState.DISPATCHED,
                    OrderState.DELIVERED}


class Rate(BaseModel):
    numerator: int
    denominator: int
    rate: float | None = Field(description="numerator / denominator; None when nothing to count")


def rate(numerator: int, denominator: int) -> Rate:
    return Rate(numerator=numerator, denominator=denominator,
                rate=round(numerator / denominator, 4) if denominator else None)


class Percentiles(BaseModel):
    stage: str
    count: int
    p50_s: float | None
    p95_s: float | None


class VolumeRow(BaseModel):
    day: date
    channel: str
    orders: int
    amount: Decimal | None
    currency: str


class RankedRow(BaseModel):
    key: str
    name: str = ""
    orders: int
    quantity: int = 0
    amount: Decimal
    currency: str


class ReasonRow(BaseModel):
    code: str
    stage: str = ""
    orders: int


class Summary(BaseModel):
    period_from: datetime
    period_to: datetime
    orders: int
    by_state: dict[str, int]
    fill_rate_orders: Rate
    fill_rate_lines: Rate
    fill_rate_units: Rate
    on_time_shipments: Rate
    on_time_orders: Rate
    on_time_in_full: Rate
    cycle_times: list[Percentiles]
    volumes: list[VolumeRow]
    top_customers: list[RankedRow]
    top_skus: list[RankedRow]
    holds_by_reason: list[ReasonRow]
    rejections_by_reason: list[ReasonRow]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def period(start: date | datetime | None, end: date | datetime | None, *,
           now: datetime, default_days: int = 30) -> tuple[datetime, datetime]:
    """``[from, to)`` in UTC; a date ``to`` includes that whole day."""
    def as_dt(value: date | datetime, *, end_of_day: bool) -> datetime:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        moment = datetime.combine(value, time.min, tzinfo=UTC)
        return moment + timedelta(days=1) if end_of_day else moment

    to = as_dt(end, end_of_day=True) if end is not None else now
    frm = as_dt(start, end_of_day=False) if start is not None else to - timedelta(days=default_days)
    if frm > to:
        raise ValueError("from is after to")
    return frm, to


def order_time(view: OrderView) -> datetime | None:
    """When an order counts for a period: intake's acceptance, or its first event."""
    return view.milestones.get("received") or view.first_seen_at


def in_period(views: Iterable[OrderView], frm: datetime, to: datetime) -> list[OrderView]:
    out = []
    for v in views:
        at = order_time(v)
        if at is not None and frm <= at < to:
            out.append(v)
    return out


def fill_rates(views: Sequence[OrderView]) -> tuple[Rate, Rate, Rate]:
    orders_full = orders = lines_full = lines = units_full = units = 0
    for v in views:
        if v.state not in INVENTORY_STATES or not v.lines:
            continue
        short = {s.sku: s.short for s in v.first_attempt_short}
        orders += 1
        orders_full += 1 if not short else 0
        for line in v.lines:
            lines += 1
            lines_full += 0 if short.get(line.sku) else 1
            units += line.quantity
            units_full += line.quantity - min(short.get(line.sku, 0), line.quantity)
    return rate(orders_full, orders), rate(lines_full, lines), rate(units_full, units)


def on_time(views: Sequence[OrderView]) -> tuple[Rate, Rate, Rate]:
    ship_ok = ships = orders_ok = orders = otif = 0
    for v in views:
        for s in v.shipments:
            if s.status == "delivered" and s.on_time is not None:
                ships += 1
                ship_ok += 1 if s.on_time else 0
        if v.state == OrderState.DELIVERED:
            orders += 1
            orders_ok += 1 if v.on_time else 0
            otif += 1 if v.on_time and v.filled_in_full_first_attempt else 0
    return rate(ship_ok, ships), rate(orders_ok, orders), rate(otif, orders)


def cycle_times(views: Sequence[OrderView]) -> list[Percentiles]:
    samples: dict[str, list[float]] = defaultdict(list)
    for v in views:
        for st in v.stage_times:
            if st.seconds is not None:
                samples[st.stage].append(st.seconds)
        received, delivered = v.milestones.get("received"), v.milestones.get("delivered")
        if received and delivered:
            samples["received_to_delivered"].append((delivered - received).total_seconds())
    names = [s for s, _a, _b in STAGES] + ["received_to_delivered"]
    return [Percentiles(stage=n, count=len(samples[n]), p50_s=percentile(samples[n], 50),
                        p95_s=percentile(samples[n], 95)) for n in names]


def volumes(views: Sequence[OrderView]) -> list[VolumeRow]:
    """Orders per day and channel (every order), with the amount of those accepted (not rejected);
    the amount is None when a day and channel mix currencies."""
    counts: Counter[tuple[date, str]] = Counter()
    amounts: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    currencies: dict[tuple[date, str], set[str]] = defaultdict(set)
    for v in views:
        at = order_time(v)
        if at is None:
            continue
        key = (at.date(), v.channel or "unknown")
        counts[key] += 1
        if _sold(v):
            amounts[key] += v.grand_total or Decimal(0)
            currencies[key].add(v.currency or "")
    rows = []
    for key in sorted(counts):
        mixed = len(currencies[key]) > 1
        rows.append(VolumeRow(day=key[0], channel=key[1], orders=counts[key],
                              amount=None if mixed else amounts[key],
                              currency="mixed" if mixed else next(iter(currencies[key]), "")))
    return rows


def _sold(v: OrderView) -> bool:
    """Orders that count as sales: accepted and not rejected."""
    return v.state is not None and v.state != OrderState.REJECTED and v.grand_total is not None


def top_customers(views: Sequence[OrderView], limit: int = 10) -> list[RankedRow]:
    rows: dict[tuple[str, str], RankedRow] = {}
    for v in views:
        if not _sold(v) or not v.customer_id:
            continue
        key = (v.customer_id, v.currency or "")
        row = rows.setdefault(key, RankedRow(key=v.customer_id, name=v.customer_name or "",
                                             orders=0, amount=Decimal(0), currency=v.currency or ""))
        row.orders += 1
        row.amount += v.grand_total or Decimal(0)
    return sorted(rows.values(), key=lambda r: (-r.amount, r.key))[:limit]


def top_skus(views: Sequence[OrderView], limit: int = 10) -> list[RankedRow]:
    rows: dict[tuple[str, str], RankedRow] = {}
    for v in views:
        if not _sold(v):
            continue
        for line in v.lines:
            key = (line.sku, v.currency or "")
            row = rows.setdefault(key, RankedRow(key=line.sku, orders=0, amount=Decimal(0),
                                                 currency=v.currency or ""))
            row.orders += 1
            row.quantity += line.quantity
            row.amount += line.amount
    return sorted(rows.values(), key=lambda r: (-r.amount, r.key))[:limit]


def holds_by_reason(views: Sequence[OrderView]) -> list[ReasonRow]:
    counts: Counter[str] = Counter()
    for v in views:
        for code in {h.code for h in v.holds}:
            counts[code] += 1
    return [ReasonRow(code=c, orders=n) for c, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]


def rejections_by_reason(views: Sequence[OrderView]) -> list[ReasonRow]:
    counts: Counter[tuple[str, str]] = Counter()
    for v in views:
        for code, stage in {(r.code, r.stage) for r in v.rejections}:
            counts[(code, stage)] += 1
    return [ReasonRow(code=c, stage=s, orders=n)
            for (c, s), n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]


def funnel(views: Iterable[OrderView]) -> dict[str, int]:
    counts: Counter[str] = Counter(state_label(v.state) for v in views)
    return dict(counts)


def summarize(views: Iterable[OrderView], frm: datetime, to: datetime) -> Summary:
    chosen = in_period(views, frm, to)
    f_orders, f_lines, f_units = fill_rates(chosen)
    ot_ships, ot_orders, otif = on_time(chosen)
    return Summary(
        period_from=frm, period_to=to, orders=len(chosen), by_state=funnel(chosen),
        fill_rate_orders=f_orders, fill_rate_lines=f_lines, fill_rate_units=f_units,
        on_time_shipments=ot_ships, on_time_orders=ot_orders, on_time_in_full=otif,
        cycle_times=cycle_times(chosen), volumes=volumes(chosen),
        top_customers=top_customers(chosen), top_skus=top_skus(chosen),
        holds_by_reason=holds_by_reason(chosen), rejections_by_reason=rejections_by_reason(chosen),
    )


# --- exports ----------------------------------------------------------------------------------


def tables(summary: Summary) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The summary as named tables (sheet name -> header, rows) for CSV and XLSX."""
    def r(x: Rate) -> list[Any]:
        return [x.numerator, x.denominator, x.rate if x.rate is not None else ""]

    kpis = [
        ["fill rate (orders)", *r(summary.fill_rate_orders)],
        ["fill rate (lines)", *r(summary.fill_rate_lines)],
        ["fill rate (units)", *r(summary.fill_rate_units)],
        ["on-time delivery (shipments)", *r(summary.on_time_shipments)],
        ["on-time delivery (orders)", *r(summary.on_time_orders)],
        ["on-time in full", *r(summary.on_time_in_full)],
    ]
    return {
        "kpis": (["metric", "numerator", "denominator", "rate"], kpis),
        "states": (["state", "orders"], [[k, n] for k, n in sorted(summary.by_state.items())]),
        "cycle_times": (["stage", "orders", "p50_seconds", "p95_seconds"],
                        [[c.stage, c.count, c.p50_s if c.p50_s is not None else "",
                          c.p95_s if c.p95_s is not None else ""] for c in summary.cycle_times]),
        "volumes": (["day", "channel", "orders", "amount", "currency"],
                    [[v.day.isoformat(), v.channel, v.orders,
                      str(v.amount) if v.amount is not None else "", v.currency]
                     for v in summary.volumes]),
        "top_customers": (["customer", "name", "orders", "amount", "currency"],
                          [[t.key, t.name, t.orders, str(t.amount), t.currency]
                           for t in summary.top_customers]),
        "top_skus": (["sku", "orders", "quantity", "amount", "currency"],
                     [[t.key, t.orders, t.quantity, str(t.amount), t.currency]
                      for t in summary.top_skus]),
        "holds": (["reason", "orders"], [[h.code, h.orders] for h in summary.holds_by_reason]),
        "rejections": (["reason", "stage", "orders"],
                       [[h.code, h.stage, h.orders] for h in summary.rejections_by_reason]),
    }


def to_csv(summary: Summary) -> str:
    """One CSV: a ``section`` column, then each table's columns (header row per section)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["period_from", summary.period_from.isoformat(),
                     "period_to", summary.period_to.isoformat(), "orders", summary.orders])
    for name, (header, rows) in tables(summary).items():
        writer.writerow([])
        writer.writerow(["section", *header])
        for row in rows:
            writer.writerow([name, *row])
    return out.getvalue()


def to_xlsx(summary: Summary) -> bytes:
    """One sheet per table, numbers as numbers (amounts as decimals)."""
    from openpyxl import Workbook

    wb = Workbook()
    first = wb.active
    first.title = "period"
    first.append(["from", summary.period_from.isoformat()])
    first.append(["to", summary.period_to.isoformat()])
    first.append(["orders", summary.orders])
    for name, (header, rows) in tables(summary).items():
        ws = wb.create_sheet(name)
        ws.append(header)
        for row in rows:
            ws.append([_cell(h, c) for h, c in zip(header, row, strict=True)])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _cell(header: str, value: Any) -> Any:
    if header == "amount" and isinstance(value, str) and value:
        return Decimal(value)  # openpyxl writes a Decimal as a number
    return value
