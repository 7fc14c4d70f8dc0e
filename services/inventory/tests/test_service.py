"""Inventory through the real broker and PostgreSQL, as its own process.

Approved orders are published as review would publish them (``OrderApproved``), so these tests
need only the inventory service. Those that need a reservation to stay put (logistics would
dispatch it) run against an inventory of the module's own, on its own broker and database
(``inventory_alone``). Each test makes its own SKUs, so the exact quantities are its own even
when the whole suite shares the demo stock; the conservation invariant is checked after each."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow.connector import OrderPusher
from orderflow.contracts.events import (
    Event,
    OrderApproved,
    OrderCancelled,
    OrderChangeApproved,
    ProductUpdated,
    ReservedLine,
    ShipmentDispatched,
    StockAdjusted,
    StockLow,
    StockReceived,
)
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder, OrderLine, OrderTotals, order_id_for
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.catalogue import canonical_order
from orderflow.inventory.app import create_service
from orderflow.inventory.handlers import InventoryHandlers
from orderflow.inventory.repository import InventoryRepository, check_invariants
from orderflow.inventory.settings import InventoryPolicy
from orderflow.runtime import metrics
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.db import make_engine
from orderflow.runtime.settings import DatabaseSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWorkFactory
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.infra import Infra
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline
from orderflow.testing.records import Rec
from orderflow.testing.service_auth import operator

pytestmark = pytest.mark.service

# canonical_order's address_index: 0 上海, 1 广东, 2 北京, 3 四川, 4 湖北, 5 浙江
SHANGHAI, GUANGDONG, BEIJING, SICHUAN = 0, 1, 2, 3
ZERO = Decimal("0.00")


def new_sku(tag: str) -> str:
    return f"T-{tag}-{uuid.uuid4().hex[:8]}".upper()


def new_id(tag: str = "INV") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


def product(sku: str, reorder_point: int = 0) -> ProductUpdated:
    return ProductUpdated(sku=sku, name=f"test {sku}", unit_price=Decimal("10.00"), currency="CNY",
                          tax_rate=Decimal("0.13"), weight_kg=Decimal("1.000"),
                          reorder_point=reorder_point)


def receipt(warehouse_id: str, sku: str, quantity: int) -> StockReceived:
    return StockReceived(warehouse_id=warehouse_id, sku=sku, quantity=quantity,
                         reference=f"PO-{uuid.uuid4().hex[:6]}")


def approved(lines: list[tuple[str, int]], *, priority: str = "normal",
             address_index: int = SHANGHAI) -> OrderApproved:
    eid = new_id()
    order = CanonicalOrder.model_validate(canonical_order(
        eid, lines=lines, priority=priority, address_index=address_index))
    return OrderApproved(order_id=order_id_for("canonical", eid), channel="canonical",
                         external_id=eid, order=order,
                         totals=OrderTotals(subtotal=ZERO, discount=ZERO, tax=ZERO, shipping=ZERO,
                                            grand_total=ZERO),
                         approved_by="tests")


def held(seen: SeenEvent) -> dict[str, int]:
    """The reservations of a stock.reserved / stock.released event, by warehouse."""
    out: dict[str, int] = {}
    for line in seen.event.reservations:
        out[line.warehouse_id] = out.get(line.warehouse_id, 0) + line.quantity
    return out


@pytest.fixture(scope="session")
async def inventory_db(infra: Infra, pipeline: Pipeline) -> AsyncIterator[AsyncEngine]:
    """The inventory service's own schema in the test database (migrated by the service)."""
    engine = make_engine(DatabaseSettings(url=infra.database_url, pool_size=20, max_overflow=30),
                         "inventory")
    try:
        yield engine
    finally:
        await engine.dispose()


async def assert_invariants(engine: AsyncEngine) -> None:
    async with AsyncSession(engine) as session:
        assert await check_invariants(session) == []


async def available(engine: AsyncEngine, sku: str) -> dict[str, int]:
    async with AsyncSession(engine) as session:
        rows = await InventoryRepository(session).stock_of(sku)
    return {r["warehouse_id"]: r["available"] for r in rows}


async def order_view(engine: AsyncEngine, order_id: str) -> dict[str, Any]:
    async with AsyncSession(engine) as session:
        view = await InventoryRepository(session).order_view(order_id)
    assert view is not None, order_id
    return view


def inventory_url(pipeline: Pipeline) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find('inventory').port}"


InventoryAlone = tuple[Pipeline, EventLog, AsyncEngine]


@pytest.fixture(scope="module")
async def inventory_alone(infra: Infra) -> AsyncIterator[InventoryAlone]:
    """Inventory with no logistics to dispatch what it reserves, on a broker and database of its
    own; the engine reaches its schema."""
    async with private_pipeline(infra, "inventory-alone", ["inventory"]) as (pipeline, events):
        engine = make_engine(DatabaseSettings(url=pipeline.infra.database_url, pool_size=20,
                                              max_overflow=30), "inventory")
        try:
            yield pipeline, events, engine
        finally:
            await engine.dispose()


async def test_the_nearest_warehouse_that_can_fill_the_whole_order_reserves_it(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("NEAR")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 5),
                                     receipt("WH-GZ", sku, 10), receipt("WH-BJ", sku, 10)])
    to_guangdong = approved([(sku, 3)], address_index=GUANGDONG)
    to_shanghai = approved([(sku, 5)], address_index=SHANGHAI)
    await pipeline.publish_and_wait([to_guangdong])
    await pipeline.publish_and_wait([to_shanghai])
    # Shanghai has none left: Beijing (about 1070 km) is nearer to Shanghai than Guangzhou
    then_shanghai = approved([(sku, 6)], address_index=SHANGHAI)
    await pipeline.publish_and_wait([then_shanghai])

    for order, where in ((to_guangdong, {"WH-GZ": 3}), (to_shanghai, {"WH-SH": 5}),
                         (then_shanghai, {"WH-BJ": 6})):
        reserved = await events.wait_for_event("stock.reserved", order.order_id)
        assert held(reserved) == where
        assert reserved.event.filled_in_full_first_attempt is True
        assert reserved.event.from_backorder is False
        assert reserved.event.order == order.order
    assert await available(inventory_db, sku) == {"WH-BJ": 4, "WH-GZ": 7, "WH-SH": 0}
    await assert_invariants(inventory_db)


