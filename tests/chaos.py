"""``make chaos``: the whole pipeline under faults, with figures.

Every service runs as its own OS process (inventory as two replicas) against the embedded
PostgreSQL and a broker: a three-node Apache Kafka cluster (``--broker kafka``: each node a broker
and a controller, every topic replicated three times with ``min.insync.replicas=2``) or the
embedded Tansu broker (``--broker tansu``; the default is ``ORDERFLOW_BROKER``, else tansu). While
generated orders flow in from every channel, this injects, one after another at random moments:

- SIGKILL of every service process in turn (each replica too), restarted after a short pause;
  a second inventory replica killed and left down long enough for its group to rebalance;
- SIGSTOP of an inventory replica for longer than its consumer's session timeout, then SIGCONT:
  its late commits must not move the group's committed offsets back (sampled throughout);
- PostgreSQL stopped for several seconds and started again on the same port; its postmaster
  killed (SIGKILL, a crash: it recovers from its WAL; the run's PostgreSQL is durable, ``fsync``
  and ``synchronous_commit`` on); and stopped for 30 s the moment a notification reaches a sink;
- duplicate delivery: consumed events re-sent with the same headers (same ``event_id``);
- offsets rewound: a service stopped, its group's committed offsets moved back, started again;
- poison messages on every consumed topic: undecodable bytes, valid JSON of the wrong shape, an
  unknown ``schema_version``, a payload over the consumers' size limit;
- a valid event dead-lettered for a real reason (a stock-count write-off arriving before the goods
  receipt it corrects), the fix (the receipt), and a replay of the DLQ that then applies it.

On Kafka the brokers fail too, while the same orders flow, one broker fault at a time (each just
after a burst of orders is pushed, and the cluster back to every partition fully in sync before
the next; the script's own offset rewinds, duplicate sends and DLQ replay wait for that too):

- ``broker_leader_sigkill``: SIGKILL of the broker leading the most partitions, started again once
  its leaderships moved to the others;
- ``broker_paused``: SIGSTOP of a broker (not the active controller) for longer than the brokers'
  6 s session timeout, so the controller fences it and moves its leaderships, then SIGCONT;
- ``controller_sigkill``: SIGKILL of the active controller (the KRaft quorum's leader, as Kafka's
  metadata-quorum tool reports it), started again once another node leads the quorum;
- ``broker_restart``: a broker leading partitions stopped cleanly (SIGTERM: it hands its
  leaderships over first) and started again.

At the end (on Kafka in both modes, on Tansu in the full mode) the broker is stopped and started
again while a batch of orders is in flight, and more orders are pushed once it is back: on Kafka
every node at once, each on its own log (``cluster_restart``); Tansu keeps everything in memory
and comes back empty, its topics created again (``broker_outage``). Nothing is re-pushed or
re-published afterwards: the orders in flight must settle on their own (the script's connector
pushes again only a push that failed, as a connector does: ``push_repeats``).

Notify delivers for real: e-mail to an SMTP server and webhooks to an HTTP server run by this
script, which count what arrives per delivery id.

Then it judges, once everything has settled: every pushed order reached exactly one settled state
(``unsettled`` counts the orders that never did, ``lost`` those and the orders with two settled
states that exclude each other), every order the broker acknowledged is on ``order.inbound``
(``acknowledged_missing``), no effect was applied twice, the stock conservation invariant and the
credit exposure figures hold, and the DLQs hold exactly the poison messages, each with its reason
(on Tansu they are judged before its restart, which takes them with it), and every notification
notify marked sent reached its sink (at least once; none sent around the database's stop after a
send arrived twice). The last line on stdout is one JSON object; the exit status is 0 only if
``lost``, ``unsettled``, ``acknowledged_missing``, ``duplicated_effects``,
``invariant_violations`` and ``offset_regressions`` are 0, ``dlq_found`` equals ``dlq_expected``
(entry for entry), every broker fault left the cluster fully in sync again
(``cluster_not_recovered`` 0), no service exited unasked (``unexpected_service_exits``), every
fault did what it is for (``ineffective_faults``: a rewind that moved no offset back, say), the
notifications add up, and the broker's restart at the end happened with all its orders settled.
``faults_injected`` and ``faults_by_kind`` count faults (kills, stops, pauses, outages, rewinds,
one duplicate delivery, one poisoning); the messages re-sent and the poison messages are counted
on their own lines (``messages_resent``, ``poison_messages``). ``broker_faults`` holds what was
measured of each broker fault (leaderships moved, new controller, back in sync).

    python -m tests.chaos --broker kafka          # the full run (~1,400 orders, ~15 minutes)
    python -m tests.chaos --short --broker kafka  # fewer orders and faults, run by make test
    python -m tests.chaos --short --broker tansu  # the short form on Tansu (~2-3 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
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
from dataclasses import astuple, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.metadata import MetadataRequest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from orderflow.connector import OrderPusher
from orderflow.connector.broker_profile import profile_of
from orderflow.contracts.events import Event, StockAdjusted, StockReceived
from orderflow.contracts.headers import DLQ_REASON, DLQ_SERVICE, DLQ_SOURCE, EventHeaders
from orderflow.contracts.topics import BY_NAME, CATALOGUE
from orderflow.devstack.eventlog import EventLog, SeenEvent
from orderflow.devstack.kafka import KafkaCluster
from orderflow.devstack.processes import free_port, port_open
from orderflow.devstack.simulator import CHANNEL_FORMATS, Mix, SimulatedOrder, generate_orders
from orderflow.devstack.stack import (
    BROKER_CHOICES,
    BrokerChoice,
    ServiceProcess,
    Stack,
    broker_choice,
    subscriptions_of,
    var_dir,
)
from orderflow.devstack.tracking import Tracker
from orderflow.runtime.dlq import replay_dlq
from orderflow.runtime.lag import committed_offsets, end_offsets
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.sinks import SmtpSink, WebhookSink

POISON_KINDS: dict[str, str] = {  # kind -> the reason the consumers must give
    "undecodable": "malformed_json",
    "wrong_shape": "invalid_payload",
    "unknown_schema_version": "unknown_schema_version",
    "enormous": "payload_too_large",
}
# over the consumers' default limit, 1,000,000 bytes (ORDERFLOW_MAX_MESSAGE_BYTES), and under what
# a catalogue topic takes on Kafka (its default max.message.bytes, 1,048,588 with the batch's own
# bytes): the broker takes it, the consumers refuse it
ENORMOUS_BYTES = 1_010_000
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
    broker_outage: bool  # the broker stopped and started at the end, orders in flight
    settle_timeout_s: float
    cluster_faults: bool = False  # Kafka: leader SIGKILL, pause, controller SIGKILL, a restart
    burst: int = 0  # orders pushed just before each broker fault
    broker_down_s: float = 0.0  # a killed broker stays down this long after its leaderships moved
    broker_pause_s: float = 0.0  # SIGSTOP to SIGCONT: longer than the brokers' session timeout
    db_kills: int = 1  # SIGKILL of PostgreSQL's postmaster (a crash: recovery from the WAL)
    db_after_send_s: float = 30.0  # PostgreSQL stopped this long right after a delivery


SHORT = Plan(orders=100, push_seconds=40, kill_rounds=1, db_outages=1, db_down_s=4, rewinds=1,
             duplicates=40, replica_down_s=8, broker_outage=False, settle_timeout_s=180)
FULL = Plan(orders=1000, push_seconds=200, kill_rounds=2, db_outages=2, db_down_s=8, rewinds=2,
            duplicates=200, replica_down_s=15, broker_outage=True, settle_timeout_s=480)
# on Kafka the orders flow for as long as the broker faults take (each waits for the cluster to
# be fully in sync again), and the final restart is part of the short form too
KAFKA_SHORT = replace(SHORT, orders=150, push_seconds=60, broker_outage=True, cluster_faults=True,
                      burst=10, broker_down_s=2, broker_pause_s=12)
KAFKA_FULL = replace(FULL, push_seconds=240, cluster_faults=True, burst=30, broker_down_s=8,
                     broker_pause_s=20)
BROKER_SESSION_TIMEOUT_S = 6  # broker.session.timeout.ms of orderflow.devstack.kafka


def plan_for(broker: BrokerChoice, *, short: bool) -> Plan:
    if broker == "kafka":
        return KAFKA_SHORT if short else KAFKA_FULL
    return SHORT if short else FULL


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


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class ClusterView:
    """What one broker says of the cluster: the brokers registered (not fenced) and every
    partition's leader, replicas and in-sync replicas."""

    brokers: frozenset[int]
    partitions: tuple[PartitionState, ...]

    def leaderships(self) -> Counter[int]:
        return Counter(p.leader for p in self.partitions if p.leader >= 0)

    def led_by(self, node_id: int) -> int:
        return sum(1 for p in self.partitions if p.leader == node_id)

    def leaderless(self) -> int:
        return sum(1 for p in self.partitions if p.leader < 0)

    def under_replicated(self) -> int:
        return sum(1 for p in self.partitions if set(p.isr) != set(p.replicas))

    def in_sync(self, nodes: set[int]) -> bool:
        return bool(self.partitions) and nodes <= self.brokers and not self.leaderless() \
            and not self.under_replicated()


