"""Intake through the real broker and PostgreSQL, as its own process."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka.partitioner import murmur2

from orderflow.connector import OrderPusher
from orderflow.connector.spreadsheet import read_order_sheet
from orderflow.contracts import topics
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

from .samples import SAMPLES, expected, sample

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
        # over the consumers' limit (1,000,000 bytes), under the topic's (1 MiB)
        await pusher._producer.send_and_wait("order.inbound", b"\x00" * 1_040_000, key=key)
        await pusher.push("canonical", canonical_order(eid))
    await events.wait_for_event("order.received", order_id_for("canonical", eid))
    # every group that consumes order.inbound dead-letters its own copy (the console too): intake's
    def intakes() -> list[Any]:
        return [d for d in events.of("order.inbound.dlq", key.decode())
                if d.headers["dlq_service"] == "intake"]
    dead = await events.wait_for(lambda: len(intakes()) >= 2 and intakes(), timeout=30)
    assert sorted(d.headers["dlq_reason"] for d in dead) == ["malformed_json", "payload_too_large"]


# --- channels, revisions -----------------------------------------------------------------------

def platform_id() -> int:
    return int(uuid.uuid4().int % 10**13)


async def test_an_unknown_channel_is_rejected_with_its_reason(pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("amazon", canonical_order(eid), external_id=eid)
    rejected = await events.wait_for_event("order.rejected", order_id_for("amazon", eid))
    assert [r.code for r in rejected.event.reasons] == ["unknown_channel"]


async def test_each_platforms_sample_is_received_as_its_canonical_order(
        pipeline: Pipeline, events: EventLog) -> None:
    shopify = sample("shopify_orders_create.json")
    shopify["id"] = platform_id()
    douyin = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    douyin["order_id"] = str(6_900_000_000_000_000_000 + platform_id())
    sheet = read_order_sheet(SAMPLES / "order_sheet.csv")[0]
    sheet["order_number"] = new_id()
    for row in sheet["rows"]:
        row["order_number"] = sheet["order_number"]
    # the Shopify shop named by the connector, the 抖店 shop by its payload's shop_id
    pushed = [("shopify", str(shopify["id"]), shopify, "shop-a", "shopify_orders_create"),
              ("douyin", douyin["order_id"], douyin, None, "douyin_order_detail"),
              ("csv", sheet["order_number"], sheet, None, "order_sheet_csv")]
    stores = {"shopify": "shop-a", "douyin": str(douyin["shop_id"]), "csv": None}
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many([(channel, eid, payload, store)
                                for channel, eid, payload, store, _ in pushed])
    for channel, eid, _, _, name in pushed:
        received = await events.wait_for_event("order.received",
                                               order_id_for(channel, eid, stores[channel]))
        want = expected(name)
        want = want[0] if isinstance(want, list) else want
        got = received.event.order.model_dump(mode="json")
        assert got == {**want["order"], "external_id": eid}
        assert received.event.totals.model_dump(mode="json") == want["totals"]


async def test_a_newer_canonical_revision_is_a_change_never_a_second_order(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    order_id = order_id_for("canonical", eid)
    first = canonical_order(eid)
    changed = canonical_order(eid, lines=[("TEA-001", 5)])
    changed["revision"] = 2
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", first)
        await pusher.push("canonical", changed)
        await pusher.push("canonical", first)  # the older revision again: a duplicate
    revised = await events.wait_for_event("order.revision-received", order_id)
    assert (revised.event.previous_revision, revised.event.revision) == (1, 2)
    assert revised.event.order.lines[0].quantity == 5
    await _processed_past(pipeline, events, "canonical", eid)
    assert len(events.of("order.received", order_id)) == 1
    assert len(events.of("order.revision-received", order_id)) == 1
    # the revision is a change request for the other services, checked and with its totals
    change = await events.wait_for_event("order.change-requested", order_id)
    assert change.event.order == revised.event.order
    assert change.event.previous_revision == 1
    assert change.event.totals.grand_total > 0
    assert change.event.requested_by == "connector:canonical"
    assert len(events.of("order.change-requested", order_id)) == 1


async def test_a_shopify_order_updated_later_is_a_revision(pipeline: Pipeline, events: EventLog) -> None:
    order = sample("shopify_orders_create.json")
    order["id"] = platform_id()
    eid = str(order["id"])
    updated = json.loads(json.dumps(order))
    updated["updated_at"] = "2026-11-20T11:02:00+08:00"
    updated["line_items"][0]["current_quantity"] = 1  # the buyer edited the order down
    updated["current_total_price"] = "705.00"
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("shopify", order, external_id=eid, store="shop-a")
        await pusher.push("shopify", updated, external_id=eid, store="shop-a")
    order_id = order_id_for("shopify", eid, "shop-a")
    revised = await events.wait_for_event("order.revision-received", order_id)
    assert revised.event.revision - revised.event.previous_revision == 46 * 60 + 16
    assert revised.event.order.lines[0].quantity == 1
    assert len(events.of("order.received", order_id)) == 1


async def test_a_douyin_order_pushed_before_payment_is_received_once_paid(
        pipeline: Pipeline, events: EventLog) -> None:
    order = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    order["order_id"] = eid = str(6_900_000_000_000_000_000 + platform_id())
    unpaid = {**order, "order_status": 1, "update_time": order["create_time"]}
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("douyin", unpaid, external_id=eid)
        await pusher.push("douyin", order, external_id=eid)
        later = {**order, "update_time": order["update_time"] + 600, "buyer_words": "改送公司"}
        await pusher.push("douyin", later, external_id=eid)
    order_id = order_id_for("douyin", eid, str(order["shop_id"]))  # the store: its shop_id
    rejected = await events.wait_for_event("order.rejected", order_id)
    assert [r.code for r in rejected.event.reasons] == ["order_not_paid"]
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.order.revision == order["update_time"]
    revised = await events.wait_for_event("order.revision-received", order_id)
    assert revised.event.order.notes == "改送公司"
    assert len(events.of("order.received", order_id)) == 1


async def _processed_past(pipeline: Pipeline, events: EventLog, channel: str, eid: str) -> None:
    """A marker order whose key falls in the same partition as ``channel:eid``, pushed after it,
    has come out of intake: everything pushed before it for that order was handled."""
    partitions = topics.ORDER_INBOUND.partitions
    target = (murmur2(f"{channel}:{eid}".encode()) & 0x7FFFFFFF) % partitions
    marker = next(m for m in (f"{eid}-after-{i}" for i in range(1000))
                  if (murmur2(f"canonical:{m}".encode()) & 0x7FFFFFFF) % partitions == target)
    async with OrderPusher(pipeline.kafka) as pusher:
        result = await pusher.push("canonical", canonical_order(marker), external_id=marker)
    assert result.partition == target
    await events.wait_for_event("order.received", order_id_for("canonical", marker))


async def test_a_newer_revision_that_fails_the_checks_leaves_the_order_as_it_was(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    order_id = order_id_for("canonical", eid)
    broken = canonical_order(eid, lines=[("NO-SUCH-SKU", 1)])
    broken["revision"] = 2
    fixed = canonical_order(eid, lines=[("TEA-001", 3)])
    fixed["revision"] = 3
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(eid))
        await pusher.push("canonical", broken)
        await pusher.push("canonical", fixed)
    revised = await events.wait_for_event("order.revision-received", order_id)
    # revision 2 was refused: the change is from revision 1, the order as received
    assert (revised.event.previous_revision, revised.event.revision) == (1, 3)
    assert len(events.of("order.revision-received", order_id)) == 1
    assert not events.of("order.rejected", order_id)