async def test_an_order_no_warehouse_can_fill_alone_is_split(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    a, b = new_sku("SPLITA"), new_sku("SPLITB")
    await pipeline.publish_and_wait([product(a), product(b), receipt("WH-SH", a, 4),
                                     receipt("WH-BJ", a, 4), receipt("WH-CD", b, 2)])
    order = approved([(a, 6), (b, 2)], address_index=SHANGHAI)
    await pipeline.publish_and_wait([order])
    reserved = await events.wait_for_event("stock.reserved", order.order_id)
    lines = {(r.warehouse_id, r.sku): r.quantity for r in reserved.event.reservations}
    assert lines == {("WH-SH", a): 4, ("WH-BJ", a): 2, ("WH-CD", b): 2}
    assert reserved.event.filled_in_full_first_attempt is True
    assert not events.of("stock.backordered", order.order_id)
    await assert_invariants(inventory_db)


async def test_partial_stock_is_held_the_rest_backordered_then_filled_on_receipt(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("PART")
    await pipeline.publish_and_wait([product(sku), receipt("WH-CD", sku, 3)])
    order = approved([(sku, 5)], address_index=SICHUAN)
    await pipeline.publish_and_wait([order])

    backordered = await events.wait_for_event("stock.backordered", order.order_id)
    (short,) = backordered.event.short_lines
    assert (short.sku, short.ordered, short.reserved, short.short) == (sku, 5, 3, 2)
    assert backordered.event.customer.id == order.order.customer.id
    assert await available(inventory_db, sku) == {"WH-CD": 0}  # the 3 are held for the order
    view = await order_view(inventory_db, order.order_id)
    assert view["status"] == "backordered"
    await assert_invariants(inventory_db)

    await pipeline.publish_and_wait([receipt("WH-WH", sku, 2)])
    reserved = await events.wait_for_event("stock.reserved", order.order_id)
    assert held(reserved) == {"WH-CD": 3, "WH-WH": 2}
    assert reserved.event.from_backorder is True
    assert reserved.event.filled_in_full_first_attempt is False
    assert reserved.headers["causation_id"] != backordered.headers["causation_id"]
    await assert_invariants(inventory_db)


async def test_a_waiting_rush_order_is_served_before_older_normal_ones(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("RUSH")
    await pipeline.publish_and_wait([product(sku), receipt("WH-HZ", sku, 1)])
    first_normal = approved([(sku, 2)])
    second_normal = approved([(sku, 2)])
    rush = approved([(sku, 2)], priority="rush")
    for order in (first_normal, second_normal, rush):  # one after the other: their ages differ
        await pipeline.publish_and_wait([order])
        await events.wait_for_event("stock.backordered", order.order_id)
    # the single unit went to the first order (partial reservation): it is short of 1
    assert (await order_view(inventory_db, first_normal.order_id))["lines"][0]["short"] == 1

    await pipeline.publish_and_wait([receipt("WH-HZ", sku, 2)])
    reserved = await events.wait_for_event("stock.reserved", rush.order_id)
    assert reserved.event.from_backorder is True
    assert held(reserved) == {"WH-HZ": 2}
    for normal in (first_normal, second_normal):
        assert (await order_view(inventory_db, normal.order_id))["status"] == "backordered"

    await pipeline.publish_and_wait([receipt("WH-HZ", sku, 3)])  # 1 for the first, 2 for the second
    for normal in (first_normal, second_normal):
        done = await events.wait_for_event("stock.reserved", normal.order_id)
        assert done.event.from_backorder is True and sum(held(done).values()) == 2
    assert rush.order_id not in {e.key for e in events.of("stock.released")}
    await assert_invariants(inventory_db)


async def test_a_cancelled_order_releases_its_stock_to_the_next_in_the_queue(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("REL")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 3)])
    holding = approved([(sku, 5)])  # holds 3, short of 2
    waiting = approved([(sku, 2)])  # holds nothing, short of 2
    await pipeline.publish_and_wait([holding])
    await pipeline.publish_and_wait([waiting])
    await events.wait_for_event("stock.backordered", waiting.order_id)

    async with httpx.AsyncClient(base_url=inventory_url(pipeline), timeout=30,
                                 auth=operator(pipeline, "inventory", "ops.admin", "admin")) as http:
        unsigned = await http.post(f"/inventory/orders/{holding.order_id}/release",
                                   json={"reason": "cancelled"}, auth=None)
        assert unsigned.status_code == 401, unsigned.text
        answer = await http.post(f"/inventory/orders/{holding.order_id}/release",
                                 json={"reason": "cancelled"})
        assert answer.status_code == 200, answer.text
        again = await http.post(f"/inventory/orders/{holding.order_id}/release",
                                json={"reason": "cancelled"})
        assert again.status_code == 409
        invariant = (await http.get("/inventory/invariants")).json()
        assert invariant == {"ok": True, "problems": []}

    released = await events.wait_for_event("stock.released", holding.order_id)
    assert released.event.reason == "cancelled"
    assert held(released) == {"WH-SH": 3}
    refilled = await events.wait_for_event("stock.reserved", waiting.order_id)
    assert refilled.event.from_backorder is True and held(refilled) == {"WH-SH": 2}
    assert (await order_view(inventory_db, holding.order_id))["status"] == "released"
    assert await available(inventory_db, sku) == {"WH-SH": 1}
    await assert_invariants(inventory_db)


async def test_a_stalled_reservation_expires_and_its_stock_returns(
        inventory_alone: InventoryAlone) -> None:
    pipeline, events, inventory_db = inventory_alone
    sku = new_sku("EXP")
    await pipeline.publish_and_wait([product(sku), receipt("WH-GZ", sku, 4)])
    order = approved([(sku, 4)], address_index=GUANGDONG)
    await pipeline.publish_and_wait([order])
    await events.wait_for_event("stock.reserved", order.order_id)
    view = await order_view(inventory_db, order.order_id)
    ttl = (view["expires_at"] - view["reserved_at"]).total_seconds()
    assert ttl == pytest.approx(InventoryPolicy().reservation_ttl_s, abs=1)
    assert await available(inventory_db, sku) == {"WH-GZ": 0}

    # the clock of this one order runs out (the service's expiry job does the rest)
    async with inventory_db.begin() as conn:
        await conn.execute(sa.text("UPDATE inventory_orders SET expires_at = now() - "
                                   "interval '1 second' WHERE order_id = :o"),
                           {"o": order.order_id})
    released = await events.wait_for_event("stock.released", order.order_id, timeout=60)
    assert released.event.reason == "expired"
    assert held(released) == {"WH-GZ": 4}
    assert await available(inventory_db, sku) == {"WH-GZ": 4}
    assert (await order_view(inventory_db, order.order_id))["status"] == "released"
    await assert_invariants(inventory_db)


async def test_a_dispatch_takes_the_reserved_units_out_of_stock(
        inventory_alone: InventoryAlone) -> None:
    pipeline, events, inventory_db = inventory_alone
    sku = new_sku("SHIP")
    await pipeline.publish_and_wait([product(sku), receipt("WH-BJ", sku, 10)])
    order = approved([(sku, 4)], address_index=BEIJING)
    await pipeline.publish_and_wait([order])
    reserved = await events.wait_for_event("stock.reserved", order.order_id)
    await pipeline.publish_and_wait([ShipmentDispatched(
        order_id=order.order_id, shipment_id=f"SH-{uuid.uuid4().hex[:8]}", warehouse_id="WH-BJ",
        carrier="SF", service="standard", tracking_number="SF0001",
        lines=tuple(ReservedLine(sku=r.sku, warehouse_id=r.warehouse_id, quantity=r.quantity)
                    for r in reserved.event.reservations),
        weight_kg=Decimal("4"), dispatched_at=reserved.event.order.placed_at,
        promised_date=reserved.event.order.placed_at.date())])
    async with AsyncSession(inventory_db) as session:
        rows = await InventoryRepository(session).stock_of(sku)
    assert [(r["on_hand"], r["reserved"], r["available"]) for r in rows] == [(6, 0, 6)]
    assert (await order_view(inventory_db, order.order_id))["status"] == "shipped"
    await assert_invariants(inventory_db)


async def test_a_dispatch_without_a_hold_takes_free_stock_and_one_of_units_not_there_is_dead_lettered(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("FREE")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 5)])

    def dispatch(quantity: int) -> ShipmentDispatched:
        placed = canonical_order("X", customer_id="C0001")["placed_at"]
        return ShipmentDispatched(
            order_id=str(uuid.uuid4()), shipment_id=f"SH-{uuid.uuid4().hex[:8]}",
            warehouse_id="WH-SH", carrier="SF", service="standard", tracking_number="SF0002",
            lines=(ReservedLine(sku=sku, warehouse_id="WH-SH", quantity=quantity),),
            weight_kg=Decimal("1"), dispatched_at=placed, promised_date=placed[:10])

    async def stock() -> list[tuple[int, int, int]]:
        async with AsyncSession(inventory_db) as session:
            rows = await InventoryRepository(session).stock_of(sku)
        return [(r["on_hand"], r["reserved"], r["available"]) for r in rows]

    # a dispatch whose reservation is gone (expired, say): the units come from free stock
    await pipeline.publish_and_wait([dispatch(3)])
    assert await stock() == [(2, 0, 2)]
    # three more units are not there: the event is dead-lettered and nothing moves
    impossible = dispatch(3)
    await pipeline.publish_and_wait([impossible])
    dead = await events.wait_for_event("shipment.dispatched.dlq", impossible.order_id)
    assert dead.headers["dlq_reason"] == "handler_error"
    assert "more than the order's reservation plus 2 free units" in dead.headers["dlq_error"]
    assert await stock() == [(2, 0, 2)]
    async with AsyncSession(inventory_db) as session:
        moves = (await session.execute(sa.text(
            "SELECT kind, on_hand_delta, reserved_delta FROM inventory_movements "
            "WHERE sku = :s ORDER BY id"), {"s": sku})).all()
    assert [tuple(m) for m in moves] == [("receipt", 5, 0), ("shipment", -3, 0)]
    await assert_invariants(inventory_db)


