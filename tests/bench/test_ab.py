"""The A/B comparison's arithmetic (``bench.ab``), without running a benchmark."""

from __future__ import annotations

from typing import Any

import pytest
from bench.ab import _MICRO_LINE, FIGURES, summarise

pytestmark = pytest.mark.unit

MICRO_OUTPUT = """records after the run: order.approved 1000, order.inbound 1000
intake        1000 events  client CPU    0.31 ms/order ( 0.31 ms/event)  wall    0.46 s
inventory     2000 events  client CPU    0.29 ms/order ( 0.15 ms/event)  wall    0.60 s
all                        client CPU    2.81 ms/order
"""


def test_the_micro_pipelines_figures_are_read_per_service_and_for_all() -> None:
    assert dict(_MICRO_LINE.findall(MICRO_OUTPUT)) == {
        "intake": "0.31", "inventory": "0.29", "all": "2.81"}


def run(side: str, per_s: float, cpu: float) -> dict[str, Any]:
    return {"side": side, "figures": {"orders_per_s_to_last_dispatch": per_s,
                                      "orders_per_s_every_service_done": None,
                                      "main_line_cpu_ms_per_order": cpu,
                                      "all_services_cpu_ms_per_order": cpu * 4}}


def test_medians_ratios_and_the_noise_within_a_side() -> None:
    runs = [run("A", 600, 1.5), run("B", 500, 1.8), run("B", 550, 1.6), run("A", 660, 1.5),
            run("A", 630, 1.6)]
    summary = summarise(runs, FIGURES)
    assert summary["median"]["A"]["orders_per_s_to_last_dispatch"] == 630
    assert summary["median"]["B"]["orders_per_s_to_last_dispatch"] == 525
    assert summary["ratio_b_over_a"]["orders_per_s_to_last_dispatch"] == round(525 / 630, 3)
    assert summary["ratio_b_over_a"]["main_line_cpu_ms_per_order"] == round(1.7 / 1.5, 3)
    # the noise: the widest spread of one side's runs (B's 500 to 550 is 10 %, A's 600 to 660 too)
    assert summary["within_side_spread"]["orders_per_s_to_last_dispatch"] == 0.1
    # a figure no run has is no figure, not a zero
    assert summary["median"]["A"]["orders_per_s_every_service_done"] is None
    assert summary["ratio_b_over_a"]["orders_per_s_every_service_done"] is None
