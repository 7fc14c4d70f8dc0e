"""What the webhook receivers for platforms that push orders (``POST /webhooks/shopify/{shop}``
and ``POST /webhooks/douyin/{shop}``, their routes in ``api.py``) check, and the producer they
publish with. Both are one receiver (``read_webhook``), told apart by their ``Platform``: its
secrets, its signature, how its body carries the order.

A request is published to ``order.inbound`` (the platform's channel, store ``{shop}``, key
``<channel>:<order id>``) only when its signature is right under the shop's secret (compared in
constant time), and answered 200 only once the broker confirmed it. The shop is the order's
store, part of its identity: a shop's signature reaches that shop's orders only, never another
shop's order of the same number.

Shopify: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw body under the shop's
secret (``ORDERFLOW_INTAKE_SHOPIFY_SECRETS``); the body is the order; ``X-Shopify-Topic`` is
orders/create or orders/updated; ``X-Shopify-Triggered-At`` older than
``ORDERFLOW_INTAKE_WEBHOOK_MAX_AGE_S`` is a replay.

Douyin: the open platform's webhook (developer.open-douyin.com, Webhooks 概述, 消息来源验证):
``X-Douyin-Signature`` is the hex SHA-1 of the app's client secret followed by the raw body
(``ORDERFLOW_INTAKE_DOUYIN_SECRETS``, per shop: the 抖店 shop id); the body is
``{"event", "client_key", "content", "log_id"}`` with ``content`` a JSON object or a JSON text,
and ``Msg-Id`` names the message (a re-sent one has the same). ``event: verify_webhook`` (the
platform's check of the URL) is answered ``{"challenge": <its content's challenge>}``; any other
event's ``content`` is the order as 抖店's order-detail API returns it (the whole response, its
``data``, or the bare ``shop_order_detail``): a 抖店 order message itself carries only the
order's ids, and the connector that subscribes to it fetches the detail (``order.orderDetail``)
and relays it here, signed the same way. That relay, the shape of ``content``, is OrderFlow's
own; 抖店's own message-push signature (``event-sign``) was not found in a source we could
check, so the Douyin open platform's documented ``X-Douyin-Signature`` is the one checked.
Douyin's webhook carries no time: a replay is caught by intake's deduplication only.

    401  missing or wrong signature, a shop without a configured secret, or (Shopify) a
         request older than ``ORDERFLOW_INTAKE_WEBHOOK_MAX_AGE_S``, too far in the future, or
         with an unreadable time (nothing published)
    413  body larger than ``ORDERFLOW_INTAKE_WEBHOOK_MAX_BYTES``
    400  not a JSON object, no order id, or (Shopify) a topic other than orders/create or
         orders/updated
    403  (Douyin) the order's ``shop_id`` is another shop's than the URL's
    503  the broker did not confirm in time: the platform retries, and intake deduplicates
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import Request
from pydantic import SecretStr
from starlette.datastructures import Headers

from orderflow.connector import OrderPusher, external_id_of
from orderflow.intake.settings import IntakeSettings
from orderflow.intake.signing import hmac_sha256, same_secret
from orderflow.runtime.service import ServiceContext

log = structlog.get_logger(__name__)

SHOPIFY_ORDER_TOPICS = frozenset({"orders/create", "orders/updated"})


def shopify_signature(secret: str, body: bytes) -> str:
    """What Shopify puts in ``X-Shopify-Hmac-Sha256`` for ``body``."""
    return base64.b64encode(hmac_sha256(secret, body)).decode()


def douyin_signature(secret: str, body: bytes) -> str:
    """What Douyin's open platform puts in ``X-Douyin-Signature`` for ``body``: the hex SHA-1 of
    the client secret followed by the body (Douyin's scheme, not an HMAC)."""
    return hashlib.sha1(secret.encode() + body).hexdigest()  # noqa: S324 - the platform's scheme


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


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestRefused(400, f"the body is not JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(value, dict):
        raise RequestRefused(400, f"the body must be a JSON object ({what})")
    return value


def _shopify_order(body: bytes, headers: Headers, settings: IntakeSettings) -> Received:
    check_fresh(headers.get("x-shopify-triggered-at"), settings.webhook_max_age_s)
    topic = headers.get("x-shopify-topic")
    if topic is not None and topic not in SHOPIFY_ORDER_TOPICS:
        raise RequestRefused(400, f"topic {topic!r} is not an order topic "
                            f"({', '.join(sorted(SHOPIFY_ORDER_TOPICS))})")
    order = _json_object(body, "a Shopify order")
    order_id = order.get("id")
    if isinstance(order_id, bool) or not isinstance(order_id, int | str) or str(order_id).strip() == "":
        raise RequestRefused(400, "the order has no id")
    return Received(order, str(order_id).strip())


DOUYIN_URL_CHECK = "verify_webhook"


def _douyin_order(body: bytes, headers: Headers, settings: IntakeSettings) -> Received | Answer:
    message = _json_object(body, "a Douyin webhook message: event, content")
    event = message.get("event")
    content = message.get("content")
    if isinstance(content, str):  # the platform sends content as a JSON text
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise RequestRefused(400, f"content is not JSON: {exc.msg}") from exc
    if not isinstance(event, str) or not isinstance(content, dict):
        raise RequestRefused(400, "a Douyin message has an event and a content object")
    if event == DOUYIN_URL_CHECK:
        challenge = content.get("challenge")
        if isinstance(challenge, bool) or not isinstance(challenge, int | str):
            raise RequestRefused(400, "verify_webhook without a challenge")
        return Answer({"challenge": challenge})
    try:
        order_id = external_id_of("douyin", content)
    except ValueError as exc:
        raise RequestRefused(400, f"the message's content has no order: {exc}") from exc
    return Received(content, order_id, message_id=headers.get("msg-id"), event=event)


@dataclass(frozen=True)
class Received:
    """The order a webhook request carries, its id, and what the platform names the message."""

    order: dict[str, Any]
    external_id: str
    message_id: str | None = None
    event: str | None = None


@dataclass(frozen=True)
class Answer:
    """A request answered 200 with ``body`` and no order (Douyin's check of the URL)."""

    body: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A webhook request refused: the HTTP status it is answered with, and why."""

    status: int
    reason: str


@dataclass(frozen=True)
class Platform:
    """A platform that pushes orders: its channel, the header its signature is in, how the
    signature is made from a shop's secret and the raw body, the shops' secrets, and how its
    body (once signed) carries the order; ``read`` raises ``RequestRefused``."""

    channel: str
    signature_header: str
    signature: Callable[[str, bytes], str]
    secrets: Callable[[IntakeSettings], Mapping[str, SecretStr]]
    read: Callable[[bytes, Headers, IntakeSettings], Received | Answer]

    def signed(self, secret: str, body: bytes, header: str | None) -> bool:
        """Whether ``header`` is ``body``'s signature under ``secret`` (constant time)."""
        return same_secret(self.signature(secret, body), header)


SHOPIFY = Platform("shopify", "X-Shopify-Hmac-Sha256", shopify_signature,
                   lambda settings: settings.shopify_secrets, _shopify_order)
DOUYIN = Platform("douyin", "X-Douyin-Signature", douyin_signature,
                  lambda settings: settings.douyin_secrets, _douyin_order)


async def read_webhook(request: Request, platform: Platform, shop: str,
                       settings: IntakeSettings) -> Received | Answer | Refusal:
    """The order a platform's webhook request carries and its id, once its size, the shop's
    signature and its body pass; else why not (nothing is published)."""
    try:
        body = await read_body(request, settings.webhook_max_bytes)
        secret = platform.secrets(settings).get(shop)
        if secret is None or not platform.signed(secret.get_secret_value(), body,
                                                 request.headers.get(platform.signature_header)):
            raise RequestRefused(401, f"the {platform.signature_header} signature is missing or "
                                      "wrong")
        return platform.read(body, request.headers, settings)
    except RequestRefused as refused:
        return Refusal(refused.status, str(refused))
