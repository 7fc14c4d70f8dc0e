"""``python -m tests.chaos --short --broker <broker>`` inside the test run: its own embedded stack,
every service as a process (inventory twice), orders flowing while processes are SIGKILLed, a
consumer paused past its session timeout, the database stopped, killed (SIGKILL, durable) and
stopped for 30 s right after a notification reached its SMTP or webhook sink, deliveries
duplicated, offsets rewound and poison sent to every consumed topic;
on Apache Kafka (three nodes) the brokers fail too: the partition leader SIGKILLed, a broker
paused past its session timeout, the active controller SIGKILLed, a broker restarted, and every
broker stopped and started again at the end. The figures it prints must be the promise: every
order settled once, nothing lost, nothing applied twice, the invariants hold, the DLQs hold
exactly the poison messages, no committed offset went back, no service exited unasked, every
fault did what it is for, and every notification notify marked sent reached its sink (none sent
around the database's stop twice).

The brokers it runs on: ``ORDERFLOW_TEST_CHAOS_BROKERS`` (comma-separated: ``kafka``, ``tansu``),
else ``kafka``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from orderflow.devstack.stack import project_root

pytestmark = pytest.mark.fault

SERVICE_FAULTS = ("sigkill", "replica_sigkill", "consumer_paused", "database_stopped",
                  "database_sigkill", "database_stopped_after_send", "duplicate_delivery",
                  "offsets_rewound", "poison", "stale_stock_count")
BROKER_FAULTS = {
    "kafka": ("broker_leader_sigkill", "broker_paused", "controller_sigkill", "broker_restart",
              "cluster_restart"),
    "tansu": (),
}


def chaos_brokers() -> list[str]:
    chosen = [b.strip().lower() for b in
              os.environ.get("ORDERFLOW_TEST_CHAOS_BROKERS", "kafka").split(",") if b.strip()]
    unknown = sorted(set(chosen) - set(BROKER_FAULTS))
    if unknown:
        raise ValueError(f"ORDERFLOW_TEST_CHAOS_BROKERS names {unknown}: choose kafka or tansu")
    return chosen


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("broker", chaos_brokers())
def test_the_short_chaos_run_loses_nothing_and_applies_nothing_twice(broker: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}}
    run = subprocess.run([sys.executable, "-m", "tests.chaos", "--short", "--broker", broker],
                         cwd=project_root(), env=env, capture_output=True, text=True,
                         timeout=1750, check=False)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no figures printed (exit {run.returncode}):\n{run.stderr[-4000:]}"
    figures = json.loads(lines[-1])
    context = f"{json.dumps(figures, indent=1)[:6000]}\n--- stderr ---\n{run.stderr[-3000:]}"
    assert "error" not in figures, context
    assert figures["broker"] == broker, context
    assert figures["orders"] >= 100, context
    # faults are faults: the messages re-sent and the poison count on their own lines
    assert figures["faults_injected"] == sum(figures["faults_by_kind"].values()) < 40, context
    assert figures["messages_resent"] >= 20 and figures["poison_messages"] > 0, context
    assert figures["unsettled"] == 0, context
    assert figures["lost"] == 0, context
    assert figures["acknowledged_missing"] == 0, context
    assert figures["duplicated_effects"] == 0, context
    assert figures["invariant_violations"] == 0, context
    assert figures["dlq_found"] == figures["dlq_expected"] > 0, context
    assert figures["dlq_missing"] == figures["dlq_unexpected"] == 0, context
    assert figures["dlq_replay"]["applied_once"], context
    assert figures["cluster_not_recovered"] == 0, context
    assert figures["unexpected_service_exits"] == [], context
    assert figures["ineffective_faults"] == [], context
    assert figures["offset_regressions"] == 0, context
    assert figures["notifications_sent"] > 0, context
    assert figures["notifications_sent_not_delivered"] == 0, context
    assert figures["notifications_delivered_unknown"] == 0, context
    assert figures["notifications_unfinished"] == 0, context
    assert figures["notifications_around_outage"] > 0, context
    assert figures["notifications_repeated_after_outage"] == [], context
    if broker == "kafka":  # the short form on Tansu leaves its restart out
        final = figures["final_restart"]
        assert final["unsettled_of_those_before"] == final["unsettled_of_those_after"] == 0, \
            context
    kinds = figures["faults_by_kind"]
    for kind in SERVICE_FAULTS + BROKER_FAULTS[broker]:
        assert kinds.get(kind), f"no {kind} fault was injected\n{context}"
    assert run.returncode == 0, context
