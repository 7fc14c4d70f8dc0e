"""Order changes end to end, every service as its own process against the real broker and
PostgreSQL. Each change is a connector re-pushing a newer revision of an order (intake turns it
into ``order.change-requested``): quantity down and up, a line added, a line removed, a new
address, a new requested date, refusals (credit, after dispatch). After each: the stock
conservation invariant, the customer's credit exposure, and what the customer was told.

Run: ORDERFLOW_TEST_SERVICES=intake,review,inventory,logistics,notify timeout 900 \
    .venv/bin/pytest tests/e2e/test_changes.py -q -x
"""

from __future__ import annotations

import asyncio
import copy
from decimal import Decimal
from typing import Any

import httpx
import pytest

from orderflow.connector import OrderPusher
from orderflow.contracts.events import StockReceived
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import ADDRESSES, canonical_order
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.service_auth import operator

from . import sagas
from .sagas import new_id

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("change_services")]


@pytest.fixture
def change_services(pipeline: Pipeline) -> None:
    sagas.require_order_services(pipeline, "changes")


async def new_customer(pipeline: Pipeline, limit: str = "1000000") -> str:
    return await sagas.new_customer(pipeline, prefix="CH", name="变更客户", limit=limit)


async def new_sku(pipeline: Pipeline, *, stock: int) -> str:
    return await sagas.new_sku(pipeline, prefix="CHS", name="变更测试商品", stock=stock)


D = Decimal
T = 60  # seconds any one step may take


def total_of(units: int) -> Decimal:
    """An order of ``units`` test units: 113.00 each with VAT, 10.00 shipping."""
    return D("113.00") * units + D("10.00")


class Order:
    """A canonical order of test SKUs as a connector keeps it, re-pushed on every change."""

    def __init__(self, customer_id: str, lines: list[tuple[str, int]]) -> None:
        self.eid = new_id("CHO")
        self.payload: dict[str, Any] = canonical_order(
            self.eid, customer_id="C0070", lines=[("TEA-002", 1)], address_index=0,
            payment_terms="net30")
        self.payload["customer"]["id"] = customer_id
        self.payload.pop("stated_total", None)
        self.set_lines(lines)
        self.order_id = order_id_for("canonical", self.eid)

    def set_lines(self, lines: list[tuple[str, int]]) -> None:
        self.payload["lines"] = [{"sku": sku, "quantity": q, "unit_price": "100.00",
                                  "discount": "0.00"} for sku, q in lines]

    def revised(self, *, lines: list[tuple[str, int]] | None = None,
                address_index: int | None = None, requested: str | None = None) -> Order:
        """The next revision, with the given edits."""
        self.payload = copy.deepcopy(self.payload)
        self.payload["revision"] = int(self.payload.get("revision") or 1) + 1
        if lines is not None:
            self.set_lines(lines)
        if address_index is not None:
            province, city, district, line1, postal = ADDRESSES[address_index]
            self.payload["shipping_address"].update(province=province, city=city,
                                                    district=district, line1=line1,
                                                    postal_code=postal)
        if requested is not None:
            self.payload["requested_delivery_date"] = requested
        return self

    async def push(self, pipeline: Pipeline) -> str:
        async with OrderPusher(pipeline.kafka) as pusher:
            await pusher.push_many([("canonical", self.eid, self.payload)])
        return self.order_id


def url(pipeline: Pipeline, service: str) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find(service).port}"


async def wait_until(what: str, check: Any, timeout: float = T) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def exposure_is(pipeline: Pipeline, customer_id: str, expected: Decimal) -> None:
    """Review's approved-not-invoiced figure for the customer reaches ``expected``."""
    seen: list[Decimal] = []

    async def check() -> bool:
        async with httpx.AsyncClient(base_url=url(pipeline, "review"), timeout=10) as api:
            body = (await api.get(f"/api/credit-accounts/{customer_id}")).json()
        seen.append(D(body["approved_not_invoiced"]))
        return seen[-1] == expected

    await wait_until(f"exposure of {customer_id} stays {seen[-1:]} (expected {expected})", check)


