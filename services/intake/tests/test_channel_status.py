"""The channel order API's status route (``GET /api/v1/channels/{channel}/orders/{external_id}``)
and outcome webhook routes (``PUT``/``DELETE /api/v1/channels/{channel}/webhook``) with real HTTP
against the running pipeline: an order's status as the outcome topics made it, unknown orders,
credentials; a webhook registered, registered again, refused, removed."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest

from orderflow.contracts.events import CustomerUpdated
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.intake.channel_api import path_signature
from orderflow.testing.events import EventLog
from orderflow.testing.infra import connect
from orderflow.testing.pipeline import Pipeline

from .conftest import TEST_SHOP, channel_key
from .test_channel_api import new_id, post

pytestmark = pytest.mark.service

WAIT_S = 90.0
T = TypeVar("T")


def base(pipeline: Pipeline) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find('intake').port}/api/v1/channels"


async def get_status(pipeline: Pipeline, channel: str, external_id: str, *,
                     key: str | None = "own", query: str = "",
                     headers: dict[str, str] | None = None) -> httpx.Response:
    sent = dict(headers or {})
    if key == "own":
        key = channel_key(channel if channel != "shopify" else f"shopify/{TEST_SHOP}")
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(f"{base(pipeline)}/{channel}/orders/{external_id}{query}",
                                headers=sent)


async def until(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str,
                timeout: float = WAIT_S) -> T:
    """``probe()`` again every quarter second until ``check`` holds of its answer (``timeout``
    at most); that answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await probe()
        if check(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: "
                                 f"{answer}")
        await asyncio.sleep(0.25)


async def status_when(pipeline: Pipeline, external_id: str,
                      check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The order's status once ``check`` holds of it."""
    async def probe() -> dict[str, Any]:
        response = await get_status(pipeline, "canonical", external_id)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    return await until(probe, check, what)


def flowing_order() -> tuple[str, dict[str, Any]]:
    """An order the demo data approves, reserves and dispatches (as the lifecycle tests')."""
    eid = new_id()
    return eid, canonical_order(eid, customer_id="C0070", lines=[("TEA-002", 1)],
                                address_index=0, payment_terms="net30")


async def test_an_order_pushed_through_the_api_shows_its_dispatch_and_tracking_number(
        pipeline: Pipeline, events: EventLog) -> None:
    eid, order = flowing_order()
    assert (await post(pipeline, "canonical", order)).status_code == 202
    order_id = order_id_for("canonical", eid)
    dispatched = await events.wait_for_event("shipment.dispatched", order_id, timeout=WAIT_S)
    status = await status_when(
        pipeline, eid, lambda s: s["state"] == "dispatched" and s["shipments"],
        "the dispatch in the status")
    assert status["order_id"] == order_id and status["external_id"] == eid
    assert status["channel"] == "canonical" and status["store"] is None
    assert status["revision"] == 1 and status["reasons"] == []
    [shipment] = status["shipments"]
    assert shipment["tracking_number"] == dispatched.event.tracking_number
    assert shipment["carrier"] == dispatched.event.carrier
    types = [e["type"] for e in status["events"]]
    assert {"OrderReceived", "OrderApproved", "StockReserved", "ShipmentDispatched"} <= set(types)
    assert all(e["summary"] and e["at"] for e in status["events"])
    # signed instead of a bearer key: the HMAC of the request's path
    path = f"/api/v1/channels/canonical/orders/{eid}"
    signed = await get_status(pipeline, "canonical", eid, key=None, headers={
        "X-OrderFlow-Signature": path_signature(channel_key("canonical"), path)})
    assert signed.status_code == 200 and signed.json()["order_id"] == order_id


async def test_a_held_order_shows_the_reasons_it_waits_for(pipeline: Pipeline) -> None:
    customer_id = f"ST-{uuid.uuid4().hex[:8]}"
    await pipeline.publish_and_wait([CustomerUpdated(  # every credit order of theirs is held
        customer_id=customer_id, name="状态客户", credit_limit=Decimal("0"), currency="CNY",
        payment_terms="net30", open_receivables=Decimal("1000"))])
    eid, order = flowing_order()
    order["customer"]["id"] = customer_id
    assert (await post(pipeline, "canonical", order)).status_code == 202
    status = await status_when(pipeline, eid, lambda s: s["state"] == "held",
                               "the hold in the status")
    assert status["reasons"] and all(r["code"] and r["message"] for r in status["reasons"])
    assert status["shipments"] == []


async def test_an_order_the_key_never_sent_is_404_whoever_sent_it(pipeline: Pipeline) -> None:
    eid = new_id()
    assert (await post(pipeline, "canonical", canonical_order(eid))).status_code == 202
    unknown = await get_status(pipeline, "canonical", new_id())
    assert unknown.status_code == 404 and "sent no order" in unknown.json()["error"]
    # the same number under another channel: that channel never sent it
    other = await get_status(pipeline, "desk", eid)
    assert other.status_code == 404


async def test_no_credential_gets_401_and_another_channels_or_stores_key_403(
        pipeline: Pipeline) -> None:
    eid = new_id()
    assert (await post(pipeline, "canonical", canonical_order(eid))).status_code == 202
    assert (await get_status(pipeline, "canonical", eid, key=None)).status_code == 401
    assert (await get_status(pipeline, "canonical", eid, key="not-a-key-of-any-channel")
            ).status_code == 401
    forged = await get_status(pipeline, "canonical", eid, key=None, headers={
        "X-OrderFlow-Signature": path_signature("not-the-key", "/api/v1/channels/canonical/"
                                                               f"orders/{eid}")})
    assert forged.status_code == 401
    desk = await get_status(pipeline, "canonical", eid, key=channel_key("desk"))
    assert desk.status_code == 403 and "desk" in desk.json()["error"]
    shop = await get_status(pipeline, "shopify", eid, query="?store=another-shop")
    assert shop.status_code == 403


async def put_webhook(pipeline: Pipeline, channel: str, body: Any, *,
                      key: str | None = "own") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key if key != 'own' else channel_key(channel)}"} \
        if key is not None else {}
    async with httpx.AsyncClient(timeout=30) as client:
        if isinstance(body, bytes):
            return await client.put(f"{base(pipeline)}/{channel}/webhook", content=body,
                                    headers={**headers, "Content-Type": "application/json"})
        return await client.put(f"{base(pipeline)}/{channel}/webhook", json=body,
                                headers=headers)