async def test_adjustments_change_on_hand_and_one_taking_reserved_units_is_dead_lettered(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("ADJ")
    await pipeline.publish_and_wait([product(sku), receipt("WH-WH", sku, 5)])
    await pipeline.publish_and_wait([approved([(sku, 3)])])  # 3 reserved (or already shipped)
    counted = StockAdjusted(warehouse_id="WH-WH", sku=sku, delta=-2, reason="damaged in a count")
    found = StockAdjusted(warehouse_id="WH-WH", sku=sku, delta=4, reason="found in a recount")
    too_many = StockAdjusted(warehouse_id="WH-WH", sku=sku, delta=-5, reason="write-off")
    await pipeline.publish_and_wait([counted])
    assert await available(inventory_db, sku) == {"WH-WH": 0}
    await pipeline.publish_and_wait([found])
    assert await available(inventory_db, sku) == {"WH-WH": 4}
    await pipeline.publish_and_wait([too_many])  # only 4 are free: the rest is reserved
    dead = await events.wait_for_event("stock.adjusted.dlq", sku)
    assert dead.headers["dlq_reason"] == "handler_error"
    assert "exceeds its 4 free units" in dead.headers["dlq_error"]
    assert await available(inventory_db, sku) == {"WH-WH": 4}
    async with AsyncSession(inventory_db) as session:
        kinds = (await session.execute(sa.text(
            "SELECT kind, on_hand_delta, reserved_delta FROM inventory_movements "
            "WHERE sku = :s AND kind <> 'shipment' ORDER BY id"), {"s": sku})).all()
    assert [tuple(k) for k in kinds] == [("receipt", 5, 0), ("reservation", 0, 3),
                                         ("adjustment", -2, 0), ("adjustment", 4, 0)]
    await assert_invariants(inventory_db)


async def test_low_stock_is_published_once_per_crossing(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("LOW")
    await pipeline.publish_and_wait([product(sku, reorder_point=10), receipt("WH-SH", sku, 12)])
    await pipeline.publish_and_wait([approved([(sku, 3)])])  # 9 left: under 10
    first = await events.wait_for_event("stock.low", sku)
    assert (first.event.available, first.event.reorder_point) == (9, 10)
    await pipeline.publish_and_wait([approved([(sku, 2)])])  # 7 left: still the same crossing
    await pipeline.publish_and_wait([receipt("WH-SH", sku, 10)])  # 17: back above
    await pipeline.publish_and_wait([approved([(sku, 9)])])  # 8 left: a new crossing
    await events.wait_for_event("stock.low", sku, where=lambda e: e.event.available == 8)
    assert [e.event.available for e in events.of("stock.low", sku)] == [9, 8]
    await assert_invariants(inventory_db)


async def test_many_orders_at_once_for_scarce_stock_reserve_exactly_what_exists(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("RACE")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 6),
                                     receipt("WH-GZ", sku, 4)])
    orders = [approved([(sku, 1)], address_index=i % 6) for i in range(30)]
    batch: list[Event] = [*orders]
    await pipeline.publish_and_wait(batch)
    ids = {o.order_id for o in orders}

    def settled() -> bool:
        done = {e.key for t in ("stock.reserved", "stock.backordered") for e in events.of(t)}
        return ids <= done

    await events.wait_for(settled, timeout=60, what="every order reserved or backordered")
    reserved = [e for e in events.of("stock.reserved") if e.key in ids]
    backordered = [e for e in events.of("stock.backordered") if e.key in ids]
    assert len(reserved) == 10 and len(backordered) == 20
    assert sum(sum(held(e).values()) for e in reserved) == 10
    assert await available(inventory_db, sku) == {"WH-GZ": 0, "WH-SH": 0}
    await assert_invariants(inventory_db)


