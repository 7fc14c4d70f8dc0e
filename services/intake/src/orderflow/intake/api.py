"""Intake's HTTP routes.

``POST /webhooks/shopify/{shop}`` and ``POST /webhooks/douyin/{shop}``, one webhook receiver for
the platforms that push orders (what it checks: ``webhooks.py``): a request is answered 200 only
once the broker confirmed the order on ``order.inbound``; 503 when it did not in time (the
platform retries, and intake deduplicates).

``POST /api/v1/channels/{channel}/orders``, the channel order API (what it checks before
intake's checks: ``channel_api.py``): the push is decided and stored at once, through
``handlers.submit_order`` in intake's own transaction and outbox (the consumer's code for a push
of ``order.inbound``), and answered with the outcome: 202 accepted, 422 refused (nothing
stored), 200/409 for a revision intake has. With ``?dry_run=true`` the same code decides the push
in a transaction that is always rolled back: 200 with the normalised order and intake's totals,
or 422 with the reasons; nothing is stored or published."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from orderflow.connector import StoreRefused
from orderflow.contracts.events import OrderSubmitted
from orderflow.intake import channel_api, domain, handlers
from orderflow.intake.domain import Refused
from orderflow.intake.repository import IntakeRepository
from orderflow.intake.settings import IntakeSettings
from orderflow.intake.webhooks import (
    DOUYIN,
    SHOPIFY,
    Answer,
    Platform,
    Refusal,
    RequestRefused,
    WebhookPublisher,
    read_body,
    read_webhook,
)
from orderflow.runtime.outbox import unpublished
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import authenticates_itself
from orderflow.runtime.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)


def create_router(settings: IntakeSettings, publisher: WebhookPublisher) -> APIRouter:
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    async def receive(platform: Platform, shop: str, request: Request) -> JSONResponse:
        """One webhook request of ``platform``: checked (``read_webhook``), then its order pushed
        as the platform's channel with the shop as its store, answered once the broker has it."""
        channel = platform.channel
        received = await read_webhook(request, platform, shop, settings)
        if isinstance(received, Refusal):
            log.info("webhook refused", channel=channel, shop=shop, status=received.status,
                     reason=received.reason)
            return JSONResponse({"error": received.reason}, status_code=received.status)
        if isinstance(received, Answer):
            return JSONResponse(received.body)
        key = f"{channel}:{received.external_id}"
        try:
            pusher = await publisher.pusher()
            result = await asyncio.wait_for(
                pusher.push(channel, received.order, external_id=received.external_id, store=shop),
                settings.webhook_publish_timeout_s)
        except StoreRefused as refused:  # the order names another shop than the URL's
            log.info("webhook refused", channel=channel, shop=shop, status=403, reason=str(refused))
            return JSONResponse({"error": str(refused)}, status_code=403)
        except Exception as exc:  # noqa: BLE001 - any broker trouble: ask the platform to retry
            log.warning("webhook not confirmed by the broker", channel=channel, shop=shop,
                        error=type(exc).__name__)
            return JSONResponse({"error": "the order could not be stored yet; retry"},
                                status_code=503)
        log.info("webhook accepted", channel=channel, shop=shop, key=key, platform_event=received.event,
                 message_id=received.message_id, partition=result.partition, offset=result.offset)
        return JSONResponse({"accepted": True, "key": key, "partition": result.partition,
                             "offset": result.offset})

    # a connector's route: authenticated by the shop's signature, not a service credential
    @router.post("/shopify/{shop}", summary="Receive a Shopify orders/create or orders/updated webhook",
                 dependencies=[Depends(authenticates_itself("the shop's X-Shopify-Hmac-Sha256"))])
    async def shopify_order(shop: str, request: Request) -> JSONResponse:
        return await receive(SHOPIFY, shop, request)

    @router.post("/douyin/{shop}", summary="Receive a Douyin webhook message carrying a 抖店 order",
                 dependencies=[Depends(authenticates_itself("the shop's X-Douyin-Signature"))])
    async def douyin_order(shop: str, request: Request) -> JSONResponse:
        return await receive(DOUYIN, shop, request)

    return router


