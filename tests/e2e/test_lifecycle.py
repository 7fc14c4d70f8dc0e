"""The order lifecycle end to end, every service as its own process against the real broker and
PostgreSQL: cancellations (before approval, after a reservation, after dispatch, racing the
dispatch), and returns (restock, scrap, refund, refusals, an exchange). After each: the stock
conservation invariant, the customer's credit exposure, and what the customer was told.

Run: ORDERFLOW_TEST_SERVICES=intake,review,inventory,logistics,notify timeout 900 \
    .venv/bin/pytest tests/e2e/test_lifecycle.py -q -x
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from orderflow.connector import OrderPusher
from orderflow.contracts.events import (
    InspectedUnits,
    OrderCancelRequested,
    ReturnReceived,
    ReturnRequested,
    ReturnRequestLine,
    StockReceived,
)
from orderflow.contracts.order import Customer, order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.service_auth import operator

from . import sagas
from .sagas import new_id

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("lifecycle_services")]


@pytest.fixture
def lifecycle_services(pipeline: Pipeline) -> None:
    sagas.require_order_services(pipeline, "the lifecycle tests")


async def new_customer(pipeline: Pipeline, limit: str = "1000000") -> str:
    return await sagas.new_customer(pipeline, prefix="LC", name="生命周期客户", limit=limit)


async def new_sku(pipeline: Pipeline, *, stock: int, warehouse: str = "WH-SH") -> str:
    return await sagas.new_sku(pipeline, prefix="LCS", name="退换货测试商品", stock=stock,
                               warehouse=warehouse)


D = Decimal


def order_for(customer_id: str, *, lines: list[tuple[str, int]] | None = None,
              own_sku: tuple[str, int] | None = None) -> tuple[str, dict[str, Any]]:
    """A valid canonical order for ``customer_id``: demo SKUs, or units of a test SKU."""
    eid = new_id("LCO")
    # shipped to Shanghai (a test SKU's stock is in WH-SH), on the customer's own terms
    payload = canonical_order(eid, customer_id="C0070", lines=lines or [("TEA-002", 1)],
                              address_index=0, payment_terms="net30")
    payload["customer"]["id"] = customer_id  # type: ignore[index]
    if own_sku is not None:
        sku, quantity = own_sku
        payload["lines"] = [{"sku": sku, "quantity": quantity, "unit_price": "100.00",
                             "discount": "0.00"}]
        payload["stated_total"] = f"{D('113.00') * quantity + D('10.00'):.2f}"
    return eid, payload


async def push(pipeline: Pipeline, *orders: tuple[str, dict[str, Any]]) -> list[str]:
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many([("canonical", eid, payload) for eid, payload in orders])
    return [order_id_for("canonical", eid) for eid, _ in orders]


def cancel_request(order_id: str, customer_id: str | None = None) -> OrderCancelRequested:
    return OrderCancelRequested(
        order_id=order_id, reason="customer changed their mind", requested_by="test-connector",
        requested_at=datetime.now(UTC),
        customer=Customer(id=customer_id, name="生命周期客户",
                          email=f"{customer_id.lower()}@example.com") if customer_id else None)


async def publish(pipeline: Pipeline, *events: Any) -> None:
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.publish(list(events))


def url(pipeline: Pipeline, service: str) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find(service).port}"


async def credit_account(pipeline: Pipeline, customer_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url(pipeline, "review"), timeout=10) as api:
        response = await api.get(f"/api/credit-accounts/{customer_id}")
    response.raise_for_status()
    return dict(response.json())


async def wait_for_exposure(pipeline: Pipeline, events: EventLog, customer_id: str,
                            expected: Decimal) -> None:
    """Wait until review's approved-not-invoiced figure for the customer is ``expected``."""
    seen: list[Decimal] = []

    async def check() -> bool:
        figure = D((await credit_account(pipeline, customer_id))["approved_not_invoiced"])
        seen.append(figure)
        return figure == expected

    deadline = asyncio.get_running_loop().time() + 60
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, (
            f"approved-not-invoiced of {customer_id} is {seen[-1]}, expected {expected}")
        await asyncio.sleep(0.2)


