"""The Shopify webhook receiver, with real HTTP against the running intake process, the real
broker behind it: signatures, bad bodies, acknowledgement only once the order is stored, and a
shop's signature reaching that shop's orders only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from orderflow.contracts.order import order_id_for
from orderflow.intake.webhooks import shopify_signature
from orderflow.testing.events import EventLog
from orderflow.testing.infra import connect
from orderflow.testing.pipeline import Pipeline

from .conftest import OTHER_SHOP, TEST_SHOP, shop_secret
from .samples import sample

pytestmark = pytest.mark.service


def shopify_order() -> tuple[dict[str, Any], str]:
    order = sample("shopify_orders_create.json")
    order["id"] = int(uuid.uuid4().int % 10**13)
    return order, str(order["id"])


def url(pipeline: Pipeline, shop: str = TEST_SHOP) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find('intake').port}/webhooks/shopify/{shop}"


async def post(pipeline: Pipeline, body: bytes, *, signature: str | None = "sign",
               shop: str = TEST_SHOP, topic: str = "orders/create") -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic,
               "X-Shopify-Shop-Domain": f"{shop}.myshopify.com"}
    if signature == "sign":
        signature = shopify_signature(shop_secret(shop), body)
    if signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url(pipeline, shop), content=body, headers=headers)


async def test_a_signed_webhook_is_acknowledged_after_the_broker_stored_it(
        pipeline: Pipeline, events: EventLog) -> None:
    order, order_number = shopify_order()
    response = await post(pipeline, json.dumps(order).encode())
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["key"] == f"shopify:{order_number}"
    inbound = await events.wait_for_event("order.inbound", f"shopify:{order_number}")
    # acknowledged with the broker's own position of the message
    assert (inbound.partition, inbound.offset) == (reply["partition"], reply["offset"])
    assert inbound.event.channel == "shopify" and inbound.event.payload["id"] == order["id"]
    assert inbound.event.store == TEST_SHOP  # the shop of the URL is the order's store
    received = await events.wait_for_event("order.received",
                                           order_id_for("shopify", order_number, TEST_SHOP))
    assert received.event.totals.grand_total == received.event.order.stated_total


@pytest.mark.parametrize("signature", [None, "", "bm90IHRoZSBzaWduYXR1cmU=", "wrong-shop-secret"])
async def test_a_bad_or_missing_signature_gets_401_and_nothing_is_published(
        pipeline: Pipeline, events: EventLog, signature: str | None) -> None:
    order, order_number = shopify_order()
    body = json.dumps(order).encode()
    if signature == "wrong-shop-secret":
        signature = shopify_signature("not-the-shops-secret", body)
    refused = await post(pipeline, body, signature=signature)
    assert refused.status_code == 401
    assert "signature" in refused.json()["error"]
    # the same order, signed: same key, same partition, after the refused one; only it is there
    assert (await post(pipeline, body)).status_code == 200
    await events.wait_for_event("order.inbound", f"shopify:{order_number}")
    await events.wait_for_event("order.received", order_id_for("shopify", order_number, TEST_SHOP))
    assert len(events.of("order.inbound", f"shopify:{order_number}")) == 1


async def test_a_body_changed_after_signing_gets_401(pipeline: Pipeline) -> None:
    order, _ = shopify_order()
    body = json.dumps(order).encode()
    signature = shopify_signature(shop_secret(), body)
    tampered = body.replace(b'"1258.00"', b'"1.00"')
    assert tampered != body
    assert (await post(pipeline, tampered, signature=signature)).status_code == 401


async def test_a_shop_without_a_secret_gets_401(pipeline: Pipeline) -> None:
    order, _ = shopify_order()
    body = json.dumps(order).encode()
    response = await post(pipeline, body, shop="unknown-shop",
                          signature=shopify_signature(shop_secret(), body))
    assert response.status_code == 401


@pytest.mark.parametrize(("body", "topic", "message"), [
    (b'{"id": 1, "line_items": [', "orders/create", "not JSON"),
    (b'[{"id": 1}]', "orders/create", "JSON object"),
    (b'{"line_items": []}', "orders/create", "no id"),
    (b'{"id": 1}', "products/update", "not an order topic"),
])
async def test_malformed_bodies_get_400_with_a_clear_message(
        pipeline: Pipeline, body: bytes, topic: str, message: str) -> None:
    response = await post(pipeline, body, topic=topic)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_an_oversized_body_gets_413(pipeline: Pipeline) -> None:
    order, _ = shopify_order()
    order["note"] = "x" * 600_000
    response = await post(pipeline, json.dumps(order).encode())
    assert response.status_code == 413


async def test_another_shop_correctly_signed_cannot_change_a_shops_order(
        pipeline: Pipeline, events: EventLog) -> None:
    """Shop B's webhook secret signs shop B's orders only: its revision 2 of the order number
    shop A's order has is a separate order of shop B, and shop A's order stays as it was."""
    order, number = shopify_order()
    assert (await post(pipeline, json.dumps(order).encode())).status_code == 200
    mine = order_id_for("shopify", number, TEST_SHOP)
    received = await events.wait_for_event("order.received", mine)
    theirs = json.loads(json.dumps(order))
    theirs["updated_at"] = "2026-11-20T11:02:00+08:00"  # a later revision, quantity edited down
    theirs["line_items"][0]["current_quantity"] = 1
    theirs["current_total_price"] = "705.00"
    response = await post(pipeline, json.dumps(theirs).encode(), shop=OTHER_SHOP)
    assert response.status_code == 200, response.text
    other = order_id_for("shopify", number, OTHER_SHOP)
    assert other != mine
    # one push, one outcome: shop B's order received, as its own order with its own lines
    got = await events.wait_for_event("order.received", other)
    assert got.event.order.lines[0].quantity == 1
    assert received.event.order.lines[0].quantity == order["line_items"][0]["current_quantity"]
    assert not events.of("order.revision-received", mine)
    assert not events.of("order.change-requested", mine)
    assert len(events.of("order.received", mine)) == 1
    conn = await connect(pipeline.infra.database_url)
    try:
        rows = await conn.fetch(
            "SELECT order_id, store, revision, status FROM intake.intake_orders "
            "WHERE channel = 'shopify' AND external_id = $1 ORDER BY store", number)
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        (mine, TEST_SHOP, received.event.order.revision, "received"),
        (other, OTHER_SHOP, got.event.order.revision, "received")]
    assert got.event.order.revision > received.event.order.revision
