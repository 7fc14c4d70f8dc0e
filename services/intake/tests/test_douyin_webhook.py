"""The Douyin webhook receiver (``POST /webhooks/douyin/{shop}``), with real HTTP against the
running intake process and the real broker behind it, carrying the simulator's 抖店 orders: a
signed message accepted once the broker has it and its order received; a bad or missing
signature refused with nothing published; the same message again stored once; a malformed order
refused by intake with its recorded reason; the platform's URL check answered."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from orderflow.contracts.order import order_id_for
from orderflow.devstack.simulator import Mix, SimulatedOrder, generate_orders
from orderflow.intake.webhooks import douyin_signature
from orderflow.runtime.lag import wait_consumed
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

from .conftest import DOUYIN_SHOP, OTHER_DOUYIN_SHOP, douyin_secret

pytestmark = pytest.mark.service

NO_MIX = Mix(bad=0, duplicate=0, rush=0, large=0, held=0)


def simulated(*, bad: bool = False) -> SimulatedOrder:
    """One 抖店 order from the simulator (a fresh order number each call); ``bad``: one it
    breaks, with the code intake is meant to reject it with."""
    mix = Mix(bad=1, duplicate=0, rush=0, large=0, held=0) if bad else NO_MIX
    order = generate_orders(1, seed=uuid.uuid4().int % 10**6, mix=mix, channels=("douyin",),
                            prefix=f"DYW{uuid.uuid4().hex[:10]}")[0]
    assert order.store == DOUYIN_SHOP and order.expected.outcome == ("rejected" if bad else "fulfilled")
    return order


def message(content: Any, event: str = "doudian_order_detail") -> bytes:
    """A Douyin webhook message: the content as a JSON text, as the platform sends it."""
    return json.dumps({"event": event, "client_key": "orderflow-test-app",
                       "content": json.dumps(content, ensure_ascii=False),
                       "log_id": uuid.uuid4().hex}, ensure_ascii=False).encode()


async def post(pipeline: Pipeline, body: bytes, *, signature: str | None = "sign",
               shop: str = DOUYIN_SHOP) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Msg-Id": uuid.uuid4().hex}
    if signature == "sign":
        signature = douyin_signature(douyin_secret(shop), body)
    if signature is not None:
        headers["X-Douyin-Signature"] = signature
    port = pipeline.stack.find("intake").port
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"http://127.0.0.1:{port}/webhooks/douyin/{shop}", content=body,
                                 headers=headers)


async def test_a_signed_message_is_accepted_and_its_order_received(
        pipeline: Pipeline, events: EventLog) -> None:
    order = simulated()
    response = await post(pipeline, message(order.payload))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["accepted"] is True and reply["key"] == f"douyin:{order.external_id}"
    inbound = await events.wait_for_event("order.inbound", reply["key"])
    assert (inbound.partition, inbound.offset) == (reply["partition"], reply["offset"])
    assert inbound.event.channel == "douyin" and inbound.event.store == DOUYIN_SHOP
    assert inbound.event.payload == order.payload  # the order, out of the message's content
    received = await events.wait_for_event("order.received", order.order_id, timeout=60)
    assert received.event.order.external_id == order.external_id
    assert received.event.totals.grand_total == received.event.order.stated_total


@pytest.mark.parametrize("signature", [None, "", "0" * 40, "another-apps-secret"])
async def test_a_bad_or_missing_signature_gets_401_and_nothing_is_published(
        pipeline: Pipeline, events: EventLog, signature: str | None) -> None:
    order = simulated()
    body = message(order.payload)
    if signature == "another-apps-secret":
        signature = douyin_signature("not-the-shops-secret", body)
    refused = await post(pipeline, body, signature=signature)
    assert refused.status_code == 401, refused.text
    assert "X-Douyin-Signature" in refused.json()["error"]
    # the same message, signed: same key, same partition, after the refused one; only it is there
    assert (await post(pipeline, body)).status_code == 200
    await events.wait_for_event("order.received", order.order_id, timeout=60)
    assert len(events.of("order.inbound", f"douyin:{order.external_id}")) == 1


async def test_a_message_sent_again_is_one_order(pipeline: Pipeline, events: EventLog) -> None:
    order = simulated()
    body = message(order.payload)
    assert (await post(pipeline, body)).status_code == 200
    again = await post(pipeline, body)  # Douyin re-sends a message it doubts was received
    assert again.status_code == 200, again.text
    # intake has consumed the second message (its consumer group committed past it)
    await wait_consumed(pipeline.kafka, "orderflow.intake",
                        {TopicPartition("order.inbound", again.json()["partition"]):
                         again.json()["offset"] + 1}, timeout=60)
    await events.wait_for_event("order.received", order.order_id, timeout=60)
    await events.wait_for(lambda: len(events.of("order.inbound", f"douyin:{order.external_id}")) == 2,
                          what="both messages on order.inbound")
    # a marker's order received after it: what intake published for the repeat is out by then
    marker = simulated()
    assert (await post(pipeline, message(marker.payload))).status_code == 200
    await events.wait_for_event("order.received", marker.order_id, timeout=60)
    assert len(events.of("order.received", order.order_id)) == 1
    assert not events.of("order.rejected", order.order_id)


async def test_a_malformed_order_is_refused_by_intake_with_its_reason(
        pipeline: Pipeline, events: EventLog) -> None:
    broken = simulated(bad=True)
    response = await post(pipeline, message(broken.payload))
    assert response.status_code == 200, response.text  # the receiver takes it; intake decides
    rejected = await events.wait_for_event("order.rejected", broken.order_id, timeout=60)
    assert broken.expected.code in [r.code for r in rejected.event.reasons]
    # an order the adapter cannot read: its reason names the field
    unpaid = {**simulated().payload, "order_status": 1}
    assert (await post(pipeline, message(unpaid))).status_code == 200
    refused = await events.wait_for_event(
        "order.rejected", order_id_for("douyin", str(unpaid["order_id"]), DOUYIN_SHOP), timeout=60)
    assert [(r.code, r.field) for r in refused.event.reasons] == [("order_not_paid", "order_status")]


@pytest.mark.parametrize(("body", "error"), [
    (b'{"event": "x", "content": ', "not JSON"),
    (b'[{"event": "x"}]', "JSON object"),
    (b'{"event": "doudian_order_detail", "content": "{not json"}', "content is not JSON"),
    (b'{"event": "doudian_order_detail", "content": {"sku_order_list": []}}', "no order"),
])
async def test_a_message_without_an_order_gets_400(pipeline: Pipeline, body: bytes,
                                                   error: str) -> None:
    response = await post(pipeline, body)
    assert response.status_code == 400, response.text
    assert error in response.json()["error"]


async def test_the_platforms_url_check_is_answered_with_its_challenge(pipeline: Pipeline) -> None:
    body = json.dumps({"event": "verify_webhook", "client_key": "",
                       "content": {"challenge": 12345}}).encode()
    response = await post(pipeline, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"challenge": 12345}
    assert (await post(pipeline, body, signature=None)).status_code == 401


async def test_an_oversized_body_gets_413(pipeline: Pipeline) -> None:
    order = simulated()
    response = await post(pipeline, message({**order.payload, "buyer_words": "x" * 600_000}))
    assert response.status_code == 413


async def test_a_shops_signature_cannot_push_another_shops_order(
        pipeline: Pipeline, events: EventLog) -> None:
    """The other shop's secret, correctly signed, with an order whose shop_id is the simulator's
    shop: refused (403), nothing published."""
    order = simulated()
    response = await post(pipeline, message(order.payload), shop=OTHER_DOUYIN_SHOP)
    assert response.status_code == 403, response.text
    assert "store" in response.json()["error"]
    assert (await post(pipeline, message(order.payload))).status_code == 200
    await events.wait_for_event("order.received", order.order_id, timeout=60)
    assert len(events.of("order.inbound", f"douyin:{order.external_id}")) == 1
