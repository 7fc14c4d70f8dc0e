"""``make bench``: the whole pipeline under load, on the dev stack (PostgreSQL and the broker on
this machine: Apache Kafka, one node, or Tansu), every service its own process.

    python -m bench.run                 # 20,000 orders, rates 100/300/600, scaling, ceiling
    python -m bench.run --quick         # 2,000 orders, one rate, no scaling: a fast check
    python -m bench.run --broker kafka  # on Apache Kafka (default: ORDERFLOW_BROKER, else tansu)
    python -m bench.run --orders 5000 --rates 300 --seconds 15 --no-scaling --profile

Measures (see bench/README.md): saturation throughput end to end and per service, latency per
stage at fixed push rates (each started once PostgreSQL's autovacuum has finished what the load
before left it; ``--settle 0`` does not wait), the saturation run again with two replicas of every
service, the pass-through ceiling of the same topic hops, CPU seconds and peak RSS per process, and lost or
duplicated orders. Prints a table (the broker in its header) and writes one JSON file per run
under ``bench/results/`` (``broker``, and ``kafka_version`` on Apache Kafka).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import sqlalchemy as sa
from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import create_async_engine

from bench import ceiling
from bench.maintenance import MaintenanceSampler, maintenance_done
from bench.profiles import Profiler
from bench.resources import ResourceMonitor
from bench.watch import MAIN_LINE, PRODUCED_BY, SIDE, Watcher
from bench.workload import BenchOrder, make_orders, master_data_events
from orderflow.connector import OrderPusher
from orderflow.devstack.eventlog import EventLog
from orderflow.devstack.kafka import KafkaCluster, kafka_version
from orderflow.devstack.stack import (
    BrokerChoice,
    Stack,
    available_services,
    broker_choice,
    project_root,
    subscriptions_of,
)
from orderflow.devstack.tracking import Tracker
from orderflow.runtime.lag import group_reader
from orderflow.runtime.service import tune_gc
from orderflow.runtime.settings import KafkaSettings, ServiceSettings

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = ("push→received", "received→approved", "approved→reserved", "reserved→dispatched",
          "push→dispatched", "push→dispatched published")
# each hop split in two: "<topic> to the broker" is an event's outbox wait (occurred → its record
# produced by the relay); "<topic> to the next" is the next service's wait and work (record
# produced → the next event occurred): where a hop's latency goes
HOPS = ("order.inbound", "order.received", "order.approved", "stock.reserved", "shipment.dispatched")
SPLITS = tuple(f"  {t} to the broker" for t in HOPS[1:]) + tuple(
    f"  {t} to the next" for t in HOPS[:-1])
# the topics the tracker needs to judge lost and duplicated orders (and the dead letters)
TRACKED = ("order.received", "order.rejected", "order.held", "order.approved", "stock.backordered",
           "stock.reserved", "shipment.dispatched", "notification.recorded")
IDLE_WINDOW_S = 10.0
DRIVER = "bench driver"  # the benchmark's own process, beside the ones it measures
POSTGRES = "postgres (all backends)"
BROKERS: dict[str, str] = {"tansu": "tansu broker", "kafka": "kafka broker"}  # by broker kind
INFRASTRUCTURE = (POSTGRES, *BROKERS.values())  # beside the services, sharing their cores
TARGETS = {"throughput_orders_per_s": 1000, "p99_push_to_dispatched_ms_at_300": 500,
           "ceiling_ratio_pct": 50, "peak_rss_mb": 150}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- options -------------------------------------------------------------------------------------


@dataclass
class Options:
    orders: int
    rates: list[int]
    seconds: float
    scaling: bool
    ceiling: bool
    latency: bool
    quick: bool
    warmup: int
    profile: bool
    channels: tuple[str, ...]
    stall_s: float
    env: dict[str, str]
    services: list[str]
    replicas: int
    note: str
    settle_s: float
    broker: BrokerChoice


def parse_args(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, help="orders in each saturation run (default 20000)")
    p.add_argument("--rates", help="fixed push rates in orders/s, comma separated (default 100,300,600)")
    p.add_argument("--seconds", type=float, help="how long each fixed rate is held (default 20)")
    p.add_argument("--quick", action="store_true",
                   help="2,000 orders, one rate (300/s for 10 s), no scaling")
    p.add_argument("--no-scaling", action="store_true", help="skip the two-replica run")
    p.add_argument("--no-ceiling", action="store_true", help="skip the pass-through ceiling")
    p.add_argument("--no-latency", action="store_true", help="skip the fixed-rate runs")
    p.add_argument("--warmup", type=int, help="orders pushed and settled before measuring")
    p.add_argument("--profile", action="store_true",
                   help="py-spy every service from the saturation push until all caught up (needs py-spy)")
    p.add_argument("--channels", default="canonical,shopify,douyin,csv",
                   help="channels the orders come from, round robin")
    p.add_argument("--stall", type=float, default=90.0,
                   help="give up waiting when no order settles for this many seconds")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for every service (experiments), repeatable")
    p.add_argument("--services", help="services to start (default: every one available)")
    p.add_argument("--replicas", type=int, default=2, help="replicas per service in the scaling run")
    p.add_argument("--note", default="", help="free text stored with the results")
    p.add_argument("--broker", choices=("kafka", "tansu"),
                   help="the broker the stack starts: kafka (Apache Kafka, one node) or tansu "
                        "(default: ORDERFLOW_BROKER, else tansu)")
    p.add_argument("--settle", type=float, default=240.0, metavar="SECONDS",
                   help="before each fixed rate, wait up to this long for PostgreSQL's autovacuum "
                        "to finish what the previous load left it (0: do not wait)")
    a = p.parse_args(argv)
    quick = bool(a.quick)
    env = {}
    for item in a.env:
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    rates = [int(r) for r in (a.rates or ("300" if quick else "100,300,600")).split(",") if r]
    return Options(
        orders=a.orders or (2000 if quick else 20_000), rates=rates,
        seconds=a.seconds or (10.0 if quick else 20.0),
        scaling=not (a.no_scaling or quick), ceiling=not a.no_ceiling, latency=not a.no_latency,
        quick=quick, warmup=a.warmup if a.warmup is not None else (100 if quick else 300),
        profile=bool(a.profile), channels=tuple(c for c in a.channels.split(",") if c),
        stall_s=a.stall, env=env,
        services=[s for s in a.services.split(",") if s] if a.services else available_services(),
        replicas=a.replicas, note=a.note, settle_s=a.settle, broker=broker_choice(a.broker))


# --- statistics ----------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 1)) - 1))
    return sorted_values[index]


def summary_ms(values: list[float]) -> dict[str, float | int]:
    ms = sorted(v * 1000.0 for v in values)
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": round(percentile(ms, 0.50), 1), "p95": round(percentile(ms, 0.95), 1),
            "p99": round(percentile(ms, 0.99), 1), "max": round(ms[-1], 1),
            "mean": round(sum(ms) / len(ms), 1)}


def stage_latencies(w: Watcher, orders: list[BenchOrder]) -> dict[str, dict[str, float | int]]:
    values: dict[str, list[float]] = {s: [] for s in STAGES + SPLITS}
    for o in orders:
        oid = o.order_id
        inbound = w.first["order.inbound"].get(o.inbound_key)
        received = w.first["order.received"].get(oid)
        approved = w.first["order.approved"].get(oid)
        reserved = w.first["stock.reserved"].get(oid)
        d = w.dispatch.get(oid)
        dispatched = d.last() if d is not None and d.complete else None
        pairs = [("push→received", inbound, received), ("received→approved", received, approved),
                 ("approved→reserved", approved, reserved),
                 ("reserved→dispatched", reserved, dispatched), ("push→dispatched", inbound, dispatched)]
        for stage, a, b in pairs:
            if a is not None and b is not None:
                values[stage].append(b.occurred_at - a.occurred_at)
        if inbound is not None and dispatched is not None:
            values["push→dispatched published"].append(dispatched.produced_at - inbound.occurred_at)
        hops = (inbound, received, approved, reserved, dispatched)
        for topic, seen in zip(HOPS[1:], hops[1:], strict=True):
            if seen is not None:
                values[f"  {topic} to the broker"].append(seen.produced_at - seen.occurred_at)
        for topic, a, b in zip(HOPS[:-1], hops[:-1], hops[1:], strict=True):
            if a is not None and b is not None:
                values[f"  {topic} to the next"].append(b.occurred_at - a.produced_at)
    return {s: summary_ms(v) for s, v in values.items()}


def topic_rates(w: Watcher, orders: list[BenchOrder]) -> dict[str, dict[str, Any]]:
    """Per watched topic: events of these orders, and the rate over the span of their own
    ``occurred_at`` headers (the producing service's throughput)."""
    ids = {o.order_id for o in orders}
    inbound = {o.inbound_key for o in orders}
    out: dict[str, dict[str, Any]] = {}
    for topic in MAIN_LINE + SIDE:
        keys = inbound if topic == "order.inbound" else ids
        counts = w.counts.get(topic, {})
        n = sum(c for k, c in counts.items() if k in keys)
        if not n:
            continue
        if topic == "shipment.dispatched":
            times = [s.occurred_at for k in ids if k in w.dispatch for s in w.dispatch[k].shipments.values()]
        else:
            times = [s.occurred_at for k, s in w.first.get(topic, {}).items() if k in keys]
        span = max(times) - min(times) if len(times) > 1 else 0.0
        out[topic] = {"service": PRODUCED_BY.get(topic, "?"), "events": n,
                      "span_s": round(span, 2), "per_s": round(n / span, 1) if span > 0 else None}
    return out


# --- driving the pipeline ------------------------------------------------------------------------


async def wait_settled(w: Watcher, orders: list[BenchOrder], *, stall_s: float, what: str) -> set[str]:
    """Wait until every order is settled (dispatched in full, or stopped on a side path); give up
    after ``stall_s`` without any event on the watched topics. Returns the order ids still
    pending."""
    pending = {o.order_id for o in orders}
    last_progress = last_report = time.monotonic()
    total = len(pending)
    records = w.records
    pending -= w.settled_ids  # settled before the wait began
    seen = len(w.settled_log)  # then only what settled since the last look
    while pending:
        done = pending.intersection(w.settled_log[seen:])
        seen = len(w.settled_log)
        now = time.monotonic()
        if done or w.records != records:  # an order settled, or anything moved on any topic
            pending -= done
            records = w.records
            last_progress = now
        if not pending:
            break
        if now - last_progress > stall_s:
            say(f"  {what}: no progress for {stall_s:.0f}s; {len(pending)} orders not settled")
            break
        if now - last_report > 5:
            say(f"  {what}: {total - len(pending)}/{total} settled")
            last_report = now
        await w.changed(0.5)
    return pending


async def push_all(pusher: OrderPusher, orders: list[BenchOrder], chunk: int = 1000) -> float:
    """As fast as the connector kit can: chunks of confirmed pushes, back to back."""
    started = time.monotonic()
    for i in range(0, len(orders), chunk):
        await pusher.push_many([o.submission() for o in orders[i:i + chunk]])
    return time.monotonic() - started


async def push_at_rate(pusher: OrderPusher, orders: list[BenchOrder], rate: float) -> float:
    """Push ``orders`` at ``rate`` per second (small batches every 10 ms, not waiting for the
    broker's confirmations before the next batch); returns the push duration."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    in_flight: list[asyncio.Task[Any]] = []
    while sent < len(orders):
        due = min(len(orders), int((loop.time() - started) * rate) + 1)
        if due > sent:
            batch = [o.submission() for o in orders[sent:due]]
            in_flight.append(asyncio.create_task(pusher.push_many(batch)))
            sent = due
        await asyncio.sleep(0.01)
    await asyncio.gather(*in_flight)
    return loop.time() - started


async def caught_up(kafka: KafkaSettings, services: list[str], targets: dict[TopicPartition, int],
                    started: float, timeout: float) -> dict[str, float | None]:
    """Seconds after ``started`` (epoch) at which each service's consumer group had committed
    past every record the watcher saw on the topics it subscribes to (polled every 0.5 s; on
    Apache Kafka every group in one request)."""
    wanted: dict[str, dict[TopicPartition, int]] = {}
    for service in services:
        topics = set(subscriptions_of(service))
        wanted[f"orderflow.{service}"] = {tp: off for tp, off in targets.items()
                                          if tp.topic in topics}
    done: dict[str, float | None] = {s: None for s in services}
    async with group_reader(kafka, client_id="bench-lag") as reader:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(v is None for v in done.values()):
            behind = {f"orderflow.{s}": list(wanted[f"orderflow.{s}"])
                      for s, v in done.items() if v is None}
            committed, _failed = await reader.committed(behind)  # a failed group: next time
            for group, offsets in committed.items():
                if all((offsets.get(tp) or 0) >= off for tp, off in wanted[group].items()):
                    done[group.removeprefix("orderflow.")] = round(time.time() - started, 2)
            await asyncio.sleep(0.5)
    return done


async def account(kafka: KafkaSettings, orders: list[BenchOrder], timeout: float) -> dict[str, Any]:
    """Lost and duplicated orders: a ``Tracker`` over an ``EventLog`` of the tracked topics and
    their dead-letter topics, read from the beginning after the measurement."""
    ids = {o.order_id for o in orders}
    tracker = Tracker()
    topics = list(TRACKED) + [f"{t}.dlq" for t in ("order.inbound", *TRACKED)]
    started = time.monotonic()
    async with EventLog(kafka, topics) as log:
        def all_settled() -> bool:
            tracker.feed_new(log.events)
            return all(tracker.settled(oid) for oid in ids)

        with contextlib.suppress(TimeoutError):
            await log.wait_for(all_settled, timeout=timeout, what="every benchmark order settled")
        # stragglers (a duplicate effect would arrive at about the same time as the first)
        await asyncio.sleep(2.0)
        tracker.feed_new(log.events)
        dlq = {t: len(v) for t, v in log.by_topic.items() if t.endswith(".dlq") and v}
    states = Counter(str(tracker.state_of(oid) or "unseen") for oid in ids)
    duplicates = tracker.duplicates()
    lost = [oid for oid in ids if not tracker.settled(oid)]
    return {"orders": len(ids), "states": dict(sorted(states.items())),
            "lost": len(lost), "lost_sample": sorted(lost)[:5],
            "not_dispatched": len(ids) - states.get("dispatched", 0) - states.get("delivered", 0),
            "duplicated_effects": sum(duplicates.values()), "duplicates_by_effect": duplicates,
            "dead_letters": dlq, "read_s": round(time.monotonic() - started, 1)}


async def notifications_finished(database_url: str, orders: list[BenchOrder], started: float,
                                 timeout: float) -> dict[str, Any]:
    """Wait until notify's senders finished every notification of these orders (sent,
    recorded, coalesced, suppressed or failed); how many, and when the last one finished, in
    seconds after ``started`` (epoch). The senders run beside the consumers, so the saturation
    figures include their work only as far as it happened before the last dispatch."""
    query = sa.text(
        "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')), count(*), "
        "EXTRACT(EPOCH FROM max(finished_at)) FROM notify.notify_notifications "
        "WHERE order_id = ANY(CAST(:ids AS text[]))")
    ids = [o.order_id for o in orders]
    engine = create_async_engine(database_url, pool_size=1)
    try:
        deadline = time.monotonic() + timeout
        while True:
            async with engine.connect() as conn:
                left, total, last = (await conn.execute(query, {"ids": ids})).one()
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await engine.dispose()
    return {"notifications": int(total), "unfinished": int(left),
            "last_finished_s_after_first_push": (round(float(last) - started, 2)
                                                  if last is not None and not left else None)}


async def batch_sizes(database_url: str, services: Iterable[str], started: float,
                      ) -> dict[str, dict[str, float]]:
    """How each service's consumer batched what it applied since ``started`` (epoch): the
    events its inbox claimed and the transactions that claimed them (distinct ``applied_at``:
    ``now()`` is the transaction's start), and the mean events per transaction. Smaller batches
    cost more per event (a transaction, an offset commit, a relay round each)."""
    out: dict[str, dict[str, float]] = {}
    engine = create_async_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            for service in services:
                events, batches = (await conn.execute(sa.text(
                    f'SELECT count(*), count(DISTINCT applied_at) FROM "{service}".inbox '
                    "WHERE applied_at >= to_timestamp(:t)"), {"t": started})).one()
                out[service] = {"events": int(events), "batches": int(batches),
                                "events_per_batch": round(events / batches, 1) if batches else 0.0}
    finally:
        await engine.dispose()
    return out


def _batches_line(batches: dict[str, dict[str, float]]) -> str:
    return ("  events per consumer transaction: "
            + ", ".join(f"{k} {_fmt(v['events_per_batch'])} ({v['batches']})"
                        for k, v in batches.items()))


def service_targets(stack: Stack) -> dict[str, int]:
    return {sp.label: sp.proc.pid for sp in stack.processes if sp.proc is not None}


def monitor_for(stack: Stack) -> ResourceMonitor:
    monitor = ResourceMonitor()
    for label, pid in service_targets(stack).items():
        monitor.add(label, pid)
    if stack.postgres is not None and stack.postgres.proc is not None:
        monitor.add(POSTGRES, stack.postgres.proc.pid, include_children=True)
    label = BROKERS[stack.broker_kind]
    if isinstance(stack.broker, KafkaCluster):  # one process per node
        pids = {n.node_id: n.proc.pid for n in stack.broker.nodes if n.proc is not None}
        for node_id, pid in pids.items():
            monitor.add(label if len(pids) == 1 else f"{label} {node_id}", pid)
    elif stack.broker is not None and stack.broker.proc is not None:
        monitor.add(label, stack.broker.proc.pid)
    monitor.add(DRIVER, os.getpid())
    return monitor


def cpu_window(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, Any]:
    """Each process's CPU over a window: seconds, per order, and its share of what the pipeline's
    processes (every one but the benchmark driver) used together. This machine's speed moves by
    a third from run to run and every process's CPU per order moves with it; the shares do not,
    so an A/B compares them."""
    used = {label: max(0.0, end - before.get(label, 0.0)) for label, end in after.items()}
    pipeline = sum(v for label, v in used.items() if label != DRIVER)
    out: dict[str, Any] = {}
    for label, seconds in used.items():
        out[label] = {"cpu_s": round(seconds, 2),
                      "cpu_ms_per_order": round(1000.0 * seconds / orders, 2) if orders else None,
                      "share_pct": (round(100.0 * seconds / pipeline, 1)
                                    if pipeline and label != DRIVER else None)}
    return out


def ceiling_budget(ceiling_per_s: float | None, cores: int | None,
                   cpu: dict[str, dict[str, Any]], orders: int) -> dict[str, Any] | None:
    """What the ceiling target asks of this machine: at the target's share of the ceiling's rate,
    the CPU one order may cost every process of the pipeline together (``cores`` seconds of CPU
    a second, shared by all), against what an order cost in the saturation run (to the last
    dispatch, the driver's own CPU not counted), and the database's and the broker's part of it.
    While the run's cores are busy, no handler code can bring the throughput past
    ``cores / cost``."""
    if not ceiling_per_s or not cores or not orders or not cpu:
        return None
    rate = ceiling_per_s * TARGETS["ceiling_ratio_pct"] / 100.0
    used = {label: c["cpu_s"] for label, c in cpu.items() if label != DRIVER}
    cost = 1000.0 * sum(used.values()) / orders
    infra = 1000.0 * sum(used.get(label, 0.0) for label in INFRASTRUCTURE) / orders
    return {"target_orders_per_s": round(rate, 1),
            "budget_cpu_ms_per_order": round(1000.0 * cores / rate, 3),
            "pipeline_cpu_ms_per_order": round(cost, 3),
            "database_and_broker_cpu_ms_per_order": round(infra, 3),
            "cpu_bound_orders_per_s": round(1000.0 * cores / cost, 1) if cost else None}


async def run_phase(stack: Stack, opts: Options, *, label: str, run_id: str, latency: bool,
                    with_ceiling: bool, profile: bool) -> dict[str, Any]:
    kafka = stack.kafka
    result: dict[str, Any] = {"label": label,
                              "processes": [sp.label for sp in stack.processes]}
    say(f"[{label}] loading the demo master data, raised credit limits and plenty of stock ...")
    t = time.monotonic()
    await stack.load_demo_master_data()
    await stack.publish_and_wait(master_data_events(), timeout=300)
    result["master_data_s"] = round(time.monotonic() - t, 1)

    monitor = monitor_for(stack)
    monitor.start()  # peak RSS over the whole phase; CPU per window below
    watcher = await Watcher(kafka).start()
    all_orders: list[BenchOrder] = []
    profiler: Profiler | None = None
    try:
        async with OrderPusher(kafka, producer_name="bench") as pusher:
            if opts.warmup:
                warm = make_orders(opts.warmup, prefix=f"B{run_id}-{label[:1]}W", seed=1,
                                   channels=opts.channels)
                all_orders += warm
                say(f"[{label}] warm-up: {len(warm)} orders")
                await push_all(pusher, warm)
                left = await wait_settled(watcher, warm, stall_s=opts.stall_s, what="warm-up")
                result["warmup"] = {"orders": len(warm), "unsettled": len(left)}

            if with_ceiling:
                say(f"[{label}] ceiling: {opts.orders} messages through 4 pass-through hops ...")
                sample = make_orders(opts.orders, prefix=f"B{run_id}-C", seed=3, channels=opts.channels)
                result["ceiling"] = await ceiling.measure(kafka, stack.root, sample, stall_s=opts.stall_s)
                say(f"[{label}] ceiling: {result['ceiling']['orders_per_s']} orders/s")

            # what each process burns doing nothing (polling loops), to read the CPU figures by
            idle_before = monitor.cpu_snapshot()
            await asyncio.sleep(IDLE_WINDOW_S)
            idle = cpu_window(idle_before, monitor.cpu_snapshot(), 0)
            result["idle_cpu_pct"] = {k: round(100.0 * v["cpu_s"] / IDLE_WINDOW_S, 1)
                                      for k, v in idle.items()}
            orders = make_orders(opts.orders, prefix=f"B{run_id}-{label[:1]}S", seed=2,
                                 channels=opts.channels)
            all_orders += orders
            say(f"[{label}] saturation: pushing {len(orders)} orders as fast as the connector kit can")
            where = stack.root / "profiles" / f"{run_id}-{label.replace(' ', '')}"
            profiler = Profiler(where) if profile else None
            if profiler is not None:
                profiler.start(service_targets(stack))
            cpu_before = monitor.cpu_snapshot()
            started_wall = time.time()
            push_s = await push_all(pusher, orders)
            say(f"[{label}] pushed in {push_s:.1f}s; waiting for every order to be dispatched")
            pending = await wait_settled(watcher, orders, stall_s=opts.stall_s, what="saturation")
            cpu_after = monitor.cpu_snapshot()
            sat = saturation_result(watcher, orders, push_s, pending)
            sat["cpu"] = cpu_window(cpu_before, cpu_after, len(orders))
            if result.get("ceiling"):
                result["ceiling"]["cpu_budget"] = ceiling_budget(
                    result["ceiling"]["orders_per_s"], os.cpu_count(), sat["cpu"], len(orders))
            sat["caught_up_s_after_first_push"] = await caught_up(
                kafka, stack.services, dict(watcher.end_offsets), started_wall, timeout=180)
            # "cpu" ends at the last dispatch (what the order flow cost, as in the other
            # run); this one when every service had consumed it all, idle time included
            sat["cpu_every_service_done"] = cpu_window(cpu_before, monitor.cpu_snapshot(),
                                                       len(orders))
            # the profile too: notify's and the console's tails are where they fall behind
            profiles = profiler.stop() if profiler is not None else None
            # the end-to-end figure counts to the last dispatch; this one to the moment the last
            # service (notify or the console, off the order flow's path) had consumed it all
            last = [v for v in sat["caught_up_s_after_first_push"].values() if v is not None]
            sat["every_service_done_orders_per_s"] = (
                round(len(orders) / max(last), 1)
                if last and len(last) == len(stack.services) else None)
            if stack.database_url:
                sat["batches"] = await batch_sizes(stack.database_url, stack.services, started_wall)
            if "notify" in stack.services and stack.database_url:
                sat["notifications"] = await notifications_finished(
                    stack.database_url, orders, started_wall, timeout=300)
            if profiles is not None:
                sat["profiles"] = profiles
            result["saturation"] = sat
            say(f"[{label}] saturation: {sat['end_to_end_orders_per_s']} orders/s end to end")

            if latency:
                result["latency"] = {}
                for rate in opts.rates:
                    count = max(1, int(rate * opts.seconds))
                    batch = make_orders(count, prefix=f"B{run_id}-{label[:1]}R{rate}", seed=rate,
                                        channels=opts.channels)
                    all_orders += batch
                    settled = None
                    if stack.database_url and opts.settle_s > 0:
                        say(f"[{label}] waiting for PostgreSQL's autovacuum to finish (at most "
                            f"{opts.settle_s:.0f}s) ...")
                        settled = await maintenance_done(stack.database_url, opts.settle_s)
                    say(f"[{label}] latency: {rate} orders/s for {opts.seconds:.0f}s ({count} orders)")
                    sampler = (MaintenanceSampler(stack.database_url).start()
                               if stack.database_url else None)
                    try:  # the sampler's task and engine are stopped even if the phase fails
                        before = monitor.cpu_snapshot()
                        rate_started = time.time()
                        push_s = await push_at_rate(pusher, batch, rate)
                        pending = await wait_settled(watcher, batch, stall_s=opts.stall_s,
                                                     what=f"{rate}/s")
                        # every service, notify and the console included (off the measured path,
                        # and on the dev stack at a lower priority), must have caught up: how
                        # long after the last push, and the CPU window covers their work too
                        cu = await caught_up(kafka, stack.services, dict(watcher.end_offsets),
                                             rate_started + push_s, timeout=120)
                        after = monitor.cpu_snapshot()
                    finally:
                        maintenance = await sampler.stop() if sampler is not None else None
                    stages = stage_latencies(watcher, batch)
                    ends = [d.last() for o in batch if (d := watcher.dispatch.get(o.order_id))
                            and d.complete]
                    last_end = max((s.occurred_at for s in ends if s is not None), default=0.0)
                    firsts = [watcher.first["order.inbound"][o.inbound_key].occurred_at for o in batch
                              if o.inbound_key in watcher.first["order.inbound"]]
                    result["latency"][str(rate)] = {
                        "target_per_s": rate, "orders": count,
                        "achieved_push_per_s": round(count / push_s, 1) if push_s else None,
                        "dispatched": sum(1 for o in batch if watcher.dispatched(o.order_id)),
                        "unsettled": len(pending),
                        "drain_s_after_last_push":
                            round(last_end - max(firsts), 2) if firsts and ends else None,
                        "caught_up_s_after_last_push": cu,
                        "stages_ms": stages,
                        "cpu": cpu_window(before, after, count),
                        "settle": settled,
                        "maintenance": maintenance,
                    }
                    if stack.database_url:
                        result["latency"][str(rate)]["batches"] = await batch_sizes(
                            stack.database_url, stack.services, rate_started)
                    p99 = stages["push→dispatched"].get("p99")
                    say(f"[{label}] latency at {rate}/s: p99 push→dispatched {p99} ms")
    finally:
        if profiler is not None and profiler.running:  # interrupted mid-run
            profiler.stop()
        monitor.stop()
        await watcher.stop()
    result["resources"] = monitor.report()
    say(f"[{label}] checking for lost and duplicated orders ({len(all_orders)} orders) ...")
    result["accounting"] = await account(kafka, all_orders, timeout=120)
    result["log_problems"] = log_problems(stack.root / "logs")
    return result


def saturation_result(w: Watcher, orders: list[BenchOrder], push_s: float,
                      pending: set[str]) -> dict[str, Any]:
    inbound = [w.first["order.inbound"][o.inbound_key].occurred_at for o in orders
               if o.inbound_key in w.first["order.inbound"]]
    dispatched = [d.last() for o in orders if (d := w.dispatch.get(o.order_id)) and d.complete]
    ends = [s for s in dispatched if s is not None]
    first_push = min(inbound) if inbound else float("nan")
    last = max((s.occurred_at for s in ends), default=float("nan"))
    last_published = max((s.produced_at for s in ends), default=float("nan"))
    elapsed = last - first_push
    return {
        "orders": len(orders), "push_s": round(push_s, 2),
        "push_per_s": round(len(orders) / push_s, 1) if push_s else None,
        "dispatched": len(ends), "unsettled": len(pending),
        "elapsed_s": round(elapsed, 2),
        "end_to_end_orders_per_s": round(len(ends) / elapsed, 1) if elapsed > 0 else None,
        "end_to_end_published_orders_per_s": round(len(ends) / (last_published - first_push), 1)
        if ends and last_published > first_push else None,
        "per_topic": topic_rates(w, orders),
        "stages_ms": stage_latencies(w, orders),
    }


def log_problems(logs: Path) -> dict[str, dict[str, int]]:
    """Count warning/error lines per service log (JSON logs), to spot trouble under load."""
    out: dict[str, dict[str, int]] = {}
    if not logs.is_dir():
        return out
    for path in sorted(logs.glob("*.log")):
        counts: Counter[str] = Counter()
        with path.open(errors="replace") as f:
            for line in f:
                if '"level": "warning"' in line or '"level":"warning"' in line:
                    counts["warning"] += 1
                elif '"level": "error"' in line or '"level":"error"' in line or "Traceback" in line:
                    counts["error"] += 1
        if counts:
            out[path.stem] = dict(counts)
    return out


# --- the machine and the report ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit, dirty = "", None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = project_root()
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout
        dirty = bool(status.strip())
    return {"cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "cpu_model": model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "git_commit": commit, "git_dirty": dirty}


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value}{unit}"


def _maintenance_line(settle: dict[str, Any] | None, sampled: dict[str, Any] | None) -> str:
    if settle is None:
        before = "started without waiting for autovacuum"
    elif settle["settled"]:
        before = f"started once autovacuum had finished ({settle['waited_s']} s waited)"
    else:
        before = (f"autovacuum NOT finished after {settle['waited_s']} s "
                  f"({len(settle['due'])} tables due, {len(settle['workers'])} workers)")
    busy = _fmt((sampled or {}).get("autovacuum_busy_pct"), " %")
    return f"  {before}; an autovacuum worker busy in {busy} of the phase's samples"


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    broker = results.get("broker", "tansu")
    lines = [
        f"OrderFlow benchmark {results['run_id']}  {results['started_at']}"
        f"{'  (quick)' if results['options']['quick'] else ''}",
        f"broker: {broker_line(broker, results.get('kafka_version'))}",
        f"machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Python {m['python']}, "
        f"load average at start {m['load_average_at_start']}, commit {m['git_commit']}"
        f"{' + uncommitted changes' if m['git_dirty'] else ''}",
    ]
    if results.get("interrupted"):
        lines.append("INTERRUPTED: partial results")
    if results.get("error"):
        lines.append(f"ERROR: {results['error']}")
    phases: dict[str, Any] = results.get("phases", {})
    for name, ph in phases.items():
        sat = ph.get("saturation")
        lines.append("")
        lines.append(f"== {name}: {', '.join(ph['processes'])}")
        if sat:
            lines.append(
                f"saturation: {sat['orders']} orders pushed in {sat['push_s']}s ({sat['push_per_s']}/s); "
                f"{sat['dispatched']} dispatched in {sat['elapsed_s']}s → "
                f"{_fmt(sat['end_to_end_orders_per_s'])} orders/s end to end "
                f"({sat['unsettled']} unsettled)")
            lines.append(f"  {'topic':<22}{'service':<16}{'events':>8}{'span s':>9}{'events/s':>10}")
            for topic, r in sat["per_topic"].items():
                lines.append(f"  {topic:<22}{r['service']:<16}{r['events']:>8}{r['span_s']:>9}"
                             f"{_fmt(r['per_s']):>10}")
            cu = sat.get("caught_up_s_after_first_push", {})
            if cu:
                lines.append("  consumer groups caught up (s after first push): "
                             + ", ".join(f"{k} {_fmt(v)}" for k, v in cu.items())
                             + f" → {_fmt(sat.get('every_service_done_orders_per_s'))} orders/s "
                               "with every service done")
            nf = sat.get("notifications")
            if nf:
                lines.append(f"  notifications: {nf['notifications']} of these orders, "
                             f"{nf['unfinished']} unfinished; the last finished "
                             f"{_fmt(nf['last_finished_s_after_first_push'])} s after the first push")
            if sat.get("batches"):
                lines.append(_batches_line(sat["batches"]))
            lines.append(_stage_block("saturation latency (ms, under backlog)", sat["stages_ms"]))
        for rate, lat in (ph.get("latency") or {}).items():
            lines.append(f"latency at {rate}/s (pushed at {lat['achieved_push_per_s']}/s, "
                         f"{lat['dispatched']}/{lat['orders']} dispatched, drained "
                         f"{_fmt(lat['drain_s_after_last_push'])}s after the last push):")
            cu = lat.get("caught_up_s_after_last_push", {})
            if cu:
                lines.append("  consumer groups caught up (s after the last push): "
                             + ", ".join(f"{k} {_fmt(v)}" for k, v in cu.items()))
            if lat.get("batches"):
                lines.append(_batches_line(lat["batches"]))
            lines.append(_maintenance_line(lat.get("settle"), lat.get("maintenance")))
            lines.append(_stage_block(None, lat["stages_ms"]))
        ce = ph.get("ceiling")
        if ce:
            ratio = ""
            if sat and sat.get("end_to_end_orders_per_s") and ce.get("orders_per_s"):
                pct = 100.0 * sat["end_to_end_orders_per_s"] / ce["orders_per_s"]
                ratio = f"; pipeline = {pct:.1f} % of it"
            lines.append(f"ceiling (4 pass-through hops, no database): {ce['arrived']}/{ce['messages']} "
                         f"messages in {ce['elapsed_s']}s → {ce['orders_per_s']} orders/s{ratio}")
            bud = ce.get("cpu_budget")
            if bud:
                lines.append(
                    f"  {TARGETS['ceiling_ratio_pct']} % of it ({_fmt(bud['target_orders_per_s'])} "
                    f"orders/s) on {m['cores']} cores leaves {_fmt(bud['budget_cpu_ms_per_order'])} "
                    f"ms of CPU per order for every process; an order cost "
                    f"{_fmt(bud['pipeline_cpu_ms_per_order'])} ms (PostgreSQL and the broker "
                    f"{_fmt(bud['database_and_broker_cpu_ms_per_order'])}): at most "
                    f"{_fmt(bud['cpu_bound_orders_per_s'])} orders/s on these cores, the driver aside")
        res = ph.get("resources", {})
        cpu = (sat or {}).get("cpu", {})
        if res:
            idle = ph.get("idle_cpu_pct", {})
            done = (sat or {}).get("cpu_every_service_done", {})
            lines.append(f"  {'process':<26}{'CPU s (sat.)':>13}{'CPU ms/order':>14}{'share %':>9}"
                         f"{'all done':>10}{'idle CPU %':>12}{'peak RSS MB':>13}")
            for label, r in res.items():
                c = cpu.get(label, {})
                lines.append(f"  {label:<26}{_fmt(c.get('cpu_s')):>13}{_fmt(c.get('cpu_ms_per_order')):>14}"
                             f"{_fmt(c.get('share_pct')):>9}"
                             f"{_fmt(done.get(label, {}).get('cpu_ms_per_order')):>10}"
                             f"{_fmt(idle.get(label)):>12}{_fmt(r['peak_rss_mb']):>13}")
            lines.append("  (CPU ms/order to the last dispatch; \"all done\": until every service "
                         "had consumed it all, idle time included)")
        acc = ph.get("accounting")
        if acc:
            lines.append(f"orders: {acc['orders']} states {acc['states']}; lost {acc['lost']}, "
                         f"duplicated effects {acc['duplicated_effects']} "
                         f"{acc['duplicates_by_effect'] or ''}; "
                         f"dead letters {acc['dead_letters'] or 0}")
        if ph.get("log_problems"):
            lines.append(f"log warnings/errors: {ph['log_problems']}")
    verdict = results.get("targets")
    if verdict:
        lines.append("")
        lines.append("targets: " + "; ".join(
            f"{k} {_fmt(v['measured'])} (target {v['target']}) {'MET' if v['met'] else 'not met'}"
            for k, v in verdict.items()))
    return "\n".join(lines)


def broker_line(broker: str, version: str | None = None) -> str:
    if broker == "kafka":
        return f"Apache Kafka {version or '?'} (KRaft, one node, acks=all, idempotent producers)"
    return "Tansu (embedded, in memory, acks=all)"


def _stage_block(title: str | None, stages: dict[str, dict[str, Any]]) -> str:
    rows = [title] if title else []
    rows.append(f"  {'stage':<38}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for stage, s in stages.items():
        rows.append(f"  {stage:<38}{s.get('n', 0):>7}{_fmt(s.get('p50')):>9}{_fmt(s.get('p95')):>9}"
                    f"{_fmt(s.get('p99')):>9}{_fmt(s.get('max')):>9}")
    return "\n".join(rows)


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    phases = results.get("phases", {})
    first: dict[str, Any] = next(iter(phases.values()), {})
    sat = first.get("saturation") or {}
    out: dict[str, Any] = {}
    tput = sat.get("end_to_end_orders_per_s")
    out["throughput_orders_per_s"] = {"measured": tput, "target": f">= {TARGETS['throughput_orders_per_s']}",
                                      "met": bool(tput and tput >= TARGETS["throughput_orders_per_s"])}
    lat = (first.get("latency") or {}).get("300")
    p99 = lat["stages_ms"]["push→dispatched"].get("p99") if lat else None
    out["p99_push_to_dispatched_ms_at_300"] = {
        "measured": p99, "target": f"<= {TARGETS['p99_push_to_dispatched_ms_at_300']}",
        "met": bool(p99 is not None and p99 <= TARGETS["p99_push_to_dispatched_ms_at_300"]
                    and lat and lat["unsettled"] == 0)}
    ce = first.get("ceiling") or {}
    ratio = round(100.0 * tput / ce["orders_per_s"], 1) if tput and ce.get("orders_per_s") else None
    out["ceiling_ratio_pct"] = {"measured": ratio, "target": f">= {TARGETS['ceiling_ratio_pct']}",
                                "met": bool(ratio and ratio >= TARGETS["ceiling_ratio_pct"]),
                                "cpu_budget": ce.get("cpu_budget")}
    rss = [r["peak_rss_mb"] for ph in phases.values() for label, r in ph.get("resources", {}).items()
           if label not in (*INFRASTRUCTURE, DRIVER)]
    peak = max(rss) if rss else None
    out["peak_rss_mb"] = {"measured": peak, "target": f"< {TARGETS['peak_rss_mb']}",
                          "met": bool(peak is not None and peak < TARGETS["peak_rss_mb"])}
    lost = sum(ph.get("accounting", {}).get("lost", 0) for ph in phases.values())
    dup = sum(ph.get("accounting", {}).get("duplicated_effects", 0) for ph in phases.values())
    out["lost_or_duplicated"] = {"measured": lost + dup, "target": "0", "met": lost + dup == 0}
    return out


# --- main ----------------------------------------------------------------------------------------


def start_stack(root: Path, opts: Options, replicas: int) -> Stack:
    stack = Stack(root=root, services=list(opts.services), fixed_ports=False, fresh=True,
                  replicas={s: replicas for s in opts.services} if replicas > 1 else {},
                  extra_env=dict(opts.env), broker_kind=opts.broker)
    return stack


def bring_up(stack: Stack) -> None:
    shutil.rmtree(stack.root / "logs", ignore_errors=True)
    stack.start_infrastructure()
    stack.start_services()
    stack.wait_healthy(timeout=240)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    tune_gc(ServiceSettings())  # the driver's own overhead as small as the services' (it shares the cores)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"run_id": run_id,
                               "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                               "machine": machine(), "options": opts.__dict__ | {"rates": opts.rates},
                               "broker": opts.broker, "phases": {}}
    if opts.broker == "kafka":
        results["kafka_version"] = kafka_version()
    short = uuid.uuid4().hex[:6]
    root = project_root() / "var" / "bench"
    stack: Stack | None = None

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    plan = [("1 replica", 1, opts.latency, opts.ceiling, opts.profile)]
    if opts.scaling:
        plan.append((f"{opts.replicas} replicas", opts.replicas, False, False, False))
    try:
        for label, replicas, latency, with_ceiling, profile in plan:
            stack = start_stack(root, opts, replicas)
            broker = broker_line(opts.broker, results.get("kafka_version"))
            say(f"[{label}] starting the stack (PostgreSQL, {broker}) and "
                f"{len(opts.services) * replicas} service processes ...")
            bring_up(stack)
            results["phases"][label] = asyncio.run(run_phase(
                stack, opts, label=label, run_id=short, latency=latency, with_ceiling=with_ceiling,
                profile=profile))
            say(f"[{label}] stopping every process ...")
            stack.stop()
            stack = None
    except KeyboardInterrupt:
        results["interrupted"] = True
        say("interrupted: stopping every process ...")
    except Exception as exc:  # noqa: BLE001 - record what happened, then stop everything
        results["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        say(f"benchmark failed: {results['error']}")
    finally:
        if stack is not None:
            stack.stop()
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = verdict(results)
    text = table(results)
    results["table"] = text
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{run_id}{'-quick' if opts.quick else ''}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    print(text)
    say(f"results written to {out}")
    return 1 if results.get("error") or results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
