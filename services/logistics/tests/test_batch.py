"""Logistics' set-based path (``stock.reserved`` as a batch handler) through the runtime's
``BatchProcessor`` against the real PostgreSQL, in schemas of its own (no relay reads them, so
what the handlers staged stays in the outbox to be read), with a fixed clock and tracking numbers
drawn from a seeded generator: a run of reservations is decided as if they had come one after
another (several warehouses, a second reservation of an order, a cancelled order, a change
pending, a settled change's newer content, an unknown warehouse, no carrier), gives the same
tables and events as the same events one batch each, and a redelivered batch applies nothing
twice."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts.events import (
    OrderCancelRequested,
    OrderChangeRequested,
    OrderChangeReserved,
    ReservedLine,
    StockReserved,
)
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.masterdata import DEMO_DATA, parse_file
from orderflow.logistics.app import create_service
from orderflow.logistics.handlers import LogisticsHandlers
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.consumer import BatchProcessor
from orderflow.testing.infra import Infra
from orderflow.testing.records import Records, Schemas, outbox

pytestmark = pytest.mark.component

MIGRATIONS = Path(create_service().migrations)
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
TABLES = {"logistics_orders": "order_id", "logistics_shipments": "shipment_id"}
CLOCK_COLUMNS = {"created_at", "updated_at", "cancelled_at"}


def reservation(lines: Sequence[tuple[str, str, int]], **order: Any) -> StockReserved:
    """A ``StockReserved`` of a new order: (warehouse, sku, quantity) per reserved line."""
    eid = f"LB-{uuid.uuid4().hex[:10]}"
    skus = list(dict.fromkeys(sku for _, sku, _ in lines))
    canonical = CanonicalOrder.model_validate(canonical_order(
        eid, lines=[(sku, sum(q for _, s, q in lines if s == sku)) for sku in skus], **order))
    return StockReserved(order_id=order_id_for("canonical", eid), order=canonical,
                         reservations=tuple(ReservedLine(sku=sku, warehouse_id=wh, quantity=q)
                                            for wh, sku, q in lines),
                         filled_in_full_first_attempt=True)


def change_request(reserved: StockReserved, **update: Any) -> OrderChangeRequested:
    order = reserved.order.model_copy(update={"revision": reserved.order.revision + 1, **update})
    zero = Decimal("0.00")
    return OrderChangeRequested(
        order_id=reserved.order_id, change_id=f"CHG-{uuid.uuid4().hex[:8]}",
        channel="canonical", external_id=order.external_id,
        previous_revision=reserved.order.revision, order=order,
        totals=OrderTotals(subtotal=zero, discount=zero, tax=zero, shipping=zero,
                           grand_total=zero), requested_by="tests")


Schema = Callable[[], Awaitable[AsyncEngine]]


@pytest.fixture
async def schema(infra: Infra) -> AsyncIterator[Schema]:
    """Makes logistics' tables in a new schema of their own; dropped afterwards."""
    async with Schemas(infra.database_url, "lgbatch", MIGRATIONS) as schemas:
        yield schemas.make


def processor(engine: AsyncEngine) -> BatchProcessor:
    """Logistics' subscriptions with a fixed clock and tracking numbers from a seeded generator."""
    definition = create_service(LogisticsSettings(), clock=lambda: NOW)
    draws = random.Random(11)  # repeatable test data, not a secret
    for sub in definition.subscriptions:
        owner = getattr(sub.batch_handler or sub.handler, "__self__", None)
        if isinstance(owner, LogisticsHandlers):
            owner.randbelow = draws.randrange
    return BatchProcessor(service="logistics", subscriptions=definition.subscriptions,
                          engine=engine, max_bytes=1_000_000)