async def stock_invariants_hold(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(base_url=url(pipeline, "inventory"), timeout=30) as api:
        body = (await api.get("/inventory/invariants")).json()
    assert body == {"ok": True, "problems": []}


async def available(pipeline: Pipeline, sku: str) -> int:
    async with httpx.AsyncClient(base_url=url(pipeline, "inventory"), timeout=10) as api:
        return int((await api.get(f"/inventory/stock/{sku}")).json()["available"])


async def available_is(pipeline: Pipeline, sku: str, expected: int) -> None:
    async def check() -> bool:
        return await available(pipeline, sku) == expected
    await wait_until(f"{sku}: available never {expected}", check)


async def told(events: EventLog, order_id: str, event_type: str) -> SeenEvent:
    """The customer was told: notify recorded a message (sent or recorded) for the event."""
    return await events.wait_for_event(
        "notification.recorded", order_id, timeout=T,
        where=lambda e: e.event.source_event_type == event_type
        and e.event.status in ("sent", "recorded"))


async def changed(events: EventLog, order_id: str, revision: int) -> SeenEvent:
    return await events.wait_for_event("order.changed", order_id, timeout=T,
                                       where=lambda e: e.event.revision == revision)


def units(seen: list[SeenEvent]) -> dict[str, int]:
    """Units per SKU across dispatched shipments."""
    out: dict[str, int] = {}
    for e in seen:
        for line in e.event.lines:
            out[line.sku] = out.get(line.sku, 0) + line.quantity
    return out


async def dispatched_units(events: EventLog, order_id: str, expected: dict[str, int]) -> None:
    await events.wait_for(lambda: units(events.of("shipment.dispatched", order_id)) == expected,
                          timeout=T, what=f"{order_id} dispatched {expected}")


# --- quantities -----------------------------------------------------------------------------------


async def test_quantity_down_on_a_backordered_order_releases_nothing_held_and_ships(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=1)
    order = Order(customer, [(sku, 3)])
    oid = await order.push(pipeline)  # 1 reserved, 2 short
    await events.wait_for_event("stock.backordered", oid, timeout=T)
    await exposure_is(pipeline, customer, total_of(3))

    await order.revised(lines=[(sku, 1)]).push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.changes == ("quantity_decreased",)
    assert done.event.stock_status == "reserved" and done.event.review_status == "approved"
    assert done.event.totals.grand_total == total_of(1)
    assert events.of("order.revision-received", oid)  # intake's record of the revision
    await dispatched_units(events, oid, {sku: 1})
    await exposure_is(pipeline, customer, total_of(1))
    await available_is(pipeline, sku, 0)
    await told(events, oid, "OrderChanged")
    await stock_invariants_hold(pipeline)


async def test_quantity_down_releases_the_units_held_beyond_the_new_need(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    held, short = await new_sku(pipeline, stock=5), await new_sku(pipeline, stock=0)
    order = Order(customer, [(held, 4), (short, 1)])
    oid = await order.push(pipeline)  # 4 held, 1 short: backordered
    await events.wait_for_event("stock.backordered", oid, timeout=T)
    await available_is(pipeline, held, 1)

    await order.revised(lines=[(held, 2), (short, 1)]).push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.stock_status == "backordered"
    released = await events.wait_for_event("stock.released", oid, timeout=T)
    assert [(r.sku, r.warehouse_id, r.quantity) for r in released.event.reservations] == [
        (held, "WH-SH", 2)]
    await available_is(pipeline, held, 3)
    await exposure_is(pipeline, customer, total_of(3))
    await told(events, oid, "OrderChanged")
    await stock_invariants_hold(pipeline)
    # the missing unit arrives: the order ships as changed
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=short, quantity=1,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {held: 2, short: 1})
    await stock_invariants_hold(pipeline)


async def test_quantity_up_on_a_backordered_order_joins_its_backorder(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=2)
    order = Order(customer, [(sku, 3)])
    oid = await order.push(pipeline)  # 2 reserved, 1 short
    await events.wait_for_event("stock.backordered", oid, timeout=T)

    await order.revised(lines=[(sku, 5)]).push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.changes == ("quantity_increased",)
    assert done.event.stock_status == "backordered"
    await exposure_is(pipeline, customer, total_of(5))  # raised by the increase only
    await told(events, oid, "OrderChanged")
    await stock_invariants_hold(pipeline)
    assert not events.of("shipment.dispatched", oid)
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=sku, quantity=3,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {sku: 5})
    await available_is(pipeline, sku, 0)
    await stock_invariants_hold(pipeline)


