"""Logistics through the real broker and PostgreSQL, as its own process: reservations published
as inventory would, tracking updates as a carrier connector would."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orderflow.connector import OrderPusher
from orderflow.contracts.events import (
    OrderChangeRejected,
    OrderChangeRequested,
    OrderChangeReserved,
    Reason,
    ReservedLine,
    ShipmentDispatched,
    StockReserved,
    TrackingStatus,
    TrackingUpdated,
)
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.logistics.carrier_simulator import (
    CarrierBehaviour,
    SimulatedShipment,
    simulate,
    simulate_journey,
)
from orderflow.logistics.domain.carriers import DEFAULT_CATALOGUE, is_valid_tracking_number
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.service_auth import operator

pytestmark = pytest.mark.service

TZ = ZoneInfo("Asia/Shanghai")


def new_id() -> str:
    return f"LG-{uuid.uuid4().hex[:10]}"


def reservation(eid: str, lines: Sequence[tuple[str, str, int]], **order: Any) -> StockReserved:
    """A ``StockReserved`` for a new order: (warehouse, sku, quantity) per reserved line."""
    skus = list(dict.fromkeys(sku for _, sku, _ in lines))
    canonical = CanonicalOrder.model_validate(
        canonical_order(eid, lines=[(sku, sum(q for _, s, q in lines if s == sku)) for sku in skus],
                        **order))
    return StockReserved(order_id=order_id_for("canonical", eid), order=canonical,
                         reservations=tuple(ReservedLine(sku=sku, warehouse_id=wh, quantity=qty)
                                            for wh, sku, qty in lines),
                         filled_in_full_first_attempt=True)


def api(pipeline: Pipeline) -> httpx.AsyncClient:
    """Logistics' API; its writes signed as the console signs them, for an admin."""
    port = pipeline.stack.find("logistics").port
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                             auth=operator(pipeline, "logistics", "ops.admin", "admin"))


async def metric(pipeline: Pipeline, sample: str, **labels: str) -> float:
    """A sample of logistics' /metrics (0 before its first count)."""
    port = pipeline.stack.find("logistics").port
    async with httpx.AsyncClient(timeout=30) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and labels.items() <= s.labels.items())


async def dispatched(events: EventLog, order_id: str, count: int) -> list[ShipmentDispatched]:
    seen = await events.wait_for(lambda: len(events.of("shipment.dispatched", order_id)) >= count
                                 and events.of("shipment.dispatched", order_id),
                                 timeout=60, what=f"{count} shipments of {order_id}")
    return [e.event for e in seen]


def tracking(shipment: ShipmentDispatched, status: TrackingStatus, at: datetime,
             detail: str = "") -> TrackingUpdated:
    return TrackingUpdated(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                           tracking_number=shipment.tracking_number, carrier=shipment.carrier,
                           status=status, occurred_at=at, location="测试网点", detail=detail)


def on_day(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=TZ)


