"""The database goes away for several seconds while orders flow, then comes back: every order
still reaches its state, nothing is applied twice."""

from __future__ import annotations

import uuid

import pytest

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.processes import port_open
from orderflow.devstack.tracking import Tracker
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.fault

CUSTOMERS = ["C0070", "C0033", "C0025", "C0022", "C0082"]


async def test_orders_survive_a_database_outage(
        pipeline: Pipeline, events: EventLog, infra: Infra) -> None:
    if infra.postgres is None:
        pytest.skip("the database can only be stopped when it is the embedded one")
    ids = [f"DBDOWN-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    oids = [order_id_for("canonical", e) for e in ids]
    orders = [("canonical", e, canonical_order(e, customer_id=CUSTOMERS[i % 5],
                                               lines=[("RICE-003", 1)], address_index=i))
              for i, e in enumerate(ids)]
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many(orders[:20])
        await events.wait_for(lambda: any(events.of("order.received", o) for o in oids),
                              timeout=60, what="the first orders received")
        infra.stop_database()
        assert not port_open("127.0.0.1", infra.postgres.port)
        await pusher.push_many(orders[20:])  # accepted by the broker while the database is away
        # the services keep running and retry; their health says the database is down
        await events.wait_for(lambda: not any(pipeline.stack.healthy(sp)
                                              for sp in pipeline.stack.processes),
                              timeout=30, what="every service to report the database down")
        infra.start_database()
    tracker = Tracker()

    def all_through() -> bool:
        tracker.feed_new(events.events)
        return all(str(tracker.state_of(o)) == "dispatched" for o in oids)

    await events.wait_for(all_through, timeout=180, what="every order dispatched after the outage")
    only_these = Tracker()
    only_these.feed(e for e in events.events if e.key in set(oids))
    assert only_these.duplicates() == {}
    assert all(sp.proc is not None and sp.proc.poll() is None for sp in pipeline.stack.processes)