async def tables(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    found = {}
    async with engine.connect() as conn:
        for table, order in TABLES.items():
            rows = (await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            found[table] = [{k: v for k, v in r._mapping.items() if k not in CLOCK_COLUMNS}
                            for r in rows]
    return found


async def test_a_run_of_reservations_is_decided_one_after_another_and_as_one_batch_each(
        schema: Schema) -> None:
    feed = Records()
    master = [feed.record(e) for kind in ("warehouses", "products")
              for e in parse_file(kind, DEMO_DATA / f"{kind}.csv").events]
    split = reservation([("WH-SH", "TEA-001", 1), ("WH-BJ", "TEA-002", 2)])  # two shipments
    twice = reservation([("WH-SH", "TEA-001", 2)])
    cancelled = reservation([("WH-SH", "TEA-001", 1)])
    pending = reservation([("WH-GZ", "RICE-002", 1)])
    changed = reservation([("WH-SH", "TEA-001", 1)], address_index=0)
    unknown_site = reservation([("WH-NOWHERE", "TEA-001", 1)])
    too_heavy = reservation([("WH-BJ", "RICE-002", 200)])  # about 1.4 tonnes: no carrier
    beijing = CanonicalOrder.model_validate(canonical_order("x", address_index=2))
    change = change_request(changed, shipping_address=beijing.shipping_address)
    settled = OrderChangeReserved(**change.model_dump(exclude={"reason"}),
                                  review_status="approved", stock_status="backordered",
                                  reservations=())
    before = [feed.record(OrderCancelRequested(order_id=cancelled.order_id, reason="no longer",
                                               requested_by="tests")),
              feed.record(change_request(pending)),
              feed.record(change), feed.record(settled)]
    later_twice = twice.model_copy(update={"reservations": (
        ReservedLine(sku="TEA-001", warehouse_id="WH-BJ", quantity=2),)})
    run = [feed.record(e) for e in (split, twice, cancelled, pending, changed, unknown_site,
                                    later_twice, too_heavy, pending)]

    engine = await schema()
    together = processor(engine)
    await together.process(master, None)
    await together.process(before, None)
    before_run = await outbox(engine)
    await together.process(run, None)
    staged = (await outbox(engine))[len(before_run):]
    of: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for topic, key, event, _ in staged:
        of.setdefault(key, []).append((topic, event))
    assert [(t, e["warehouse_id"], e["shipment_count"]) for t, e in of[split.order_id]] == [
        ("shipment.dispatched", "WH-SH", 2), ("shipment.dispatched", "WH-BJ", 2)]
    assert [(t, e["warehouse_id"]) for t, e in of[twice.order_id]] == [
        ("shipment.dispatched", "WH-SH")]  # the second reservation is ignored
    assert cancelled.order_id not in of and pending.order_id not in of
    ((topic, moved),) = of[changed.order_id]
    assert topic == "shipment.dispatched"
    ((topic, far),) = of[unknown_site.order_id]
    assert topic == "shipment.dispatched" and far["warehouse_id"] == "WH-NOWHERE"
    ((topic, heavy),) = of[too_heavy.order_id]
    assert topic == "shipment.exception" and heavy["code"] == "no_carrier"
    run_ids = [dict(r.headers)["event_id"].decode() for r in run]
    assert [cause for *_, cause in staged] == [run_ids[0], run_ids[0], run_ids[1], run_ids[4],
                                               run_ids[5], run_ids[7]]

    state = await tables(engine)
    orders = {o["order_id"]: o for o in state["logistics_orders"]}
    assert orders[cancelled.order_id]["status"] == "cancelled"
    # the last reservation of the pending order is parked
    assert orders[pending.order_id]["parked_event_id"] == run_ids[8]
    shipments = {s["shipment_id"]: s for s in state["logistics_shipments"]}
    # the settled change's content (its address) is what ships, not the reservation's
    assert shipments[moved["shipment_id"]]["destination_province"] == \
        beijing.shipping_address.province != changed.order.shipping_address.province
    assert shipments[heavy["shipment_id"]]["status"] == "no_carrier"
    assert shipments[heavy["shipment_id"]]["tracking_number"] is None

    # the same events one batch each (runs of one), in schemas of their own: the same outcome
    alone_engine = await schema()
    alone = processor(alone_engine)
    await alone.process(master, None)
    await alone.process(before, None)
    for rec in run:
        await alone.process([rec], None)
    assert await tables(alone_engine) == state
    assert (await outbox(alone_engine))[len(before_run):] == staged

    # the batch redelivered: the inbox skips every event, nothing is applied twice
    await together.process(run, None)
    assert (await outbox(engine))[len(before_run):] == staged
    assert await tables(engine) == state


async def test_requests_fetched_with_reservations_are_decided_before_them(schema: Schema) -> None:
    """A cancel and a change request waiting in the broker when a batch is fetched with the
    reservations of their orders are decided first, whatever order the partitions came in:
    the cancel is honoured (nothing dispatched) and the changed order's reservation parked."""
    feed = Records()
    master = [feed.record(e) for kind in ("warehouses", "products")
              for e in parse_file(kind, DEMO_DATA / f"{kind}.csv").events]
    to_cancel = reservation([("WH-SH", "TEA-001", 1)])
    to_change = reservation([("WH-SH", "TEA-002", 1)])
    plain = reservation([("WH-SH", "TEA-001", 1)])
    batch = [feed.record(to_cancel), feed.record(to_change), feed.record(plain),
             feed.record(OrderCancelRequested(order_id=to_cancel.order_id, reason="no longer",
                                              requested_by="tests")),
             feed.record(change_request(to_change))]

    engine = await schema()
    together = processor(engine)
    await together.process(master, None)
    await together.process(batch, None)
    staged = [(topic, key) for topic, key, _, _ in await outbox(engine)]
    assert ("order.cancelled", to_cancel.order_id) in staged
    assert ("order.change-admitted", to_change.order_id) in staged
    assert staged.count(("shipment.dispatched", plain.order_id)) == 1
    assert not [t for t, k in staged if k in (to_cancel.order_id, to_change.order_id)
                and t in ("shipment.dispatched", "order.cancel-refused", "order.change-refused")]
    orders = {o["order_id"]: o for o in (await tables(engine))["logistics_orders"]}
    assert orders[to_cancel.order_id]["status"] == "cancelled"
    assert orders[to_change.order_id]["parked_event_id"] == dict(batch[1].headers)["event_id"].decode()
