"""Every service's consumer CPU per order, isolated from the broker and from each other: the
benchmark's orders go through each service's real subscriptions and the runtime's
``BatchProcessor`` (decode, inbox, handlers, outbox), and each service's outbox rows become the
next services' input records, so the pipeline runs as it does on the bus, one stage at a time,
on an embedded PostgreSQL.

    python -m bench.micro_pipeline [--orders 500] [--batch 500] [--profile inventory] \
        [--senders] | grep -v '^{'

Reports client CPU (``time.process_time``, robust on a shared machine) per order for each service,
and the wall time. ``--profile SERVICE`` wraps that service's batches in cProfile and prints the
functions with the most cumulative and own time. ``--senders`` then runs notify's channel senders
(the dev-stack drivers, which only record) until every notification the run staged is finished,
and reports their client CPU per notification and the notifications finished per second of wall
time (``--profile notify-senders`` profiles them). Not measured here: the outbox relay's
publishing, the broker, the consumers' polling (see ``bench.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa

from bench.workload import make_orders, master_data_events
from orderflow.contracts.events import Event, OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.embedded import EmbeddedPostgres
from orderflow.devstack.masterdata import DEMO_DATA, parse_file
from orderflow.devstack.stack import project_root
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.logging import configure_logging
from orderflow.runtime.service import tune_gc
from orderflow.runtime.settings import DatabaseSettings, ServiceSettings
from orderflow.runtime.unit_of_work import UnitOfWorkFactory
from orderflow.testing.records import Rec

SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")


class Bus:
    """Records per topic in publication order, with each service's read position."""

    def __init__(self) -> None:
        self.records: list[Rec] = []
        self.offsets: dict[str, int] = defaultdict(lambda: -1)

    def add(self, topic: str, key: bytes | None, value: bytes,
            headers: list[tuple[str, bytes]]) -> None:
        self.offsets[topic] += 1
        self.records.append(Rec(topic, 0, self.offsets[topic], key, value, headers))

    def add_event(self, event: Event, producer: str) -> None:
        headers = EventHeaders(event_id=str(uuid.uuid4()), event_type=event.EVENT_TYPE,
                               schema_version=1, occurred_at=datetime.now(UTC), producer=producer,
                               correlation_id=str(uuid.uuid4()))
        self.add(TOPIC_OF_EVENT[type(event)].name, event.key().encode(),
                 event.model_dump_json().encode(), list(headers.to_kafka()))


@dataclass
class Stage:
    service: str
    processor: BatchProcessor
    engine: Any
    topics: set[str]
    read: int = 0           # position in Bus.records
    outbox_id: int = 0      # last outbox row copied to the bus
    cpu: float = 0.0
    wall: float = 0.0
    events: int = 0
    profile: cProfile.Profile | None = None


async def make_stage(service: str, url: str, profile: bool) -> Stage:
    definition = import_module(f"orderflow.{service}.app").create_service()
    engine = make_engine(DatabaseSettings(url=url), service)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{service}" CASCADE'))
    await migrate(engine, service, definition.migrations)
    processor = BatchProcessor(service=service, subscriptions=definition.subscriptions,
                               engine=engine, max_bytes=1_000_000)
    return Stage(service, processor, engine, {s.topic.name for s in definition.subscriptions},
                 profile=cProfile.Profile() if profile else None)


async def feed(stage: Stage, bus: Bus, batch: int) -> int:
    """Give the stage every record it has not read yet, in batches; copy its outbox to the bus."""
    mine = [r for r in bus.records[stage.read:] if r.topic in stage.topics]
    stage.read = len(bus.records)
    for start in range(0, len(mine), batch):
        chunk = mine[start:start + batch]
        if stage.profile is not None:
            stage.profile.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await stage.processor.process(chunk, None)  # type: ignore[arg-type]
        stage.cpu += time.process_time() - cpu0
        stage.wall += time.perf_counter() - wall0
        if stage.profile is not None:
            stage.profile.disable()
        stage.events += len(chunk)
    async with stage.engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            f'SELECT id, topic, key, value, headers FROM "{stage.service}".outbox '
            "WHERE id > :after ORDER BY id"), {"after": stage.outbox_id})).all()
    for row in rows:
        headers = row.headers if isinstance(row.headers, list) else orjson.loads(row.headers)
        bus.add(row.topic, bytes(row.key) if row.key is not None else None, bytes(row.value),
                [(k, v.encode()) for k, v in headers])
        stage.outbox_id = row.id
    return len(mine)


