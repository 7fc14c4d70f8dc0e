"""The benchmark's CPU accounting (``bench.run.cpu_window``), without running the benchmark."""

from __future__ import annotations

import pytest
from bench.run import DRIVER, ceiling_budget, cpu_window

pytestmark = pytest.mark.unit


def test_each_process_has_its_share_of_what_the_pipeline_used_the_driver_none() -> None:
    before = {"intake": 1.0, "console": 2.0, DRIVER: 5.0}
    after = {"intake": 2.0, "console": 5.0, DRIVER: 9.0, "started later": 1.0}
    window = cpu_window(before, after, orders=500)
    # the pipeline used 1 + 3 + 1 s; the driver's 4 s are its own, in no share
    assert window["intake"] == {"cpu_s": 1.0, "cpu_ms_per_order": 2.0, "share_pct": 20.0}
    assert window["console"] == {"cpu_s": 3.0, "cpu_ms_per_order": 6.0, "share_pct": 60.0}
    assert window["started later"]["share_pct"] == 20.0
    assert window[DRIVER] == {"cpu_s": 4.0, "cpu_ms_per_order": 8.0, "share_pct": None}


def test_an_idle_window_has_no_cost_per_order_and_nothing_used_has_no_share() -> None:
    idle = cpu_window({"intake": 1.0}, {"intake": 1.5}, orders=0)
    assert idle["intake"] == {"cpu_s": 0.5, "cpu_ms_per_order": None, "share_pct": 100.0}
    nothing = cpu_window({"intake": 1.0, DRIVER: 1.0}, {"intake": 1.0, DRIVER: 2.0}, orders=10)
    assert nothing["intake"]["share_pct"] is None


def test_the_ceiling_targets_cpu_budget_against_what_an_order_cost() -> None:
    """At 50 % of a 10,000/s ceiling (5,000 orders/s) two cores leave 0.4 ms of CPU per order;
    1,000 orders that cost the pipeline 1.6 s (the driver's 0.5 s not counted) cost 1.6 ms each,
    0.7 of it in PostgreSQL and the broker, so those cores carry at most 1,250 orders/s."""
    cpu = {"intake": {"cpu_s": 0.9}, "postgres (all backends)": {"cpu_s": 0.5},
           "tansu broker": {"cpu_s": 0.2}, DRIVER: {"cpu_s": 0.5}}
    assert ceiling_budget(10_000.0, 2, cpu, 1000) == {
        "target_orders_per_s": 5000.0, "budget_cpu_ms_per_order": 0.4,
        "pipeline_cpu_ms_per_order": 1.6, "database_and_broker_cpu_ms_per_order": 0.7,
        "cpu_bound_orders_per_s": 1250.0}
    assert ceiling_budget(None, 2, cpu, 1000) is None  # no ceiling measured
    assert ceiling_budget(10_000.0, 2, {}, 1000) is None  # no saturation run