async def test_concurrent_reservations_from_many_sessions_never_oversell(
        pipeline: Pipeline, inventory_db: AsyncEngine) -> None:
    """Forty transactions on forty connections reserve the same scarce SKU at the same moment,
    straight through the reservation code the service runs, against the real database."""
    sku = new_sku("CONC")
    stock = 13
    await pipeline.publish_and_wait([product(sku), receipt("WH-BJ", sku, 7),
                                     receipt("WH-CD", sku, 6)])
    orders = [approved([(sku, 1 + i % 3)], address_index=i % 6) for i in range(40)]
    units = UnitOfWorkFactory(inventory_db, "inventory")
    handlers = InventoryHandlers(InventoryPolicy())
    start = asyncio.Event()

    async def reserve(order: OrderApproved) -> None:
        await start.wait()
        async with units() as uow:
            await handlers.on_orders_approved(uow, [delivered(order)])

    tasks = [asyncio.create_task(reserve(o)) for o in orders]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)

    ids = [o.order_id for o in orders]
    async with AsyncSession(inventory_db) as session:
        held_units = (await session.execute(sa.text(
            "SELECT coalesce(sum(quantity + shipped), 0) FROM inventory_reservations "
            "WHERE order_id = ANY(:ids)"), {"ids": ids})).scalar_one()
        statuses = (await session.execute(sa.text(
            "SELECT status, count(*) FROM inventory_orders WHERE order_id = ANY(:ids) "
            "GROUP BY status"), {"ids": ids})).all()
    assert held_units == stock  # demand is 80 units: exactly the 13 that exist were reserved
    assert sum(n for _, n in statuses) == 40
    assert await available(inventory_db, sku) == {"WH-BJ": 0, "WH-CD": 0}
    await assert_invariants(inventory_db)


async def test_an_order_review_approves_is_reserved_with_the_approved_order(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    if not {"intake", "review"} <= set(pipeline.services):
        pytest.skip("needs intake and review running")
    eid = new_id("CHAIN")
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(eid, customer_id="C0070",
                                                       lines=[("TEA-002", 1)], address_index=4))
    oid = order_id_for("canonical", eid)
    approval = await events.wait_for_event("order.approved", oid, timeout=60)
    reserved = await events.wait_for_event("stock.reserved", oid, timeout=60)
    assert reserved.event.order == approval.event.order
    assert reserved.headers["causation_id"] == approval.headers["event_id"]
    assert sum(held(reserved).values()) == 1
    await assert_invariants(inventory_db)


# --- changes ------------------------------------------------------------------------------------


def change_of(order: OrderApproved, lines: list[tuple[str, int]], *,
              revision: int = 2) -> OrderChangeApproved:
    """The change review would pass on: the order's new lines, as a newer revision."""
    new = order.order.model_copy(update={"revision": revision, "lines": tuple(
        OrderLine(sku=sku, quantity=q, unit_price=Decimal("10.00")) for sku, q in lines)})
    return OrderChangeApproved(
        order_id=order.order_id, change_id=new_id("CHG"), channel="canonical",
        external_id=order.external_id, previous_revision=revision - 1, order=new,
        totals=order.totals, review_status="approved", requested_by="tests")


async def test_a_reserved_order_changed_to_more_than_is_in_stock_is_refused_whole(
        inventory_alone: InventoryAlone) -> None:
    pipeline, events, inventory_db = inventory_alone
    a, b = new_sku("CHGA"), new_sku("CHGB")
    await pipeline.publish_and_wait([product(a), product(b), receipt("WH-SH", a, 4),
                                     receipt("WH-SH", b, 1)])
    order = approved([(a, 2), (b, 1)])
    await pipeline.publish_and_wait([order])
    await events.wait_for_event("stock.reserved", order.order_id)
    # fewer of a (would release 1) and more of b than exists: all or nothing, so nothing moves
    greedy = change_of(order, [(a, 1), (b, 3)])
    await pipeline.publish_and_wait([greedy])
    refused = await events.wait_for_event("order.change-rejected", order.order_id)
    assert refused.event.stage == "inventory" and refused.event.change_id == greedy.change_id
    assert [r.code for r in refused.event.reasons] == ["insufficient_stock"]
    assert await available(inventory_db, a) == {"WH-SH": 2}
    assert await available(inventory_db, b) == {"WH-SH": 0}
    assert not events.of("stock.released", order.order_id)
    view = await order_view(inventory_db, order.order_id)
    assert view["status"] == "reserved"
    await assert_invariants(inventory_db)

    # within stock: the difference only moves, and the order stays reserved
    fits = change_of(order, [(a, 3)], revision=3)
    await pipeline.publish_and_wait([fits])
    step = await events.wait_for_event("order.change-reserved", order.order_id)
    assert step.event.stock_status == "reserved"
    assert sorted((r.sku, r.quantity) for r in step.event.reservations) == [(a, 3)]
    assert sorted((r.sku, r.quantity) for r in step.event.released) == [(b, 1)]
    released = await events.wait_for_event("stock.released", order.order_id)
    assert [(r.sku, r.quantity) for r in released.event.reservations] == [(b, 1)]
    assert await available(inventory_db, a) == {"WH-SH": 1}
    assert await available(inventory_db, b) == {"WH-SH": 1}
    await assert_invariants(inventory_db)


