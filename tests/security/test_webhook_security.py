"""The Shopify webhook receiver's defences: the HMAC is compared in constant time and a bad
header never raises; a replayed request (same body and signature) creates nothing new; a request
signed long ago is refused (Shopify sends ``X-Shopify-Triggered-At``)."""

from __future__ import annotations

import base64
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.simulator import CHANNEL_FORMATS
from orderflow.intake import webhooks
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

from ..conftest import shopify_shop


def shopify_order() -> tuple[dict[str, Any], str]:
    eid = f"WHSEC-{uuid.uuid4().hex[:8]}"
    order = CHANNEL_FORMATS["shopify"](canonical_order(eid, customer_id="C0025",
                                                      lines=[("TEA-001", 1)]))
    order["id"] = int(uuid.uuid4().int % 10**13)
    return order, str(order["id"])


async def post(pipeline: Pipeline, body: bytes, *, triggered_at: datetime | None = None,
               webhook_id: str | None = None, signature: str | None = None) -> httpx.Response:
    shop, secret = shopify_shop()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
               "X-Shopify-Shop-Domain": f"{shop}.myshopify.com",
               "X-Shopify-Hmac-Sha256": signature or webhooks.shopify_signature(secret, body),
               "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
               "X-Shopify-Triggered-At": (triggered_at or datetime.now(UTC)).isoformat()}
    url = f"http://127.0.0.1:{pipeline.stack.find('intake').port}/webhooks/shopify/{shop}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, content=body, headers=headers)


@pytest.mark.unit
def test_the_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)  # webhooks calls hmac.compare_digest
    body = b'{"id": 1}'
    good = webhooks.shopify_signature("secret", body)
    assert webhooks.SHOPIFY.signed("secret", body, good)
    assert not webhooks.SHOPIFY.signed("secret", body, good[:-2] + "AA")
    douyin = webhooks.douyin_signature("secret", body)
    assert webhooks.DOUYIN.signed("secret", body, douyin)
    assert not webhooks.DOUYIN.signed("secret", body, douyin[:-2] + "00")
    assert len(compared) == 4, "every comparison must go through hmac.compare_digest"


@pytest.mark.unit
@pytest.mark.parametrize("header", [None, "", " ", "é" * 50, "x" * 100_000, "\x00",
                                    base64.b64encode(b"\x00" * 32).decode(), "not base64 !!"])
@pytest.mark.parametrize("platform", [webhooks.SHOPIFY, webhooks.DOUYIN], ids=["shopify", "douyin"])
def test_a_malformed_signature_header_is_refused_without_raising(
        header: str | None, platform: webhooks.Platform) -> None:
    assert platform.signed("secret", b"{}", header) is False


@pytest.mark.service
async def test_a_replayed_webhook_creates_no_second_order(pipeline: Pipeline, events: EventLog) -> None:
    if "intake" not in pipeline.services:
        pytest.skip("intake is not among ORDERFLOW_TEST_SERVICES")
    order, number = shopify_order()
    body = json.dumps(order).encode()
    webhook_id = str(uuid.uuid4())
    first = await post(pipeline, body, webhook_id=webhook_id)
    again = await post(pipeline, body, webhook_id=webhook_id)  # captured and sent again
    assert first.status_code == 200, first.text
    assert again.status_code in {200, 401, 409}, again.text
    shop, _ = shopify_shop()  # the shop of the webhook URL: the order's store
    oid = order_id_for("shopify", number, shop)
    await events.wait_for_event("order.received", oid, timeout=60)
    # a marker pushed after both proves intake has consumed the replay too
    marker, marker_number = shopify_order()
    assert (await post(pipeline, json.dumps(marker).encode())).status_code == 200
    await events.wait_for_event("order.received", order_id_for("shopify", marker_number, shop),
                                timeout=60)
    assert len(events.of("order.received", oid)) == 1
    assert not events.of("order.rejected", oid)


@pytest.mark.service
async def test_a_webhook_signed_long_ago_is_refused(pipeline: Pipeline) -> None:
    if "intake" not in pipeline.services:
        pytest.skip("intake is not among ORDERFLOW_TEST_SERVICES")
    order, _ = shopify_order()
    stale = await post(pipeline, json.dumps(order).encode(),
                       triggered_at=datetime.now(UTC) - timedelta(hours=1))
    assert stale.status_code == 401, stale.text
    assert "old" in stale.json()["error"] or "stale" in stale.json()["error"]


@pytest.mark.unit
@pytest.mark.parametrize(("header", "refused"), [
    (None, False),                                   # nothing to check: signature and dedup hold
    ("2026-11-26T12:00:00.877041743Z", False),       # Shopify's own format, nanoseconds and Z
    ("2026-11-26T11:50:00+00:00", False),            # ten minutes old: within 15 minutes
    ("2026-11-26T11:44:59Z", True),                  # older than the maximum age
    ("2026-11-26T12:15:01Z", True),                  # as far in the future
    ("yesterday", True),
])
def test_the_triggered_at_header_is_checked_against_the_maximum_age(
        header: str | None, refused: bool) -> None:
    now = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
    if not refused:
        webhooks.check_fresh(header, 900, now=now)
        return
    with pytest.raises(webhooks.RequestRefused) as refusal:
        webhooks.check_fresh(header, 900, now=now)
    assert refusal.value.status == 401