# --- lines ----------------------------------------------------------------------------------------


async def test_a_line_added_is_reserved_with_the_rest(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    first, added = await new_sku(pipeline, stock=1), await new_sku(pipeline, stock=5)
    order = Order(customer, [(first, 2)])
    oid = await order.push(pipeline)  # 1 held, 1 short
    await events.wait_for_event("stock.backordered", oid, timeout=T)

    await order.revised(lines=[(first, 2), (added, 2)]).push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.changes == ("line_added",)
    assert done.event.stock_status == "backordered"
    assert sorted((r.sku, r.quantity) for r in done.event.order.lines) == sorted(
        [(first, 2), (added, 2)])
    await available_is(pipeline, added, 3)  # the new line's units are set aside now
    await exposure_is(pipeline, customer, total_of(4))
    await told(events, oid, "OrderChanged")
    await stock_invariants_hold(pipeline)
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=first, quantity=1,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {first: 2, added: 2})
    await stock_invariants_hold(pipeline)


async def test_a_line_removed_gives_its_units_back_and_the_rest_ships(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    kept, removed = await new_sku(pipeline, stock=5), await new_sku(pipeline, stock=1)
    order = Order(customer, [(kept, 2), (removed, 3)])
    oid = await order.push(pipeline)  # removed: 1 held, 2 short
    await events.wait_for_event("stock.backordered", oid, timeout=T)
    await available_is(pipeline, removed, 0)

    await order.revised(lines=[(kept, 2)]).push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.changes == ("line_removed",)
    assert done.event.stock_status == "reserved"
    await dispatched_units(events, oid, {kept: 2})
    await available_is(pipeline, removed, 1)
    await available_is(pipeline, kept, 3)
    await exposure_is(pipeline, customer, total_of(2))
    await told(events, oid, "OrderChanged")
    await stock_invariants_hold(pipeline)


# --- address and date -----------------------------------------------------------------------------


async def test_a_new_address_on_a_held_order_ships_there_once_approved(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline, limit="0")  # every credit order is held
    sku = await new_sku(pipeline, stock=5)
    order = Order(customer, [(sku, 1)])
    oid = await order.push(pipeline)
    await events.wait_for_event("order.held", oid, timeout=T)

    await order.revised(address_index=2).push(pipeline)  # to Beijing
    done = await changed(events, oid, 2)
    assert done.event.changes == ("shipping_address",)
    assert done.event.review_status == "held" and done.event.stock_status == "not_allocated"
    await told(events, oid, "OrderChanged")
    async with httpx.AsyncClient(base_url=url(pipeline, "review"), timeout=10,
                                 auth=operator(pipeline, "review", "li.na", "reviewer")) as api:
        response = await api.post(f"/api/orders/{oid}/approve", json={})
        assert response.status_code == 200, response.text
    approved = await events.wait_for_event("order.approved", oid, timeout=T)
    assert approved.event.order.shipping_address.province == "北京"
    await dispatched_units(events, oid, {sku: 1})
    async with httpx.AsyncClient(base_url=url(pipeline, "logistics"), timeout=10) as api:
        [shipment] = (await api.get("/api/shipments", params={"order_id": oid})).json()
    assert shipment["destination_province"] == "北京"
    await exposure_is(pipeline, customer, total_of(1))
    await stock_invariants_hold(pipeline)


async def test_a_new_requested_date_is_the_date_the_shipment_is_planned_for(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=0)
    order = Order(customer, [(sku, 2)])
    oid = await order.push(pipeline)
    await events.wait_for_event("stock.backordered", oid, timeout=T)

    await order.revised(requested="2026-12-30").push(pipeline)
    done = await changed(events, oid, 2)
    assert done.event.changes == ("requested_delivery_date",)
    message = await told(events, oid, "OrderChanged")
    assert message.event.status in ("sent", "recorded")
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=sku, quantity=2,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {sku: 2})
    [shipment] = events.of("shipment.dispatched", oid)
    assert str(shipment.event.requested_date) == "2026-12-30"
    await exposure_is(pipeline, customer, total_of(2))
    await stock_invariants_hold(pipeline)