async def assert_stock_invariants(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(base_url=url(pipeline, "inventory"), timeout=30) as api:
        body = (await api.get("/inventory/invariants")).json()
    assert body == {"ok": True, "problems": []}


async def available(pipeline: Pipeline, sku: str) -> int:
    async with httpx.AsyncClient(base_url=url(pipeline, "inventory"), timeout=10) as api:
        return int((await api.get(f"/inventory/stock/{sku}")).json()["available"])


async def wait_available(pipeline: Pipeline, sku: str, expected: int) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while (now := await available(pipeline, sku)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{sku}: {now} available, not {expected}"
        await asyncio.sleep(0.2)


async def told(events: EventLog, order_id: str, event_type: str) -> SeenEvent:
    """The customer was told: notify recorded a message (sent or recorded) for the event."""
    return await events.wait_for_event(
        "notification.recorded", order_id, timeout=60,
        where=lambda e: e.event.source_event_type == event_type
        and e.event.status in ("sent", "recorded"))


def grand_total(events: EventLog, order_id: str) -> Decimal:
    return D(events.of("order.received", order_id)[0].event.totals.grand_total)


# --- cancellation --------------------------------------------------------------------------------


async def test_a_held_order_cancelled_before_approval_leaves_the_queue(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline, limit="0")  # every credit order is held
    [oid] = await push(pipeline, order_for(customer))
    await events.wait_for_event("order.held", oid, timeout=60)
    await publish(pipeline, cancel_request(oid, customer))
    cancelled = await events.wait_for_event("order.cancelled", oid, timeout=60)
    assert cancelled.event.reason == "customer changed their mind"
    async with httpx.AsyncClient(base_url=url(pipeline, "review"), timeout=10,
                                 auth=operator(pipeline, "review", "li.na", "reviewer")) as api:
        async def review_status() -> str:
            return str((await api.get(f"/api/orders/{oid}")).json()["status"])

        deadline = asyncio.get_running_loop().time() + 60
        while await review_status() != "cancelled":
            assert asyncio.get_running_loop().time() < deadline, "review never cancelled it"
            await asyncio.sleep(0.2)
        approve = await api.post(f"/api/orders/{oid}/approve", json={})
        assert approve.status_code == 409, approve.text
        queue = (await api.get("/api/review-queue")).json()
        assert oid not in str(queue)
    await told(events, oid, "OrderCancelled")
    await wait_for_exposure(pipeline, events, customer, D("0"))
    assert not events.of("order.approved", oid)
    assert not events.of("order.cancel-refused", oid)
    await assert_stock_invariants(pipeline)


async def test_a_cancel_pushed_before_the_order_keeps_it_from_flowing(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    eid, payload = order_for(customer)
    oid = order_id_for("canonical", eid)
    await publish(pipeline, cancel_request(oid, customer))
    await events.wait_for_event("order.cancelled", oid, timeout=60)
    await push(pipeline, (eid, payload))
    await events.wait_for_event("order.received", oid, timeout=60)
    await told(events, oid, "OrderCancelled")
    # a marker order of the same customer behind it on every hop
    [marker] = await push(pipeline, order_for(customer))
    await events.wait_for_event("shipment.dispatched", marker, timeout=60)
    await wait_for_exposure(pipeline, events, customer, grand_total(events, marker))
    assert not events.of("shipment.dispatched", oid)
    assert not events.of("order.cancel-refused", oid)
    await assert_stock_invariants(pipeline)


async def test_a_cancel_after_a_reservation_releases_it_and_drops_the_backorder(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=1)
    [oid] = await push(pipeline, order_for(customer, own_sku=(sku, 3)))  # 1 reserved, 2 short
    await events.wait_for_event("stock.backordered", oid, timeout=60)
    total = grand_total(events, oid)
    await wait_for_exposure(pipeline, events, customer, total)
    assert await available(pipeline, sku) == 0
    await publish(pipeline, cancel_request(oid, customer))
    await events.wait_for_event("order.cancelled", oid, timeout=60)
    released = await events.wait_for_event("stock.released", oid, timeout=60)
    assert [(r.sku, r.warehouse_id, r.quantity) for r in released.event.reservations] == [
        (sku, "WH-SH", 1)]
    await wait_for_exposure(pipeline, events, customer, D("0"))
    await told(events, oid, "OrderCancelled")
    # stock arriving later serves nobody: the backorder is gone
    await pipeline.publish_and_wait([StockReceived(warehouse_id="WH-SH", sku=sku, quantity=5,
                                                   reference="after the cancel")])
    await wait_available(pipeline, sku, 6)
    assert not events.of("stock.reserved", oid)
    assert not events.of("shipment.dispatched", oid)
    await assert_stock_invariants(pipeline)


async def test_a_cancel_after_dispatch_is_refused_with_the_reason(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    [oid] = await push(pipeline, order_for(customer))
    dispatched = await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    await publish(pipeline, cancel_request(oid, customer))
    refused = await events.wait_for_event("order.cancel-refused", oid, timeout=60)
    assert [r.code for r in refused.event.reasons] == ["already_dispatched"]
    assert refused.event.shipment_ids == (dispatched.event.shipment_id,)
    await told(events, oid, "OrderCancelRefused")
    await wait_for_exposure(pipeline, events, customer, grand_total(events, oid))
    assert not events.of("order.cancelled", oid)
    assert not events.of("stock.released", oid)
    await assert_stock_invariants(pipeline)


async def test_a_cancel_racing_the_dispatch_ends_in_exactly_one_outcome(
        pipeline: Pipeline, events: EventLog) -> None:
    """Cancels sent with the order, and the moment its receipt, approval and reservation show:
    each order ends cancelled (nothing dispatched, its stock released) XOR dispatched (the cancel
    refused), never both and never neither."""
    customer = await new_customer(pipeline)
    orders = [order_for(customer, lines=[("TEA-002", 1), ("TEA-001", 1)]) for _ in range(32)]
    oids = [order_id_for("canonical", eid) for eid, _ in orders]
    triggers = {oid: (None, "order.received", "order.approved", "stock.reserved")[i % 4]
                for i, oid in enumerate(oids)}
    sent: set[str] = set()
    async with OrderPusher(pipeline.kafka) as pusher:
        first = [cancel_request(oid, customer) for oid in oids if triggers[oid] is None]
        await asyncio.gather(pusher.publish(first), pusher.push_many(
            [("canonical", eid, payload) for eid, payload in orders]))
        sent |= {c.order_id for c in first}

        async def cancel_as_they_flow() -> bool:
            due = [oid for oid in oids if oid not in sent and events.of(str(triggers[oid]), oid)]
            if due:
                sent.update(due)
                await pusher.publish([cancel_request(oid, customer) for oid in due])
            return len(sent) == len(oids)

        deadline = asyncio.get_running_loop().time() + 120
        while not await cancel_as_they_flow():
            assert asyncio.get_running_loop().time() < deadline, "orders stopped flowing"
            await asyncio.sleep(0.01)

    def outcome(oid: str) -> str | None:
        cancelled = bool(events.of("order.cancelled", oid))
        refused = bool(events.of("order.cancel-refused", oid))
        if cancelled and not refused:
            return "cancelled"
        if refused and not cancelled:
            return "refused"
        return "both" if cancelled else None

    await events.wait_for(lambda: all(outcome(o) for o in oids), timeout=120,
                          what="every cancel request decided")
    outcomes = {oid: outcome(oid) for oid in oids}
    assert "both" not in outcomes.values()
    cancelled = [o for o in oids if outcomes[o] == "cancelled"]
    refused = [o for o in oids if outcomes[o] == "refused"]
    assert cancelled, "no cancel won the race"

    def stock_settled(oid: str) -> bool:
        reserved = events.of("stock.reserved", oid)
        return not reserved or bool(events.of("stock.released", oid))

    await events.wait_for(lambda: all(events.of("shipment.dispatched", o) for o in refused)
                          and all(stock_settled(o) for o in cancelled),
                          timeout=120, what="dispatches of the refused, releases of the cancelled")
    # markers behind every order on every hop: nothing is dispatched late
    markers = await push(pipeline, *[order_for(customer) for _ in range(6)])
    await events.wait_for(lambda: all(events.of("shipment.dispatched", m) for m in markers),
                          timeout=120, what="the markers dispatched")
    for oid in cancelled:
        assert not events.of("shipment.dispatched", oid), f"{oid} cancelled and dispatched"
        for reserved in events.of("stock.reserved", oid):
            released = events.of("stock.released", oid)
            assert sorted((r.sku, r.warehouse_id, r.quantity) for r in reserved.event.reservations) \
                == sorted((r.sku, r.warehouse_id, r.quantity)
                          for e in released for r in e.event.reservations)
    for oid in refused:
        assert events.of("shipment.dispatched", oid)
        assert not events.of("stock.released", oid)
    dispatched_total = sum((grand_total(events, o) for o in refused + markers), D("0"))
    await wait_for_exposure(pipeline, events, customer, dispatched_total)
    for oid in cancelled:
        await told(events, oid, "OrderCancelled")
    for oid in refused:
        await told(events, oid, "OrderCancelRefused")
    await assert_stock_invariants(pipeline)


# --- returns -------------------------------------------------------------------------------------


def return_request(order_id: str, rma_id: str, lines: list[tuple[str, int, str]], *,
                   resolution: str = "refund", days_later: int = 0) -> ReturnRequested:
    return ReturnRequested(
        order_id=order_id, rma_id=rma_id, reason="not as expected", resolution=resolution,  # type: ignore[arg-type]
        lines=tuple(ReturnRequestLine(sku=s, quantity=q, condition=c)  # type: ignore[arg-type]
                    for s, q, c in lines),
        requested_at=datetime.now(UTC) + timedelta(days=days_later))


async def test_a_return_is_restocked_or_scrapped_and_refunded(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=10)
    [oid] = await push(pipeline, order_for(customer, own_sku=(sku, 3)))
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    await wait_available(pipeline, sku, 7)
    total = grand_total(events, oid)

    # refused by policy: past the window, a condition not taken back, more than was shipped
    late = new_id("RMA")
    await publish(pipeline, return_request(oid, late, [(sku, 1, "unopened")], days_later=30))
    refused = await events.wait_for_event("order.return-refused", oid, timeout=60,
                                          where=lambda e: e.event.rma_id == late)
    assert [r.code for r in refused.event.reasons] == ["return_window_passed"]
    await told(events, oid, "ReturnRefused")
    greedy = new_id("RMA")
    await publish(pipeline, return_request(oid, greedy, [(sku, 4, "damaged_by_customer")]))
    refused = await events.wait_for_event("order.return-refused", oid, timeout=60,
                                          where=lambda e: e.event.rma_id == greedy)
    assert sorted(r.code for r in refused.event.reasons) == ["condition_not_accepted",
                                                            "more_than_shipped"]

    # approved: two units, 113.00 each with VAT
    rma = new_id("RMA")
    await publish(pipeline, return_request(oid, rma, [(sku, 2, "opened")]))
    approved = await events.wait_for_event("order.return-approved", oid, timeout=60,
                                           where=lambda e: e.event.rma_id == rma)
    assert approved.event.tracking_number.startswith("SFR")
    assert approved.event.refund_amount == D("226.00")
    assert [(x.sku, x.warehouse_id, x.quantity) for x in approved.event.lines] == [
        (sku, "WH-SH", 2)]
    await told(events, oid, "ReturnApproved")

    # received: one unit back on the shelf, one scrapped; the refund follows
    await publish(pipeline, ReturnReceived(
        order_id=oid, rma_id=rma, warehouse_id="WH-SH", received_at=datetime.now(UTC),
        inspections=(InspectedUnits(sku=sku, quantity=1, outcome="restock"),
                     InspectedUnits(sku=sku, quantity=1, outcome="scrap"))))
    refund = await events.wait_for_event("refund.issued", oid, timeout=60)
    assert refund.event.rma_id == rma
    assert refund.event.amount == D("226.00")
    assert refund.event.customer_id == customer
    assert refund.event.exchange_order_external_id is None
    await wait_available(pipeline, sku, 8)
    await told(events, oid, "RefundIssued")
    await assert_stock_invariants(pipeline)
    # the refund is finance's to settle (a credit note): review's exposure is unchanged
    await wait_for_exposure(pipeline, events, customer, total)

    # one unit is left to return; the same receipt twice changes nothing
    await pipeline.publish_and_wait([ReturnReceived(
        order_id=oid, rma_id=rma, warehouse_id="WH-SH", received_at=datetime.now(UTC),
        inspections=(InspectedUnits(sku=sku, quantity=2, outcome="restock"),))])
    again = new_id("RMA")
    await publish(pipeline, return_request(oid, again, [(sku, 2, "unopened")]))
    refused = await events.wait_for_event("order.return-refused", oid, timeout=60,
                                          where=lambda e: e.event.rma_id == again)
    assert [r.code for r in refused.event.reasons] == ["more_than_shipped"]
    assert len(events.of("refund.issued", oid)) == 1
    assert await available(pipeline, sku) == 8
    await assert_stock_invariants(pipeline)


async def test_an_exchange_creates_a_linked_order_through_the_normal_flow(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=10)
    eid, payload = order_for(customer, own_sku=(sku, 2))
    [oid] = await push(pipeline, (eid, payload))
    await events.wait_for_event("shipment.dispatched", oid, timeout=60)
    rma = new_id("RMA")
    await publish(pipeline, return_request(oid, rma, [(sku, 1, "defective")],
                                           resolution="exchange"))
    await events.wait_for_event("order.return-approved", oid, timeout=60)
    await publish(pipeline, ReturnReceived(
        order_id=oid, rma_id=rma, warehouse_id="WH-SH", received_at=datetime.now(UTC),
        inspections=(InspectedUnits(sku=sku, quantity=1, outcome="scrap"),)))
    refund = await events.wait_for_event("refund.issued", oid, timeout=60)
    linked = refund.event.exchange_order_external_id
    assert linked == f"{eid}-X-{rma}"
    new_oid = order_id_for("canonical", linked)
    received = await events.wait_for_event("order.received", new_oid, timeout=60)
    assert [(line.sku, line.quantity) for line in received.event.order.lines] == [(sku, 1)]
    assert received.event.order.customer.id == customer
    await events.wait_for_event("shipment.dispatched", new_oid, timeout=60)
    # 2 shipped, 1 scrapped (never back on the shelf), 1 shipped as the replacement
    await wait_available(pipeline, sku, 7)
    await told(events, oid, "RefundIssued")
    await assert_stock_invariants(pipeline)
    await wait_for_exposure(pipeline, events, customer,
                            grand_total(events, oid) + grand_total(events, new_oid))
