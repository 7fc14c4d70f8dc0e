"""A light watcher of the pipeline's topics while the benchmark runs.

It reads only keys and headers (the value only for ``shipment.dispatched``, with orjson), so that
the benchmark's own reader takes as little CPU from the services as possible. The full decode and
the lost/duplicate accounting (``Tracker`` over an ``EventLog``) run after the measurement."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.contracts.topics import BY_NAME
from orderflow.runtime.settings import KafkaSettings

MAIN_LINE = ("order.inbound", "order.received", "order.approved", "stock.reserved",
             "shipment.dispatched")
SIDE = ("order.rejected", "order.held", "stock.backordered", "shipment.exception",
        "notification.recorded")
# the service that emits each watched topic (for per-service throughput)
PRODUCED_BY = {"order.inbound": "connector (bench)", "order.received": "intake",
               "order.approved": "review", "stock.reserved": "inventory",
               "shipment.dispatched": "logistics", "notification.recorded": "notify",
               "order.rejected": "intake/review", "order.held": "review",
               "stock.backordered": "inventory", "shipment.exception": "logistics"}
# an order stopped on a side path is settled too (it will not be dispatched)
STOPPED_ON = frozenset({"order.rejected", "order.held", "stock.backordered", "shipment.exception"})


@dataclass
class Seen:
    """One event of one order on one topic: when it happened (header), when its record was
    produced (the record's timestamp) and when the watcher got it (all epoch seconds)."""

    occurred_at: float
    produced_at: float
    seen_at: float


@dataclass
class OrderDispatch:
    shipments: dict[str, Seen] = field(default_factory=dict)
    shipment_count: int = 1

    @property
    def complete(self) -> bool:
        return len(self.shipments) >= self.shipment_count

    def last(self) -> Seen | None:
        if not self.shipments:
            return None
        return max(self.shipments.values(), key=lambda s: s.occurred_at)


class Watcher:
    """Keeps, per topic and key, the first event seen (and every shipment of an order)."""

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str] = MAIN_LINE + SIDE) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self.first: dict[str, dict[str, Seen]] = defaultdict(dict)
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.dispatch: dict[str, OrderDispatch] = defaultdict(OrderDispatch)
        self.records = 0
        # the orders settled so far, and the same in the order they settled: a waiter reads only
        # what settled since it last looked (going over every pending order at each change took
        # about 40 % of the driver's CPU during a 20,000-order burst, beside the services)
        self.settled_ids: set[str] = set()
        self.settled_log: list[str] = []
        self.end_offsets: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> Watcher:
        self._consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False,
                                          group_id=None, auto_offset_reset="latest",
                                          fetch_max_bytes=16 * 1024 * 1024,
                                          max_partition_fetch_bytes=4 * 1024 * 1024)
        await self._consumer.start()
        tps = [TopicPartition(t, p) for t in self.topics for p in range(BY_NAME[t].partitions)]
        self._consumer.assign(tps)
        # only what comes next matters: runs filter by their own keys anyway
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, before anything is pushed
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=10_000)
            now = time.time()
            for tp, records in batches.items():
                topic = tp.topic
                first = self.first[topic]
                counts = self.counts[topic]
                for r in records:
                    key = r.key.decode() if r.key else ""
                    occurred = now
                    for k, v in r.headers:
                        if k == "occurred_at":
                            occurred = datetime.fromisoformat(v.decode()).timestamp()
                            break
                    seen = Seen(occurred, r.timestamp / 1000.0, now)
                    counts[key] += 1
                    if key not in first:
                        first[key] = seen
                    if topic == "shipment.dispatched":
                        body = orjson.loads(r.value or b"{}")
                        d = self.dispatch[key]
                        d.shipment_count = int(body.get("shipment_count", 1))
                        d.shipments.setdefault(str(body.get("shipment_id")), seen)
                        if d.complete:
                            self._settle(key)
                    elif topic in STOPPED_ON:
                        self._settle(key)
                if records:
                    self.end_offsets[tp] = max(self.end_offsets.get(tp, 0), records[-1].offset + 1)
                    self.records += len(records)
            if batches:
                self._changed.set()

    async def changed(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def _settle(self, order_id: str) -> None:
        if order_id not in self.settled_ids:
            self.settled_ids.add(order_id)
            self.settled_log.append(order_id)

    def settled(self, order_id: str) -> bool:
        """Dispatched in full, or stopped on a side path (rejected, held, backordered, no
        carrier)."""
        return order_id in self.settled_ids

    def dispatched(self, order_id: str) -> bool:
        d = self.dispatch.get(order_id)
        return d is not None and d.complete

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()
