"""What a consumed batch costs the console and notify in their own process: the same records
through each service's real subscriptions (``create_service()``) and the runtime's
``BatchProcessor`` (decode, inbox, handlers, outbox; no broker), on an embedded PostgreSQL.

    python -m bench.micro_handlers [--orders 1000] [--batch 500] [--services console,notify] \
        | grep -v '^{'

Each order is the happy path of ``services/console/tests/console_factories.OrderStory``
(submitted, received, notified, approved, reserved, dispatched, delivered); records are grouped
by stage, as a backlogged consumer sees them. Reports client CPU (``time.process_time``, robust on
a shared machine) per order and wall time. To compare with another version of a service, put
that version's ``orderflow/<service>`` package first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

import sqlalchemy as sa

from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.embedded import EmbeddedPostgres
from orderflow.devstack.stack import project_root
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.logging import configure_logging
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.records import Rec

STAGES = 7  # events per order in OrderStory.happy()


def records(orders: int) -> list[Rec]:
    sys.path.insert(0, str(project_root() / "services" / "console" / "tests"))
    story_class = import_module("console_factories").OrderStory
    by_stage: list[list[Rec]] = [[] for _ in range(STAGES)]
    offsets: dict[str, int] = {}
    for n in range(orders):
        story = story_class(f"MICRO-{n:06d}").happy()
        for stage, event in enumerate(story.events):
            topic = TOPIC_OF_EVENT[type(event)].name
            headers = EventHeaders(event_id=str(uuid.uuid4()), event_type=event.EVENT_TYPE,
                                   schema_version=1, occurred_at=datetime.now(UTC),
                                   producer="micro", correlation_id=story.order_id)
            offsets[topic] = offsets.get(topic, -1) + 1
            by_stage[stage].append(Rec(topic, 0, offsets[topic], event.key().encode(),
                                       event.model_dump_json().encode(), list(headers.to_kafka())))
    return [r for stage in by_stage for r in stage]


async def measure(service: str, url: str, recs: list[Rec], batch: int, orders: int) -> None:
    definition = import_module(f"orderflow.{service}.app").create_service()
    origin = Path(import_module(f"orderflow.{service}").__file__ or "").parent
    engine = make_engine(DatabaseSettings(url=url), service)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{service}" CASCADE'))
    await migrate(engine, service, definition.migrations)
    topics = {s.topic.name for s in definition.subscriptions}
    mine = [r for r in recs if r.topic in topics]
    processor = BatchProcessor(service=service, subscriptions=definition.subscriptions,
                               engine=engine, max_bytes=1_000_000)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, len(mine), batch):
        await processor.process(mine[start:start + batch], None)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await engine.dispose()
    print(f"{service:<8} {len(mine):>6} events  client CPU {1000 * cpu / orders:7.2f} ms/order "
          f"({1000 * cpu / max(len(mine), 1):6.2f} ms/event)  wall {wall:7.2f} s   code: {origin}",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--orders", type=int, default=1000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--services", default="console,notify")
    a = p.parse_args()
    configure_logging("micro", fmt="json")  # INFO, as the services log (stdout: filter it out)
    recs = records(a.orders)
    pg = EmbeddedPostgres(project_root() / "var" / "bench-micro-handlers" / "postgres")
    pg.start(0)
    try:
        for service in a.services.split(","):
            asyncio.run(measure(service, pg.url, recs, a.batch, a.orders))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
