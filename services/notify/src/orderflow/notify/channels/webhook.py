"""Webhooks back to the order's sales channel: an HTTP POST of JSON, signed with HMAC-SHA256.

The receiver checks ``X-OrderFlow-Signature: sha256=<hex>``, the HMAC of
``<X-OrderFlow-Timestamp>.<body>`` with the channel's secret, and rejects old timestamps (replay).
``X-OrderFlow-Delivery`` is the same on every retry of one notification: receivers deduplicate
by it."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog

from orderflow.notify.channels import Delivered, DeliveryFailed, OutgoingNotification
from orderflow.notify.domain import Channel

log = structlog.get_logger(__name__)
# httpx logs every request's URL at INFO; webhook URLs may carry tokens
logging.getLogger("httpx").setLevel(logging.WARNING)

SIGNATURE_HEADER = "X-OrderFlow-Signature"
TIMESTAMP_HEADER = "X-OrderFlow-Timestamp"
DELIVERY_HEADER = "X-OrderFlow-Delivery"
EVENT_HEADER = "X-OrderFlow-Event"
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})

STATUS_OF_KIND = {
    "order_received": "received",
    "order_rejected": "rejected",
    "order_approved": "approved",
    "stock_backordered": "backordered",
    "shipment_dispatched": "dispatched",
    "shipment_delayed": "delayed",
    "shipment_delivered": "delivered",
    "shipment_exception": "delivery_exception",
}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *,
           now: float | None = None, tolerance_s: float = 300) -> bool:
    """What a receiver does: constant-time comparison and a freshness check."""
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def payload(n: OutgoingNotification) -> dict[str, Any]:
    order = n.context.get("order", {})
    event = n.context.get("event", {})
    status = STATUS_OF_KIND.get(n.kind) or (
        "payment_due" if event.get("notice") == "payment_due" else "under_review")
    return {
        "delivery_id": n.notification_id,
        "kind": n.kind,
        "status": status,
        "order_id": n.order_id,
        "external_id": order.get("external_id"),
        "channel": n.recipient,
        "source_event_id": n.source_event_id,
        "source_event_type": n.source_event_type,
        "language": n.language,
        "message": {"subject": n.message.subject, "text": n.message.text, "sms": n.message.sms},
        "facts": event,
    }


class WebhookDriver:
    channel: Channel = "webhook"
    records_only = False

    def __init__(self, urls: Mapping[str, str], secret_for: Callable[[str], bytes], *,
                 timeout_s: float,
                 registered: Callable[[str], Awaitable[str | None]] | None = None) -> None:
        self.urls = dict(urls)
        # the URL a channel registered through intake (``channel.webhook-set``), before ``urls``
        self.registered = registered
        self.secret_for = secret_for
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                        headers={"User-Agent": "OrderFlow-Notify/1"})

    def build(self, n: OutgoingNotification, *, timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(payload(n), ensure_ascii=False, separators=(",", ":")).encode()
        ts = timestamp or str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(self.secret_for(n.recipient), ts, body),
            DELIVERY_HEADER: n.notification_id,
            EVENT_HEADER: n.kind,
        }
        return body, headers

    async def deliver(self, n: OutgoingNotification) -> Delivered:
        url = await self.registered(n.recipient) if self.registered is not None else None
        url = url or self.urls.get(n.recipient)
        if url is None:
            raise DeliveryFailed(f"no webhook URL configured for channel {n.recipient!r}",
                                 permanent=True)
        body, headers = self.build(n)
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"webhook to {n.recipient} timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"webhook to {n.recipient} failed: {type(exc).__name__}") from exc
        code = response.status_code
        if 200 <= code < 300:
            return Delivered("sent", f"webhook to {n.recipient}: HTTP {code}")
        permanent = 400 <= code < 500 and code not in RETRYABLE_STATUS
        raise DeliveryFailed(f"webhook to {n.recipient}: HTTP {code}", permanent=permanent)

    async def close(self) -> None:
        await self.client.aclose()
