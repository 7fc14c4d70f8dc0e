"""Inventory's rules, without a broker or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orderflow.inventory import domain
from orderflow.inventory.domain import Allocation, AllocationPolicy, Pick, WaitingOrder, Warehouse

pytestmark = pytest.mark.unit

WAREHOUSES = [Warehouse("WH-SH", "上海"), Warehouse("WH-GZ", "广东"), Warehouse("WH-BJ", "北京"),
              Warehouse("WH-CD", "四川"), Warehouse("WH-WH", "湖北"), Warehouse("WH-HZ", "浙江")]
SPLIT = AllocationPolicy(split_shipments=True, partial_reservation=True)
NO_SPLIT = AllocationPolicy(split_shipments=False, partial_reservation=True)
WHOLE = AllocationPolicy(split_shipments=True, partial_reservation=False)


def test_provinces_are_recognised_however_they_are_written() -> None:
    assert domain.province_key("广东省") == "广东"
    assert domain.province_key("广西壮族自治区") == "广西"
    assert domain.province_key("上海市") == "上海"
    assert domain.province_key("Guangdong Province") == "广东"
    assert domain.province_key("Atlantis") is None


def test_distances_are_zero_in_the_same_province_and_symmetric() -> None:
    assert domain.distance_km("江苏", "江苏省") == 0
    assert domain.distance_km("上海", "浙江") == domain.distance_km("浙江", "上海")
    assert 100 < domain.distance_km("上海", "浙江") < 200  # Shanghai to Hangzhou, about 165 km
    assert domain.distance_km("北京", "广东") > 1800
    assert domain.distance_km("Atlantis", "北京") == domain.UNKNOWN_DISTANCE_KM


@pytest.mark.parametrize(("destination", "nearest"), [
    ("上海", "WH-SH"), ("江苏", "WH-HZ"), ("广西", "WH-GZ"), ("天津", "WH-BJ"),
    ("重庆", "WH-CD"), ("河南", "WH-WH"), ("福建", "WH-HZ"),
])
def test_the_nearest_warehouse_ranks_first(destination: str, nearest: str) -> None:
    assert domain.rank_warehouses(destination, WAREHOUSES)[0] == nearest


def test_unknown_provinces_rank_last_by_id() -> None:
    ranked = domain.rank_warehouses("北京", [Warehouse("WH-X", "?"), Warehouse("WH-A", "?"),
                                             Warehouse("WH-BJ", "北京")])
    assert ranked == ["WH-BJ", "WH-A", "WH-X"]


def test_the_nearest_warehouse_that_can_fill_everything_ships_it_all() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    available = {"WH-SH": {"A": 5, "B": 1}, "WH-HZ": {"A": 10, "B": 10}, "WH-GZ": {"A": 99, "B": 99}}
    got = domain.allocate({"A": 3, "B": 2}, available, ranking, SPLIT)
    assert got == Allocation((Pick("WH-HZ", "A", 3), Pick("WH-HZ", "B", 2)), {})
    assert got.complete


def test_a_complete_order_ships_from_the_nearest_even_when_a_farther_one_has_more() -> None:
    ranking = domain.rank_warehouses("北京", WAREHOUSES)
    got = domain.allocate({"A": 3}, {"WH-BJ": {"A": 3}, "WH-SH": {"A": 500}}, ranking, SPLIT)
    assert got.picks == (Pick("WH-BJ", "A", 3),)


def test_split_prefers_the_warehouse_that_fills_most_lines_then_the_nearest() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    available = {"WH-SH": {"A": 2}, "WH-GZ": {"A": 10, "B": 4}, "WH-BJ": {"C": 1}}
    got = domain.allocate({"A": 5, "B": 4, "C": 1}, available, ranking, SPLIT)
    assert got.complete
    assert set(got.picks) == {Pick("WH-GZ", "A", 5), Pick("WH-GZ", "B", 4), Pick("WH-BJ", "C", 1)}


def test_split_takes_units_from_several_warehouses_nearest_first() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    available = {"WH-SH": {"A": 4}, "WH-HZ": {"A": 4}, "WH-BJ": {"A": 4}}
    got = domain.allocate({"A": 10}, available, ranking, SPLIT)
    assert got.complete
    assert set(got.picks) == {Pick("WH-SH", "A", 4), Pick("WH-HZ", "A", 4), Pick("WH-BJ", "A", 2)}


def test_partial_stock_is_reserved_and_the_rest_is_short() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    got = domain.allocate({"A": 10, "B": 2}, {"WH-SH": {"A": 3, "B": 2}, "WH-GZ": {"A": 4}},
                          ranking, SPLIT)
    assert set(got.picks) == {Pick("WH-SH", "A", 3), Pick("WH-SH", "B", 2), Pick("WH-GZ", "A", 4)}
    assert got.short == {"A": 3}
    assert not got.complete


def test_without_partial_reservation_a_short_order_reserves_nothing() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    got = domain.allocate({"A": 10, "B": 2}, {"WH-SH": {"A": 3, "B": 2}}, ranking, WHOLE)
    assert got.picks == ()
    assert got.short == {"A": 10, "B": 2}


def test_without_partial_reservation_a_split_that_fills_everything_still_goes() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    got = domain.allocate({"A": 6}, {"WH-SH": {"A": 3}, "WH-GZ": {"A": 3}}, ranking, WHOLE)
    assert got.complete and len(got.picks) == 2


def test_without_split_shipments_an_order_waits_for_one_warehouse_to_fill_it() -> None:
    ranking = domain.rank_warehouses("上海", WAREHOUSES)
    waiting = domain.allocate({"A": 6}, {"WH-SH": {"A": 3}, "WH-GZ": {"A": 3}}, ranking, NO_SPLIT)
    assert waiting.picks == () and waiting.short == {"A": 6}
    later = domain.allocate({"A": 6}, {"WH-SH": {"A": 3}, "WH-GZ": {"A": 7}}, ranking, NO_SPLIT)
    assert later.picks == (Pick("WH-GZ", "A", 6),)


def test_no_stock_at_all_is_all_short_and_nothing_is_zero() -> None:
    got = domain.allocate({"A": 2, "B": 0}, {}, [], SPLIT)
    assert got.picks == () and got.short == {"A": 2}
    assert domain.allocate({}, {"WH-SH": {"A": 1}}, ["WH-SH"], SPLIT).complete


def test_allocation_never_takes_more_than_is_available() -> None:
    available = {"W1": {"A": 3, "B": 1}, "W2": {"A": 2}, "W3": {"B": 2, "C": 5}}
    for need in ({"A": 9, "B": 9, "C": 9}, {"A": 5}, {"B": 3, "C": 1}, {"A": 1, "C": 6}):
        got = domain.allocate(need, available, ["W2", "W1", "W3"], SPLIT)
        taken: dict[tuple[str, str], int] = {}
        for p in got.picks:
            taken[(p.warehouse_id, p.sku)] = taken.get((p.warehouse_id, p.sku), 0) + p.quantity
        assert all(q <= available[w].get(s, 0) for (w, s), q in taken.items())
        for sku, q in need.items():
            assert sum(p.quantity for p in got.picks if p.sku == sku) + got.short.get(sku, 0) == q


def test_demand_adds_up_lines_of_the_same_sku() -> None:
    assert domain.demand_of([("A", 2), ("B", 1), ("A", 3)]) == {"A": 5, "B": 1}


def test_the_backorder_queue_serves_rush_first_then_the_oldest() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    old_normal = WaitingOrder("old-normal", "normal", t0, 1)
    new_normal = WaitingOrder("new-normal", "normal", t0 + timedelta(hours=1), 3)
    new_rush = WaitingOrder("new-rush", "rush", t0 + timedelta(hours=2), 5)
    old_rush = WaitingOrder("old-rush", "rush", t0 + timedelta(minutes=1), 2)
    same_time = WaitingOrder("same-time", "normal", t0, 0)
    ordered = domain.queue_order([new_normal, old_normal, new_rush, old_rush, same_time])
    assert [w.order_id for w in ordered] == ["old-rush", "new-rush", "same-time", "old-normal",
                                             "new-normal"]


def test_reservations_expire_after_their_ttl() -> None:
    reserved = datetime(2026, 1, 1, tzinfo=UTC)
    expiry = domain.expires_at(reserved, timedelta(hours=72))
    assert not domain.is_expired(expiry, reserved + timedelta(hours=71, minutes=59))
    assert domain.is_expired(expiry, reserved + timedelta(hours=72))
    assert not domain.is_expired(None, reserved + timedelta(days=999))


def test_low_stock_is_reported_once_per_crossing() -> None:
    assert domain.low_stock_change(19, 20, False, decreased=True) == "fell_below"
    assert domain.low_stock_change(10, 20, True, decreased=True) is None  # already reported
    assert domain.low_stock_change(20, 20, True, decreased=False) == "recovered"
    assert domain.low_stock_change(25, 20, False, decreased=True) is None
    assert domain.low_stock_change(5, 20, False, decreased=False) is None  # a receipt is no fall
    assert domain.low_stock_change(0, 0, False, decreased=True) is None  # no reorder point
    assert domain.low_stock_change(0, 0, True, decreased=True) == "recovered"


def test_shortages_say_what_was_reserved_of_each_short_line() -> None:
    got = domain.shortages({"A": 10, "B": 2}, {"A": 3, "B": 0})
    assert got == [domain.Shortage("A", 10, 7, 3)]


def test_picks_merge_per_warehouse_and_sku_as_the_holds_table_keeps_them() -> None:
    picks = [Pick("WH-SH", "TEA-002", 1), Pick("WH-BJ", "TEA-001", 2), Pick("WH-SH", "TEA-002", 3),
             Pick("WH-GZ", "TEA-003", 0)]
    assert domain.merge_picks(picks) == [Pick("WH-BJ", "TEA-001", 2), Pick("WH-SH", "TEA-002", 4)]
    assert domain.merge_picks([]) == []