async def test_a_change_before_the_approval_is_what_the_approval_reserves(
        pipeline: Pipeline, events: EventLog, inventory_db: AsyncEngine) -> None:
    sku = new_sku("CHGEARLY")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 10)])
    order = approved([(sku, 2)])
    early = change_of(order, [(sku, 5)])
    await pipeline.publish_and_wait([early])
    step = await events.wait_for_event("order.change-reserved", order.order_id)
    assert step.event.stock_status == "not_allocated"
    await pipeline.publish_and_wait([order])  # the approval of revision 1 arrives late
    reserved = await events.wait_for_event("stock.reserved", order.order_id)
    assert reserved.event.order.revision == 2
    assert [(r.sku, r.quantity) for r in reserved.event.reservations] == [(sku, 5)]
    await assert_invariants(inventory_db)


# --- approvals as a set-based run (the batch handler) ------------------------------------------


def delivered(event: Event, offset: int = 0) -> IncomingEvent[Any]:
    """An event as the consumer hands it to a handler, with an event id of its own."""
    headers = EventHeaders.new(event_type=event.EVENT_TYPE, schema_version=event.SCHEMA_VERSION,
                               producer="tests", correlation_id=event.key())
    return IncomingEvent(TOPIC_OF_EVENT[type(event)].name, 0, offset, event.key(), headers, event,
                         event.model_dump_json().encode(), tuple(headers.to_kafka()))


async def reserve_run(engine: AsyncEngine, run: list[IncomingEvent[Any]]) -> list[
        tuple[EventHeaders, Event]]:
    """The run through the handler in one transaction; what it emitted."""
    async with UnitOfWorkFactory(engine, "inventory")() as uow:
        await InventoryHandlers(InventoryPolicy()).on_orders_approved(uow, run)
    return uow.emitted


async def reserve_one_by_one(engine: AsyncEngine, run: list[IncomingEvent[Any]]) -> list[
        tuple[EventHeaders, Event]]:
    """The run's approvals one at a time in one transaction, each a run of one (as the runtime
    calls the handler when it applies a batch one event at a time)."""
    async with UnitOfWorkFactory(engine, "inventory")() as uow:
        handlers = InventoryHandlers(InventoryPolicy())
        for incoming in run:
            await handlers.on_orders_approved(uow, [incoming])
    return uow.emitted


async def on_its_own(engine: AsyncEngine, event: Event) -> None:
    """A cancellation, a change or an approval applied in a transaction of its own."""
    async with UnitOfWorkFactory(engine, "inventory")() as uow:
        handlers = InventoryHandlers(InventoryPolicy())
        if isinstance(event, OrderApproved):
            await handlers.on_orders_approved(uow, [delivered(event)])
        elif isinstance(event, OrderCancelled):
            await handlers.on_order_cancelled(uow, delivered(event))
        else:
            assert isinstance(event, OrderChangeApproved)
            await handlers.on_change_approved(uow, delivered(event))


async def stock_figures(engine: AsyncEngine, order_ids: list[str], skus: list[str]) -> dict[
        str, Any]:
    """What a dispatch cannot change: each order's lines, held + shipped units and first-attempt
    flag, the stock available, the reservations' ledger lines and the low-stock flags."""
    async with AsyncSession(engine) as session:
        async def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in (await session.execute(
                sa.text(sql), {"ids": order_ids, "skus": skus})).all()]

        return {
            "orders": await rows(
                "SELECT order_id, status IN ('reserved', 'shipped'), filled_first_attempt, "
                "backordered_at IS NOT NULL, reserved_at IS NOT NULL, order_json->'revision' "
                "FROM inventory_orders WHERE order_id = ANY(:ids) ORDER BY sequence"),
            "lines": await rows("SELECT order_id, sku, ordered, short FROM inventory_order_lines "
                                "WHERE order_id = ANY(:ids) ORDER BY order_id, sku"),
            "holds": await rows("SELECT order_id, warehouse_id, sku, quantity + shipped "
                                "FROM inventory_reservations WHERE order_id = ANY(:ids) "
                                "ORDER BY order_id, warehouse_id, sku"),
            "ledger": await rows("SELECT order_id, warehouse_id, sku, reserved_delta "
                                 "FROM inventory_movements WHERE sku = ANY(:skus) "
                                 "AND kind = 'reservation' ORDER BY id"),
            "available": await rows("SELECT warehouse_id, sku, available FROM inventory_stock "
                                    "WHERE sku = ANY(:skus) ORDER BY sku, warehouse_id"),
            "flags": await rows("SELECT sku, low_flagged FROM inventory_products "
                                "WHERE sku = ANY(:skus) ORDER BY sku"),
        }