def print_profile(profile: cProfile.Profile) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(35)
    print(out.getvalue())


async def drain_senders(engine: Any, profile: bool) -> None:
    """Run notify's channel senders until no notification is pending or sending."""
    from orderflow.notify.app import make_senders
    from orderflow.notify.settings import NotifySettings

    unfinished = sa.text("SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')), "
                         "count(*) FILTER (WHERE finished_at IS NOT NULL) FROM notify_notifications")
    async with engine.connect() as conn:
        _, finished_before = (await conn.execute(unfinished)).one()
    senders = make_senders(NotifySettings())
    ctx = SimpleNamespace(engine=engine, units=UnitOfWorkFactory(engine, "notify"),
                          stopping=asyncio.Event())
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tasks = [asyncio.create_task(s.run(ctx)) for s in senders]  # type: ignore[arg-type]
    while True:
        await asyncio.sleep(0.1)
        async with engine.connect() as conn:
            left, finished = (await conn.execute(unfinished)).one()
        if not left:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    ctx.stopping.set()
    await asyncio.gather(*tasks)
    if prof is not None:
        prof.disable()
    done = finished - finished_before
    print(f"{'senders':<10} {done:>7} notifications finished  client CPU "
          f"{1000 * cpu / max(done, 1):5.2f} ms/notification  wall {wall:7.2f} s "
          f"({done / wall:.0f}/s, the dispatches' coalescing window included)", flush=True)
    if prof is not None:
        print_profile(prof)


async def run(url: str, orders: int, batch: int, services: list[str], profile: str | None,
              senders: bool = False) -> None:
    bus = Bus()
    for kind in ("products", "customers", "warehouses", "stock"):
        for event in parse_file(kind, DEMO_DATA / f"{kind}.csv").events:
            bus.add_event(event, "masterdata")
    for event in master_data_events():
        bus.add_event(event, "bench")
    master = len(bus.records)
    for order in make_orders(orders, prefix=f"MP{uuid.uuid4().hex[:6]}"):
        channel, external_id, payload, store = order.submission()
        bus.add_event(OrderSubmitted(channel=channel, external_id=external_id, store=store,
                                     received_at=datetime.now(UTC), payload=payload), "connector")
    stages = [await make_stage(s, url, s == profile) for s in services]
    for stage in stages:  # master data first, not measured
        mine = [r for r in bus.records[:master] if r.topic in stage.topics]
        for start in range(0, len(mine), batch):
            await stage.processor.process(mine[start:start + batch], None)  # type: ignore[arg-type]
        stage.read = master
    tune_gc(ServiceSettings())  # as a started service does
    while True:
        moved = 0
        for stage in stages:
            moved += await feed(stage, bus, batch)
        if not moved:
            break
    counts: dict[str, int] = defaultdict(int)
    for r in bus.records[master:]:
        counts[r.topic] += 1
    print("records after the run: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))
    total = 0.0
    for stage in stages:
        total += stage.cpu
        print(f"{stage.service:<10} {stage.events:>7} events  client CPU "
              f"{1000 * stage.cpu / orders:7.2f} ms/order ({1000 * stage.cpu / max(stage.events, 1):5.2f}"
              f" ms/event)  wall {stage.wall:7.2f} s", flush=True)
        if stage.profile is not None:
            print_profile(stage.profile)
    print(f"{'all':<10} {'':>7}         client CPU {1000 * total / orders:7.2f} ms/order")
    notify = next((stage for stage in stages if stage.service == "notify"), None)
    if senders and notify is not None:
        await drain_senders(notify.engine, profile == "notify-senders")
    for stage in stages:
        await stage.engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--orders", type=int, default=500)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--services", default=",".join(SERVICES))
    p.add_argument("--profile", default=None,
                   help="a service (or notify-senders) to run under cProfile")
    p.add_argument("--senders", action="store_true",
                   help="then run notify's senders until every notification is finished")
    a = p.parse_args()
    configure_logging("micro", fmt="json")  # INFO, as the services log (stdout: filter it out)
    pg = EmbeddedPostgres(project_root() / "var" / "bench-micro-pipeline" / "postgres")
    pg.start(0)
    try:
        asyncio.run(run(pg.url, a.orders, a.batch, a.services.split(","), a.profile, a.senders))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
