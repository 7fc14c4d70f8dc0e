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
or 422 with the reasons; nothing is stored or published.

``GET /api/v1/channels/{channel}/orders/{external_id}`` answers an order's status from intake's
projection of the outcome topics (``handlers.on_outcomes``, ``domain.apply_outcome``), 404 for an
order the key's channel and store never sent; ``PUT``/``DELETE /api/v1/channels/{channel}/webhook``
record the channel's outcome webhook and announce it on ``channel.webhook-set`` for notify, in one
transaction (what the URL may be: ``channel_api.read_webhook_url``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from orderflow.connector import StoreRefused
from orderflow.contracts.events import OrderSubmitted, Reason
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


_STATUS_DESCRIPTION = """The status of an order this key's channel (and store) sent, from
what intake consumed of the outcome topics: its state (received, rejected, held, approved,
backordered, reserved, dispatched, delivered, cancelled), the reasons behind it, its shipments
with carrier and tracking number, and its last events. The credential is the POST's: the key
(Bearer or X-OrderFlow-Key), or ``X-OrderFlow-Signature: sha256=<hex>``, the HMAC-SHA256 of the
request's path under the key.

    404  an order this key's channel and store never sent (another store's or channel's
         order of that number included: its existence is not told)
    401  no credential, or not a configured key's
    403  a key of another channel, or of another store than ``?store=`` names"""
_STATUS_EXAMPLE: dict[str, Any] = {
    "order_id": "5b0c3c1e-8f0e-5a53-9d61-2f7f0d0c9a11", "channel": "desk", "store": None,
    "external_id": "DESK-2026-000123", "revision": 1, "state": "dispatched", "reasons": [],
    "shipments": [{"shipment_id": "SHP-5b0c3c1e-1", "carrier": "SF", "service": "standard",
                   "tracking_number": "SF1234567890", "status": "in_transit",
                   "dispatched_at": "2026-11-20T03:02:11Z", "promised_date": "2026-11-22",
                   "delivered_at": None, "detail": "上海市"}],
    "events": [{"event_id": "0d6f...", "type": "OrderApproved", "at": "2026-11-20T02:15:04Z",
                "summary": "approved (auto)"},
               {"event_id": "9a41...", "type": "ShipmentDispatched",
                "at": "2026-11-20T03:02:11Z",
                "summary": "shipment SHP-5b0c3c1e-1 dispatched: SF standard, tracking "
                           "SF1234567890"}],
}
_STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": channel_api.ChannelOrderStatus, "description": "The order's status",
          "content": {"application/json": {"example": _STATUS_EXAMPLE}}},
    404: {"description": "An order this key's channel and store never sent"},
    401: {"description": "No credential, or not a configured key's"},
    403: {"description": "A key of another channel or store"},
    503: {"description": "A credential, but no channel keys configured: the route is closed"},
}
_WEBHOOK_DESCRIPTION = """The channel's outcome webhook: notify posts the channel's outcome
notifications (received, rejected, approved, backordered, dispatched, delayed, delivered,
exceptions) to this URL instead of polling the status route, signed as every notify webhook is
(``X-OrderFlow-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<X-OrderFlow-Timestamp>.<body>``
under the secret the operator configured for the channel in notify,
``ORDERFLOW_NOTIFY_WEBHOOK_SECRETS``; a channel without one is recorded and not used). The
webhook is the channel's for all its stores: a key of one store gets 403. Credentials as the
POST's (a DELETE signs its path).

    202  registered (PUT) or removed (DELETE): notify is told through channel.webhook-set
    200  the URL the channel has already (PUT), or none to remove (DELETE): nothing changes
    422  not {"url": ...}, or a URL notify may not post to: https only (plain http to the hosts
         of ORDERFLOW_INTAKE_OUTCOME_WEBHOOK_HTTP_HOSTS), no credentials in it
    429  intake's outbox backlog is at its bound: retry after Retry-After seconds"""
_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "Registered or removed; notify is told",
          "content": {"application/json": {"example": {
              "channel": "desk", "url": "https://desk.example.com/orderflow/outcomes",
              "status": "accepted"}}}},
    200: {"description": "Unchanged: the channel has this URL already (or none to remove)",
          "content": {"application/json": {"example": {
              "channel": "desk", "url": "https://desk.example.com/orderflow/outcomes",
              "status": "unchanged"}}}},
    422: {"description": "Not {\"url\": ...}, or a URL notify may not post to",
          "content": {"application/json": {"example": {"status": "refused", "reasons": [
              {"code": "insecure_url", "field": "url",
               "message": "plain http is allowed only to the development hosts ..."}]}}}},
    401: {"description": "No credential, or not a configured key's"},
    403: {"description": "A key of another channel, or of one store"},
    413: {"description": "Body larger than 8 KiB"},
    429: _RESPONSES[429],
    503: _RESPONSES[503],
}
_WEBHOOK_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["url"],
               "properties": {"url": {"type": "string", "format": "uri", "maxLength": 2048}}},
    "example": {"url": "https://desk.example.com/orderflow/outcomes"}}}}}