async def test_a_run_of_approvals_is_reserved_exactly_as_one_approval_at_a_time(
        pipeline: Pipeline, inventory_db: AsyncEngine) -> None:
    """The same mixed run on two copies of the same stock: as one run and as runs of one, one
    approval at a time. Orders compete for a scarce SKU in the run's order (nearest warehouse,
    split, partial, nothing left), one was cancelled before its approval, one changed before it
    (the newer revision is reserved), one is approved twice in the run, one was approved before;
    the scarce SKU crosses its reorder point once. Same events, same content, same causes, same
    rows."""

    async def scenario(tag: str) -> tuple[list[str], list[OrderApproved],
                                          list[IncomingEvent[Any]]]:
        a, b = new_sku(f"{tag}A"), new_sku(f"{tag}B")
        await pipeline.publish_and_wait([product(a, reorder_point=4), product(b),
                                         receipt("WH-SH", a, 3), receipt("WH-BJ", a, 2),
                                         receipt("WH-CD", b, 10)])
        first = approved([(a, 2)])
        split = approved([(a, 2), (b, 1)])
        cancelled = approved([(b, 1)])
        changed = approved([(b, 1)])
        known = approved([(b, 2)], address_index=SICHUAN)
        partial = approved([(a, 2)], address_index=SICHUAN)
        nothing_left = approved([(a, 1)], address_index=BEIJING)
        await on_its_own(inventory_db, OrderCancelled(order_id=cancelled.order_id,
                                                      reason="customer", requested_by="tests"))
        await on_its_own(inventory_db, change_of(changed, [(b, 3)]))
        await on_its_own(inventory_db, known)
        run = [first, cancelled, split, changed, split, known, partial, nothing_left]
        distinct = [first, split, cancelled, changed, known, partial, nothing_left]
        return [a, b], distinct, [delivered(o, i) for i, o in enumerate(run)]

    skus_one, orders_one, run_one = await scenario("SET")
    skus_two, orders_two, run_two = await scenario("ONE")
    ids_one, ids_two = [o.order_id for o in orders_one], [o.order_id for o in orders_two]
    emitted_one = await reserve_run(inventory_db, run_one)
    emitted_two = await reserve_one_by_one(inventory_db, run_two)

    def normal(emitted: list[tuple[EventHeaders, Event]], skus: list[str],
               orders: list[OrderApproved], run: list[IncomingEvent[Any]]) -> list[
            tuple[str, int, str]]:
        causes = {incoming.headers.event_id: i for i, incoming in enumerate(run)}
        out = []
        for headers, event in emitted:
            text = event.model_dump_json()
            for i, order in enumerate(orders):
                text = text.replace(order.order_id, f"O{i}").replace(order.external_id, f"E{i}")
            for i, sku in enumerate(skus):
                text = text.replace(sku, f"S{i}")
            assert headers.causation_id is not None
            out.append((type(event).__name__, causes[headers.causation_id], text))
        return out

    batch = normal(emitted_one, skus_one, orders_one, run_one)
    one_by_one = normal(emitted_two, skus_two, orders_two, run_two)
    assert batch == one_by_one
    assert [(kind, cause) for kind, cause, _ in batch] == [
        ("StockReserved", 0), ("StockLow", 0), ("StockReserved", 2), ("StockReserved", 3),
        ("StockBackordered", 6), ("StockBackordered", 7)]
    low = next(e for _, e in emitted_one if isinstance(e, StockLow))
    assert (low.available, low.reorder_point) == (3, 4)  # the first order's 2 crossed it

    def renamed(figures: dict[str, Any], skus: list[str], ids: list[str]) -> dict[str, Any]:
        names = {**{s: f"S{i}" for i, s in enumerate(skus)},
                 **{o: f"O{i}" for i, o in enumerate(ids)}}
        out = {k: [tuple(names.get(v, v) if isinstance(v, str) else v for v in row)
                   for row in rows] for k, rows in figures.items()}
        return {k: rows if k in ("orders", "ledger") else sorted(rows)  # by id: sorted again
                for k, rows in out.items()}

    assert renamed(await stock_figures(inventory_db, ids_one, skus_one), skus_one, ids_one) == \
        renamed(await stock_figures(inventory_db, ids_two, skus_two), skus_two, ids_two)
    figures = await stock_figures(inventory_db, ids_one, skus_one)
    assert [(sku, units) for _, sku, units in figures["available"]] == [
        (skus_one[0], 0), (skus_one[0], 0), (skus_one[1], 4)]
    assert ids_one[2] not in {row[0] for row in figures["orders"]}  # cancelled: never recorded
    await assert_invariants(inventory_db)


async def test_first_attempts_count_the_fill_rate_once_committed(
        pipeline: Pipeline, inventory_db: AsyncEngine) -> None:
    sku = new_sku("FILL")
    await pipeline.publish_and_wait([product(sku), receipt("WH-CD", sku, 3)])
    filled, short = approved([(sku, 2)], address_index=SICHUAN), \
        approved([(sku, 4)], address_index=SICHUAN)
    counters = (metrics.ORDERS_ALLOCATED.labels("inventory", "filled"),
                metrics.ORDERS_ALLOCATED.labels("inventory", "backordered"))

    def counted() -> tuple[float, float]:
        return counters[0]._value.get(), counters[1]._value.get()

    async def approve_then_roll_back() -> None:
        async with UnitOfWorkFactory(inventory_db, "inventory")() as uow:
            await InventoryHandlers(InventoryPolicy()).on_orders_approved(uow, [delivered(filled)])
            raise RuntimeError("rolled back")

    before = counted()
    with pytest.raises(RuntimeError, match="rolled back"):  # rolled back: nothing counted
        await approve_then_roll_back()
    assert counted() == before
    emitted = await reserve_run(inventory_db, [delivered(filled, 0), delivered(short, 1)])
    assert [type(e).__name__ for _, e in emitted] == ["StockReserved", "StockBackordered"]
    assert counted() == (before[0] + 1, before[1] + 1)
    # a redelivered approval is a known order: not a first attempt again
    await reserve_run(inventory_db, [delivered(filled, 2)])
    assert counted() == (before[0] + 1, before[1] + 1)


async def test_a_redelivered_batch_of_approvals_applies_nothing_twice(
        pipeline: Pipeline, inventory_db: AsyncEngine) -> None:
    """Through the runtime's batch processor: two runs of approvals around a cancellation (the
    cancellation splits the run), then the very same records again."""
    sku = new_sku("REDO")
    await pipeline.publish_and_wait([product(sku), receipt("WH-GZ", sku, 5)])
    orders = [approved([(sku, 2)], address_index=GUANGDONG) for _ in range(4)]
    cancel = OrderCancelled(order_id=orders[0].order_id, reason="customer", requested_by="tests")
    sequence: list[Event] = [orders[0], orders[1], cancel, orders[2], orders[3]]
    records = []
    for offset, event in enumerate(sequence):
        incoming = delivered(event, offset)
        records.append(Rec(incoming.topic, 0, offset, event.key().encode(),
                           incoming.raw_value, list(incoming.raw_headers)))
    processor = BatchProcessor(service="inventory", subscriptions=create_service().subscriptions,
                               engine=inventory_db, max_bytes=1 << 20)
    await processor.process(records, None)
    ids = [o.order_id for o in orders]
    first = await stock_figures(inventory_db, ids, [sku])
    # the cancellation gave the first order's 2 units back and they went to the waiting queue
    # (none yet: the third and fourth come after it), then the third and fourth took 2 and 1
    assert [row[1:3] for row in first["orders"]] == [(False, True), (True, True), (True, True),
                                                     (False, False)]
    assert first["available"] == [("WH-GZ", sku, 0)]
    await processor.process(records, None)
    assert await stock_figures(inventory_db, ids, [sku]) == first
    async with AsyncSession(inventory_db) as session:
        claimed = (await session.execute(sa.text(
            "SELECT count(*) FROM inbox WHERE event_id = ANY(:ids)"),
            {"ids": [uuid.UUID(dict(r.headers)["event_id"].decode()) for r in records]})).scalar()
    assert claimed == len(records)
    await assert_invariants(inventory_db)


