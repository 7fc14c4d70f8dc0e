"""``python -m tests.chaos --short`` inside the test run: its own embedded stack, every service as
a process (inventory twice), orders flowing while processes are SIGKILLed, the database stopped,
deliveries duplicated, offsets rewound and poison sent to every consumed topic. The figures it
prints must be the promise: nothing lost, nothing applied twice, the invariants hold, the DLQs
hold exactly the poison messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orderflow.devstack.stack import project_root

pytestmark = pytest.mark.fault


@pytest.mark.timeout(1800)
def test_the_short_chaos_run_loses_nothing_and_applies_nothing_twice() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}}
    run = subprocess.run([sys.executable, "-m", "tests.chaos", "--short"], cwd=project_root(),
                         env=env, capture_output=True, text=True, timeout=1750, check=False)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no figures printed (exit {run.returncode}):\n{run.stderr[-4000:]}"
    figures = json.loads(lines[-1])
    context = f"{json.dumps(figures, indent=1)[:4000]}\n--- stderr ---\n{run.stderr[-3000:]}"
    assert "error" not in figures, context
    assert figures["orders"] >= 100 and figures["faults_injected"] >= 100, context
    assert figures["lost"] == 0, context
    assert figures["duplicated_effects"] == 0, context
    assert figures["invariant_violations"] == 0, context
    assert figures["dlq_found"] == figures["dlq_expected"] > 0, context
    assert figures["dlq_missing"] == figures["dlq_unexpected"] == 0, context
    assert figures["dlq_replay"]["applied_once"], context
    kinds = figures["faults_by_kind"]
    for kind in ("sigkill", "replica_sigkill", "database_stopped", "duplicate_delivery",
                 "offsets_rewound", "poison", "stale_stock_count"):
        assert kinds.get(kind), f"no {kind} fault was injected\n{context}"
    assert run.returncode == 0, context
