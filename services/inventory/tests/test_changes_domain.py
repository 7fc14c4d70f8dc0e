"""Inventory's rules for order changes: only the difference moves, all or nothing."""

from __future__ import annotations

import pytest

from orderflow.inventory import domain
from orderflow.inventory.domain import Pick

pytestmark = pytest.mark.unit

RANKING = ["WH-SH", "WH-HZ", "WH-BJ"]  # nearest first


def test_fewer_units_release_the_excess_from_the_farthest_warehouse_first() -> None:
    holds = [Pick("WH-SH", "A", 3), Pick("WH-BJ", "A", 2)]
    plan = domain.plan_change({"A": 2}, holds, {"A": 5}, RANKING)
    assert plan.release == (Pick("WH-BJ", "A", 2), Pick("WH-SH", "A", 1))
    assert plan.ordered == {"A": 2} and plan.short == {"A": 0}


def test_more_units_are_still_to_reserve_and_held_units_stay() -> None:
    plan = domain.plan_change({"A": 5}, [Pick("WH-SH", "A", 2)], {"A": 3}, RANKING)
    assert plan.release == ()
    assert plan.short == {"A": 3} and plan.ordered == {"A": 5}


def test_a_removed_line_releases_everything_and_keeps_a_zero_line() -> None:
    plan = domain.plan_change({"B": 1}, [Pick("WH-SH", "A", 2), Pick("WH-SH", "B", 1)],
                              {"A": 2, "B": 1}, RANKING)
    assert plan.release == (Pick("WH-SH", "A", 2),)
    assert plan.ordered == {"A": 0, "B": 1} and plan.short == {"A": 0, "B": 0}


def test_an_added_line_is_short_until_reserved() -> None:
    plan = domain.plan_change({"A": 1, "C": 4}, [Pick("WH-SH", "A", 1)], {"A": 1}, RANKING)
    assert plan.release == () and plan.short == {"A": 0, "C": 4}


def test_a_backordered_order_with_a_short_line_releases_only_real_holds() -> None:
    # ordered 3, 1 held, 2 short; changed to 1: nothing to release, nothing short
    plan = domain.plan_change({"A": 1}, [Pick("WH-SH", "A", 1)], {"A": 3}, RANKING)
    assert plan.release == () and plan.short == {"A": 0}


def test_the_policy_for_more_units() -> None:
    assert domain.change_outcome("reserved", {"A": 0}) == "reserved"
    assert domain.change_outcome("backordered", {"A": 0}) == "reserved"
    assert domain.change_outcome("reserved", {"A": 1}) == "refused"  # all or nothing
    assert domain.change_outcome("backordered", {"A": 1}) == "backordered"