async def test_a_run_whose_stock_a_concurrent_writer_took_is_planned_again_on_what_is_there(
        pipeline: Pipeline, inventory_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the run's read of the stock and its take, another transaction writes off units
    the run chose: the take changes nothing, and the run is planned again on the stock rows,
    locked, as they are (no oversell, the outcome of one approval after another)."""
    sku = new_sku("LATE")
    await pipeline.publish_and_wait([product(sku), receipt("WH-SH", sku, 3)])
    read = InventoryRepository.stock_rows

    async def read_then_write_off(self: InventoryRepository, skus: Any) -> Any:
        rows = await read(self, skus)
        async with UnitOfWorkFactory(inventory_db, "inventory")() as uow:
            assert await InventoryRepository(uow.session).adjust("WH-SH", sku, -2, "broken") == 1
        return rows

    monkeypatch.setattr(InventoryRepository, "stock_rows", read_then_write_off)
    orders = [approved([(sku, 1)]) for _ in range(2)]
    run = [delivered(o, i) for i, o in enumerate(orders)]
    emitted = await reserve_run(inventory_db, run)
    assert [(type(e).__name__, h.causation_id) for h, e in emitted] == [
        ("StockReserved", run[0].headers.event_id), ("StockBackordered", run[1].headers.event_id)]
    assert await available(inventory_db, sku) == {"WH-SH": 0}
    await assert_invariants(inventory_db)


async def test_concurrent_runs_of_approvals_never_oversell_nor_deadlock(
        pipeline: Pipeline, inventory_db: AsyncEngine) -> None:
    """Eight transactions, each a run of five approvals of two scarce SKUs, at the same moment
    (the takes lock the same rows; those that lose plan again on the rows, locked)."""
    a, b = new_sku("CRUNA"), new_sku("CRUNB")
    await pipeline.publish_and_wait([product(a), product(b), receipt("WH-BJ", a, 7),
                                     receipt("WH-CD", a, 6), receipt("WH-SH", b, 5),
                                     receipt("WH-CD", b, 4)])
    orders = [approved([(a, 1 + i % 3), (b, 1)] if i % 2 else [(b, 1 + i % 2), (a, 1)],
                       address_index=i % 6) for i in range(40)]
    start = asyncio.Event()

    async def run_of(chunk: list[OrderApproved]) -> None:
        await start.wait()
        await reserve_run(inventory_db, [delivered(o, i) for i, o in enumerate(chunk)])

    tasks = [asyncio.create_task(run_of(orders[i:i + 5])) for i in range(0, 40, 5)]
    await asyncio.sleep(0)
    start.set()
    await asyncio.gather(*tasks)
    ids = [o.order_id for o in orders]
    async with AsyncSession(inventory_db) as session:
        held_units: dict[str, int] = dict((await session.execute(sa.text(
            "SELECT sku, sum(quantity + shipped) FROM inventory_reservations "
            "WHERE order_id = ANY(:ids) GROUP BY sku"), {"ids": ids})).all())
        known = (await session.execute(sa.text(
            "SELECT count(*) FROM inventory_orders WHERE order_id = ANY(:ids)"),
            {"ids": ids})).scalar()
    assert held_units == {a: 13, b: 9}  # demand is far more: exactly what exists was reserved
    assert known == 40
    assert await available(inventory_db, a) == {"WH-BJ": 0, "WH-CD": 0}
    assert await available(inventory_db, b) == {"WH-CD": 0, "WH-SH": 0}
    await assert_invariants(inventory_db)


async def test_two_replicas_batches_locking_in_crosswise_order_do_not_deadlock(
        inventory_alone: InventoryAlone) -> None:
    """Two replicas' batches at once: one reserves SKU a then ships SKU b, the other ships b then
    reserves a, each run locking its own rows, and each replica going on only when both have
    done their first run (or 3 s passed). Without the batch's locks taken up front
    (``prepare_batch``) both first runs finish, then each waits for the other's rows: PostgreSQL
    detects the deadlock and one batch is retried. With them, the second waits for the first
    before its first run, and nothing fails."""
    # the held orders' stock.reserved must not be dispatched too: no logistics runs here
    pipeline, _, inventory_db = inventory_alone
    a, b = new_sku("CROSSA"), new_sku("CROSSB")
    await pipeline.publish_and_wait([product(a), product(b), receipt("WH-SH", a, 10),
                                     receipt("WH-SH", b, 10)])
    holding = [approved([(b, 1)]) for _ in range(2)]
    for order in holding:
        await on_its_own(inventory_db, order)

    def shipment(order: OrderApproved) -> ShipmentDispatched:
        placed = order.order.placed_at
        return ShipmentDispatched(
            order_id=order.order_id, shipment_id=f"SH-{uuid.uuid4().hex[:8]}", warehouse_id="WH-SH",
            carrier="SF", service="standard", tracking_number="SF1",
            lines=(ReservedLine(warehouse_id="WH-SH", sku=b, quantity=1),), weight_kg=Decimal("1"),
            dispatched_at=placed, promised_date=placed.date())

    new = [approved([(a, 1)]) for _ in range(2)]
    batches = [[new[0], shipment(holding[0])], [shipment(holding[1]), new[1]]]
    first_run_done = [asyncio.Event(), asyncio.Event()]
    failures: list[str] = []
    service = create_service()

    def replica(me: int) -> BatchProcessor:
        other = first_run_done[1 - me]

        def watched(handler: Any) -> Any:
            async def run(uow: Any, events: Any) -> None:
                try:
                    await handler(uow, events)
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    raise
            return run

        def gated(handler: Any) -> Any:
            async def run(uow: Any, events: Any) -> None:
                await watched(handler)(uow, events)
                if not first_run_done[me].is_set():
                    first_run_done[me].set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(other.wait(), 3)
            return run

        subscriptions = [dataclasses.replace(s, batch_handler=gated(s.batch_handler))
                         if s.batch_handler is not None else s for s in service.subscriptions]
        assert service.prepare_batch is not None
        return BatchProcessor(service="inventory", subscriptions=subscriptions,
                              engine=inventory_db, max_bytes=1 << 20,
                              prepare=watched(service.prepare_batch))

    async def consume(me: int) -> None:
        records = []
        for offset, event in enumerate(batches[me]):
            incoming = delivered(event, offset)
            records.append(Rec(incoming.topic, me, offset, event.key().encode(),
                               incoming.raw_value, list(incoming.raw_headers)))
        await replica(me).process(records, None)

    await asyncio.gather(consume(0), consume(1))
    assert failures == []
    assert await available(inventory_db, a) == {"WH-SH": 8}
    figures = await stock_figures(inventory_db, [o.order_id for o in holding + new], [a, b])
    assert [row[1] for row in figures["orders"]] == [True, True, True, True]  # reserved or shipped
    async with AsyncSession(inventory_db) as session:
        on_hand = (await session.execute(sa.text(
            "SELECT on_hand, reserved FROM inventory_stock WHERE warehouse_id = 'WH-SH' AND sku = :b"),
            {"b": b})).one()
    assert tuple(on_hand) == (8, 0)  # both shipments took their held unit
    await assert_invariants(inventory_db)


async def test_a_run_of_shipments_moves_the_stock_exactly_as_one_shipment_at_a_time(
        inventory_alone: InventoryAlone) -> None:
    """The same run of shipments on two copies of the same orders and stock, as one run and as
    runs of one: a split order's two shipments (shipped in full after
    the second), a shipment of part of a hold, one without any hold (free stock, a warning) that
    crosses a reorder point, two shipments of the same SKU and warehouse. Same rows, same events."""
    pipeline, _, inventory_db = inventory_alone

    def shipment(order: OrderApproved, lines: list[tuple[str, str, int]]) -> ShipmentDispatched:
        placed = order.order.placed_at
        return ShipmentDispatched(
            order_id=order.order_id, shipment_id=f"SH-{uuid.uuid4().hex[:8]}",
            warehouse_id=lines[0][0], carrier="SF", service="standard", tracking_number="SF1",
            lines=tuple(ReservedLine(warehouse_id=w, sku=sku, quantity=q) for w, sku, q in lines),
            weight_kg=Decimal("1"), dispatched_at=placed, promised_date=placed.date())

    async def scenario(tag: str) -> tuple[list[str], list[OrderApproved], list[
            IncomingEvent[Any]]]:
        a, b = new_sku(f"{tag}A"), new_sku(f"{tag}B")
        await pipeline.publish_and_wait([product(a, reorder_point=2), product(b),
                                         receipt("WH-SH", a, 4), receipt("WH-BJ", a, 3),
                                         receipt("WH-BJ", b, 5)])
        split = approved([(a, 5)])  # WH-SH 4 + WH-BJ 1
        partly = approved([(b, 3)], address_index=BEIJING)  # WH-BJ 3
        unheld = approved([(b, 1)], address_index=BEIJING)  # not approved here: no hold
        for order in (split, partly):
            await on_its_own(inventory_db, order)
        run = [shipment(split, [("WH-SH", a, 4)]), shipment(partly, [("WH-BJ", b, 2)]),
               shipment(unheld, [("WH-BJ", a, 1), ("WH-BJ", b, 1)]),
               shipment(split, [("WH-BJ", a, 1)]), shipment(partly, [("WH-BJ", b, 1)])]
        return [a, b], [split, partly, unheld], [delivered(s, i) for i, s in enumerate(run)]

    async def figures(skus: list[str], orders: list[OrderApproved]) -> list[Any]:
        names = {**{s: f"S{i}" for i, s in enumerate(skus)},
                 **{o.order_id: f"O{i}" for i, o in enumerate(orders)}}
        async with AsyncSession(inventory_db) as session:
            out = []
            for sql in ("SELECT order_id, status, expires_at IS NULL FROM inventory_orders "
                        "WHERE order_id = ANY(:ids)",
                        "SELECT warehouse_id, sku, on_hand, reserved FROM inventory_stock "
                        "WHERE sku = ANY(:skus)",
                        "SELECT order_id, warehouse_id, sku, quantity, shipped "
                        "FROM inventory_reservations WHERE order_id = ANY(:ids)",
                        "SELECT sku, low_flagged FROM inventory_products WHERE sku = ANY(:skus)"):
                rows = (await session.execute(sa.text(sql), {
                    "ids": list(names), "skus": skus})).all()
                out.append(sorted(tuple(names.get(v, v) for v in r) for r in rows))
            ledger = (await session.execute(sa.text(
                "SELECT order_id, warehouse_id, sku, on_hand_delta, reserved_delta "
                "FROM inventory_movements WHERE sku = ANY(:skus) AND kind = 'shipment' "
                "ORDER BY id"), {"skus": skus})).all()
            out.append([tuple(names.get(v, v) for v in r) for r in ledger])
        return out

    skus_one, orders_one, run_one = await scenario("SHIPSET")
    skus_two, orders_two, run_two = await scenario("SHIPONE")
    handlers = InventoryHandlers(InventoryPolicy())
    async with UnitOfWorkFactory(inventory_db, "inventory")() as uow:
        await handlers.on_shipments_dispatched(uow, run_one)
    emitted_one = uow.emitted
    async with UnitOfWorkFactory(inventory_db, "inventory")() as uow:
        for incoming in run_two:
            await handlers.on_shipments_dispatched(uow, [incoming])
    emitted_two = uow.emitted

    def normal(emitted: list[tuple[EventHeaders, Event]], skus: list[str],
               run: list[IncomingEvent[Any]]) -> list[tuple[int, str]]:
        causes = {incoming.headers.event_id: i for i, incoming in enumerate(run)}
        out = []
        for headers, event in emitted:
            text = event.model_dump_json()
            for i, sku in enumerate(skus):
                text = text.replace(sku, f"S{i}")
            assert headers.causation_id is not None
            out.append((causes[headers.causation_id], text))
        return out

    assert normal(emitted_one, skus_one, run_one) == normal(emitted_two, skus_two, run_two)
    assert [(cause, type(e).__name__, e.available) for (cause, _), (_, e) in zip(
        normal(emitted_one, skus_one, run_one), emitted_one, strict=True)
        if isinstance(e, StockLow)] == [(2, "StockLow", 1)]
    one, two = await figures(skus_one, orders_one), await figures(skus_two, orders_two)
    assert one == two
    statuses, stock = one[0], one[1]
    assert [(o, status) for o, status, _ in statuses] == [("O0", "shipped"), ("O1", "shipped")]
    assert stock == [("WH-BJ", "S0", 1, 0), ("WH-BJ", "S1", 1, 0), ("WH-SH", "S0", 0, 0)]
    await assert_invariants(inventory_db)
