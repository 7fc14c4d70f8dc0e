"""What the webhook receiver for platforms that push orders (``POST /webhooks/shopify/{shop}``,
its route in ``api.py``) checks, and the producer it publishes with.

A request is published to ``order.inbound`` (channel ``shopify``, store ``{shop}``, key
``shopify:<order id>``) only when its ``X-Shopify-Hmac-Sha256`` header is the base64 HMAC-SHA256
of the raw body under the shop's secret (compared in constant time), and answered 200 only once
the broker confirmed it. The shop is the order's store, part of its identity: a shop's signature
reaches that shop's orders only, never another shop's order of the same number.

    401  missing or wrong signature, a shop without a configured secret, or an
         ``X-Shopify-Triggered-At`` older than ``ORDERFLOW_INTAKE_WEBHOOK_MAX_AGE_S`` (a replay of
         a captured request), too far in the future, or unreadable (nothing published)
    413  body larger than ``ORDERFLOW_INTAKE_WEBHOOK_MAX_BYTES``
    400  not a JSON object, no order id, or a topic other than orders/create or orders/updated
    503  the broker did not confirm in time: the platform retries, and intake deduplicates
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import Request

from orderflow.connector import OrderPusher
from orderflow.intake.settings import IntakeSettings
from orderflow.intake.signing import hmac_sha256, same_secret
from orderflow.runtime.service import ServiceContext

log = structlog.get_logger(__name__)

SHOPIFY_ORDER_TOPICS = frozenset({"orders/create", "orders/updated"})


def shopify_signature(secret: str, body: bytes) -> str:
    """What Shopify puts in ``X-Shopify-Hmac-Sha256`` for ``body``."""
    return base64.b64encode(hmac_sha256(secret, body)).decode()


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    return same_secret(shopify_signature(secret, body), header)


class RequestRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_fresh(triggered_at: str | None, max_age_s: float, now: datetime | None = None) -> None:
    """Refuse (401) a request triggered longer ago than ``max_age_s``, or as far ahead (clock
    skew beyond that is not believable). Without the header there is nothing to check: Shopify
    always sends it, and the signature and intake's deduplication still hold."""
    if triggered_at is None:
        return
    try:
        at = datetime.fromisoformat(triggered_at.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise RequestRefused(401, "X-Shopify-Triggered-At is not an ISO 8601 time") from exc
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - at).total_seconds()
    if age > max_age_s:
        raise RequestRefused(401, f"the request is too old (triggered {age:.0f} s ago, more than "
                            f"{max_age_s:.0f} s): a replayed webhook is refused")
    if age < -max_age_s:
        raise RequestRefused(401, "X-Shopify-Triggered-At is in the future")


class WebhookPublisher:
    """One connector producer for the service, started on first use (under a lock) and stopped
    when the service stops."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._pusher: OrderPusher | None = None
        self._lock = asyncio.Lock()

    async def pusher(self) -> OrderPusher:
        async with self._lock:
            if self._pusher is None:
                pusher = OrderPusher(self.ctx.kafka, client_id="orderflow-intake-webhooks",
                                     producer_name="intake-webhooks")
                await pusher.__aenter__()
                self._pusher = pusher
            return self._pusher

    async def close(self) -> None:
        async with self._lock:
            if self._pusher is not None:
                with contextlib.suppress(Exception):
                    await self._pusher.__aexit__(None, None, None)
                self._pusher = None

    async def run_until_stopped(self) -> None:
        """The background job: close the producer when the service stops."""
        await self.ctx.stopping.wait()
        await self.close()


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError as exc:
            raise RequestRefused(400, "Content-Length is not a number") from exc
        if too_big:
            raise RequestRefused(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestRefused(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def _order_of(body: bytes, topic: str | None) -> tuple[dict[str, Any], str]:
    if topic is not None and topic not in SHOPIFY_ORDER_TOPICS:
        raise RequestRefused(400, f"topic {topic!r} is not an order topic "
                            f"({', '.join(sorted(SHOPIFY_ORDER_TOPICS))})")
    try:
        order = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRefused(400, f"the body is not JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(order, dict):
        raise RequestRefused(400, "the body must be a JSON object (a Shopify order)")
    order_id = order.get("id")
    if isinstance(order_id, bool) or not isinstance(order_id, int | str) or str(order_id).strip() == "":
        raise RequestRefused(400, "the order has no id")
    return order, str(order_id).strip()


@dataclass(frozen=True)
class Refusal:
    """A webhook request refused: the HTTP status it is answered with, and why."""

    status: int
    reason: str


async def read_shopify_order(request: Request, shop: str,
                             settings: IntakeSettings) -> tuple[dict[str, Any], str] | Refusal:
    """The order a Shopify webhook request carries and its id, once its size, the shop's
    signature, its age and its body pass; else why not (nothing is published)."""
    try:
        body = await read_body(request, settings.webhook_max_bytes)
        secret = settings.shopify_secrets.get(shop)
        if secret is None or not signature_matches(
                secret.get_secret_value(), body, request.headers.get("x-shopify-hmac-sha256")):
            raise RequestRefused(401, "the X-Shopify-Hmac-Sha256 signature is missing or wrong")
        check_fresh(request.headers.get("x-shopify-triggered-at"), settings.webhook_max_age_s)
        return _order_of(body, request.headers.get("x-shopify-topic"))
    except RequestRefused as refused:
        return Refusal(refused.status, str(refused))