_ORDER_EXAMPLE: dict[str, Any] = {
    "external_id": "DESK-2026-000123", "placed_at": "2026-11-20T10:15:00+08:00",
    "customer": {"id": "C-1001", "name": "Shanghai Lumen Trading"}, "currency": "CNY",
    "lines": [{"sku": "LMP-100", "quantity": 2, "unit_price": "199.00"}],
    "shipping_address": {"phone": "+86 21 5555 0101", "province": "上海市", "city": "上海市",
                         "line1": "1 Century Avenue"},
    "revision": 1,
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: intake's checks passed and the order is stored; it goes on "
                         "as order.received (or order.change-requested for a newer revision)",
          "content": {"application/json": {"example": {
              "order_id": "5b0c3c1e-8f0e-5a53-9d61-2f7f0d0c9a11", "revision": 1,
              "status": "accepted"}}}},
    200: {"description": "The same payload again: the order it was accepted as, nothing stored; "
                         "with ?dry_run=true, an order intake would accept: "
                         "{status: valid, dry_run, order_id, revision, order (normalised), "
                         "line_amounts, totals}",
          "content": {"application/json": {"example": {
              "order_id": "5b0c3c1e-8f0e-5a53-9d61-2f7f0d0c9a11", "revision": 1,
              "status": "accepted", "duplicate": True}}}},
    422: {"description": "Refused by intake's checks (the reason codes order.rejected carries); "
                         "nothing stored: correct the order and post it again",
          "content": {"application/json": {"example": {"status": "refused", "reasons": [
              {"code": "unknown_sku", "field": "lines.0.sku",
               "message": "SKU LMP-999 is not in the product catalogue"}]}}}},
    409: {"description": "Another payload under a revision intake has: a change needs a higher "
                         "revision",
          "content": {"application/json": {"example": {
              "order_id": "5b0c3c1e-8f0e-5a53-9d61-2f7f0d0c9a11", "revision": 1,
              "status": "conflict", "reasons": [{"code": "revision_conflict",
                                                 "field": "revision", "message": "..."}]}}}},
    401: {"description": "No credential, or not a configured key's"},
    403: {"description": "A key of another channel or store"},
    413: {"description": "Body larger than ORDERFLOW_INTAKE_WEBHOOK_MAX_BYTES"},
    429: {"description": "Intake's outbox backlog is at ORDERFLOW_INTAKE_HTTP_MAX_BACKLOG: "
                         "retry after Retry-After seconds",
          "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    503: {"description": "A credential, but no channel keys configured: the route is closed"},
}
_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "description": "A canonical order (channels canonical and "
               "desk) or an order in the channel's own format (shopify, douyin)"},
    "example": _ORDER_EXAMPLE}}}}


