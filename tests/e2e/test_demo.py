"""`orderflow demo` as a newcomer runs it, on each broker (Apache Kafka, and the embedded Tansu
broker of the Python-only default), with infrastructure of its own each time: the stack comes
up, orders flow from every channel, and the summary says nothing was lost or applied twice;
every order comes to the outcome the simulator meant (rejected or held for the seeded reason, else
fulfilled), every customer-facing event has its notification recorded, no dead letter appears;
the command exits 0 and leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from orderflow.testing.infra import BrokerKind

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
@pytest.mark.parametrize("broker", ["kafka", "tansu"])
def test_the_demo_settles_every_order_once(tmp_path: Path, broker: BrokerKind) -> None:
    env = {**os.environ, "ORDERFLOW_VAR_DIR": str(tmp_path / "var")}
    for name in ("ORDERFLOW_TEST_SERVICES", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(name, None)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = subprocess.run([sys.executable, "-m", "orderflow.devstack.cli", "demo", "--json",
                          "--orders", "150", "--broker", broker], env=env, capture_output=True, text=True,
                         timeout=840, check=False)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no summary (exit {run.returncode}):\n{run.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    context = f"{json.dumps(summary, indent=1)[:3000]}\n--- stderr ---\n{run.stderr[-2000:]}"
    assert summary["orders_pushed"] >= 100, context
    assert summary["lost"] == 0, context
    assert summary["duplicates"] == 0, context
    assert summary["invariant_violations"] == 0, context
    assert summary["settled"] == summary["orders_pushed"], context
    assert summary["wrong_outcome"] == 0, context
    assert summary["unnotified"] == 0, context
    assert summary["unexpected_dead_letters"] == 0, context
    assert run.returncode == 0, context
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], f"left running: {[(p.pid, p.name()) for p in left]}"
