"""``orderflow demo``: bring the stack up, load the demo master data, push generated orders from
several channels (with bad, duplicate, rush and large ones), wait until every order settled, stop
everything, and print one JSON summary line."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from typing import Any

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.eventlog import EventLog
from orderflow.devstack.simulator import generate_orders
from orderflow.devstack.stack import Stack, var_dir
from orderflow.devstack.tracking import Tracker


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def drive(stack: Stack, *, orders: int, seed: int, timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    loaded = await stack.load_demo_master_data()
    _say(f"loaded {loaded} master-data records (products, customers, warehouses, stock)")
    simulated = generate_orders(orders, seed=seed)
    distinct = {order_id_for(o.channel, o.external_id): o for o in simulated}
    channels = Counter(o.channel for o in distinct.values())
    tracker = Tracker()
    async with EventLog(stack.kafka) as log:
        push_started = time.monotonic()
        async with OrderPusher(stack.kafka, producer_name="demo") as pusher:
            await pusher.push_many([(o.channel, o.external_id, o.payload) for o in simulated])
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
        # let any straggling duplicate effect arrive before judging
        await asyncio.sleep(1.0)
        tracker.feed_new(log.events)
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
        "dlq": dlq,
        "settle_s": round(settle_time, 2),
        "elapsed_s": round(time.monotonic() - started, 2),
    }


def run_demo(*, orders: int = 300, seed: int = 7, timeout_s: float = 240.0) -> dict[str, Any]:
    root = var_dir() / "demo"
    stack = Stack(root=root, fixed_ports=False, fresh=True)
    started = time.monotonic()

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        _say("starting the embedded stack (PostgreSQL, Tansu broker) and every service ...")
        stack.start_infrastructure()
        stack.start_services()
        stack.wait_healthy(timeout=120)
        _say(f"services up: {', '.join(sp.label for sp in stack.processes)}; logs in {root}/logs")
        summary = asyncio.run(drive(stack, orders=orders, seed=seed, timeout_s=timeout_s))
    finally:
        _say("stopping every process ...")
        stack.stop()
    summary["elapsed_s"] = round(time.monotonic() - started, 2)
    return summary