class Connector:
    """Pushes orders as a channel connector does: a push that fails after the pusher's own
    retries is pushed again with a new producer (the same orders: intake makes the repeat a
    no-op); the repeats are counted."""

    def __init__(self, chaos: Chaos) -> None:
        self.chaos = chaos
        self.pusher: OrderPusher | None = None

    async def push(self, orders: list[SimulatedOrder], phase: str) -> None:
        attempt = 0
        while True:
            try:
                if self.pusher is None:
                    pusher = OrderPusher(self.chaos.kafka, producer_name="chaos")
                    await pusher.__aenter__()
                    self.pusher = pusher
                await self.pusher.push_many([o.submission() for o in orders])
                break
            except Exception as exc:  # a connector keeps its orders and tries again
                attempt += 1
                await self.close()
                if attempt >= 20:
                    raise
                self.chaos.push_repeats += 1
                say(f"a push of {len(orders)} orders failed ({type(exc).__name__}: "
                    f"{str(exc)[:200]}); pushing them again")
                await asyncio.sleep(2.0)
        self.chaos.pushed += orders
        for o in orders:
            oid = o.order_id
            self.chaos.order_ids.add(oid)
            self.chaos.phase_of.setdefault(oid, phase)

    async def close(self) -> None:
        if self.pusher is not None:
            with contextlib.suppress(Exception):
                await self.pusher.__aexit__(None, None, None)
            self.pusher = None

    async def __aenter__(self) -> Connector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


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
    def __init__(self, plan: Plan, *, seed: int, root: Path, broker: BrokerChoice) -> None:
        self.plan = plan
        self.seed = seed
        self.rnd = random.Random(seed)
        self.cluster_rnd = random.Random(seed + 3)  # the broker faults' own, run alongside
        self.run_id = uuid.uuid4().hex[:6].upper()
        # PostgreSQL durable (fsync, synchronous_commit): its SIGKILL must lose nothing committed
        self.stack = Stack(root=root, replicas={"inventory": 2}, fixed_ports=False, fresh=True,
                           extra_env={"ORDERFLOW_LOG_LEVEL": "INFO"}, broker_kind=broker,
                           kafka_nodes=3 if broker == "kafka" else 1, durable_db=True)
        # notify delivers for real: e-mail to an SMTP server, webhooks to an HTTP server, each
        # in threads of its own (a busy event loop here must not time sends out), counting what
        # arrives per delivery id
        self.smtp = SmtpSink()
        self.webhooks = WebhookSink()
        self.outages_after_send: list[tuple[float, float]] = []  # (monotonic from, to)
        self.started = time.monotonic()
        self.faults: list[Fault] = []
        self.expected_dlq: list[DeadLetter] = []
        self.deliberately_down: set[str] = set()
        self.unexpected_exits: list[str] = []
        self.pushed: list[SimulatedOrder] = []
        self.order_ids: set[str] = set()
        self.phase_of: dict[str, str] = {}  # order id -> flow | burst | final
        self.push_repeats = 0
        self.notes: list[str] = []
        self.observer: Observer | None = None
        self.engine: AsyncEngine | None = None
        self.final_report: dict[str, Any] | None = None
        self.replay_report: dict[str, Any] = {}
        self.dlq_copies = 0
        # held by a broker fault until the cluster is fully in sync again, and by the script's
        # own producers and group tools (rewinds, duplicates, the DLQ replay, the poison)
        self.cluster_calm = asyncio.Lock()
        self.cluster_not_recovered: list[str] = []
        self.bursts = 0
        self.messages_resent = 0
        self.poison_messages = 0
        # faults that did not do what they are for (a rewind that moved no offset back)
        self.ineffective_faults: list[str] = []
        # a group's committed offset seen going down while a consumer was paused and resumed
        self.offset_regressions: list[str] = []

    # -- helpers --------------------------------------------------------------------------------
    @property
    def kafka(self) -> KafkaSettings:
        return self.stack.kafka

    @property
    def cluster(self) -> KafkaCluster | None:
        broker = self.stack.broker
        return broker if isinstance(broker, KafkaCluster) else None

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    def record(self, kind: str, target: str, **detail: Any) -> Fault:
        fault = Fault(kind, target, self.elapsed(), detail)
        self.faults.append(fault)
        say(f"fault: {kind} {target} {json.dumps(detail, default=str) if detail else ''}")
        return fault

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
                    if port_open("127.0.0.1", sp.port):  # taken by another process meanwhile
                        sp.port = free_port()
                    self.stack.launch(sp)
            await asyncio.sleep(1.0)

    async def wait_healthy(self, timeout: float) -> None:
        async def all_healthy() -> bool:
            return all(await asyncio.gather(*(self.healthy(sp) for sp in self.stack.processes)))
        if not await self.wait(all_healthy, timeout=timeout, what="every service healthy",
                               interval=1.0):
            raise TimeoutError(f"not every service was healthy after {timeout:.0f}s")

    # -- the run --------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        broker = ("a three-node Apache Kafka cluster" if self.stack.broker_kind == "kafka"
                  else "the Tansu broker")
        say(f"run {self.run_id}: starting PostgreSQL, {broker} and "
            f"{', '.join(self.stack.services)} (inventory x2) in {self.stack.root}")
        await asyncio.to_thread(self.stack.start_infrastructure, create_topics=False)
        await self.stack.create_topics()
        self.smtp.start()
        self.webhooks.start()
        self.stack.extra_env.update({
            "ORDERFLOW_NOTIFY_SMTP_HOST": "127.0.0.1",
            "ORDERFLOW_NOTIFY_SMTP_PORT": str(self.smtp.port),
            "ORDERFLOW_NOTIFY_WEBHOOK_URLS": json.dumps(
                {channel: self.webhooks.url(f"/ok/{channel}") for channel in CHANNEL_FORMATS}),
            "ORDERFLOW_NOTIFY_WEBHOOK_SECRET": f"chaos-{self.run_id}",
        })
        await asyncio.to_thread(self.stack.start_services)
        supervisor = asyncio.create_task(self.supervise())
        self.engine = create_async_engine(self.stack.database_url, pool_pre_ping=True,
                                          pool_size=2, max_overflow=2)
        self.observer = Observer(self.kafka)
        tasks: list[asyncio.Task[None]] = []
        try:
            await self.wait_healthy(420)
            loaded = await self.load_master_data()
            say(f"every service healthy; {loaded} master-data records loaded and consumed")
            await self.observer.start()
            orders = generate_orders(self.plan.orders, seed=self.seed, prefix=f"CHAOS{self.run_id}",
                                     mix=Mix(bad=0.08, duplicate=0.05, rush=0.10, large=0.05))
            await self.stale_stock_count_part_one()
            pushing = asyncio.create_task(self.push(orders, self.plan.push_seconds))
            tasks.append(pushing)
            if self.plan.cluster_faults and self.cluster is not None:
                tasks.append(asyncio.create_task(self.cluster_faults()))
            elif self.plan.cluster_faults:
                self.notes.append("broker faults skipped: the broker is not a Kafka cluster")
            await self.inject_faults(pushing)
            for task in tasks:
                await task
            dlq: dict[str, Any] | None = None
            if self.plan.broker_outage and self.stack.broker is not None:
                say("faults done; letting the orders settle before the broker's restart ...")
                await self.wait_settled(self.order_ids, self.plan.settle_timeout_s)
                if self.cluster is None:  # Tansu's DLQs go with its memory: judged before,
                    await self.quiesce(self.plan.settle_timeout_s)  # every consumer done
                    dlq = await self.judge_dlq()
                self.final_report = await self.final_restart()
            elif self.plan.broker_outage:
                self.notes.append("broker restart skipped: the broker is not one this run started")
            figures = await self.judge(dlq)
        finally:
            for task in [*tasks, supervisor]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.observer.stop()
            await self.engine.dispose()
            self.webhooks.stop()
            self.smtp.stop()
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

    async def push(self, orders: list[SimulatedOrder], seconds: float, phase: str = "flow",
                   chunks: int = 0) -> None:
        """Push ``orders`` evenly over ``seconds`` in ``chunks`` (0: a chunk every half second)."""
        chunks = chunks or max(1, int(seconds / 0.5))
        size = max(1, -(-len(orders) // chunks))
        async with Connector(self) as connector:
            for start in range(0, len(orders), size):
                await connector.push(orders[start:start + size], phase)
                await asyncio.sleep(seconds / chunks)
        say(f"{len(orders)} messages of the {phase} phase pushed")

    def in_flight(self) -> int:
        """Orders pushed and not settled yet."""
        assert self.observer is not None
        self.observer.feed()
        return sum(1 for o in self.order_ids if not self.observer.tracker.settled(o))

    async def inject_faults(self, pushing: asyncio.Task[None]) -> None:
        labels = [sp.label for sp in self.stack.processes]
        steps: list[Callable[[], Awaitable[None]]] = []
        for _ in range(self.plan.kill_rounds):
            shuffled = labels[:]
            self.rnd.shuffle(shuffled)
            steps += [functools.partial(self.kill_and_restart, label) for label in shuffled]
        extras: list[Callable[[], Awaitable[None]]] = [self.replica_down, self.consumer_paused]
        extras += [self.database_outage] * self.plan.db_outages
        extras += [self.database_killed] * self.plan.db_kills
        if self.plan.db_after_send_s > 0:
            extras.append(self.database_stopped_after_send)
        rewindable = [s for s in ("review", "logistics", "notify", "intake") if s in self.stack.services]
        # the script's own producers and group tools wait for a broker fault to be over
        calm: list[Callable[[], Awaitable[None]]] = [
            functools.partial(self.rewind_offsets, s) for s in rewindable[:self.plan.rewinds]]
        calm += [self.duplicate_delivery, self.fix_replay_then_poison]
        for extra in extras + calm:
            steps.insert(self.rnd.randrange(1, len(steps) + 1), extra)
        gap = self.plan.push_seconds / (len(steps) + 1)
        for step in steps:
            await asyncio.sleep(self.rnd.uniform(0.3, 1.5) * gap)
            if any(step is c for c in calm):
                async with self.cluster_calm:
                    await step()
            else:
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

        # free_port probes with SO_REUSEADDR, as servers bind: the same port is free again
        await asyncio.to_thread(pg.start, port, exact=True)
        say(f"database back after {time.monotonic() - down_at:.1f}s")

    async def database_killed(self) -> None:
        """SIGKILL of PostgreSQL's postmaster (its backends exit after it): a crash, nothing
        flushed or rolled back; started again on the same port, it recovers from its WAL. With
        ``synchronous_commit=on`` every commit a service saw returned is in that WAL."""
        pg = self.stack.postgres
        if pg is None:
            self.notes.append("database kill skipped: the database is not the embedded one")
            return
        port = pg.port
        await asyncio.to_thread(pg.kill)
        down = round(self.rnd.uniform(1.0, 4.0), 1)
        self.record("database_sigkill", "postgres", down_s=down)
        await asyncio.sleep(down)

        started = time.monotonic()
        await asyncio.to_thread(pg.start, port, exact=True)
        say(f"database recovered and accepting connections {time.monotonic() - started:.1f}s "
            "after its start")

    def deliveries(self) -> list[tuple[str, float]]:
        """Every notification delivered to the sinks so far: (delivery id, arrival)."""
        got = [(str(m.message.get("X-OrderFlow-Notification", "")), m.at)
               for m in list(self.smtp.received)]
        got += [(r.headers.get("x-orderflow-delivery", ""), r.at) for r in self.webhooks.received()]
        return got

    async def database_stopped_after_send(self) -> None:
        """The moment a notification reaches a sink, PostgreSQL stops, for
        ``db_after_send_s`` (longer than the sender's lease): the send's mark waits for the
        database, and the notification must not be sent again when it is back."""
        pg = self.stack.postgres
        if pg is None:
            self.notes.append("database stop after a send skipped: not the embedded database")
            return
        since = time.monotonic()
        # a few orders of its own, so notifications flow even when the fault comes after the
        # flow's last push
        orders = generate_orders(5, seed=self.seed + 7, prefix=f"CHAOS{self.run_id}N",
                                 mix=Mix(bad=0.0, duplicate=0.0))
        async with Connector(self) as connector:
            await connector.push(orders, "burst")

        def arrived() -> list[tuple[str, float]]:
            return sorted((d for d in self.deliveries() if d[1] >= since), key=lambda d: d[1])
        if not await self.wait(lambda: bool(arrived()), timeout=120, interval=0.005,
                               what="a notification delivered"):
            self.ineffective_faults.append("no notification was delivered to stop the database "
                                           "after")
            return
        port = pg.port
        stopped_at = time.monotonic()
        await asyncio.to_thread(pg.stop)
        delivery_id = arrived()[0][0]
        fault = self.record("database_stopped_after_send", "postgres",
                            down_s=self.plan.db_after_send_s, delivery_id=delivery_id)
        await asyncio.sleep(self.plan.db_after_send_s)

        await asyncio.to_thread(pg.start, port, exact=True)
        # the deliveries that arrived from just before the stop until the database was back:
        # each was sent while its mark could not be written
        self.outages_after_send.append((stopped_at - 2.0, time.monotonic()))
        fault.detail["actual_down_s"] = round(time.monotonic() - stopped_at, 1)
        say(f"database back after {fault.detail['actual_down_s']}s")

    async def consumer_paused(self) -> None:
        """SIGSTOP of an inventory replica for longer than its consumer's session timeout: the
        group moves its partitions to the other replica; SIGCONT, and whatever the paused one
        commits late (an old generation) must not move the group's committed offsets back,
        sampled every half second until the group settled again. A commit that moved them
        forward past what was processed would strand orders (``unsettled``)."""
        if "inventory-1" not in {sp.label for sp in self.stack.processes}:
            return
        sp = self.stack.find("inventory-1")
        await self.wait(lambda: self.healthy(sp), timeout=60, what="inventory-1 healthy")
        assert sp.proc is not None
        group = "orderflow.inventory"
        tps = [TopicPartition(t, p) for t in subscriptions_of("inventory")
               for p in range(BY_NAME[t].partitions)]
        highest: dict[TopicPartition, int] = {}
        sampling = [True]

        async def sample() -> None:
            while sampling[0]:
                try:
                    now = await committed_offsets(self.kafka, group, tps)
                except Exception:  # a broker fault may be under way: next sample
                    now = {}
                for tp, off in now.items():
                    if off < highest.get(tp, 0):
                        self.offset_regressions.append(
                            f"{group} {tp.topic}[{tp.partition}] went back from "
                            f"{highest[tp]} to {off} at {self.elapsed()}s")
                    highest[tp] = max(off, highest.get(tp, 0))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        paused_s = profile_of(self.stack.broker_kind).session_timeout_ms / 1000 + 5
        try:
            await asyncio.sleep(1.0)
            self.deliberately_down.add(sp.label)
            sp.proc.send_signal(signal.SIGSTOP)
            self.record("consumer_paused", sp.label, paused_s=paused_s,
                        session_timeout_s=paused_s - 5)
            await asyncio.sleep(paused_s)
            sp.proc.send_signal(signal.SIGCONT)
            self.deliberately_down.discard(sp.label)
            await self.wait(lambda: self.healthy(sp), timeout=90, what="inventory-1 healthy again")
            await asyncio.sleep(10.0)  # its late commits, the group's rebalance after it
        finally:
            sampling[0] = False
            with contextlib.suppress(Exception):
                await sampler

    async def rewind_offsets(self, service: str) -> None:
        """Stop a service, move its group's committed offsets back, start it again: it sees
        everything after the new position a second time; its inbox must skip all of it."""
        sp = self.stack.find(service)
        group = f"orderflow.{service}"
        tps = [TopicPartition(t, p) for t in subscriptions_of(service)
               for p in range(BY_NAME[t].partitions)]

        async def committed_something() -> bool:
            try:
                return sum((await committed_offsets(self.kafka, group, tps)).values()) > 0
            except Exception:  # the broker may be busy with a fault: ask again
                return False
        await self.wait(committed_something, timeout=120, interval=1.0,
                        what=f"{group} to commit something to rewind")
        self.deliberately_down.add(service)
        assert sp.proc is not None
        sp.proc.terminate()
        await asyncio.to_thread(sp.proc.wait, 40)
        rewound = 0
        try:
            rewound = await asyncio.wait_for(self._commit_earlier(group, tps), 90)
        except Exception as exc:  # reported, and the run goes on
            self.notes.append(f"rewind of {group} failed: {type(exc).__name__}: {str(exc)[:200]}")
        self.record("offsets_rewound", group, messages_redelivered=rewound)
        if rewound == 0:
            self.ineffective_faults.append(f"the rewind of {group} moved no offset back")
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
        self.messages_resent += len(chosen)

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
        producer = AIOKafkaProducer(**{**self.kafka.producer_kwargs(),
                                       "max_request_size": 4 * 1024 * 1024})
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
        self.poison_messages += sent

    # -- the brokers' faults (Kafka) ----------------------------------------------------------------
    async def cluster_faults(self) -> None:
        """One broker fault at a time while the orders flow, each right after a burst of orders
        (acknowledged by the cluster, so in flight when it strikes), each over only once every
        partition is fully in sync again."""
        steps = [self.leader_sigkill, self.broker_pause, self.controller_sigkill,
                 self.broker_restart]
        spacing = self.plan.push_seconds / (len(steps) + 1)
        for step in steps:
            await asyncio.sleep(self.cluster_rnd.uniform(0.3, 0.8) * spacing)
            async with self.cluster_calm:
                await step()

    async def burst(self) -> int:
        """Push a burst of orders (the cluster acknowledges every one); the orders in flight."""
        if self.plan.burst > 0:
            self.bursts += 1
            orders = generate_orders(self.plan.burst, seed=self.seed + 10 + self.bursts,
                                     prefix=f"CHAOS{self.run_id}K{self.bursts}",
                                     mix=Mix(bad=0.05, duplicate=0.0, rush=0.10, large=0.05))
            async with Connector(self) as connector:
                await connector.push(orders, "burst")
        return self.in_flight()

    async def cluster_view(self, node_id: int | None = None,
                           avoid: int | None = None) -> ClusterView | None:
        """The cluster as one broker's metadata has it: ``node_id``'s, else the first registered
        broker's other than ``avoid``; None if it did not answer."""
        cluster = self.cluster
        assert cluster is not None
        bootstrap = ",".join(n.bootstrap for n in cluster.nodes if n.node_id != avoid)
        settings = KafkaSettings(bootstrap_servers=bootstrap, broker="kafka")
        client = AIOKafkaClient(**settings.client_kwargs(), request_timeout_ms=4000)
        try:
            await asyncio.wait_for(client.bootstrap(), 10)
            if node_id is None:
                node_id = min((b.nodeId for b in client.cluster.brokers() if b.nodeId != avoid),
                              default=None)
                if node_id is None:
                    return None
            metadata = await asyncio.wait_for(client.send(node_id, MetadataRequest(None)), 10)
        except Exception:  # a broker down, paused, fenced or not ready: the caller asks again
            return None
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        answer = metadata.to_object()
        partitions = tuple(PartitionState(t["topic"], p["partition"], p["leader"],
                                          tuple(p["replicas"]), tuple(p["isr"]))
                           for t in answer["topics"] if t["error_code"] == 0
                           for p in t["partitions"])
        return ClusterView(frozenset(b["node_id"] for b in answer["brokers"]), partitions)

    async def current_view(self, avoid: int | None = None) -> ClusterView:
        view: ClusterView | None = None

        async def answered() -> bool:
            nonlocal view
            view = await self.cluster_view(avoid=avoid)
            return view is not None and bool(view.partitions)
        if not await self.wait(answered, timeout=120, what="a broker to describe the cluster",
                               interval=1.0):
            raise RuntimeError("no broker of the cluster describes it")
        assert view is not None
        return view

    async def wait_moved(self, node_id: int, since: float, timeout: float) -> float | None:
        """Seconds from ``since`` until ``node_id`` is fenced (out of the registered brokers) and
        leads no partition, every partition having a leader; None if not within ``timeout``."""
        async def moved() -> bool:
            view = await self.cluster_view(avoid=node_id)
            return view is not None and bool(view.partitions) and node_id not in view.brokers \
                and view.led_by(node_id) == 0 and not view.leaderless()
        if await self.wait(moved, timeout=timeout, what=f"kafka-{node_id}'s leaderships to move",
                           interval=0.5):
            return round(time.monotonic() - since, 1)
        return None

    async def wait_in_sync(self, fault: Fault) -> None:
        """Until every node is registered and every partition's replicas are all in sync, as
        every node's own metadata has it (a node just back may still hold what it had before)."""
        cluster = self.cluster
        assert cluster is not None
        nodes = {n.node_id for n in cluster.nodes}
        since = time.monotonic()
        last: list[ClusterView | None] = [None]

        async def in_sync() -> bool:
            for node_id in sorted(nodes):
                last[0] = await self.cluster_view(node_id)
                if last[0] is None or not last[0].in_sync(nodes):
                    return False
            return True
        if await self.wait(in_sync, timeout=300, what="every partition fully in sync", interval=1.0):
            fault.detail["back_in_sync_s"] = round(time.monotonic() - since, 1)
            say(f"cluster fully in sync again after {fault.kind} "
                f"({fault.detail['back_in_sync_s']}s)")
            return
        view = last[0]
        state = (f"brokers {sorted(view.brokers)}, {view.under_replicated()} partitions under-"
                 f"replicated, {view.leaderless()} leaderless" if view else "no broker answered")
        self.cluster_not_recovered.append(f"{fault.kind} {fault.target}: {state}")
        fault.detail["back_in_sync_s"] = None

    async def kill_broker(self, kind: str, node_id: int, view: ClusterView, **detail: Any) -> None:
        """SIGKILL a node; once its leaderships moved (and ``broker_down_s`` more), start it."""
        cluster = self.cluster
        assert cluster is not None
        in_flight = await self.burst()
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill_node, node_id)
        fault = self.record(kind, f"kafka-{node_id}", leaderships=view.led_by(node_id),
                            partitions=len(view.partitions), in_flight_orders=in_flight, **detail)
        moved = asyncio.create_task(self.wait_moved(node_id, killed_at, 120))
        if kind == "controller_sigkill":  # measured while the leaderships move
            fault.detail.update(await self.new_controller(node_id, killed_at))
        fault.detail["leaderships_moved_after_s"] = await moved
        await asyncio.sleep(self.plan.broker_down_s)
        await asyncio.to_thread(cluster.start_node, node_id)
        fault.detail["down_s"] = round(time.monotonic() - killed_at, 1)
        await self.wait_in_sync(fault)

    async def leader_sigkill(self) -> None:
        view = await self.current_view()
        counts = view.leaderships()
        target = max(sorted(counts), key=lambda n: counts[n])  # the lowest id on a tie
        await self.kill_broker("broker_leader_sigkill", target, view,
                               leaderships_by_node=dict(sorted(counts.items())))

    async def controller_sigkill(self) -> None:
        cluster = self.cluster
        assert cluster is not None
        controller = await self.active_controller()
        view = await self.current_view()
        await self.kill_broker("controller_sigkill", controller, view)

    async def active_controller(self) -> int:
        cluster = self.cluster
        assert cluster is not None
        for attempt in range(5):
            try:
                return await asyncio.to_thread(cluster.active_controller)
            except Exception as exc:  # an election in progress, a busy machine
                say(f"the active controller is not known yet: {str(exc)[:200]}")
                await asyncio.sleep(2.0 * (attempt + 1))
        return await asyncio.to_thread(cluster.active_controller)

    async def new_controller(self, old: int, since: float) -> dict[str, Any]:
        """Which node leads the controller quorum once ``old`` is gone, and how soon."""
        cluster = self.cluster
        assert cluster is not None
        found: list[int] = []

        async def elected() -> bool:
            try:
                leader = await asyncio.to_thread(cluster.active_controller, timeout=15)
            except Exception:  # an election in progress
                return False
            found[:] = [leader]
            return leader != old
        if await self.wait(elected, timeout=120, what="a new active controller", interval=0.5):
            return {"new_controller": found[0],
                    "new_controller_after_s": round(time.monotonic() - since, 1)}
        self.cluster_not_recovered.append(f"controller_sigkill kafka-{old}: no new controller")
        return {"new_controller": None}

    async def broker_pause(self) -> None:
        """SIGSTOP a broker past the brokers' session timeout (not the active controller: its
        fault is the next one), then SIGCONT: it finds itself fenced and catches up."""
        cluster = self.cluster
        assert cluster is not None
        controller = await self.active_controller()
        view = await self.current_view()
        counts = view.leaderships()
        target = max((n.node_id for n in cluster.nodes if n.node_id != controller),
                     key=lambda n: (counts[n], -n))
        in_flight = await self.burst()
        paused_at = time.monotonic()
        cluster.pause_node(target)
        fault = self.record("broker_paused", f"kafka-{target}", pause_s=self.plan.broker_pause_s,
                            session_timeout_s=BROKER_SESSION_TIMEOUT_S,
                            leaderships=counts[target], partitions=len(view.partitions),
                            in_flight_orders=in_flight, active_controller=controller)
        fenced: float | None = None
        try:
            fenced = await self.wait_moved(target, paused_at, self.plan.broker_pause_s)
            fault.detail["fenced_and_moved_after_s"] = fenced
            await asyncio.sleep(max(0.0, self.plan.broker_pause_s - (time.monotonic() - paused_at)))
        finally:
            cluster.resume_node(target)
        if fenced is None:
            self.notes.append(f"kafka-{target} paused {self.plan.broker_pause_s}s was not seen "
                              "fenced with its leaderships moved while paused")
        await self.wait_in_sync(fault)

    async def broker_restart(self) -> None:
        """One broker stopped cleanly (its leaderships handed over first) and started again."""
        cluster = self.cluster
        assert cluster is not None
        view = await self.current_view()
        leaders = view.leaderships()  # a node that leads partitions: they are handed over
        target = self.cluster_rnd.choice([n.node_id for n in cluster.nodes if leaders[n.node_id]]
                                         or [n.node_id for n in cluster.nodes])
        in_flight = await self.burst()
        stopping_at = time.monotonic()
        fault = self.record("broker_restart", f"kafka-{target}", leaderships=view.led_by(target),
                            partitions=len(view.partitions), in_flight_orders=in_flight)
        await asyncio.to_thread(cluster.stop_node, target)
        fault.detail["stopped_after_s"] = round(time.monotonic() - stopping_at, 1)
        await asyncio.to_thread(cluster.start_node, target)
        fault.detail["down_s"] = round(time.monotonic() - stopping_at, 1)
        await self.wait_in_sync(fault)

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

    async def judge_dlq(self) -> dict[str, Any]:
        """The DLQs against the dead letters expected, entry for entry."""
        found = await self.dead_letters()
        expected = Counter(self.expected_dlq)
        got = Counter(found)
        missing = list((expected - got).elements())
        unexpected = list((got - expected).elements())
        for d in (missing[:10] + unexpected[:10]):
            say(f"  DLQ {'missing' if d in missing else 'unexpected'}: {d}")
        return {
            "dlq_expected": len(self.expected_dlq),
            "dlq_found": len(found),
            "dlq_missing": len(missing),
            "dlq_unexpected": len(unexpected),
            "dlq_redelivered_copies": self.dlq_copies,
            "dlq_reasons": dict(Counter(d.reason for d in found)),
        }

    def acknowledged_missing(self) -> list[str]:
        """Orders the broker acknowledged (the pusher returned) that never showed on
        ``order.inbound``."""
        assert self.observer is not None
        seen = {(e.event.channel, e.event.store, e.event.external_id)
                for e in self.observer.events() if e.topic == "order.inbound" and e.event is not None}
        return sorted({f"{o.channel}:{o.store or ''}:{o.external_id}" for o in self.pushed
                       if (o.channel, o.store, o.external_id) not in seen})

    async def judge(self, dlq: dict[str, Any] | None) -> dict[str, Any]:
        say("faults done; waiting for every order to settle and the pipeline to drain ...")
        await self.quiesce(self.plan.settle_timeout_s)
        # after the final restart its own wait gave every order its time: a last look here
        await self.wait_settled(self.order_ids,
                                60 if self.final_report else self.plan.settle_timeout_s)
        await self.quiesce(60)
        assert self.observer is not None
        self.observer.feed()
        unsettled, conflicting = self.settled_states(self.order_ids)
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
        if dlq is None:
            dlq = await self.judge_dlq()
        notifications = await self.judge_notifications()
        missing_inbound = self.acknowledged_missing()
        states = Counter(str(self.observer.tracker.state_of(o) or "unseen") for o in self.order_ids)
        kinds = Counter(f.kind for f in self.faults)
        say(f"states: {dict(states)}; unsettled: {len(unsettled)}; duplicates: {duplicates}; "
            f"invariant problems: {len(violations)}")
        for v in violations[:20]:
            say(f"  violation: {v}")
        broker_kinds = {"broker_leader_sigkill", "broker_paused", "controller_sigkill",
                        "broker_restart", "cluster_restart", "broker_outage"}
        return {
            "broker": self.stack.broker_kind,
            "broker_nodes": len(self.cluster.nodes) if self.cluster else 1,
            "orders": len(self.order_ids),
            "orders_by_phase": dict(sorted(Counter(self.phase_of.values()).items())),
            "messages_pushed": len(self.pushed),
            "push_repeats": self.push_repeats,
            "faults_injected": len(self.faults),
            "messages_resent": self.messages_resent,
            "poison_messages": self.poison_messages,
            "lost": len(unsettled) + len(conflicting),
            "unsettled": len(unsettled),
            "unsettled_by_phase": dict(sorted(Counter(self.phase_of[o] for o in unsettled).items())),
            "acknowledged_missing": len(missing_inbound),
            "duplicated_effects": sum(duplicates.values()),
            "invariant_violations": len(violations),
            **dlq,
            "dlq_replay": self.replay_report,
            "states": dict(sorted(states.items())),
            "faults_by_kind": dict(sorted(kinds.items())),
            "broker_faults": [{"kind": f.kind, "target": f.target, "at_s": f.at_s, **f.detail}
                              for f in self.faults if f.kind in broker_kinds],
            "cluster_not_recovered": len(self.cluster_not_recovered),
            "cluster_not_recovered_details": self.cluster_not_recovered[:10],
            "unsettled_orders": sorted(unsettled)[:10],
            "conflicting_orders": sorted(conflicting)[:10],
            "acknowledged_missing_orders": missing_inbound[:10],
            "duplicates_by_effect": duplicates,
            "violations": violations[:10],
            "unexpected_service_exits": self.unexpected_exits,
            "ineffective_faults": self.ineffective_faults,
            "offset_regressions": len(self.offset_regressions),
            "offset_regression_details": self.offset_regressions[:10],
            **notifications,
        }

    async def judge_notifications(self) -> dict[str, Any]:
        """Notify's e-mail and webhook notifications against what reached the sinks, per
        delivery id: every one notify marked sent arrived at least once, nothing arrived that
        notify does not know, none is left unfinished, and none that arrived while the database
        was stopped after a send arrived again after that (the sender holds its rows until their
        marks commit). A copy elsewhere is what the README allows (a sender killed between a send
        and its mark) and is counted in ``notifications_delivered_twice``, each with its arrival
        times and the faults between them (``notification_copies``)."""
        assert self.engine is not None
        query = sa.text("SELECT notification_id::text, status FROM notify.notify_notifications "
                        "WHERE channel IN ('email', 'webhook')")

        async def rows() -> dict[str, str]:
            async with self.engine.connect() as conn:  # type: ignore[union-attr]
                return {nid: status for nid, status in (await conn.execute(query)).all()}

        async def finished() -> bool:
            try:
                return not any(s in ("pending", "sending") for s in (await rows()).values())
            except Exception:  # the database may be coming back
                return False
        await self.wait(finished, timeout=180, interval=1.0, what="every notification finished")
        status = await rows()
        arrivals = self.deliveries()
        count = Counter(nid for nid, _ in arrivals)
        sent = {nid for nid, st in status.items() if st == "sent"}
        times: dict[str, list[float]] = {}
        for nid, at in sorted(arrivals, key=lambda a: a[1]):
            times.setdefault(nid, []).append(at)
        # a notification that reached its sink while a stop of the database after a send was
        # under way (from just before it until the database was back) must not arrive again
        # after that; one that arrived before too was a copy of an earlier fault's making
        around_outage: dict[str, float] = {}
        for nid, ats in times.items():
            for at in ats:
                if any(start <= at <= end for start, end in self.outages_after_send):
                    around_outage.setdefault(nid, at)
        # unless notify itself was killed between the two arrivals: then the copy is the
        # README's "a sender killed between a send and its mark" (counted with the copies)
        notify_killed = [self.started + f.at_s for f in self.faults
                         if f.kind == "sigkill" and f.target.startswith("notify")]
        repeated = sorted(nid for nid, at in around_outage.items()
                          if any(later > at and not any(at < k < later for k in notify_killed)
                                 for later in times[nid]))

        def copy(nid: str) -> dict[str, Any]:
            """When each arrival came (seconds into the run) and the faults from the first to
            the last: what made the copy, as far as timing tells."""
            at_s = [round(at - self.started, 1) for at in times[nid]]
            return {"id": nid, "arrivals_s": at_s,
                    "faults_between": [f"{f.kind}:{f.target}@{f.at_s}" for f in self.faults
                                       if at_s[0] - 1 <= f.at_s <= at_s[-1]]}
        copies = [copy(nid) for nid, ats in times.items() if len(ats) > 1]
        return {
            "notifications_sent": len(sent),
            "notifications_delivered": len(count),
            "notification_deliveries": sum(count.values()),
            "notifications_sent_not_delivered": len(sent - set(count)),
            "notifications_delivered_unknown": len(set(count) - set(status)),
            "notifications_unfinished": sum(1 for st in status.values()
                                            if st in ("pending", "sending")),
            "notifications_delivered_twice": len(copies),
            "notification_copies": copies[:10],
            "notifications_around_outage": len(around_outage),
            "notifications_repeated_after_outage": repeated[:10],
            "notification_delivery_counts": dict(sorted(Counter(count.values()).items())),
        }

    # -- the broker stopped and started at the end, orders in flight ------------------------------
    async def final_restart(self) -> dict[str, Any]:
        """Push a batch of orders over several seconds, stop the broker once a third of them
        settled (the rest in flight, some not pushed yet: the connector pushes again what fails
        while the broker is away), start it again, push another batch; then nothing more: every
        one of them must settle on its own, judged with all the others. Kafka: every node stopped
        at once and started on its own log. Tansu: its memory is its storage, so it comes back
        empty (the topics are created again)."""
        before = generate_orders(max(40, self.plan.orders // 5), seed=self.seed + 1,
                                 prefix=f"BROKER{self.run_id}A", mix=Mix(bad=0.05, duplicate=0.0))
        after = generate_orders(max(20, self.plan.orders // 10), seed=self.seed + 2,
                                prefix=f"BROKER{self.run_id}B", mix=Mix(bad=0.05, duplicate=0.0))
        before_ids = {o.order_id for o in before}
        after_ids = {o.order_id for o in after}
        # a few big chunks: the stop comes while one is on its way through the pipeline
        pushing = asyncio.create_task(
            self.push(before, max(10.0, self.plan.push_seconds / 12), "final", chunks=4))
        try:
            report = await self.restart_broker(before_ids)
            await pushing
        finally:
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pushing
        async with Connector(self) as connector:
            await connector.push(after, "final")
        still = await self.wait_settled(before_ids | after_ids, self.plan.settle_timeout_s)
        report.update({
            "orders_pushed_after": len(after_ids),
            "unsettled_of_those_before": len(set(still) & before_ids),
            "unsettled_of_those_after": len(set(still) & after_ids),
        })
        return report

    async def restart_broker(self, before_ids: set[str]) -> dict[str, Any]:
        """Once a third of ``before_ids`` settled while others are in flight: every Kafka node
        stopped and started again, or Tansu stopped and started empty."""
        assert self.observer is not None and self.stack.broker is not None
        broker = self.stack.broker
        cluster = self.cluster
        observer = self.observer

        def a_third_settled_more_in_flight() -> bool:
            observer.feed()
            pushed = before_ids & self.order_ids
            settled = sum(1 for o in pushed if observer.tracker.settled(o))
            return settled * 3 >= len(before_ids) and settled < len(pushed)
        await self.wait(a_third_settled_more_in_flight, timeout=120, interval=0.05,
                        what="a third of the orders settled and more in flight")
        observer.feed()
        in_flight = [o for o in before_ids & self.order_ids if not observer.tracker.settled(o)]
        report: dict[str, Any] = {"orders_pushed_before": len(before_ids),
                                  "orders_in_flight_at_stop": len(in_flight),
                                  "orders_not_pushed_yet_at_stop": len(before_ids - self.order_ids)}
        stopped_at = time.monotonic()
        if cluster is not None:
            fault = self.record("cluster_restart", f"kafka x{len(cluster.nodes)}",
                                in_flight_orders=len(in_flight))
            await asyncio.to_thread(cluster.restart)
            fault.detail["down_s"] = round(time.monotonic() - stopped_at, 1)
            say(f"every broker back on its log after {fault.detail['down_s']}s")
        else:
            assert not isinstance(broker, KafkaCluster)
            port = broker.port
            report["messages_lost_with_the_broker"] = len(observer.log.events)
            report["dlq_entries_lost_with_the_broker"] = sum(
                1 for e in observer.log.events if e.topic.endswith(".dlq"))
            await asyncio.to_thread(broker.stop)
            fault = self.record("broker_outage", "tansu", in_flight_orders=len(in_flight))
            await asyncio.sleep(5)

            # free_port probes with SO_REUSEADDR (TIME_WAIT is no obstacle)
            await asyncio.to_thread(broker.start, port)
            if broker.port != port:
                raise RuntimeError(f"the broker came back on port {broker.port}, not {port}")
            await self.stack.create_topics()
            await observer.restart_reader()
            fault.detail["down_s"] = round(time.monotonic() - stopped_at, 1)
            say("broker back (empty): topics created again; services reconnect on their own")
        report["down_s"] = fault.detail["down_s"]
        return report


BROKER_EXPLANATION = (
    "The embedded Tansu broker keeps its log in memory: stopping it loses every message, topic, "
    "DLQ entry and committed offset. Its topics are created again and the services reconnect on "
    "their own; their consumers find their committed positions beyond the new partitions' ends "
    "and read them from the start (the inboxes skip what was applied). An event published but "
    "not yet consumed when the broker stopped is gone with it; each service's outbox relay sees "
    "the ends of the partitions it wrote to go down and publishes again the rows it still keeps "
    "(the last hour). A connector's push the broker acknowledged and lost is not re-pushed by "
    "this run: such orders count in 'unsettled' and 'lost' like any other; the DLQs are judged "
    "before the stop. Apache Kafka, replicated and on disk, keeps all of it across the same "
    "restart."
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


def restart_judged(figures: dict[str, Any]) -> bool:
    """The broker's restart with orders in flight happened, and its orders all settled."""
    final = figures.get("final_restart")
    return final is not None and final.get("unsettled_of_those_before") == 0 \
        and final.get("unsettled_of_those_after") == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="fewer orders and faults")
    parser.add_argument("--broker", choices=BROKER_CHOICES,
                        help="a three-node Apache Kafka cluster or the embedded Tansu broker "
                             "(default: ORDERFLOW_BROKER, else tansu)")
    parser.add_argument("--orders", type=int, help="orders to push (overrides the mode's number)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--broker-outage", choices=["yes", "no"],
                        help="stop and start the broker at the end, orders in flight (default: "
                             "on Kafka always, on Tansu in the full mode)")
    args = parser.parse_args(argv)
    # the script's own clients meet the broker faults too: their retries are not news here
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    broker = broker_choice(args.broker)
    plan = plan_for(broker, short=args.short)
    if args.orders:
        plan = replace(plan, orders=args.orders)
    if args.broker_outage:
        plan = replace(plan, broker_outage=args.broker_outage == "yes")
    # the embedded infrastructure, whatever the shell says: the faults stop and start it
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        os.environ.pop(name, None)
    base = var_dir() / "chaos"
    _clean_old_runs(base)
    root = base / str(os.getpid())
    shutil.rmtree(root, ignore_errors=True)
    chaos = Chaos(plan, seed=args.seed, root=root, broker=broker)

    stopped = [False]

    def interrupted(signum: int, _frame: Any) -> None:
        # every process stopped first: a worker thread waiting on one (services becoming
        # healthy, a broker node starting) returns, and the event loop can end
        if not stopped[0]:
            stopped[0] = True
            say(f"{signal.Signals(signum).name}: stopping every process ...")
            chaos.stack.stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    figures: dict[str, Any]
    try:
        figures = asyncio.run(chaos.run())
    except Exception as exc:  # the run itself failed: say so in the one line
        say(f"the chaos run failed: {type(exc).__name__}: {exc}")
        figures = {"broker": broker, "orders": len(chaos.order_ids),
                   "faults_injected": len(chaos.faults), "lost": -1, "unsettled": -1,
                   "acknowledged_missing": -1, "duplicated_effects": -1,
                   "invariant_violations": -1, "dlq_expected": len(chaos.expected_dlq),
                   "dlq_found": -1,
                   "faults_by_kind": dict(sorted(Counter(f.kind for f in chaos.faults).items())),
                   "error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        say("stopping every process ...")
        chaos.stack.stop()
    figures["mode"] = "short" if args.short else "full"
    figures["seed"] = args.seed
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    figures["logs"] = str(root / "logs")
    if chaos.final_report is not None:
        figures["final_restart"] = chaos.final_report
        if broker == "tansu":
            figures["final_restart"]["explanation"] = BROKER_EXPLANATION
    if chaos.notes:
        figures["notes"] = chaos.notes
    figures["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    ok = (figures["lost"] == 0 and figures.get("unsettled") == 0
          and figures.get("acknowledged_missing") == 0
          and figures["duplicated_effects"] == 0
          and figures["invariant_violations"] == 0
          and figures["dlq_found"] == figures["dlq_expected"]
          and figures.get("dlq_missing", 1) == 0 and figures.get("dlq_unexpected", 1) == 0
          and figures.get("cluster_not_recovered", 0) == 0
          and not figures.get("unexpected_service_exits")
          and not figures.get("ineffective_faults")
          and figures.get("offset_regressions") == 0
          and figures.get("notifications_sent_not_delivered") == 0
          and figures.get("notifications_delivered_unknown") == 0
          and figures.get("notifications_unfinished") == 0
          and not figures.get("notifications_repeated_after_outage")
          and (not plan.broker_outage or restart_judged(figures)))
    figures["passed"] = ok
    line = json.dumps(figures, default=str, ensure_ascii=False)
    with contextlib.suppress(OSError):
        (base / f"last-{figures['mode']}-{broker}.json").write_text(line + "\n")
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