def create_channel_router(settings: IntakeSettings, ctx: ServiceContext) -> APIRouter:
    router = APIRouter(prefix="/api/v1/channels", tags=["channel orders"])

    @router.post(
        "/{channel}/orders", status_code=202, responses=_RESPONSES, openapi_extra=_REQUEST_BODY,
        summary="Submit an order and have intake's checks answer at once",
        description=(channel_api.__doc__ or "").strip(),
        dependencies=[Depends(authenticates_itself("the channel's key or X-OrderFlow-Signature"))])
    async def submit(channel: str, request: Request,
                     store: Annotated[str | None, Query(max_length=128)] = None,
                     dry_run: Annotated[bool, Query(description=(
                         "Check only: the same checks in a transaction that is rolled back; 200 "
                         "with the normalised order and its totals, or 422 with the reasons"))] = False,
                     ) -> JSONResponse:
        try:
            body = await read_body(request, settings.webhook_max_bytes)
        except RequestRefused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status)
        caller = channel_api.identify_caller(settings.channel_keys, request.headers, body)
        if not isinstance(caller, channel_api.Denied):
            caller = channel_api.authorise(caller, channel, store)
        if isinstance(caller, channel_api.Denied):
            log.info("channel order refused", channel=channel, status=caller.status,
                     reason=caller.reason)
            return JSONResponse({"error": caller.reason}, status_code=caller.status)
        claimed = request.headers.get(channel_api.AUTHOR_HEADER)
        author = domain.author_of(caller.channel, claimed)
        if dry_run:  # stores nothing, so the outbox's backlog does not bound it
            submitted = channel_api.read_submission(caller, body, author=claimed)
            reply = channel_api.refused_reply(submitted.reasons) \
                if isinstance(submitted, Refused) else await _check(ctx, submitted)
            log.debug("channel order checked", channel=channel, author=author,
                      status=reply.status)
            return _json(reply)
        async with ctx.engine.connect() as conn:
            backlog = await unpublished(conn, at_most=settings.http_max_backlog + 1)
        if backlog >= settings.http_max_backlog:
            return JSONResponse(
                {"error": f"intake is behind ({backlog} events wait to be published); retry"},
                status_code=429, headers={"Retry-After": str(settings.http_retry_after_s)})
        submitted = channel_api.read_submission(caller, body, author=claimed)
        if isinstance(submitted, Refused):
            return _json(channel_api.refused_reply(submitted.reasons))
        reply = await _store(ctx, submitted)
        log.info("channel order answered", channel=channel, store=caller.store, author=author,
                 status=reply.status, order_id=reply.body.get("order_id"))
        return _json(reply)

    return router


class _NotStored(Exception):
    """Rolls back the transaction of a push that is not accepted, or of a dry run."""

    def __init__(self, reply: channel_api.Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


async def _store(ctx: ServiceContext, submitted: OrderSubmitted) -> channel_api.Reply:
    """The push decided and stored through intake's own transaction and outbox, exactly as the
    consumer stores a push of order.inbound; rolled back unless accepted."""
    try:
        async with ctx.units() as uow:
            push, outcome = await handlers.submit_order(uow, submitted)
            if handlers.accepted(outcome):
                return channel_api.Reply(202, {"order_id": outcome.order_id,
                                               "revision": outcome.revision,
                                               "status": "accepted"})
            raise _NotStored(await _refusal(uow, push, outcome))
    except _NotStored as not_stored:
        return not_stored.reply


async def _check(ctx: ServiceContext, submitted: OrderSubmitted) -> channel_api.Reply:
    """The push decided exactly as ``_store`` decides it (the same transaction's code, its row
    locks and the catalogue as stored), then rolled back whatever the outcome: 200 with the
    normalised order and its totals when it would be accepted, else the answer ``_store`` gives
    (422 with the reasons, 200/409 for a revision intake has)."""
    try:
        async with ctx.units() as uow:
            push, outcome = await handlers.submit_order(uow, submitted)
            if handlers.accepted(outcome):
                assert isinstance(outcome.result, domain.Accepted)
                raise _NotStored(channel_api.checked_reply(outcome.order_id, outcome.revision,
                                                           outcome.result))
            raise _NotStored(await _refusal(uow, push, outcome))
    except _NotStored as not_stored:
        return not_stored.reply


async def _refusal(uow: UnitOfWork, push: domain.Push,
                   outcome: domain.Outcome) -> channel_api.Reply:
    if outcome.store_refused is not None:
        return channel_api.refused_reply(outcome.store_refused.refused.reasons)
    if isinstance(outcome.result, Refused):
        return channel_api.refused_reply(outcome.result.reasons, outcome.order_id,
                                         outcome.revision)
    reply = channel_api.duplicate_reply(push, outcome)
    if reply is not None:
        return reply
    assert outcome.known is not None
    reasons = await IntakeRepository(uow.session).revision_reasons(outcome.order_id,
                                                                  outcome.known.revision)
    return channel_api.refused_reply(reasons, outcome.order_id, outcome.known.revision)


def _json(reply: channel_api.Reply) -> JSONResponse:
    return JSONResponse(reply.body, status_code=reply.status)
