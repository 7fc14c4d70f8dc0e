"""What the channel order API (``POST /api/v1/channels/{channel}/orders``, its route in
``api.py``) checks before intake's own checks run: the caller's credential, the body's size and
that it is JSON; and the submission it makes of the request.

A request carries one credential of ``ORDERFLOW_INTAKE_CHANNEL_KEYS``: the key itself, as
``Authorization: Bearer <key>`` or ``X-OrderFlow-Key: <key>``, or the hex HMAC-SHA256 of the raw
body under the key, as ``X-OrderFlow-Signature: sha256=<hex>`` (the key never travels). A key
names one channel and, for the channels whose order numbers are only unique within a store,
one store: it reaches that channel's orders of that store only.

    401  no credential, or one that is no configured key's
    503  a credential, but no channel keys are configured: the route is closed, never open
    403  a key of another channel, or of another store than ``?store=`` names
    413  body larger than ``ORDERFLOW_INTAKE_WEBHOOK_MAX_BYTES``
    422  not JSON, or no order id where the channel's format keeps it

The status route and the outcome webhook routes (below ``status_reply``) take the same
credentials; a request without a body (a GET, a DELETE) signs its path instead.

A request of channel ``desk`` names its operator in ``X-OrderFlow-Author``: the order's events
carry it as their ``author``. Another channel's key cannot claim an author: its claim is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, Field, SecretStr, ValidationError

from orderflow.connector import external_id_of
from orderflow.contracts.events import ChannelWebhookSet, OrderSubmitted, Reason
from orderflow.intake import domain
from orderflow.intake.settings import channel_of_key
from orderflow.intake.signing import hmac_sha256, same_secret

SIGNATURE_PREFIX = "sha256="
AUTHOR_HEADER = "X-OrderFlow-Author"


def body_signature(key: str, body: bytes) -> str:
    """What a caller puts in ``X-OrderFlow-Signature`` for ``body`` under its key."""
    return SIGNATURE_PREFIX + hmac_sha256(key, body).hex()


@dataclass(frozen=True)
class Caller:
    """Whom a request's credential names: the channel and store of its key."""

    key_name: str
    channel: str
    store: str | None


@dataclass(frozen=True)
class Denied:
    """A request refused before intake's checks: its HTTP status and why."""

    status: int
    reason: str


