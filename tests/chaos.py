"""``make chaos``: the whole pipeline under faults, with figures.

Every service runs as its own OS process against the embedded PostgreSQL and Tansu broker (two
replicas of inventory). While generated orders flow in from every channel, this injects, one
after another at random moments:

- SIGKILL of every service process in turn (each replica too), restarted after a short pause;
  a second inventory replica killed and left down long enough for its group to rebalance;
- PostgreSQL stopped for several seconds and started again on the same port;
- duplicate delivery: consumed events re-sent with the same headers (same ``event_id``);
- offsets rewound: a service stopped, its group's committed offsets moved back, started again;
- poison messages on every consumed topic: undecodable bytes, valid JSON of the wrong shape, an
  unknown ``schema_version``, a payload over the consumers' size limit;
- a valid event dead-lettered for a real reason (a stock-count write-off arriving before the goods
  receipt it corrects), the fix (the receipt), and a replay of the DLQ that then applies it;
- (full mode) the broker stopped and started: Tansu keeps everything in memory, so this is
  measured and reported apart from the figures above (``broker_outage``), with the recovery an
  operator would run (re-publish the services' outbox window, connectors re-push).

Then it judges: every pushed order reached exactly one settled state, no effect was applied twice,
the stock conservation invariant and the credit exposure figures hold, and the DLQs hold exactly
the poison messages, each with its reason. The last line on stdout is one JSON object; the exit
status is 0 only if ``lost``, ``duplicated_effects`` and ``invariant_violations`` are 0 and
``dlq_found`` equals ``dlq_expected`` (entry for entry).

    python -m tests.chaos            # the full run (~8-12 minutes on two cores)
    python -m tests.chaos --short    # fewer orders and faults (~2-3 minutes), run by make test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import shutil
import signal
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orderflow.connector import OrderPusher
from orderflow.contracts.events import Event, StockAdjusted, StockReceived
from orderflow.contracts.headers import DLQ_REASON, DLQ_SERVICE, DLQ_SOURCE, EventHeaders
from orderflow.contracts.order import order_id_for
from orderflow.contracts.topics import BY_NAME, CATALOGUE
from orderflow.devstack.dlq import replay_dlq
from orderflow.devstack.eventlog import EventLog, SeenEvent
from orderflow.devstack.processes import port_open
from orderflow.devstack.simulator import Mix, SimulatedOrder, generate_orders
from orderflow.devstack.stack import ServiceProcess, Stack, subscriptions_of, var_dir
from orderflow.devstack.tracking import Tracker
from orderflow.runtime.lag import committed_offsets, end_offsets
from orderflow.runtime.settings import KafkaSettings

POISON_KINDS: dict[str, str] = {  # kind -> the reason the consumers must give
    "undecodable": "malformed_json",
    "wrong_shape": "invalid_payload",
    "unknown_schema_version": "unknown_schema_version",
    "enormous": "payload_too_large",
}
ENORMOUS_BYTES = 1_200_000  # the consumers' default limit is 1,000,000 (ORDERFLOW_MAX_MESSAGE_BYTES)
# the topics carrying an order's own events (re-sent as duplicates)
ORDER_TOPICS = ("order.inbound", "order.received", "order.rejected", "order.held", "order.approved",
                "stock.reserved", "stock.backordered", "shipment.dispatched")
# outcomes that exclude each other: an order that has one of each family has two settled states
_REFUSED = {"order.rejected"}
_ACCEPTED = {"order.approved", "stock.reserved", "shipment.dispatched"}


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    orders: int
    push_seconds: float
    kill_rounds: int
    db_outages: int
    db_down_s: float
    rewinds: int
    duplicates: int
    replica_down_s: float
    broker_outage: bool
    settle_timeout_s: float


SHORT = Plan(orders=100, push_seconds=40, kill_rounds=1, db_outages=1, db_down_s=4, rewinds=1,
             duplicates=40, replica_down_s=8, broker_outage=False, settle_timeout_s=180)
FULL = Plan(orders=1000, push_seconds=200, kill_rounds=2, db_outages=2, db_down_s=8, rewinds=2,
            duplicates=200, replica_down_s=15, broker_outage=True, settle_timeout_s=480)


@dataclass(frozen=True)
class DeadLetter:
    """One DLQ entry, as expected or as found."""

    source: str
    key: str
    service: str
    reason: str


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    detail: dict[str, Any] = field(default_factory=dict)


class Observer:
    """Every topic read from the beginning (a new reader after a broker restart), one tracker."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.logs: list[EventLog] = []
        self.fed: list[int] = []
        self.tracker = Tracker()
        self.topics_by_order: dict[str, set[str]] = {}

    async def start(self) -> None:
        self.logs.append(await EventLog(self.kafka).start())
        self.fed.append(0)

    @property
    def log(self) -> EventLog:
        return self.logs[-1]

    def events(self) -> list[SeenEvent]:
        return [e for log in self.logs for e in log.events]

    def feed(self) -> None:
        for i, log in enumerate(self.logs):
            new = log.events[self.fed[i]:]
            self.fed[i] = len(log.events)
            self.tracker.feed(new)
            for e in new:
                if e.key and e.event is not None:
                    self.topics_by_order.setdefault(e.key, set()).add(e.topic)

    async def restart_reader(self) -> None:
        """After the broker lost its memory: keep what was seen, read the new log from 0."""
        self.feed()
        await self.log.stop()
        await self.start()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.log.stop()


