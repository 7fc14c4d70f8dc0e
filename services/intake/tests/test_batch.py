"""Intake's set-based handling of ``order.inbound`` against the real PostgreSQL: a batch of pushes
comes to what pushing them one after another comes to (the same rows, the same events in the
same order, each answering its push), duplicates and newer revisions within one batch included;
a redelivered batch applies nothing twice; a new order a concurrent push recorded first is found
when the run is decided again."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts.events import OrderSubmitted
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.masterdata import DEMO_DATA, parse_file
from orderflow.intake import handlers
from orderflow.intake.app import create_service
from orderflow.runtime.consumer import BatchProcessor
from orderflow.testing.infra import Infra
from orderflow.testing.records import Rec, Records, Schemas

pytestmark = pytest.mark.component


class Feed(Records):
    """Pushes and master data as the broker would hand them out, from the connector."""

    def __init__(self) -> None:
        super().__init__(producer="connector")

    def push(self, channel: str, external_id: str, payload: Any, store: str | None = None) -> Rec:
        return self.record(OrderSubmitted(channel=channel, external_id=external_id, store=store,
                                          received_at=datetime.now(UTC), payload=payload))

    def products(self) -> list[Rec]:
        return self(*parse_file("products", DEMO_DATA / "products.csv").events)


@pytest.fixture
async def engines(infra: Infra) -> AsyncIterator[list[AsyncEngine]]:
    async with Schemas(infra.database_url, "intake", create_service().migrations) as schemas:
        yield [await schemas.make() for _ in range(2)]


def batched(engine: AsyncEngine) -> BatchProcessor:
    return BatchProcessor(service="intake", engine=engine, max_bytes=1_000_000,
                          subscriptions=create_service().subscriptions)


class OneByOne:
    """The same processor handed one record per batch: every push a run of one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.processor = batched(engine)

    async def process(self, records: Sequence[Rec], committer: None) -> None:
        for record in records:
            await self.processor.process([record], committer)


def one_by_one(engine: AsyncEngine) -> OneByOne:
    return OneByOne(engine)


async def state(engine: AsyncEngine) -> dict[str, Any]:
    """The tables and the outbox, without what differs between runs (times, event ids): each
    event with the position of the push it answers."""
    async with engine.connect() as conn:
        orders = (await conn.execute(sa.text(
            "SELECT order_id, channel, external_id, store, revision, status, payload_sha256, "
            "updated_at IS NOT NULL FROM intake_orders ORDER BY order_id"))).all()
        revisions = (await conn.execute(sa.text(
            "SELECT order_id, revision, payload_sha256, status, reasons FROM intake_revisions "
            "ORDER BY order_id, revision"))).all()
        outbox = (await conn.execute(sa.text(
            "SELECT topic, key, value, headers FROM outbox ORDER BY id"))).all()
        inbox = (await conn.execute(sa.text("SELECT count(*) FROM inbox"))).scalar_one()
    return {"orders": [tuple(r) for r in orders], "revisions": [tuple(r) for r in revisions],
            "outbox": [(r.topic, bytes(r.key), bytes(r.value), _headers(r.headers).get("causation_id"),
                        _headers(r.headers).get("event_type")) for r in outbox],
            "inbox": inbox}


def _headers(stored: Any) -> dict[str, str]:
    pairs = orjson.loads(stored) if isinstance(stored, str | bytes) else stored
    return dict(pairs)


