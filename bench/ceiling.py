"""The ceiling: the same number of messages through the same topic hops as the main line
(``order.inbound`` → ``order.received`` → ``order.approved`` → ``stock.reserved`` →
``shipment.dispatched``), each hop a pass-through process (``bench.passthrough``) with no decoding
and no database, on topics of their own with the same partitions, on the same broker."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.resources import ResourceMonitor
from bench.watch import MAIN_LINE
from bench.workload import BenchOrder
from orderflow.contracts.events import OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import BY_NAME
from orderflow.devstack.processes import spawn, stop, wait_until
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings

REPO = Path(__file__).resolve().parent.parent


def encoded(orders: list[BenchOrder]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """The orders as the connector kit puts them on ``order.inbound``: key, value, headers."""
    now = datetime.now(UTC)
    out = []
    for o in orders:
        env = OrderSubmitted(channel=o.channel, external_id=o.external_id, store=o.store,
                             received_at=now, payload=o.payload)
        headers = EventHeaders.new(event_type=env.EVENT_TYPE, schema_version=env.SCHEMA_VERSION,
                                   producer="bench", correlation_id=env.key())
        out.append((env.key().encode(), env.model_dump_json().encode(), headers.to_kafka()))
    return out


async def _count_arrivals(consumer: AIOKafkaConsumer, expected: int, stall_s: float) -> tuple[int, float]:
    seen, last_at, last_progress = 0, 0.0, time.monotonic()
    while seen < expected and time.monotonic() - last_progress < stall_s:
        batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
        n = sum(len(r) for r in batches.values())
        if n:
            seen += n
            last_at = time.time()
            last_progress = time.monotonic()
    return seen, last_at


async def measure(kafka: KafkaSettings, root: Path, orders: list[BenchOrder], *,
                  stall_s: float = 60.0) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    names = [f"bench.ceiling.{run}.{t}" for t in MAIN_LINE]
    await create_topics(kafka, [(n, BY_NAME[t].partitions) for n, t in zip(names, MAIN_LINE, strict=True)])
    bootstrap = kafka.bootstrap_servers
    ready = [root / f"ceiling-{run}-hop{i}.ready" for i in range(len(names) - 1)]
    procs = []
    monitor = ResourceMonitor()
    messages = encoded(orders)
    try:
        for i, (source, target) in enumerate(itertools.pairwise(names)):
            proc = spawn([sys.executable, "-m", "bench.passthrough", "--bootstrap", bootstrap,
                          "--broker", kafka.broker,
                          "--source", source, "--target", target,
                          "--group", f"bench.ceiling.{run}.hop{i}", "--ready-file", str(ready[i])],
                         log_path=root / "logs" / f"ceiling-hop{i}.log", cwd=REPO)
            procs.append(proc)
            monitor.add(f"hop {MAIN_LINE[i]}→{MAIN_LINE[i + 1]}", proc.pid)

        def all_ready() -> bool:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a pass-through hop exited; see {root / 'logs'}")
            return all(f.exists() for f in ready)

        await asyncio.to_thread(wait_until, all_ready, timeout=90, what="the pass-through hops")
        final = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False, group_id=None,
                                 fetch_max_bytes=16 * 1024 * 1024)
        await final.start()
        tps = [TopicPartition(names[-1], p) for p in range(BY_NAME[MAIN_LINE[-1]].partitions)]
        final.assign(tps)
        await final.seek_to_beginning(*tps)
        producer = AIOKafkaProducer(**kafka.producer_kwargs(),
                                    linger_ms=5, max_batch_size=512 * 1024,
                                    max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            monitor.start()
            counting = asyncio.create_task(_count_arrivals(final, len(messages), stall_s))
            started = time.time()
            for chunk in range(0, len(messages), 1000):
                futures = [await producer.send(names[0], value=v, key=k, headers=h)
                           for k, v, h in messages[chunk:chunk + 1000]]
                await asyncio.gather(*futures)
            pushed_s = time.time() - started
            arrived, last_at = await counting
            monitor.stop()
        finally:
            await producer.stop()
            await final.stop()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            stop(p, timeout=10)
        for f in ready:
            f.unlink(missing_ok=True)
    elapsed = max(1e-6, last_at - started)
    return {
        "messages": len(messages),
        "hops": len(names) - 1,
        "arrived": arrived,
        "push_s": round(pushed_s, 2),
        "elapsed_s": round(elapsed, 2),
        "orders_per_s": round(arrived / elapsed, 1),
        "processes": monitor.report(),
    }