async def test_a_reserved_order_is_dispatched_with_a_carrier_a_tracking_number_and_a_slip(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    reserved = reservation(eid, [("WH-SH", "TEA-001", 2)], address_index=2)  # Shanghai to Beijing
    address = reserved.order.shipping_address.model_copy(update={"name": "<b>王</b> & 李"})
    reserved = reserved.model_copy(update={
        "order": reserved.order.model_copy(update={"shipping_address": address})})
    await pipeline.publish_and_wait([reserved])

    (shipment,) = await dispatched(events, reserved.order_id, 1)
    assert shipment.warehouse_id == "WH-SH"
    assert shipment.shipment_count == 1
    assert shipment.lines == (ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=2),)
    assert shipment.weight_kg == Decimal("1.490")  # 2 x 0.645 kg + 0.2 kg packaging
    carrier = DEFAULT_CATALOGUE.carrier(shipment.carrier)
    assert carrier is not None
    assert is_valid_tracking_number(carrier.tracking, shipment.tracking_number)
    assert shipment.rule == "cheapest"
    assert (shipment.carrier, shipment.service) == ("ZTO", "standard")  # 10 + 1 x 3 national
    dispatch_day = shipment.dispatched_at.astimezone(TZ).date()
    # ZTO: 4 days national, collected the same day before 17:00, else the next day
    assert shipment.promised_date - dispatch_day in (timedelta(days=4), timedelta(days=5))
    assert not shipment.misses_requested_date

    async with api(pipeline) as client:
        listed = (await client.get("/api/shipments", params={"order_id": reserved.order_id})).json()
        slip = await client.get(f"/api/shipments/{shipment.shipment_id}/packing-slip")
        missing = await client.get("/api/shipments/no-such-shipment/packing-slip")
    assert [s["tracking_number"] for s in listed] == [shipment.tracking_number]
    assert listed[0]["status"] == "dispatched"
    assert listed[0]["zone"] == "national"
    assert listed[0]["cost"] == "13.00"
    assert "ship_to" not in listed[0]  # no personal data in the JSON
    assert slip.status_code == 200
    assert slip.headers["content-type"].startswith("text/html")
    for text in (shipment.tracking_number, "TEA-001", "茶叶礼盒 01", "上海青浦仓", "建国路 88 号",
                 "&lt;b&gt;王&lt;/b&gt; &amp; 李", reserved.order.external_id):
        assert text in slip.text
    assert "<b>王</b>" not in slip.text
    assert missing.status_code == 404


