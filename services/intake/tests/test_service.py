"""Intake through the real broker and PostgreSQL, as its own process."""

from __future__ import annotations

import uuid

import pytest

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


def new_id() -> str:
    return f"SO-{uuid.uuid4().hex[:10]}"


async def test_an_order_is_received_once_even_when_pushed_twice(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(eid))
        await pusher.push("canonical", canonical_order(eid))
    order_id = order_id_for("canonical", eid)
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.totals.grand_total > 0
    # a later marker order from the same partition proves the duplicate was handled, not pending
    marker = order_id_for("canonical", eid + "-marker")
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(eid + "-marker"))
    await events.wait_for_event("order.received", marker)
    await events.wait_for(lambda: True, timeout=1)
    assert len(events.of("order.received", order_id)) == 1


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda o: o["lines"][0].update(quantity=-2), "quantity_not_positive"),
        (lambda o: o["lines"][0].update(sku="NO-SUCH-SKU"), "unknown_sku"),
        (lambda o: o.pop("customer"), "missing_field"),
        (lambda o: o["lines"][0].update(quantity="three"), "wrong_type"),
        (lambda o: o.update(stated_total="1.00"), "total_mismatch"),
    ],
)
async def test_bad_orders_are_rejected_with_a_reason(
        pipeline: Pipeline, events: EventLog, mutate: object, code: str) -> None:
    eid = new_id()
    order = canonical_order(eid)
    mutate(order)  # type: ignore[operator]
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", order, external_id=eid)
    rejected = await events.wait_for_event("order.rejected", order_id_for("canonical", eid))
    assert code in {r.code for r in rejected.event.reasons}
    assert rejected.event.stage == "intake"


async def test_malformed_message_goes_to_the_dlq_and_the_next_goes_through(
        pipeline: Pipeline, events: EventLog) -> None:
    key = f"canonical:{new_id()}".encode()
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        # same key, so the same partition: the bad one is first in line
        await pusher._producer.send_and_wait("order.inbound", b"{not json", key=key)
        await pusher._producer.send_and_wait("order.inbound", b"\x00" * 2_000_000, key=key)
        await pusher.push("canonical", canonical_order(eid))
    await events.wait_for_event("order.received", order_id_for("canonical", eid))
    dead = await events.wait_for(lambda: len(events.of("order.inbound.dlq", key.decode())) >= 2
                                 and events.of("order.inbound.dlq", key.decode()), timeout=30)
    reasons = sorted(d.headers["dlq_reason"] for d in dead)
    assert reasons == ["malformed_json", "payload_too_large"]
    assert all(d.headers["dlq_service"] == "intake" for d in dead)
