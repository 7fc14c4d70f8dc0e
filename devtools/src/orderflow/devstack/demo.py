"""``orderflow demo``: bring the stack up, load the demo master data, push generated orders from
several channels (with bad, duplicate, rush and large ones), wait until every order settled, and
stop everything (or, given ``keep``, hand the running stack over first); the summary is a dict
the command line prints."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from orderflow.connector import OrderPusher
from orderflow.devstack.eventlog import EventLog
from orderflow.devstack.processes import spawn, stop
from orderflow.devstack.simulator import generate_orders
from orderflow.devstack.stack import Stack, broker_choice, var_dir
from orderflow.devstack.tracking import Tracker, unnotified_events, wrong_outcomes
from orderflow.runtime.lag import wait_consumed


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def drive(stack: Stack, *, orders: int, seed: int, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    loaded = await stack.load_demo_master_data()
    _say(f"loaded {loaded} master-data records (products, customers, warehouses, stock)")
    simulated = generate_orders(orders, seed=seed)
    # the latest push of an order says what it should come to (a re-push repeats it)
    distinct = {o.order_id: o for o in simulated}
    expected = {oid: o.expected for oid, o in distinct.items()}
    channels = Counter(o.channel for o in distinct.values())
    tracker = Tracker()
    async with EventLog(stack.kafka) as log:
        push_started = time.monotonic()
        async with OrderPusher(stack.kafka, producer_name="demo") as pusher:
            await pusher.push_many([o.submission() for o in simulated])
        _say(f"pushed {len(simulated)} messages ({len(distinct)} orders, "
             f"{len(simulated) - len(distinct)} re-pushed duplicates) from "
             f"{', '.join(f'{c} {n}' for c, n in sorted(channels.items()))}")
        deadline = time.monotonic() + timeout_s
        last_report = 0.0
        while True:
            tracker.feed_new(log.events)
            unsettled = [oid for oid in distinct if not tracker.settled(oid)]
            if not unsettled or time.monotonic() > deadline:
                break
            if time.monotonic() - last_report > 5:
                _say(f"  {len(distinct) - len(unsettled)}/{len(distinct)} orders settled ...")
                last_report = time.monotonic()
            await asyncio.sleep(0.2)
        settle_time = time.monotonic() - push_started
        # the carrier simulator moves dispatched shipments on to delivery: wait until logistics
        # has consumed every tracking update published so far (its committed offsets, not the
        # broker's high watermark), then until the stream is quiet for 3 s (120 s at most), so
        # deliveries, delays and any straggling duplicate effect are counted
        await asyncio.sleep(2.0)
        targets: dict[TopicPartition, int] = {}
        for e in log.of("shipment.tracking-updated"):
            tp = TopicPartition(e.topic, e.partition)
            targets[tp] = max(targets.get(tp, 0), e.offset + 1)
        with contextlib.suppress(TimeoutError):
            await wait_consumed(stack.kafka, "orderflow.logistics", targets, timeout=120)
        quiet_deadline = time.monotonic() + 60
        seen = len(log.events)
        quiet_since = time.monotonic()
        while time.monotonic() < quiet_deadline and time.monotonic() - quiet_since < 3:
            await asyncio.sleep(0.5)
            if len(log.events) != seen:
                seen, quiet_since = len(log.events), time.monotonic()
        # every customer-facing event must have its notification recorded: notify's senders
        # may still be at it (the dispatch coalescing window, a retry); wait while they progress
        unnotified = unnotified_events(log.events)
        notify_deadline, progress_at = time.monotonic() + 120, time.monotonic()
        while unnotified and time.monotonic() < notify_deadline \
                and time.monotonic() - progress_at < 20:
            await asyncio.sleep(1.0)
            still = unnotified_events(log.events)
            if len(still) < len(unnotified):
                progress_at = time.monotonic()
            unnotified = still
        tracker.feed_new(log.events)
        wrong = wrong_outcomes(expected, tracker, log.events)
        dlq_messages = [e for t, v in log.by_topic.items() if t.endswith(".dlq") for e in v]
        delayed = {e.key for e in log.of("shipment.delayed")} & set(distinct)
        exceptions = {e.key for e in log.of("shipment.exception")} & set(distinct)
        final = {oid: tracker.state_of(oid) for oid in distinct}
        violations = await stock_invariant_violations(stack)
        held_reasons = Counter(r.code for e in log.of("order.held")
                               if e.event is not None and str(final.get(e.key or "")) == "held"
                               for r in e.event.reasons)
        rejected_reasons = Counter(r.code for e in log.of("order.rejected")
                                   if e.event is not None and e.key in final
                                   for r in e.event.reasons)
        notifications = Counter(e.event.status for e in log.of("notification.recorded")
                                if e.event is not None)
        dlq = {t: len(v) for t, v in log.by_topic.items() if t.endswith(".dlq") and v}

    states = Counter(str(tracker.state_of(oid) or "unseen") for oid in distinct)
    unseen = [oid for oid in distinct if tracker.state_of(oid) is None]
    unsettled = [oid for oid in distinct if not tracker.settled(oid)]
    duplicates = tracker.duplicates()
    return {
        "orders_pushed": len(distinct),
        "messages_pushed": len(simulated),
        "channels": dict(sorted(channels.items())),
        "settled": len(distinct) - len(unsettled),
        "states": dict(sorted(states.items())),
        "lost": len(set(unseen) | set(unsettled)),
        "never_seen_by_intake": len(unseen),
        "duplicates": sum(duplicates.values()),
        "duplicates_by_effect": duplicates,
        "held_by_reason": dict(held_reasons.most_common()),
        "rejected_by_reason": dict(rejected_reasons.most_common()),
        "delivered_orders": sum(1 for st in final.values() if str(st) == "delivered"),
        "delayed_orders": len(delayed),
        "invariant_violations": violations,
        "carrier_exceptions": len(exceptions),
        "notifications": dict(sorted(notifications.items())),
        "dlq": dlq,
        "expected": dict(sorted(Counter(str(x) for x in expected.values()).items())),
        "wrong_outcome": len(wrong),
        "wrong_outcome_examples": wrong[:5],
        "unnotified": len(unnotified),
        "unnotified_by_topic": dict(Counter(u["topic"] for u in unnotified).most_common()),
        "unnotified_examples": unnotified[:5],
        # the demo seeds no dead letters (its bad orders are rejected by intake, not poison)
        "unexpected_dead_letters": len(dlq_messages),
        "settle_s": round(settle_time, 2),
        "elapsed_s": round(time.monotonic() - started, 2),
    }


async def stock_invariant_violations(stack: Stack) -> int | None:
    """Ask inventory whether the stock conservation invariant holds (None: no inventory)."""
    import httpx

    inventory = next((sp for sp in stack.processes if sp.name == "inventory"), None)
    if inventory is None:
        return None
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"http://127.0.0.1:{inventory.port}/inventory/invariants")
        response.raise_for_status()
        body = response.json()
    problems = body.get("problems", []) if isinstance(body, dict) else body
    if problems:
        _say(f"stock invariant violations: {problems}")
    return len(problems)


def start_carrier_simulator(stack: Stack, seed: int) -> subprocess.Popen[bytes] | None:
    """Carriers, as a connector would be: a separate process that follows dispatched shipments
    and publishes tracking updates (some late, some with exceptions)."""
    if importlib.util.find_spec("orderflow.logistics.carrier_simulator") is None:
        return None
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
           "ORDERFLOW_KAFKA_BROKER": stack.broker_kind, "PYTHONUNBUFFERED": "1"}
    return spawn([sys.executable, "-m", "orderflow.logistics.carrier_simulator", "--seed",
                  str(seed)], log_path=stack.root / "logs" / "carrier-simulator.log", env=env)


def run_demo(*, orders: int = 300, seed: int = 7, timeout_s: float = 240.0,
             broker: str | None = None,
             keep: Callable[[Stack, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the demo on a fresh stack in ``var/demo`` and return its summary. ``keep``, if given,
    is called with the running stack and the summary before anything stops, and everything stops
    once it returns (``orderflow demo --keep`` supervises the stack in it until told to stop)."""
    root = var_dir() / "demo"
    stack = Stack(root=root, fixed_ports=False, fresh=True, broker_kind=broker_choice(broker))
    started = time.monotonic()
    carriers: subprocess.Popen[bytes] | None = None

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        kind = {"kafka": "Apache Kafka", "tansu": "the Tansu broker"}[stack.broker_kind]
        _say(f"starting the embedded stack (PostgreSQL, {kind}) and every service ...")
        stack.start_infrastructure()
        stack.start_services()
        stack.wait_healthy(timeout=300)
        _say(f"services up: {', '.join(sp.label for sp in stack.processes)}; logs in {root}/logs")
        carriers = start_carrier_simulator(stack, seed)
        summary = asyncio.run(drive(stack, orders=orders, seed=seed, timeout_s=timeout_s))
        summary["elapsed_s"] = round(time.monotonic() - started, 2)
        if keep is not None:
            keep(stack, summary)
    finally:
        _say("stopping every process ...")
        stop(carriers)
        stack.stop()
    return summary