async def test_an_order_reserved_in_several_warehouses_ships_in_several_shipments(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    reserved = reservation(eid, [("WH-SH", "TEA-001", 1), ("WH-BJ", "TEA-001", 2),
                                 ("WH-GZ", "RICE-002", 1), ("WH-SH", "TEA-002", 3)],
                           priority="rush", address_index=1)  # to Guangzhou
    await pipeline.publish_and_wait([reserved])

    shipments = await dispatched(events, reserved.order_id, 3)
    assert len(shipments) == 3
    by_warehouse = {s.warehouse_id: s for s in shipments}
    assert set(by_warehouse) == {"WH-SH", "WH-BJ", "WH-GZ"}
    assert {(line.sku, line.quantity) for line in by_warehouse["WH-SH"].lines} == {
        ("TEA-001", 1), ("TEA-002", 3)}
    assert len({s.tracking_number for s in shipments}) == 3
    assert len({s.shipment_id for s in shipments}) == 3
    assert all(s.shipment_count == 3 for s in shipments)
    assert all(s.rule == "rush_fastest" for s in shipments)
    # rush: Guangzhou's own warehouse delivers next day; Shanghai and Beijing by SF express
    assert by_warehouse["WH-BJ"].service == "express"
    assert by_warehouse["WH-GZ"].promised_date <= by_warehouse["WH-BJ"].promised_date


async def test_tracking_moves_shipments_to_delivery_and_the_order_is_delivered_with_the_last(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    reserved = reservation(eid, [("WH-HZ", "TEA-003", 1), ("WH-WH", "TEA-004", 1)],
                           address_index=5)  # to Hangzhou
    on_time_before = await metric(pipeline, "orderflow_shipments_delivered_total", on_time="true")
    aged_before = await metric(pipeline, "orderflow_event_age_seconds_count",
                               topic="stock.reserved")
    await pipeline.publish_and_wait([reserved])
    first, second = sorted(await dispatched(events, reserved.order_id, 2),
                           key=lambda s: s.warehouse_id)
    # the reservation's hop counted once its batch committed
    assert await metric(pipeline, "orderflow_event_age_seconds_count",
                        topic="stock.reserved") == aged_before + 1
    start = max(first.dispatched_at, second.dispatched_at)
    hours = [start + timedelta(hours=h) for h in range(1, 8)]

    await pipeline.publish_and_wait([
        tracking(first, "picked_up", hours[0]),
        tracking(first, "in_transit", hours[1]),
        tracking(first, "in_transit", hours[1]),  # the carrier sends it again
        tracking(first, "out_for_delivery", hours[2]),
        tracking(first, "delivered", hours[3]),
        tracking(second, "in_transit", hours[1]),
        tracking(second, "picked_up", hours[0]),  # arrives late: must not move it back
    ])
    delivered = await events.wait_for_event("shipment.delivered", reserved.order_id)
    assert delivered.event.shipment_id == first.shipment_id
    assert delivered.event.on_time
    assert not delivered.event.order_delivered

    await pipeline.publish_and_wait([tracking(second, "delivered", hours[4]),
                                     tracking(first, "delivered", hours[5])])  # a second scan
    last = await events.wait_for_event("shipment.delivered", reserved.order_id,
                                       where=lambda e: e.event.shipment_id == second.shipment_id)
    assert last.event.order_delivered
    assert last.event.on_time
    # the on-time rate counts each shipment once (not the second scan of the first)
    assert await metric(pipeline, "orderflow_shipments_delivered_total",
                        on_time="true") == on_time_before + 2

    async with api(pipeline) as client:
        listed = (await client.get("/api/shipments", params={"order_id": reserved.order_id})).json()
    views = {s["shipment_id"]: s for s in listed}
    assert {s["status"] for s in listed} == {"delivered"}
    assert all(s["on_time"] for s in listed)
    first_history = [(h["status"], h["outcome"]) for h in views[first.shipment_id]["tracking"]]
    assert first_history == [("picked_up", "advanced"), ("in_transit", "advanced"),
                             ("out_for_delivery", "advanced"), ("delivered", "delivered"),
                             ("delivered", "after_delivery")]
    second_history = [(h["status"], h["outcome"]) for h in views[second.shipment_id]["tracking"]]
    assert ("picked_up", "stale") in second_history
    assert len(events.of("shipment.delivered", reserved.order_id)) == 2


async def test_a_carrier_exception_is_published_and_a_later_scan_resumes_the_shipment(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    reserved = reservation(eid, [("WH-CD", "TEA-005", 1)], address_index=3)
    await pipeline.publish_and_wait([reserved])
    (shipment,) = await dispatched(events, reserved.order_id, 1)
    at = shipment.dispatched_at + timedelta(hours=2)
    await pipeline.publish_and_wait([
        tracking(shipment, "picked_up", at),
        tracking(shipment, "exception", at + timedelta(hours=3), "damaged: 外包装破损"),
    ])
    exception = await events.wait_for_event("shipment.exception", reserved.order_id)
    assert exception.event.code == "damaged"
    assert exception.event.tracking_number == shipment.tracking_number
    assert exception.event.carrier == shipment.carrier
    async with api(pipeline) as client:
        view = (await client.get(f"/api/shipments/{shipment.shipment_id}")).json()
    assert (view["status"], view["exception_code"]) == ("exception", "damaged")

    await pipeline.publish_and_wait([
        tracking(shipment, "in_transit", at + timedelta(hours=5), "重新包装后发出"),
        tracking(shipment, "delivered", at + timedelta(hours=20)),
    ])
    delivered = await events.wait_for_event("shipment.delivered", reserved.order_id)
    assert delivered.event.order_delivered
    async with api(pipeline) as client:
        view = (await client.get(f"/api/shipments/{shipment.shipment_id}")).json()
    assert [h["outcome"] for h in view["tracking"]] == ["advanced", "exception", "resumed",
                                                       "delivered"]


async def test_a_shipment_no_carrier_can_take_is_an_exception_not_a_dispatch(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    reserved = reservation(eid, [("WH-BJ", "RICE-002", 200)])  # about 1.4 tonnes
    await pipeline.publish_and_wait([reserved])
    exception = await events.wait_for_event("shipment.exception", reserved.order_id)
    assert exception.event.code == "no_carrier"
    assert "kg" in exception.event.detail
    assert events.of("shipment.dispatched", reserved.order_id) == []
    async with api(pipeline) as client:
        (view,) = (await client.get("/api/shipments", params={"order_id": reserved.order_id})).json()
    assert view["status"] == "no_carrier"
    assert view["tracking_number"] is None


async def test_the_delay_watcher_flags_each_shipment_once_per_reason(
        pipeline: Pipeline, events: EventLog) -> None:
    late, on_time = reservation(new_id(), [("WH-SH", "TEA-006", 1)]), \
        reservation(new_id(), [("WH-SH", "TEA-007", 1)])
    await pipeline.publish_and_wait([late, on_time])
    (shipment,) = await dispatched(events, late.order_id, 1)
    (other,) = await dispatched(events, on_time.order_id, 1)
    promised = shipment.promised_date
    await pipeline.publish_and_wait([
        tracking(shipment, "picked_up", shipment.dispatched_at + timedelta(hours=2)),
        tracking(shipment, "in_transit", shipment.dispatched_at + timedelta(hours=4)),
        tracking(other, "delivered", shipment.dispatched_at + timedelta(hours=20))])
    await events.wait_for_event("shipment.delivered", on_time.order_id)
    orders = [late.order_id, on_time.order_id]

    async with api(pipeline) as client:
        async def watch(as_of: datetime) -> list[dict[str, Any]]:
            response = await client.post("/api/delay-watch/run",
                                         json={"as_of": as_of.isoformat(), "order_ids": orders})
            assert response.status_code == 200, response.text
            flagged: list[dict[str, Any]] = response.json()["flagged"]
            return flagged

        assert await watch(on_day(promised, 11)) == []  # still time to go out for delivery
        (flag,) = await watch(on_day(promised, 15))
        assert (flag["shipment_id"], flag["reason"]) == (
            shipment.shipment_id, "not_out_for_delivery_on_promised_day")
        assert await watch(on_day(promised, 16)) == []  # once per shipment and reason
        (missed,) = await watch(on_day(promised + timedelta(days=1), 9))
        assert missed["reason"] == "promised_date_missed"
        assert await watch(on_day(promised + timedelta(days=3), 9)) == []

    delayed = await events.wait_for(
        lambda: len(events.of("shipment.delayed", late.order_id)) >= 2
        and events.of("shipment.delayed", late.order_id), what="two delays")
    by_reason = {e.event.reason: e.event for e in delayed}
    assert set(by_reason) == {"not_out_for_delivery_on_promised_day", "promised_date_missed"}
    assert by_reason["not_out_for_delivery_on_promised_day"].expected_date == \
        promised + timedelta(days=1)
    assert by_reason["promised_date_missed"].promised_date == promised
    assert events.of("shipment.delayed", on_time.order_id) == []


async def test_a_carriers_scan_on_the_promised_afternoon_flags_the_delay_at_once(
        pipeline: Pipeline, events: EventLog) -> None:
    reserved = reservation(new_id(), [("WH-GZ", "TEA-008", 1)], address_index=4)
    await pipeline.publish_and_wait([reserved])
    (shipment,) = await dispatched(events, reserved.order_id, 1)
    promised = shipment.promised_date
    await pipeline.publish_and_wait([
        tracking(shipment, "in_transit", shipment.dispatched_at + timedelta(hours=3)),
        tracking(shipment, "in_transit", on_day(promised, 14), "中转延误"),
    ])
    delayed: SeenEvent = await events.wait_for_event("shipment.delayed", reserved.order_id)
    assert delayed.event.reason == "not_out_for_delivery_on_promised_day"
    assert delayed.event.shipment_id == shipment.shipment_id
    # the delay names its parcel itself: a reader needs no dispatch event from another topic first
    assert (delayed.event.carrier, delayed.event.tracking_number) == (
        shipment.carrier, shipment.tracking_number)
    await pipeline.publish_and_wait([
        tracking(shipment, "delivered", on_day(promised + timedelta(days=1), 10))])
    delivered = await events.wait_for_event("shipment.delivered", reserved.order_id)
    assert not delivered.event.on_time


async def test_tracking_for_an_unknown_shipment_is_dead_lettered_with_the_reason(
        pipeline: Pipeline, events: EventLog) -> None:
    order_id = order_id_for("canonical", new_id())
    stray = TrackingUpdated(order_id=order_id, shipment_id=str(uuid.uuid4()),
                            tracking_number="SF000000000001", carrier="SF", status="in_transit",
                            occurred_at=datetime.now(TZ))
    await pipeline.publish_and_wait([stray])
    dead = await events.wait_for_event("shipment.tracking-updated.dlq", order_id)
    assert dead.headers["dlq_reason"] == "handler_error"
    assert dead.headers["dlq_service"] == "logistics"
    assert re.search(r"UnknownShipment: no shipment", dead.headers["dlq_error"])


@pytest.mark.parametrize(
    ("behaviour", "fate"),
    [
        (CarrierBehaviour(late=0, exception=0, exception_resolved=0), "on_time"),
        (CarrierBehaviour(late=1, exception=0, exception_resolved=0), "late"),
        (CarrierBehaviour(late=0, exception=1, exception_resolved=0), "exception"),
        (CarrierBehaviour(late=0, exception=0, exception_resolved=1), "exception_resolved"),
    ],
)
async def test_the_carrier_simulators_journeys_end_as_simulated(
        pipeline: Pipeline, events: EventLog, behaviour: CarrierBehaviour, fate: str) -> None:
    reserved = reservation(new_id(), [("WH-SH", "TEA-009", 1), ("WH-BJ", "TEA-010", 1)],
                           address_index=6)
    await pipeline.publish_and_wait([reserved])
    shipments = await dispatched(events, reserved.order_id, 2)
    journeys = [simulate_journey(SimulatedShipment.from_dispatched(s), seed=1,
                                 behaviour=behaviour) for s in shipments]
    assert {j.fate for j in journeys} == {fate}
    async with OrderPusher(pipeline.kafka, producer_name="carrier-simulator") as pusher:
        await pusher.publish(simulate([j.shipment for j in journeys], seed=1, behaviour=behaviour))

    order_id = reserved.order_id
    if fate == "exception":
        found = await events.wait_for(lambda: len(events.of("shipment.exception", order_id)) >= 2
                                      and events.of("shipment.exception", order_id))
        assert {e.event.code for e in found} <= {"damaged", "lost", "refused", "address_unknown"}
        return
    delivered = await events.wait_for(lambda: len(events.of("shipment.delivered", order_id)) >= 2
                                      and events.of("shipment.delivered", order_id))
    assert [e.event.order_delivered for e in delivered] == [False, True]
    assert {e.event.on_time for e in delivered} == {fate == "on_time"}
    if fate == "late":  # the carriers' scans on the promised afternoon told us first
        def warned() -> set[str]:
            return {e.event.shipment_id for e in events.of("shipment.delayed", order_id)
                    if e.event.reason == "not_out_for_delivery_on_promised_day"}
        await events.wait_for(lambda: len(warned()) == 2, what="both shipments flagged")
        # later scans (out for delivery the day after) also say the promised date was missed
        reasons = [(e.event.shipment_id, e.event.reason)
                   for e in events.of("shipment.delayed", order_id)]
        assert len(reasons) == len(set(reasons))  # once per shipment and reason
    if fate == "exception_resolved":
        resolved = events.of("shipment.exception", order_id)
        assert {e.event.code for e in resolved} <= {"recipient_unavailable", "weather"}
        assert len(resolved) == 2


# --- changes: logistics admits them first and settles them last ---------------------------------


def change_request(reserved: StockReserved, **update: Any) -> OrderChangeRequested:
    order = reserved.order.model_copy(update={"revision": reserved.order.revision + 1, **update})
    zero = Decimal("0.00")
    return OrderChangeRequested(
        order_id=reserved.order_id, change_id=f"CHG-{uuid.uuid4().hex[:8]}", channel="canonical",
        external_id=order.external_id, previous_revision=reserved.order.revision, order=order,
        totals=OrderTotals(subtotal=zero, discount=zero, tax=zero, shipping=zero,
                           grand_total=zero), requested_by="tests")


def settled(change: OrderChangeRequested, stock_status: str,
            reservations: Sequence[ReservedLine] = ()) -> OrderChangeReserved:
    """The change as inventory passes it on, after review."""
    return OrderChangeReserved(**change.model_dump(exclude={"reason"}), review_status="approved",
                               stock_status=stock_status,  # type: ignore[arg-type]
                               reservations=tuple(reservations))


async def test_a_reservation_during_a_change_is_parked_and_ships_with_the_new_address(
        saga_step: tuple[Pipeline, EventLog]) -> None:
    pipeline, events = saga_step
    reserved = reservation(new_id(), [("WH-SH", "TEA-001", 2)], address_index=0)
    beijing = CanonicalOrder.model_validate(canonical_order("x", address_index=2)).shipping_address
    change = change_request(reserved, shipping_address=beijing)
    await pipeline.publish_and_wait([change])
    admitted = await events.wait_for_event("order.change-admitted", reserved.order_id)
    assert admitted.event.change_id == change.change_id
    # the reservation arrives while the change is pending: nothing is dispatched yet
    await pipeline.publish_and_wait([reserved])
    assert not events.of("shipment.dispatched", reserved.order_id)
    # a second change while the first is pending is refused
    other = change_request(reserved, requested_delivery_date=date(2026, 12, 31))
    await pipeline.publish_and_wait([other])
    busy = await events.wait_for_event("order.change-rejected", reserved.order_id)
    assert [r.code for r in busy.event.reasons] == ["change_in_progress"]
    # settled with every unit reserved: order.changed, then the dispatch to the new address
    await pipeline.publish_and_wait([settled(change, "reserved", reserved.reservations)])
    done = await events.wait_for_event("order.changed", reserved.order_id)
    assert done.event.revision == 2
    (shipment,) = await dispatched(events, reserved.order_id, 1)
    async with api(pipeline) as client:
        row = (await client.get(f"/api/shipments/{shipment.shipment_id}")).json()
    assert row["destination_province"] == "北京"
    # after dispatch a change is refused
    late = change_request(reserved.model_copy(update={"order": change.order}))
    await pipeline.publish_and_wait([late])
    refused = await events.wait_for_event(
        "order.change-rejected", reserved.order_id,
        where=lambda e: e.event.change_id == late.change_id)
    assert [r.code for r in refused.event.reasons] == ["already_dispatched"]
    assert len(events.of("shipment.dispatched", reserved.order_id)) == 1


async def test_a_change_refused_downstream_releases_the_parked_reservation(
        saga_step: tuple[Pipeline, EventLog]) -> None:
    pipeline, events = saga_step
    reserved = reservation(new_id(), [("WH-SH", "TEA-001", 1)])
    change = change_request(reserved, requested_delivery_date=date(2026, 12, 31))
    await pipeline.publish_and_wait([change])
    await events.wait_for_event("order.change-admitted", reserved.order_id)
    await pipeline.publish_and_wait([reserved])
    assert not events.of("shipment.dispatched", reserved.order_id)
    await pipeline.publish_and_wait([OrderChangeRejected(
        order_id=reserved.order_id, change_id=change.change_id, revision=2, stage="review",
        reasons=(Reason(code="credit_limit", message="over the limit"),), requested_by="tests")])
    (shipment,) = await dispatched(events, reserved.order_id, 1)
    assert shipment.requested_date == reserved.order.requested_delivery_date  # as it was
    assert not events.of("order.changed", reserved.order_id)
