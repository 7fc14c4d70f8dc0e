"""Reports and the exception queue, computed from order views, without a database."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from console_factories import T0, OrderStory
from openpyxl import load_workbook

from orderflow.console import exception_queue, reports
from orderflow.console.domain import OrderView, project
from orderflow.console.settings import DEFAULT_SLA_MINUTES

pytestmark = pytest.mark.unit


def view(story: OrderStory) -> OrderView:
    return project(story.order_id, story.entries)


@pytest.fixture
def orders() -> list[OrderView]:
    return [
        # in full, on time
        view(OrderStory("A", customer_id="C0001", lines=[("TEA-001", 2)]).happy()),
        # backordered 1 of 4 units on the first line; delivered late
        view(OrderStory("B", customer_id="C0002", lines=[("TEA-001", 4), ("FAN-030", 1)])
             .submitted().received().approved().backordered(short=1)
             .reserved(minutes=60, in_full=False, from_backorder=True)
             .dispatched(minutes=70).delivered(minutes=300, on_time=False)),
        # held then rejected
        view(OrderStory("C", customer_id="C0003").submitted().received().held().rejected()),
        # rejected by intake
        view(OrderStory("D", customer_id="C0004").submitted().rejected(minutes=0.1, stage="intake",
                                                                      code="unknown_sku")),
        # still held, overdue
        view(OrderStory("E", customer_id="C0005").submitted().received().held(code="overdue")),
    ]


def test_fill_rate_by_order_line_and_unit(orders: list[OrderView]) -> None:
    by_order, by_line, by_unit = reports.fill_rates(orders)
    assert (by_order.numerator, by_order.denominator) == (1, 2)
    assert (by_line.numerator, by_line.denominator) == (2, 3)  # B's first line was short
    assert (by_unit.numerator, by_unit.denominator) == (6, 7)  # 2 + (4-1) + 1 of 2 + 4 + 1
    assert by_order.rate == 0.5


def test_on_time_and_on_time_in_full(orders: list[OrderView]) -> None:
    shipments, per_order, otif = reports.on_time(orders)
    assert (shipments.numerator, shipments.denominator) == (1, 2)
    assert (per_order.numerator, per_order.denominator) == (1, 2)
    assert (otif.numerator, otif.denominator) == (1, 2)


def test_on_time_in_full_needs_both() -> None:
    late_but_full = view(OrderStory("F").happy().delivered(minutes=101, shipment="S1",
                                                            on_time=False))
    on_time_but_short = view(OrderStory("G", lines=[("TEA-001", 2)]).received().approved()
                             .backordered(short=1).reserved(in_full=False).dispatched()
                             .delivered())
    _s, per_order, otif = reports.on_time([late_but_full, on_time_but_short])
    assert (per_order.numerator, otif.numerator, otif.denominator) == (1, 0, 2)


def test_nothing_to_count_is_no_rate_not_zero() -> None:
    assert reports.rate(0, 0).rate is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert reports.percentile(values, 50) == 50.0
    assert reports.percentile(values, 95) == 95.0
    assert reports.percentile([7.0], 95) == 7.0
    assert reports.percentile([], 50) is None


def test_cycle_times_per_stage(orders: list[OrderView]) -> None:
    cycle = {c.stage: c for c in reports.cycle_times(orders)}
    assert cycle["transit"].count == 2
    assert cycle["transit"].p50_s == 5400.0  # A: 10 -> 100 minutes
    assert cycle["transit"].p95_s == 13800.0  # B: 70 -> 300 minutes
    assert cycle["received_to_delivered"].count == 2


def test_volumes_top_lists_and_reasons(orders: list[OrderView]) -> None:
    summary = reports.summarize(orders, T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert summary.orders == 5
    (volume,) = summary.volumes
    assert (volume.day, volume.channel, volume.orders) == (date(2026, 11, 20), "canonical", 5)
    # rejected orders are not sales
    assert [c.key for c in summary.top_customers] == ["C0002", "C0001", "C0005"]
    assert summary.top_customers[0].amount == orders[1].grand_total
    tea = next(s for s in summary.top_skus if s.key == "TEA-001")
    assert tea.quantity == 2 + 4 + 2  # A, B, E (C is rejected)
    assert {(h.code, h.orders) for h in summary.holds_by_reason} == {("credit_limit", 1), ("overdue", 1)}
    assert {(r.code, r.stage) for r in summary.rejections_by_reason} == {
        ("credit_limit", "review"), ("unknown_sku", "intake")}
    assert summary.by_state == {"delivered": 2, "rejected": 2, "held": 1}


def test_the_period_selects_orders_by_when_intake_accepted_them(orders: list[OrderView]) -> None:
    frm, to = reports.period(date(2026, 11, 21), date(2026, 11, 21), now=T0)
    assert reports.summarize(orders, frm, to).orders == 0
    frm, to = reports.period(date(2026, 11, 20), date(2026, 11, 20), now=T0)
    assert to == datetime(2026, 11, 21, tzinfo=UTC)
    assert reports.summarize(orders, frm, to).orders == 5
    with pytest.raises(ValueError, match="after"):
        reports.period(date(2026, 11, 22), date(2026, 11, 20), now=T0)


def test_csv_and_xlsx_exports_carry_the_figures(orders: list[OrderView]) -> None:
    summary = reports.summarize(orders, T0 - timedelta(days=1), T0 + timedelta(days=1))
    rows = list(csv.reader(io.StringIO(reports.to_csv(summary))))
    assert ["kpis", "fill rate (orders)", "1", "2", "0.5"] in rows
    assert any(r[:2] == ["top_customers", "C0002"] for r in rows)
    book = load_workbook(io.BytesIO(reports.to_xlsx(summary)))
    assert {"period", "kpis", "cycle_times", "volumes", "top_customers", "top_skus", "holds",
            "rejections"} <= set(book.sheetnames)
    sheet = book["top_customers"]
    assert sheet.cell(2, 1).value == "C0002"
    assert Decimal(str(sheet.cell(2, 4).value)) == orders[1].grand_total


def test_exception_queue_ages_and_sla(orders: list[OrderView]) -> None:
    now = T0 + timedelta(minutes=1) + timedelta(minutes=241)
    items = exception_queue.queue(orders, [], now, DEFAULT_SLA_MINUTES)
    (held,) = [i for i in items if i.kind == "held"]  # the orders' rejected one is also listed
    assert (held.kind, held.reason_codes) == ("held", ["overdue"])
    assert held.actions == ["approve", "reject", "send_back", "cancel"]
    assert held.age_s == 241 * 60 and held.breached  # SLA 240 minutes
    early = exception_queue.queue(orders, [], T0 + timedelta(minutes=30), DEFAULT_SLA_MINUTES,
                                  kind="held")
    assert not early[0].breached
    assert exception_queue.queue(orders, [], now, DEFAULT_SLA_MINUTES, kind="held",
                                 reason="credit_limit") == []


def test_exception_queue_lists_backorders_delays_carrier_exceptions_and_dead_letters() -> None:
    back = view(OrderStory("H").received().approved().backordered(short=2))
    late = view(OrderStory("I").received().approved().reserved().dispatched().delayed())
    broken = view(OrderStory("J").received().approved().reserved().dispatched().carrier_exception())
    dead = exception_queue.DeadLetter(topic="order.inbound", offset=3, key="k", reason="malformed_json",
                                      error="bad", service="intake", event_type=None,
                                      at=T0 + timedelta(minutes=5))
    now = T0 + timedelta(minutes=100)
    items = exception_queue.queue([back, late, broken], [dead], now, {**DEFAULT_SLA_MINUTES, "dlq": 60})
    kinds = {i.kind: i for i in items}
    assert set(kinds) == {"backordered", "delayed", "carrier_exception", "dlq"}
    assert kinds["delayed"].reason == "weather" and kinds["delayed"].breached is False  # 50 of 120 min
    assert kinds["carrier_exception"].breached is False  # 40 of 60 min
    assert kinds["dlq"].breached is True and kinds["dlq"].actions == ["replay"]
    counts = exception_queue.counts(items)
    assert counts["dlq"] == {"open": 1, "breached": 1} and counts["held"] == {"open": 0, "breached": 0}
    delivered = view(OrderStory("K").received().approved().reserved().dispatched().delayed()
                     .delivered())
    assert exception_queue.order_exceptions(delivered, now, DEFAULT_SLA_MINUTES) == []