class Chaos:
    def __init__(self, plan: Plan, *, seed: int, root: Path) -> None:
        self.plan = plan
        self.seed = seed
        self.rnd = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6].upper()
        self.stack = Stack(root=root, replicas={"inventory": 2}, fixed_ports=False, fresh=True,
                           extra_env={"ORDERFLOW_LOG_LEVEL": "INFO"})
        self.started = time.monotonic()
        self.faults: list[Fault] = []
        self.expected_dlq: list[DeadLetter] = []
        self.deliberately_down: set[str] = set()
        self.unexpected_exits: list[str] = []
        self.pushed: list[SimulatedOrder] = []
        self.order_ids: set[str] = set()
        self.notes: list[str] = []
        self.observer: Observer | None = None
        self.engine: AsyncEngine | None = None
        self.phase_b_ids: set[str] = set()
        self.broker_report: dict[str, Any] | None = None
        self.replay_report: dict[str, Any] = {}
        self.dlq_copies = 0

    # -- helpers --------------------------------------------------------------------------------
    @property
    def kafka(self) -> KafkaSettings:
        return self.stack.kafka

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def record(self, kind: str, target: str, **detail: Any) -> None:
        self.faults.append(Fault(kind, target, self.elapsed(), detail))
        say(f"fault: {kind} {target} {json.dumps(detail, default=str) if detail else ''}")

    async def wait(self, check: Callable[[], Awaitable[bool] | bool], *, timeout: float, what: str,
                   interval: float = 0.5) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return True
            await asyncio.sleep(interval)
        say(f"gave up waiting for {what} after {timeout:.0f}s")
        return False

    async def healthy(self, sp: ServiceProcess) -> bool:
        return await asyncio.to_thread(self.stack.healthy, sp)

    def inventory_url(self) -> str:
        return f"http://127.0.0.1:{self.stack.find('inventory').port}"

    async def http_json(self, url: str) -> Any:
        def get() -> Any:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - our own http://
                return json.loads(r.read())
        return await asyncio.to_thread(get)

    async def supervise(self) -> None:
        """Restart a service that died on its own (a finding, reported) - never one we killed."""
        while True:
            for sp in self.stack.processes:
                if sp.label in self.deliberately_down or sp.proc is None:
                    continue
                if sp.proc.poll() is not None:
                    self.unexpected_exits.append(f"{sp.label} exited {sp.proc.returncode} at "
                                                 f"{self.elapsed()}s")
                    say(f"!! {sp.label} exited on its own ({sp.proc.returncode}); restarting it")
                    self.stack.launch(sp)
            await asyncio.sleep(1.0)

    # -- the run --------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        say(f"run {self.run_id}: starting PostgreSQL, the Tansu broker and "
            f"{', '.join(self.stack.services)} (inventory x2) in {self.stack.root}")
        await asyncio.to_thread(self.stack.start_infrastructure, create_topics=False)
        await self.stack.create_topics()
        await asyncio.to_thread(self.stack.start_services)
        await asyncio.to_thread(self.stack.wait_healthy, 420)
        loaded = await self.load_master_data()
        say(f"every service healthy; {loaded} master-data records loaded and consumed")
        self.engine = create_async_engine(self.stack.database_url, pool_pre_ping=True,
                                          pool_size=2, max_overflow=2)
        self.observer = Observer(self.kafka)
        await self.observer.start()
        supervisor = asyncio.create_task(self.supervise())
        try:
            orders = generate_orders(self.plan.orders, seed=self.seed, prefix=f"CHAOS{self.run_id}",
                                     mix=Mix(bad=0.08, duplicate=0.05, rush=0.10, large=0.05))
            await self.stale_stock_count_part_one()
            pushing = asyncio.create_task(self.push(orders, self.plan.push_seconds))
            await self.inject_faults(pushing)
            await pushing
            figures = await self.judge()
            if self.plan.broker_outage and self.stack.broker is not None:
                try:
                    self.broker_report = await self.broker_outage()
                except Exception as exc:  # reported apart; the figures above stand
                    self.broker_report = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                figures["orders_including_broker_outage"] = len(self.order_ids)
            elif self.plan.broker_outage:
                self.notes.append("broker outage skipped: the broker is not the embedded one")
        finally:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
            await self.observer.stop()
            await self.engine.dispose()
        return figures

    async def load_master_data(self) -> int:
        """The demo master data, as ``Stack.load_demo_master_data`` loads it, with patience for
        a busy machine (every service consumes all of it before the first order)."""
        from orderflow.devstack.masterdata import DEMO_DATA, parse_file

        events: list[Event] = []
        for kind in ("products", "customers", "warehouses", "stock"):
            events += parse_file(kind, DEMO_DATA / f"{kind}.csv").events
        await self.stack.publish_and_wait(events, timeout=600)
        return len(events)

    async def push(self, orders: list[SimulatedOrder], seconds: float) -> None:
        chunks = max(1, int(seconds / 0.5))
        size = max(1, -(-len(orders) // chunks))
        async with OrderPusher(self.kafka, producer_name="chaos") as pusher:
            for start in range(0, len(orders), size):
                chunk = orders[start:start + size]
                await pusher.push_many([(o.channel, o.external_id, o.payload) for o in chunk])
                self.pushed += chunk
                self.order_ids |= {order_id_for(o.channel, o.external_id) for o in chunk}
                await asyncio.sleep(seconds / chunks)
        say(f"pushed {len(self.pushed)} messages ({len(self.order_ids)} orders)")

    async def inject_faults(self, pushing: asyncio.Task[None]) -> None:
        labels = [sp.label for sp in self.stack.processes]
        steps: list[Callable[[], Awaitable[None]]] = []
        for _ in range(self.plan.kill_rounds):
            shuffled = labels[:]
            self.rnd.shuffle(shuffled)
            steps += [functools.partial(self.kill_and_restart, label) for label in shuffled]
        extras: list[Callable[[], Awaitable[None]]] = [self.replica_down]
        extras += [self.database_outage] * self.plan.db_outages
        rewindable = [s for s in ("review", "logistics", "notify", "intake") if s in self.stack.services]
        extras += [functools.partial(self.rewind_offsets, s) for s in rewindable[:self.plan.rewinds]]
        extras += [self.duplicate_delivery, self.fix_replay_then_poison]
        for extra in extras:
            steps.insert(self.rnd.randrange(1, len(steps) + 1), extra)
        gap = self.plan.push_seconds / (len(steps) + 1)
        for step in steps:
            await asyncio.sleep(self.rnd.uniform(0.3, 1.5) * gap)
            await step()
        if not pushing.done():
            say("faults done; orders still being pushed")

    # -- faults ---------------------------------------------------------------------------------
    async def kill_and_restart(self, label: str) -> None:
        sp = self.stack.find(label)
        await self.wait(lambda: self.healthy(sp), timeout=60, what=f"{label} healthy before the kill")
        assert sp.proc is not None
        self.deliberately_down.add(label)
        sp.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(sp.proc.wait, 10)
        down = round(self.rnd.uniform(0.5, 3.0), 1)
        self.record("sigkill", label, down_s=down)
        await asyncio.sleep(down)
        self.stack.launch(sp)
        self.deliberately_down.discard(label)

    async def replica_down(self) -> None:
        """Two inventory replicas share the group; one is killed and stays down long enough for
        the group to rebalance its partitions onto the other, which carries on alone."""
        if "inventory-1" not in {sp.label for sp in self.stack.processes}:
            return
        sp = self.stack.find("inventory-1")
        await self.wait(lambda: self.healthy(sp), timeout=60, what="inventory-1 healthy")
        assert sp.proc is not None
        self.deliberately_down.add(sp.label)
        sp.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(sp.proc.wait, 10)
        self.record("replica_sigkill", "inventory-1", down_s=self.plan.replica_down_s,
                    survivor="inventory")
        await asyncio.sleep(self.plan.replica_down_s)
        self.stack.launch(sp)
        self.deliberately_down.discard(sp.label)

    async def database_outage(self) -> None:
        pg = self.stack.postgres
        if pg is None:
            self.notes.append("database outage skipped: the database is not the embedded one")
            return
        port = pg.port
        await asyncio.to_thread(pg.stop)
        down_at = time.monotonic()
        assert not port_open("127.0.0.1", port)
        self.record("database_stopped", "postgres", down_s=self.plan.db_down_s)
        await asyncio.sleep(self.plan.db_down_s)

        def start_again() -> None:
            pg.start(port, exact=True)  # free_port probes with SO_REUSEADDR, as servers bind
        await asyncio.to_thread(start_again)
        say(f"database back after {time.monotonic() - down_at:.1f}s")

    async def rewind_offsets(self, service: str) -> None:
        """Stop a service, move its group's committed offsets back, start it again: it sees
        everything after the new position a second time; its inbox must skip all of it."""
        sp = self.stack.find(service)
        self.deliberately_down.add(service)
        assert sp.proc is not None
        sp.proc.terminate()
        await asyncio.to_thread(sp.proc.wait, 40)
        group = f"orderflow.{service}"
        tps = [TopicPartition(t, p) for t in subscriptions_of(service)
               for p in range(BY_NAME[t].partitions)]
        rewound = 0
        try:
            rewound = await asyncio.wait_for(self._commit_earlier(group, tps), 90)
        except Exception as exc:  # reported, and the run goes on
            self.notes.append(f"rewind of {group} failed: {type(exc).__name__}: {str(exc)[:200]}")
        self.record("offsets_rewound", group, messages_redelivered=rewound)
        self.stack.launch(sp)
        self.deliberately_down.discard(service)

    async def _commit_earlier(self, group: str, tps: list[TopicPartition]) -> int:
        """Join the (now empty) group as its only member, so the broker accepts the commit with
        a real generation, move every committed offset back to half, and leave."""
        topics = sorted({tp.topic for tp in tps})
        consumer = AIOKafkaConsumer(*topics, **self.kafka.client_kwargs(), group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=1000,
                                    max_poll_records=1)
        await consumer.start()
        try:
            while set(consumer.assignment()) != set(tps):
                await consumer.getmany(timeout_ms=500, max_records=1)
            committed = {tp: (await consumer.committed(tp)) or 0 for tp in tps}
            target = {tp: off // 2 for tp, off in committed.items() if off > 0}
            if target:
                await consumer.commit(target)
            return sum(committed[tp] - off for tp, off in target.items())
        finally:
            await consumer.stop()

    async def duplicate_delivery(self) -> None:
        """Re-send events the services already consumed, byte for byte with the same headers."""
        assert self.observer is not None
        self.observer.feed()
        candidates = [e for e in self.observer.events()
                      if e.topic in ORDER_TOPICS and e.event is not None
                      and (e.key in self.order_ids or (e.key or "").split(":", 1)[-1].startswith("CHAOS")
                           or e.topic == "order.inbound")]
        chosen = self.rnd.sample(candidates, min(self.plan.duplicates, len(candidates)))
        producer = AIOKafkaProducer(**self.kafka.producer_kwargs())
        await producer.start()
        try:
            for e in chosen:
                await producer.send_and_wait(e.topic, e.value, key=(e.key or "").encode(),
                                             headers=[(k, v.encode()) for k, v in e.headers.items()])
        finally:
            await producer.stop()
        self.record("duplicate_delivery", ",".join(sorted({e.topic for e in chosen})),
                    messages=len(chosen))
        for _ in chosen[1:]:  # one fault per message re-sent
            self.faults.append(Fault("duplicate_delivery", "", self.elapsed()))

    async def fix_replay_then_poison(self) -> None:
        """The DLQ replay runs before the poison lands: a replay republishes every entry not
        replayed before, and the poison (one of them over the size limit) must stay where it is."""
        await self.stale_stock_count_part_two()
        await self.poison_every_topic()

    async def poison_every_topic(self) -> None:
        consumers: dict[str, list[str]] = {}
        for service in self.stack.services:
            for topic in subscriptions_of(service):
                consumers.setdefault(topic, []).append(service)
        producer = AIOKafkaProducer(**self.kafka.producer_kwargs(),
                                    acks="all", max_request_size=4 * 1024 * 1024)
        await producer.start()
        sent = 0
        try:
            for topic, services in sorted(consumers.items()):
                model = BY_NAME[topic].model
                for kind, reason in POISON_KINDS.items():
                    key = f"POISON-{self.run_id}-{topic}-{kind}"
                    version = 99 if kind == "unknown_schema_version" else model.SCHEMA_VERSION
                    headers = EventHeaders.new(event_type=model.EVENT_TYPE, schema_version=version,
                                               producer="chaos", correlation_id=key).to_kafka()
                    value = {
                        "undecodable": b"\xff\xfe\x00\x81 not json {",
                        "wrong_shape": json.dumps({"unexpected": [1, 2, 3], "order": "no"}).encode(),
                        "unknown_schema_version": json.dumps({"v99_field": "from the future"}).encode(),
                        "enormous": b'{"pad": "' + b"x" * ENORMOUS_BYTES + b'"}',
                    }[kind]
                    await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
                    sent += 1
                    self.expected_dlq += [DeadLetter(topic, key, s, reason) for s in services]
        finally:
            await producer.stop()
        self.record("poison", f"{len(consumers)} topics", messages=sent,
                    dead_letters_expected=sum(len(s) for s in consumers.values()) * len(POISON_KINDS))
        for _ in range(sent - 1):
            self.faults.append(Fault("poison", "", self.elapsed()))

    # -- a real dead letter, a fix, a replay -------------------------------------------------------
    @property
    def stale_sku(self) -> str:
        return f"CHAOS-{self.run_id}-SKU"

    async def stale_stock_count_part_one(self) -> None:
        """A warehouse writes off 5 damaged units of a SKU whose goods receipt has not reached
        inventory yet: the adjustment cannot take 5 units from 0 free and is dead-lettered with
        the reason (a valid event, refused for now)."""
        await self.stack.publish_and_wait([StockAdjusted(warehouse_id="WH-SH", sku=self.stale_sku,
                                                         delta=-5, reason="damaged in a stock count")])
        self.expected_dlq.append(DeadLetter("stock.adjusted", self.stale_sku, "inventory",
                                            "handler_error"))
        self.record("stale_stock_count", self.stale_sku, delta=-5)

    async def stale_stock_count_part_two(self) -> None:
        """The fix: the goods receipt (8 units) arrives. Then the DLQ is replayed; inventory now
        applies the write-off once: 8 - 5 = 3 on hand."""
        await self.stack.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=self.stale_sku,
                                                         quantity=8, reference="late receipt")])
        observer = self.observer
        assert observer is not None
        await self.wait(lambda: bool(observer.log.of("stock.adjusted.dlq", self.stale_sku)),
                        timeout=60, what="the write-off in the DLQ")
        replayed = await replay_dlq(self.kafka, "stock.adjusted")

        async def applied() -> bool:
            return await self.stale_on_hand() == 3
        ok = await self.wait(applied, timeout=60, what="the replayed write-off applied (re-checked "
                             "once the pipeline drained)")
        self.replay_report = {"topic": "stock.adjusted.dlq", "replayed": replayed,
                              "fix": "the goods receipt the write-off corrects (8 units) arrived",
                              "on_hand_after": await self.stale_on_hand(), "on_hand_expected": 3,
                              "applied_once": ok}
        say(f"DLQ replay after the fix: {self.replay_report}")

    async def stale_on_hand(self) -> int | None:
        try:
            stock = await self.http_json(f"{self.inventory_url()}/inventory/stock/{self.stale_sku}")
        except OSError:
            return None
        rows = [w for w in stock["warehouses"] if w["warehouse_id"] == "WH-SH"]
        return int(rows[0]["on_hand"]) if rows else None

    # -- judging --------------------------------------------------------------------------------
    async def outbox_backlog(self) -> int:
        assert self.engine is not None
        total = 0
        async with self.engine.connect() as conn:
            for service in self.stack.services:
                total += (await conn.execute(sa.text(
                    f'SELECT count(*) FROM "{service}".outbox WHERE published_at IS NULL'))).scalar_one()
        return total

    async def consumer_lag(self) -> int:
        lag = 0
        for service in self.stack.services:
            tps = [TopicPartition(t, p) for t in subscriptions_of(service)
                   for p in range(BY_NAME[t].partitions)]
            ends = await end_offsets(self.kafka, tps)
            committed = await committed_offsets(self.kafka, f"orderflow.{service}", tps)
            lag += sum(max(0, ends[tp] - committed.get(tp, 0)) for tp in tps)
        return lag

    async def quiesce(self, timeout: float) -> bool:
        """Until no service has an unpublished outbox row and every group consumed every topic,
        twice in a row."""
        calm = 0

        async def quiet() -> bool:
            nonlocal calm
            try:
                idle = await self.outbox_backlog() == 0 and await self.consumer_lag() == 0
            except Exception:  # a service or the database may still be coming back
                idle = False
            calm = calm + 1 if idle else 0
            return calm >= 2
        return await self.wait(quiet, timeout=timeout, what="the pipeline to go quiet", interval=1.0)

    def settled_states(self, ids: set[str]) -> tuple[list[str], list[str]]:
        """(orders not settled, orders with two settled states that exclude each other)."""
        assert self.observer is not None
        self.observer.feed()
        unsettled = [oid for oid in ids if not self.observer.tracker.settled(oid)]
        conflicting = [oid for oid in ids
                       if self.observer.topics_by_order.get(oid, set()) & _REFUSED
                       and self.observer.topics_by_order.get(oid, set()) & _ACCEPTED]
        return unsettled, conflicting

    async def wait_settled(self, ids: set[str], timeout: float) -> list[str]:
        last = [-1]

        def progress() -> bool:
            unsettled, _ = self.settled_states(ids)
            if len(unsettled) != last[0]:
                say(f"{len(ids) - len(unsettled)}/{len(ids)} orders settled")
                last[0] = len(unsettled)
            return not unsettled
        await self.wait(progress, timeout=timeout, what="every order settled", interval=1.0)
        return self.settled_states(ids)[0]

    async def invariants(self) -> list[str]:
        problems: list[str] = []
        if "inventory" in self.stack.services:
            report = await self.http_json(f"{self.inventory_url()}/inventory/invariants")
            problems += [f"inventory: {p}" for p in report["problems"]]
        if "review" in self.stack.services:
            problems += await self.credit_consistency()
        return problems

    async def credit_consistency(self) -> list[str]:
        """Review's running credit figures equal the sum of the orders it approved, each counted
        once; automatic approvals never took a credit account over its limit; the orders approved
        on the stream are exactly the ones review's ledger holds as approved."""
        assert self.engine is not None and self.observer is not None
        problems: list[str] = []
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.text("""
                WITH o AS (
                  SELECT customer_id,
                         count(*) FILTER (WHERE status = 'approved') AS approved,
                         coalesce(sum(uninvoiced) FILTER (WHERE status = 'approved'), 0) AS uninvoiced,
                         coalesce(sum(greatest(grand_total - paid, 0))
                                  FILTER (WHERE status = 'approved' AND exposure_kind = 'cod'), 0) AS cod
                  FROM review.review_orders GROUP BY customer_id)
                SELECT a.customer_id, a.approved_orders, a.approved_not_invoiced, a.open_cod,
                       a.open_receivables, a.credit_limit,
                       coalesce(o.approved, 0) AS ledger_approved,
                       coalesce(o.uninvoiced, 0) AS ledger_uninvoiced, coalesce(o.cod, 0) AS ledger_cod
                FROM review.review_credit_accounts a LEFT JOIN o USING (customer_id)"""))).all()
            for r in rows:
                if (r.approved_orders, r.approved_not_invoiced, r.open_cod) != (
                        r.ledger_approved, r.ledger_uninvoiced, r.ledger_cod):
                    problems.append(f"credit: account {r.customer_id} says {r.approved_orders} "
                                    f"approved / {r.approved_not_invoiced} not invoiced / "
                                    f"{r.open_cod} open COD; its orders add up to "
                                    f"{r.ledger_approved} / {r.ledger_uninvoiced} / {r.ledger_cod}")
                if r.approved_not_invoiced > 0 and \
                        r.open_receivables + r.approved_not_invoiced > r.credit_limit:
                    problems.append(f"credit: account {r.customer_id} exposure "
                                    f"{r.open_receivables + r.approved_not_invoiced} over its limit "
                                    f"{r.credit_limit} by automatic approvals")
            ledger = {r.order_id: (r.status, Decimal(r.grand_total)) for r in (await conn.execute(
                sa.text("SELECT order_id, status, grand_total FROM review.review_orders"))).all()}
        approved_on_stream = {}
        for e in self.observer.events():
            if e.topic == "order.approved" and e.event is not None and e.key in self.order_ids:
                approved_on_stream[e.key] = e.event.totals.grand_total
        for oid, total in approved_on_stream.items():
            status, ledger_total = ledger.get(oid, ("missing", Decimal(-1)))
            if status != "approved" or ledger_total != total:
                problems.append(f"credit: order {oid} approved on the stream ({total}) but review's "
                                f"ledger says {status} ({ledger_total})")
        for oid in self.order_ids:
            if ledger.get(oid, ("", 0))[0] == "approved" and oid not in approved_on_stream:
                problems.append(f"credit: order {oid} approved in review's ledger but never on the stream")
        return problems

    async def dead_letters(self) -> list[DeadLetter]:
        """Every DLQ entry, read to the end of each DLQ."""
        observer = self.observer
        assert observer is not None
        dlqs = [TopicPartition(t.dlq, 0) for t in CATALOGUE]
        ends = await end_offsets(self.kafka, dlqs)

        def caught_up() -> bool:
            seen = {(e.topic, e.partition): e.offset + 1 for e in observer.log.events
                    if e.topic.endswith(".dlq")}
            return all(seen.get((tp.topic, tp.partition), 0) >= end for tp, end in ends.items())
        await self.wait(caught_up, timeout=60, what="the DLQ reader to catch up")
        entries = [e for e in observer.log.events if e.topic.endswith(".dlq")]
        # the same message dead-lettered again after a redelivery (a rewind, or a crash before
        # the offset commit: poison never enters the inbox) or its outbox row published twice is
        # one entry with copies: same source, service and original event_id
        distinct: dict[tuple[str, ...], DeadLetter] = {}
        for e in entries:
            letter = DeadLetter(e.headers.get(DLQ_SOURCE, ""), e.key or "",
                                e.headers.get(DLQ_SERVICE, ""), e.headers.get(DLQ_REASON, ""))
            distinct.setdefault((*astuple(letter), e.headers.get("event_id", f"@{e.offset}")), letter)
        self.dlq_copies = len(entries) - len(distinct)
        return list(distinct.values())

    async def judge(self) -> dict[str, Any]:
        say("faults done; waiting for the pipeline to drain ...")
        await self.quiesce(self.plan.settle_timeout_s)
        unsettled = await self.wait_settled(self.order_ids, self.plan.settle_timeout_s)
        await self.quiesce(60)
        assert self.observer is not None
        self.observer.feed()
        _, conflicting = self.settled_states(self.order_ids)
        ours = Tracker()
        ours.feed(e for e in self.observer.events()
                  if e.key in self.order_ids or e.key == self.stale_sku)
        duplicates = ours.duplicates()
        violations = await self.invariants()
        if self.replay_report and not self.replay_report["applied_once"]:
            # a busy inventory may take its time: judged again now that everything drained
            self.replay_report["on_hand_after"] = await self.stale_on_hand()
            self.replay_report["applied_once"] = self.replay_report["on_hand_after"] == 3
        if not self.replay_report.get("applied_once"):
            violations.append(f"the replayed write-off was not applied exactly once: {self.replay_report}")
        found = await self.dead_letters()
        expected = Counter(self.expected_dlq)
        got = Counter(found)
        missing = list((expected - got).elements())
        unexpected = list((got - expected).elements())
        states = Counter(str(self.observer.tracker.state_of(o) or "unseen") for o in self.order_ids)
        kinds = Counter(f.kind for f in self.faults)
        say(f"states: {dict(states)}; duplicates: {duplicates}; invariant problems: {len(violations)}")
        for v in violations[:20]:
            say(f"  violation: {v}")
        for d in (missing[:10] + unexpected[:10]):
            say(f"  DLQ {'missing' if d in missing else 'unexpected'}: {d}")
        return {
            "orders": len(self.order_ids),
            "messages_pushed": len(self.pushed),
            "faults_injected": len(self.faults),
            "lost": len(unsettled) + len(conflicting),
            "duplicated_effects": sum(duplicates.values()),
            "invariant_violations": len(violations),
            "dlq_expected": len(self.expected_dlq),
            "dlq_found": len(found),
            "dlq_missing": len(missing),
            "dlq_unexpected": len(unexpected),
            "dlq_redelivered_copies": self.dlq_copies,
            "dlq_reasons": dict(Counter(d.reason for d in found)),
            "dlq_replay": self.replay_report,
            "states": dict(sorted(states.items())),
            "faults_by_kind": dict(sorted(kinds.items())),
            "unsettled_orders": sorted(unsettled)[:10],
            "conflicting_orders": sorted(conflicting)[:10],
            "duplicates_by_effect": duplicates,
            "violations": violations[:10],
            "unexpected_service_exits": self.unexpected_exits,
        }

    # -- the broker outage (measured apart) --------------------------------------------------------
    async def broker_outage(self) -> dict[str, Any]:
        """Stop the Tansu broker mid-stream and start it again. Its storage is memory: every
        message, topic and committed offset is gone. Measure which orders that were in flight get
        stranded, then run the recovery an operator would (re-publish each service's outbox rows
        from the window, connectors re-push what they sent in it) and measure again. Orders pushed
        after the restart are followed too; all of it is reported apart from the main figures."""
        assert self.observer is not None and self.engine is not None and self.stack.broker is not None
        broker = self.stack.broker
        port = broker.port
        before = generate_orders(max(40, self.plan.orders // 5), seed=self.seed + 1,
                                 prefix=f"BROKER{self.run_id}A", mix=Mix(bad=0.05, duplicate=0.0))
        after = generate_orders(max(20, self.plan.orders // 10), seed=self.seed + 2,
                                prefix=f"BROKER{self.run_id}B", mix=Mix(bad=0.05, duplicate=0.0))
        before_ids = {order_id_for(o.channel, o.external_id) for o in before}
        after_ids = {order_id_for(o.channel, o.external_id) for o in after}
        async with self.engine.connect() as conn:
            window_start = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
        async with OrderPusher(self.kafka, producer_name="chaos") as pusher:
            await pusher.push_many([(o.channel, o.external_id, o.payload) for o in before])
        self.order_ids |= before_ids  # judged here, reported apart
        observer = self.observer

        def a_third_settled() -> bool:
            observer.feed()
            return sum(1 for o in before_ids if observer.tracker.settled(o)) * 3 >= len(before_ids)
        await self.wait(a_third_settled, timeout=60, what="a third of the orders settled", interval=0.2)
        self.observer.feed()
        in_flight = [o for o in before_ids if not self.observer.tracker.settled(o)]
        messages_before = sum(len(log.events) for log in self.observer.logs[-1:])
        dlq_before = sum(1 for e in self.observer.log.events if e.topic.endswith(".dlq"))
        await asyncio.to_thread(broker.stop)
        self.record("broker_stopped", "tansu", in_flight_orders=len(in_flight))
        await asyncio.sleep(5)

        def start_again() -> None:
            broker.start(port)  # free_port probes with SO_REUSEADDR (TIME_WAIT is no obstacle)
        await asyncio.to_thread(start_again)
        if broker.port != port:
            raise RuntimeError(f"the broker came back on port {broker.port}, not {port}")
        await self.stack.create_topics()
        await self.observer.restart_reader()
        say("broker back (empty): topics re-created; services reconnect on their own")
        async with OrderPusher(self.kafka, producer_name="chaos") as pusher:
            await pusher.push_many([(o.channel, o.external_id, o.payload) for o in after])
        self.order_ids |= after_ids
        unsettled_after = await self.wait_settled(after_ids, self.plan.settle_timeout_s / 2)
        await self.quiesce(60)
        stranded = [o for o in before_ids if not self.observer.tracker.settled(o)]
        say(f"after the restart: {len(stranded)} of the {len(before_ids)} orders pushed before it "
            "are stranded; recovering: re-publishing outbox rows of the window, connectors re-push")
        republished = 0
        async with self.engine.begin() as conn:
            for service in self.stack.services:
                republished += (await conn.execute(sa.text(
                    f'UPDATE "{service}".outbox SET published_at = NULL '
                    "WHERE published_at >= :t"), {"t": window_start})).rowcount
        async with OrderPusher(self.kafka, producer_name="chaos") as pusher:
            await pusher.push_many([(o.channel, o.external_id, o.payload) for o in before])
        still = await self.wait_settled(before_ids | after_ids, self.plan.settle_timeout_s / 2)
        await self.quiesce(60)
        self.observer.feed()
        ours = Tracker()
        ours.feed(e for e in self.observer.events() if e.key in before_ids | after_ids)
        return {
            "orders_pushed_before_stop": len(before_ids),
            "orders_in_flight_at_stop": len(in_flight),
            "orders_stranded_by_the_lost_memory": len(stranded),
            "messages_lost_with_the_broker": messages_before,
            "dlq_entries_lost_with_the_broker": dlq_before,
            "consumer_group_offsets_lost": len(self.stack.services),
            "outbox_rows_republished": republished,
            "orders_stranded_after_recovery": len(still),
            "orders_pushed_after_restart": len(after_ids),
            "orders_pushed_after_restart_unsettled": len(unsettled_after),
            "duplicated_effects": sum(ours.duplicates().values()),
        }


BROKER_EXPLANATION = (
    "The embedded Tansu broker keeps its log in memory: stopping it loses every message, topic, "
    "DLQ entry and committed offset. Orders whose next event had been published but not yet "
    "consumed are stranded: the services' databases hold the state and the outbox rows (marked "
    "published), but the events are gone. Events not yet published at the stop stay in the "
    "outboxes and are sent once the broker is back. Recovery: re-publish each service's outbox "
    "rows published since the window began and let connectors re-push; the inboxes turn the "
    "repeats into no-ops. Orders pushed after the restart can be stranded too: the consumers keep "
    "their positions in the lost log (and commit them to the new, empty one), so they skip the "
    "first messages of the re-created partitions, and Tansu can serve stale metadata for the "
    "re-created topics; an operator must stop the services, reset every group to the earliest "
    "offsets and start them again (the inboxes make the re-reading harmless). None of this is "
    "counted in 'lost': with Apache Kafka (replicated, on disk) nothing is lost and no recovery "
    "is needed."
)


def _clean_old_runs(base: Path) -> None:
    if not base.exists():
        return
    for child in base.iterdir():
        if child.is_dir() and child.name.isdigit():
            try:
                os.kill(int(child.name), 0)
            except ProcessLookupError:
                shutil.rmtree(child, ignore_errors=True)
            except PermissionError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="fewer orders and faults (~2-3 minutes)")
    parser.add_argument("--orders", type=int, help="orders to push (overrides the mode's number)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--broker-outage", choices=["yes", "no"],
                        help="stop and start the broker at the end (default: full mode only)")
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    if args.orders:
        plan = Plan(**{**plan.__dict__, "orders": args.orders})
    if args.broker_outage:
        plan = Plan(**{**plan.__dict__, "broker_outage": args.broker_outage == "yes"})
    # the embedded infrastructure, whatever the shell says: the faults stop and start it
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        os.environ.pop(name, None)
    base = var_dir() / "chaos"
    _clean_old_runs(base)
    root = base / str(os.getpid())
    shutil.rmtree(root, ignore_errors=True)
    chaos = Chaos(plan, seed=args.seed, root=root)

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    started = time.monotonic()
    figures: dict[str, Any]
    try:
        figures = asyncio.run(chaos.run())
    except Exception as exc:  # the run itself failed: say so in the one line
        say(f"the chaos run failed: {type(exc).__name__}: {exc}")
        figures = {"orders": len(chaos.order_ids), "faults_injected": len(chaos.faults),
                   "lost": -1, "duplicated_effects": -1, "invariant_violations": -1,
                   "dlq_expected": len(chaos.expected_dlq), "dlq_found": -1,
                   "error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        say("stopping every process ...")
        chaos.stack.stop()
    figures["mode"] = "short" if args.short else "full"
    figures["seed"] = args.seed
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    figures["logs"] = str(root / "logs")
    if chaos.broker_report is not None:
        figures["broker_outage"] = chaos.broker_report | {"explanation": BROKER_EXPLANATION}
    if chaos.notes:
        figures["notes"] = chaos.notes
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    ok = (figures["lost"] == 0 and figures["duplicated_effects"] == 0
          and figures["invariant_violations"] == 0
          and figures["dlq_found"] == figures["dlq_expected"]
          and figures.get("dlq_missing", 1) == 0 and figures.get("dlq_unexpected", 1) == 0)
    figures["passed"] = ok
    line = json.dumps(figures, default=str, ensure_ascii=False)
    with contextlib.suppress(OSError):
        (base / f"last-{figures['mode']}.json").write_text(line + "\n")
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