def _presented_key(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-orderflow-key") or None


def identify_caller(keys: Mapping[str, SecretStr], headers: Mapping[str, str],
                    body: bytes) -> Caller | Denied:
    """The key a request's credential is (every configured key compared, in constant time, so
    the time taken tells nothing of which matched); 401 without a credential or with one no key
    matches; 503 for a credential when no keys are configured (it cannot be checked: the route is
    closed, as a service without its service key refuses what it cannot check)."""
    presented = _presented_key(headers)
    signature = headers.get("x-orderflow-signature")
    if presented is None and not signature:
        return Denied(401, "no credential: send the channel's key as Authorization: Bearer "
                           "<key> or X-OrderFlow-Key, or sign the body (X-OrderFlow-Signature)")
    if not keys:
        return Denied(503, "the channel order API takes no orders: no channel keys are "
                           "configured (ORDERFLOW_INTAKE_CHANNEL_KEYS)")
    found: Caller | None = None
    for name, secret in keys.items():
        key = secret.get_secret_value()
        matched = same_secret(key, presented) if presented is not None else \
            same_secret(body_signature(key, body), signature)
        if matched and found is None:
            found = Caller(name, *channel_of_key(name))
    if found is None:
        return Denied(401, "the key or the X-OrderFlow-Signature is not one of a channel's")
    return found


def authorise(caller: Caller, channel: str, store: str | None) -> Caller | Denied:
    """The caller, if its key is this channel's and (``store`` named) this store's."""
    if caller.channel != channel:
        return Denied(403, f"the key is channel {caller.channel}'s, not {channel}'s")
    if store is not None and store != caller.store:
        return Denied(403, f"the key is store {caller.store or '(none)'}'s, not {store}'s")
    return caller


def read_submission(caller: Caller, body: bytes, now: datetime | None = None,
                    author: str | None = None) -> OrderSubmitted | domain.Refused:
    """The push a request's body makes, as a connector would have pushed it (its channel's
    format, its key's store), with the author the request names (``X-OrderFlow-Author``) when
    the caller's channel is one whose pushes name it (``domain.author_of``: channel ``desk``;
    any other caller's claim is dropped); else the reasons it cannot be one."""
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return domain.Refused((Reason(code="unreadable_payload", field=None,
                                      message=f"the body is not JSON: {exc.msg} at position "
                                              f"{exc.pos}"),))
    if _holds_nul(payload):
        return domain.Refused((Reason(code="nul_character", field=None,
                                      message="the order holds a NUL character (\\u0000), "
                                              "which no text of an order may"),))
    try:
        external_id = external_id_of(caller.channel, payload)
    except ValueError as exc:
        return domain.Refused((Reason(code="missing_field", field="external_id",
                                      message=str(exc)),))
    try:
        return OrderSubmitted(channel=caller.channel, external_id=external_id,
                              store=caller.store, received_at=now or datetime.now(UTC),
                              payload=payload, author=domain.author_of(caller.channel, author))
    except ValidationError as exc:
        return domain.Refused(domain.reasons_from_validation(exc))


def _holds_nul(value: Any) -> bool:
    """Whether a NUL character is in any text of a JSON value (PostgreSQL stores none)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@dataclass(frozen=True)
class Reply:
    """What a submission is answered: an HTTP status and its JSON body."""

    status: int
    body: dict[str, Any]


def refused_reply(reasons: tuple[Reason, ...], order_id: str | None = None,
                  revision: int | None = None) -> Reply:
    body: dict[str, Any] = {"status": "refused",
                            "reasons": [r.model_dump(mode="json") for r in reasons]}
    if order_id is not None:
        body |= {"order_id": order_id, "revision": revision}
    return Reply(422, body)


def checked_reply(order_id: str, revision: int, accepted: domain.Accepted) -> Reply:
    """A dry run's answer for a push intake would accept: the normalised order, each line's
    amount and the totals, as intake computed them."""
    return Reply(200, {"status": "valid", "dry_run": True, "order_id": order_id,
                       "revision": revision,
                       "order": accepted.order.model_dump(mode="json"),
                       "line_amounts": [format(a, "f")
                                        for a in domain.line_amounts(accepted.order)],
                       "totals": accepted.totals.model_dump(mode="json")})


def duplicate_reply(push: domain.Push, outcome: domain.Outcome) -> Reply | None:
    """A push intake already has: the same payload as its order's current revision is answered
    as it was (accepted: 200 with the same order id; refused: None, the caller answers the
    recorded reasons); another payload under a revision it has is a conflict (409): a change
    needs a higher revision."""
    known = outcome.known
    assert known is not None
    if push.fingerprint == known.payload_sha256:
        if known.status == "rejected":
            return None
        return Reply(200, {"order_id": outcome.order_id, "revision": known.revision,
                           "status": "accepted", "duplicate": True})
    return Reply(409, {"order_id": outcome.order_id, "revision": known.revision,
                       "status": "conflict", "reasons": [Reason(
                           code="revision_conflict", field="revision",
                           message=(f"the order has revision {known.revision} with another "
                                    f"payload; revision {push.revision} cannot change it: "
                                    "push a higher revision")).model_dump(mode="json")]})


# --- an order's status, and the channel's outcome webhook ---------------------------------------


def path_signature(key: str, path: str) -> str:
    """What a caller puts in ``X-OrderFlow-Signature`` for a request without a body (the status
    route, a webhook's removal): the HMAC of the request's path under its key."""
    return body_signature(key, path.encode())


class ChannelOrderStatus(BaseModel):
    """``GET /api/v1/channels/{channel}/orders/{external_id}``'s answer."""

    order_id: str
    channel: str
    store: str | None
    external_id: str
    revision: int = Field(description="The order's current revision at intake")
    state: str = Field(description="received, rejected, held, approved, backordered, reserved, "
                                   "dispatched, delivered or cancelled")
    reasons: tuple[Reason, ...] = Field(description="Why the order is in its state (rejected, "
                                                    "held, backordered, cancelled)")
    shipments: tuple[domain.StatusShipment, ...]
    events: tuple[domain.StatusEvent, ...] = Field(description=(
        f"The order's last {domain.MAX_STATUS_EVENTS} events, oldest first"))


def status_reply(caller: Caller, external_id: str, order_id: str, revision: int,
                 recorded: str, status: domain.OrderStatus | None,
                 recorded_reasons: tuple[Reason, ...] = ()) -> Reply:
    """An order's status; before its first outcome event is consumed, what intake itself
    recorded of it (received, or rejected with the reasons of its revision)."""
    if status is None:
        status = domain.OrderStatus(state="rejected" if recorded == "rejected" else "received",
                                    reasons=recorded_reasons)
    answer = ChannelOrderStatus(order_id=order_id, channel=caller.channel, store=caller.store,
                                external_id=external_id, revision=revision, state=status.state,
                                reasons=status.reasons, shipments=status.shipments,
                                events=status.events)
    return Reply(200, answer.model_dump(mode="json"))


def unknown_order_reply(caller: Caller, external_id: str) -> Reply:
    """An order this key's channel and store never sent: 404, whichever channel or store may
    have an order of that number (the answer tells nothing of theirs)."""
    where = caller.channel + (f" store {caller.store}" if caller.store else "")
    return Reply(404, {"error": f"{where} sent no order {external_id}"})


@dataclass(frozen=True)
class WebhookUrl:
    """A URL an outcome webhook may be registered with."""

    url: str


def read_webhook_url(body: bytes, http_hosts: frozenset[str]) -> WebhookUrl | domain.Refused:
    """The URL a registration's body (``{"url": "https://..."}``) names, if notify may post to
    it: https, a host, no credentials in it, at most ``MAX_WEBHOOK_URL`` characters; plain http
    only to a host of ``http_hosts`` (``ORDERFLOW_INTAKE_OUTCOME_WEBHOOK_HTTP_HOSTS``, for
    development)."""
    def refused(code: str, message: str) -> domain.Refused:
        return domain.Refused((Reason(code=code, field="url", message=message),))

    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return domain.Refused((Reason(code="unreadable_payload", field=None,
                                      message=f"the body is not JSON: {exc.msg} at position "
                                              f"{exc.pos}"),))
    url = payload.get("url") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url.strip():
        return refused("missing_field", 'the body is {"url": "https://..."}')
    url = url.strip()
    if len(url) > MAX_WEBHOOK_URL:
        return refused("too_long", f"a webhook URL is at most {MAX_WEBHOOK_URL} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return refused("invalid_url", f"not a URL: {exc}")
    if parts.scheme not in ("https", "http") or not host:
        return refused("invalid_url", "an absolute https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        return refused("invalid_url", "a webhook URL carries no user name or password: the "
                                      "deliveries are signed (X-OrderFlow-Signature)")
    if any(c.isspace() or ord(c) < 32 for c in url):
        return refused("invalid_url", "a URL holds no blanks or control characters")
    if parts.scheme == "http" and host not in http_hosts:
        return refused("insecure_url", f"plain http is allowed only to the development hosts "
                                       f"(ORDERFLOW_INTAKE_OUTCOME_WEBHOOK_HTTP_HOSTS), not "
                                       f"{host}: use https")
    return WebhookUrl(url)


MAX_WEBHOOK_URL = 2048


def webhook_owner(caller: Caller) -> Denied | None:
    """A key of one store may not register the channel's webhook: notify tells a channel of
    every store's orders, so it would hear of other stores' orders."""
    if caller.store is not None:
        return Denied(403, f"an outcome webhook is channel {caller.channel}'s, for every store's "
                           f"orders: a key of store {caller.store} cannot register it")
    return None


def webhook_event(caller: Caller, url: str | None, now: datetime | None = None,
                  ) -> ChannelWebhookSet:
    return ChannelWebhookSet(channel=caller.channel, url=url, set_by=caller.key_name,
                             set_at=now or datetime.now(UTC))