async def delete_webhook(pipeline: Pipeline, channel: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.delete(f"{base(pipeline)}/{channel}/webhook",
                                   headers={"Authorization": f"Bearer {channel_key(channel)}"})


async def notify_webhook(pipeline: Pipeline, channel: str) -> tuple[Any, ...] | None:
    conn = await connect(pipeline.infra.database_url)
    try:
        row = await conn.fetchrow("SELECT url, usable, reason, set_by FROM "
                                  "notify.notify_channel_webhooks WHERE channel = $1", channel)
    finally:
        await conn.close()
    return tuple(row) if row is not None else None


async def test_a_webhook_is_registered_once_refused_when_unsafe_and_removed(
        pipeline: Pipeline, events: EventLog) -> None:
    url = f"https://hooks.example.com/outcomes/{uuid.uuid4().hex[:8]}"
    try:
        accepted = await put_webhook(pipeline, "desk", {"url": url})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"channel": "desk", "url": url, "status": "accepted"}
        announced = await events.wait_for(
            lambda: [e for e in events.of("channel.webhook-set", "desk") if e.event.url == url],
            timeout=30, what="the registration on channel.webhook-set")
        assert announced[0].event.set_by == "desk"
        again = await put_webhook(pipeline, "desk", {"url": url})
        assert again.status_code == 200 and again.json()["status"] == "unchanged"
        if "notify" in pipeline.services:
            # notify has no signing secret for desk: recorded with the reason, not used
            row = await until(lambda: notify_webhook(pipeline, "desk"),
                              lambda r: r is not None and r[0] == url, "notify's record")
            assert row is not None and row[1] is False and "no signing secret" in row[2]
    finally:
        removed = await delete_webhook(pipeline, "desk")
    assert removed.status_code == 202 and removed.json()["url"] is None
    assert (await delete_webhook(pipeline, "desk")).json()["status"] == "unchanged"
    assert len([e for e in events.of("channel.webhook-set", "desk") if e.event.url == url]) == 1


@pytest.mark.parametrize(("body", "code"), [
    ({"url": "http://hooks.example.com/outcomes"}, "insecure_url"),
    ({"url": "ftp://hooks.example.com/outcomes"}, "invalid_url"),
    ({"url": "https://user:secret@hooks.example.com/"}, "invalid_url"),
    ({"url": "https://"}, "invalid_url"),
    ({"url": "https://hooks.example.com/" + "x" * 2100}, "too_long"),
    ({"address": "https://hooks.example.com/"}, "missing_field"),
    (b"not json", "unreadable_payload"),
])
async def test_a_webhook_url_notify_may_not_post_to_is_refused_422_with_the_reason(
        pipeline: Pipeline, body: Any, code: str) -> None:
    response = await put_webhook(pipeline, "desk", body)
    assert response.status_code == 422, response.text
    assert [r["code"] for r in response.json()["reasons"]] == [code]


async def test_a_webhook_needs_the_channels_own_key_and_not_a_stores(
        pipeline: Pipeline) -> None:
    url = {"url": "https://hooks.example.com/outcomes"}
    assert (await put_webhook(pipeline, "desk", url, key=None)).status_code == 401
    assert (await put_webhook(pipeline, "desk", url, key="not-a-key-of-any-channel")
            ).status_code == 401
    assert (await put_webhook(pipeline, "desk", url, key=channel_key("canonical"))
            ).status_code == 403
    # the webhook is the channel's, for every store's orders: a store's key cannot set it
    shop = await put_webhook(pipeline, "shopify", url, key=channel_key(f"shopify/{TEST_SHOP}"))
    assert shop.status_code == 403 and TEST_SHOP in shop.json()["error"]


async def test_the_routes_are_in_the_openapi_document_with_examples(pipeline: Pipeline) -> None:
    port = pipeline.stack.find("intake").port
    async with httpx.AsyncClient(timeout=30) as client:
        document = (await client.get(f"http://127.0.0.1:{port}/openapi.json")).json()
    route = document["paths"]["/api/v1/channels/{channel}/orders/{external_id}"]["get"]
    answer = route["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["$ref"].endswith("/ChannelOrderStatus")
    assert answer["example"]["shipments"][0]["tracking_number"]
    assert {"200", "401", "403", "404"} <= set(route["responses"])
    webhook = document["paths"]["/api/v1/channels/{channel}/webhook"]
    assert {"put", "delete"} <= set(webhook)
    assert {"200", "202", "401", "403", "422", "429"} <= set(webhook["put"]["responses"])
