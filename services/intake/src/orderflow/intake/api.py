"""Intake's HTTP routes: the webhook receiver for platforms that push orders,
``POST /webhooks/shopify/{shop}`` (what it checks: ``webhooks.py``). A request is answered 200
only once the broker confirmed the order on ``order.inbound``; 503 when it did not in time (the
platform retries, and intake deduplicates)."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from orderflow.intake.settings import IntakeSettings
from orderflow.intake.webhooks import Refusal, WebhookPublisher, read_shopify_order
from orderflow.runtime.service_auth import authenticates_itself

log = structlog.get_logger(__name__)


def create_router(settings: IntakeSettings, publisher: WebhookPublisher) -> APIRouter:
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    # a connector's route: authenticated by the shop's HMAC signature, not a service credential
    @router.post("/shopify/{shop}", summary="Receive a Shopify orders/create or orders/updated webhook",
                 dependencies=[Depends(authenticates_itself("the shop's X-Shopify-Hmac-Sha256"))])
    async def shopify_order(shop: str, request: Request) -> JSONResponse:
        received = await read_shopify_order(request, shop, settings)
        if isinstance(received, Refusal):
            log.info("webhook refused", shop=shop, status=received.status, reason=received.reason)
            return JSONResponse({"error": received.reason}, status_code=received.status)
        order, external_id = received
        try:
            pusher = await publisher.pusher()
            result = await asyncio.wait_for(
                pusher.push("shopify", order, external_id=external_id, store=shop),
                settings.webhook_publish_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any broker trouble: ask the platform to retry
            log.warning("webhook not confirmed by the broker", shop=shop, error=type(exc).__name__)
            return JSONResponse({"error": "the order could not be stored yet; retry"},
                                status_code=503)
        log.info("webhook accepted", shop=shop, key=f"shopify:{external_id}",
                 partition=result.partition, offset=result.offset)
        return JSONResponse({"accepted": True, "key": f"shopify:{external_id}",
                             "partition": result.partition, "offset": result.offset})

    return router