MAX_WEBHOOK_BODY = 8 * 1024


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
        throttled = await _throttled(settings, ctx)
        if throttled is not None:
            return throttled
        submitted = channel_api.read_submission(caller, body, author=claimed)
        if isinstance(submitted, Refused):
            return _json(channel_api.refused_reply(submitted.reasons))
        reply = await _store(ctx, submitted)
        log.info("channel order answered", channel=channel, store=caller.store, author=author,
                 status=reply.status, order_id=reply.body.get("order_id"))
        return _json(reply)

    @router.get(
        "/{channel}/orders/{external_id}", responses=_STATUS_RESPONSES,
        summary="An order's state, reasons, shipments with tracking numbers and last events",
        description=_STATUS_DESCRIPTION,
        dependencies=[Depends(authenticates_itself("the channel's key or X-OrderFlow-Signature"))])
    async def order_status(channel: str, external_id: str, request: Request,
                           store: Annotated[str | None, Query(max_length=128)] = None,
                           ) -> JSONResponse:
        caller = _caller(settings, request, channel, store, request.url.path.encode())
        if isinstance(caller, JSONResponse):
            return caller
        async with ctx.units() as uow:
            repo = IntakeRepository(uow.session)
            found = await repo.find_channel_order(caller.channel, caller.store, external_id)
            if found is None:
                return _json(channel_api.unknown_order_reply(caller, external_id))
            reasons: tuple[Reason, ...] = ()
            if found.status is None and found.recorded == "rejected":
                reasons = await repo.revision_reasons(found.order_id, found.revision)
        return _json(channel_api.status_reply(caller, external_id, found.order_id,
                                              found.revision, found.recorded, found.status,
                                              reasons))

    @router.put(
        "/{channel}/webhook", responses=_WEBHOOK_RESPONSES, openapi_extra=_WEBHOOK_BODY,
        summary="Register the channel's outcome webhook (notify posts its outcomes there)",
        description=_WEBHOOK_DESCRIPTION,
        dependencies=[Depends(authenticates_itself("the channel's key or X-OrderFlow-Signature"))])
    async def set_webhook(channel: str, request: Request) -> JSONResponse:
        try:
            body = await read_body(request, MAX_WEBHOOK_BODY)
        except RequestRefused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status)
        caller = _caller(settings, request, channel, None, body, webhook=True)
        if isinstance(caller, JSONResponse):
            return caller
        url = channel_api.read_webhook_url(body, settings.outcome_webhook_http_hosts)
        if isinstance(url, Refused):
            return _json(channel_api.refused_reply(url.reasons))
        return await _register(settings, ctx, caller, url.url)

    @router.delete(
        "/{channel}/webhook", responses=_WEBHOOK_RESPONSES,
        summary="Remove the channel's outcome webhook",
        description=_WEBHOOK_DESCRIPTION,
        dependencies=[Depends(authenticates_itself("the channel's key or X-OrderFlow-Signature"))])
    async def remove_webhook(channel: str, request: Request) -> JSONResponse:
        caller = _caller(settings, request, channel, None, request.url.path.encode(),
                         webhook=True)
        if isinstance(caller, JSONResponse):
            return caller
        return await _register(settings, ctx, caller, None)

    return router


def _caller(settings: IntakeSettings, request: Request, channel: str, store: str | None,
            signed: bytes, *, webhook: bool = False) -> channel_api.Caller | JSONResponse:
    """The caller a request's credential names (``signed``: what its signature is of: the body,
    or the path of a request without one), if it may reach ``channel`` (and ``store``; the
    channel as a whole for a ``webhook``); else the answer refusing it."""
    caller = channel_api.identify_caller(settings.channel_keys, request.headers, signed)
    if not isinstance(caller, channel_api.Denied):
        caller = channel_api.authorise(caller, channel, store)
    if webhook and not isinstance(caller, channel_api.Denied):
        caller = channel_api.webhook_owner(caller) or caller
    if isinstance(caller, channel_api.Denied):
        log.info("channel request refused", channel=channel, method=request.method,
                 status=caller.status, reason=caller.reason)
        return JSONResponse({"error": caller.reason}, status_code=caller.status)
    return caller


async def _throttled(settings: IntakeSettings, ctx: ServiceContext) -> JSONResponse | None:
    """429 while intake's outbox holds ``http_max_backlog`` unpublished events or more."""
    async with ctx.engine.connect() as conn:
        backlog = await unpublished(conn, at_most=settings.http_max_backlog + 1)
    if backlog >= settings.http_max_backlog:
        return JSONResponse(
            {"error": f"intake is behind ({backlog} events wait to be published); retry"},
            status_code=429, headers={"Retry-After": str(settings.http_retry_after_s)})
    return None


async def _register(settings: IntakeSettings, ctx: ServiceContext, caller: channel_api.Caller,
                    url: str | None) -> JSONResponse:
    """The channel's outcome webhook set to ``url`` (None: removed) and announced to notify
    (``channel.webhook-set``) in one transaction; the URL it has already: 200, nothing
    announced."""
    throttled = await _throttled(settings, ctx)
    if throttled is not None:
        return throttled
    async with ctx.units() as uow:
        repo = IntakeRepository(uow.session)
        if await repo.lock_webhook(caller.channel) == url:
            return JSONResponse({"channel": caller.channel, "url": url, "status": "unchanged"})
        await repo.set_webhook(caller.channel, url, caller.key_name)
        uow.emit(channel_api.webhook_event(caller, url))
    log.info("outcome webhook set" if url else "outcome webhook removed", channel=caller.channel,
             key=caller.key_name)
    return JSONResponse({"channel": caller.channel, "url": url, "status": "accepted"},
                        status_code=202)


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