def revised(payload: dict[str, Any], revision: int, **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    out["revision"] = revision
    out.update(changes)
    return out


def scenario(feed: Feed) -> tuple[list[Rec], list[Rec]]:
    """Two batches of pushes that exercise every outcome, several of one order in one batch."""
    tag = uuid.uuid4().hex[:6]
    x, y, z, w, v = (f"B{tag}-{n}" for n in "XYZWV")
    good = {e: canonical_order(e) for e in (x, y, z, w, v)}
    bad_y = copy.deepcopy(good[y])
    bad_y["lines"][0]["sku"] = "NO-SUCH-SKU"
    bad_z3 = revised(good[z], 3)
    bad_z3["lines"][0]["sku"] = "NO-SUCH-SKU"
    first = [
        feed.push("canonical", x, good[x]),
        feed.push("canonical", x, good[x]),                       # the same push again: duplicate
        feed.push("canonical", y, bad_y),                         # rejected ...
        feed.push("canonical", y, revised(good[y], 2)),           # ... then retried: received
        feed.push("canonical", z, good[z]),
        feed.push("canonical", z, revised(good[z], 2, priority="rush")),  # a change
        feed.push("canonical", z, revised(good[z], 2, priority="rush")),  # the same: duplicate
        feed.push("canonical", z, bad_z3),                        # a newer revision refused
        feed.push("canonical", z, bad_z3),                        # refused again, recorded once
        feed.push("canonical", w, revised(good[w], 2)),
        feed.push("canonical", w, good[w]),                       # an older revision: duplicate
        feed.push("amazon", v, good[v]),                          # no adapter: rejected
        feed.push("canonical", f"B{tag}-U", {"external_id": f"B{tag}-U"}),  # invalid: rejected
    ]
    second = [
        feed.push("canonical", x, revised(good[x], 2, priority="rush")),  # a change of a stored order
        feed.push("canonical", y, good[y]),                       # older than the stored revision
        feed.push("canonical", z, revised(good[z], 4, notes="revision four")),
        feed.push("amazon", v, revised(good[v], 2)),              # still no adapter
    ]
    return first, second


async def test_a_batch_comes_to_what_one_push_after_another_comes_to(
        engines: list[AsyncEngine]) -> None:
    feed = Feed()
    products = feed.products()
    first, second = scenario(feed)
    fast, slow = batched(engines[0]), one_by_one(engines[1])
    for processor in (fast, slow):
        await processor.process(products, None)
        await processor.process(first, None)
        await processor.process(second, None)
    got, want = await state(engines[0]), await state(engines[1])
    assert got == want
    # and what that is: one order each, each push answered as the rules say
    types = [event_type for *_, event_type in got["outbox"]]
    assert types == [
        "OrderReceived",                                          # X
        "OrderRejected", "OrderReceived",                         # Y rejected, then retried
        "OrderReceived", "OrderRevisionReceived", "OrderChangeRequested",  # Z, its change
        "OrderRevisionRejected", "OrderRevisionRejected",         # Z's refused revision, twice
        "OrderReceived",                                          # W
        "OrderRejected", "OrderRejected",                         # V (no adapter), U (invalid)
        "OrderRevisionReceived", "OrderChangeRequested",          # X's change
        "OrderRevisionReceived", "OrderChangeRequested",          # Z's revision 4
    ]                                  # Y's older revision, V's unreadable one again: duplicates
    eids = {dict(r.headers)["event_id"].decode() for r in first + second}
    assert {cause for _, _, _, cause, _ in got["outbox"]} <= eids
    assert first[4].key is not None
    z_id = order_id_for("canonical", first[4].key.decode().split(":", 1)[1])
    z_rows = [r for r in got["revisions"] if r[0] == z_id]
    assert [(r[1], r[3]) for r in z_rows] == [(1, "received"), (2, "change"), (3, "refused"),
                                              (4, "change")]


async def test_a_redelivered_batch_applies_nothing_twice(engines: list[AsyncEngine]) -> None:
    feed = Feed()
    processor = batched(engines[0])
    await processor.process(feed.products(), None)
    first, _ = scenario(feed)
    await processor.process(first, None)
    before = await state(engines[0])
    await processor.process(first, None)
    assert await state(engines[0]) == before


async def test_a_new_order_a_concurrent_push_recorded_first_is_decided_again(
        engines: list[AsyncEngine]) -> None:
    """Another replica inserts one of the run's new orders after the run read the known orders:
    the run's insert waits for it, then the run is decided again with that order known (it is
    then a duplicate of what the other replica recorded), the others as usual."""
    engine = engines[0]
    feed = Feed()
    processor = batched(engine)
    await processor.process(feed.products(), None)
    tag = uuid.uuid4().hex[:6]
    a, b = f"C{tag}-A", f"C{tag}-B"
    run = [feed.push("canonical", a, canonical_order(a)),
           feed.push("canonical", b, canonical_order(b)),
           feed.push("canonical", a, canonical_order(a))]
    contested = order_id_for("canonical", b)
    fingerprint = handlers.domain.payload_fingerprint(canonical_order(b))
    async with engine.connect() as other:
        await other.begin()
        await other.execute(sa.text(
            "INSERT INTO intake_orders (order_id, channel, external_id, revision, status, "
            "payload_sha256) VALUES (:o, 'canonical', :e, 1, 'received', :f)"),
            {"o": contested, "e": b, "f": fingerprint})
        applying = asyncio.create_task(processor.process(run, None))
        async with engine.connect() as watch:  # until the run's insert waits for this one
            for _ in range(600):
                waiting = (await watch.execute(sa.text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()
                if waiting or applying.done():
                    break
                await asyncio.sleep(0.05)
        await other.commit()
    await applying
    got = await state(engine)
    assert {r[0]: r[5] for r in got["orders"]} == {
        order_id_for("canonical", a): "received", contested: "received"}
    assert [event_type for *_, event_type in got["outbox"]] == ["OrderReceived"]
    assert orjson.loads(got["outbox"][0][2])["order_id"] == order_id_for("canonical", a)
