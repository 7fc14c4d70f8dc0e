"""The benchmark's CPU accounting (``bench.run.cpu_window``), without running the benchmark."""

from __future__ import annotations

import pytest
from bench.run import DRIVER, cpu_window

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