# --- refusals -------------------------------------------------------------------------------------


async def test_an_increase_over_the_credit_limit_is_refused_and_the_order_stays_as_it_was(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline, limit="1200")  # owes 1000: room for 200
    sku = await new_sku(pipeline, stock=0)
    order = Order(customer, [(sku, 1)])  # 123.00
    oid = await order.push(pipeline)
    await events.wait_for_event("stock.backordered", oid, timeout=T)
    await exposure_is(pipeline, customer, total_of(1))

    await order.revised(lines=[(sku, 3)]).push(pipeline)  # 349.00: over the limit
    refused = await events.wait_for_event("order.change-rejected", oid, timeout=T)
    assert refused.event.stage == "review"
    assert [r.code for r in refused.event.reasons] == ["credit_limit"]
    await told(events, oid, "OrderChangeRejected")
    await exposure_is(pipeline, customer, total_of(1))
    assert not events.of("order.changed", oid)
    # the order goes on as it was: one unit, shipped when it arrives
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=sku, quantity=3,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {sku: 1})
    await available_is(pipeline, sku, 2)
    await stock_invariants_hold(pipeline)


async def test_a_change_after_dispatch_is_refused_with_the_reason(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=5)
    order = Order(customer, [(sku, 2)])
    oid = await order.push(pipeline)
    await dispatched_units(events, oid, {sku: 2})

    await order.revised(lines=[(sku, 4)], address_index=3).push(pipeline)
    refused = await events.wait_for_event("order.change-rejected", oid, timeout=T)
    assert refused.event.stage == "logistics"
    assert [r.code for r in refused.event.reasons] == ["already_dispatched"]
    await told(events, oid, "OrderChangeRejected")
    await exposure_is(pipeline, customer, total_of(2))
    await available_is(pipeline, sku, 3)
    assert not events.of("order.changed", oid)
    assert units(events.of("shipment.dispatched", oid)) == {sku: 2}
    await stock_invariants_hold(pipeline)


async def test_two_revisions_in_a_row_both_apply_in_order(
        pipeline: Pipeline, events: EventLog) -> None:
    """A connector re-pushes twice: each revision is a change; the second waits for the first
    (or is refused as in progress and its reason told), never applied out of order."""
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=0)
    order = Order(customer, [(sku, 4)])
    oid = await order.push(pipeline)
    await events.wait_for_event("stock.backordered", oid, timeout=T)
    await order.revised(lines=[(sku, 3)]).push(pipeline)
    await changed(events, oid, 2)
    await order.revised(lines=[(sku, 2)]).push(pipeline)
    done = await changed(events, oid, 3)
    assert done.event.previous_revision == 2
    await exposure_is(pipeline, customer, total_of(2))
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=sku, quantity=2,
                                                   reference="changes test")])
    await dispatched_units(events, oid, {sku: 2})
    await stock_invariants_hold(pipeline)
