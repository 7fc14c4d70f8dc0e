"""Service-to-service credentials: who may change state through a service's HTTP API.

Every state-changing route of a service (any method but GET, HEAD and OPTIONS) requires a
*service assertion*: a short statement of who acts, signed with HMAC-SHA256 under the
deployment's shared key ``ORDERFLOW_SERVICE_KEY``, sent as::

    Authorization: OrderFlow-Assertion v1.<payload>.<signature>

``payload`` is base64url JSON ``{actor, role, aud, method, path, query, body, iat, exp}``: the
operator and their role, the service it is meant for, the request's method, path, query string
and the SHA-256 of its body, when it was made and until when it holds (at most
``MAX_TTL_S``). The console, the way operators act, makes one per call for the operator it
signed in (or the admin token) and signs it; the service checks the signature in constant time
(``hmac.compare_digest``), refuses one that is expired, meant for another service, or made for
another request, and takes the actor from it: never from the body.

    401  no assertion, a bad signature, expired, or made for another service or request
    403  a valid assertion whose role may not do this
    503  the service has no key (``ORDERFLOW_SERVICE_KEY`` unset): it accepts no writes

The key is a deployment secret (a Kubernetes Secret; the dev stack generates one per stack in
its folder). ``ORDERFLOW_SERVICE_KEY_PREVIOUS`` is accepted too, never used to sign: set the new
key as ``ORDERFLOW_SERVICE_KEY`` and the old one as ``..._PREVIOUS`` everywhere, then drop it.

A connector's route authenticates itself instead (intake's Shopify webhook checks the shop's
HMAC signature); such a route is declared with ``authenticates_itself``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import structlog
from fastapi import FastAPI, HTTPException, Request
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = structlog.get_logger(__name__)

SCHEME = "OrderFlow-Assertion"
KEY_VARIABLE = "ORDERFLOW_SERVICE_KEY"
VERSION = "v1"
# operators' roles (the console's), and the roles' rights each one holds: a clerk enters and
# amends orders but does not decide them; a director decides, and gives the second approval
# above the review policy's thresholds; an admin holds every right
ROLES = ("viewer", "clerk", "reviewer", "director", "admin")
GRANTS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "clerk": frozenset({"viewer", "clerk"}),
    "reviewer": frozenset({"viewer", "reviewer"}),
    "director": frozenset({"viewer", "reviewer", "director"}),
    "admin": frozenset(ROLES),
}


def grants(role: str, right: str) -> bool:
    """Whether an operator of ``role`` holds ``right`` (one of ``ROLES``)."""
    return right in GRANTS.get(role, frozenset())
DEFAULT_TTL_S = 60
MAX_TTL_S = 300
CLOCK_SKEW_S = 30
MIN_KEY_LENGTH = 32
MAX_ACTOR_LENGTH = 100
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DOMAIN = b"orderflow-service-assertion."  # what the HMAC covers besides the payload


class ServiceAuthSettings(BaseSettings):
    """The key services verify assertions with and the console signs them with (prefix
    ``ORDERFLOW_``, or the service's own: ``ORDERFLOW_REVIEW_SERVICE_KEY``)."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore", env_ignore_empty=True)

    service_key: SecretStr | None = Field(
        default=None, description="HMAC key of service assertions, shared by the console and "
                                  "the services (a Secret); unset: the service accepts no writes")
    service_key_previous: SecretStr | None = Field(
        default=None, description="The key before a rotation: still accepted, never used to sign")

    @field_validator("service_key", "service_key_previous")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(
                f"{KEY_VARIABLE} must be at least {MIN_KEY_LENGTH} characters (e.g. python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    def keys(self) -> list[str]:
        return [k.get_secret_value() for k in (self.service_key, self.service_key_previous)
                if k is not None]

    def signing_key(self) -> str | None:
        return self.service_key.get_secret_value() if self.service_key is not None else None


def load_service_auth(service: str) -> ServiceAuthSettings:
    from orderflow.runtime.settings import load_settings

    return load_settings(ServiceAuthSettings, service)


@dataclass(frozen=True)
class Actor:
    """Who acts, as the verified assertion says."""

    name: str
    role: str

    def at_least(self, role: str) -> bool:
        return grants(self.role, role)


class AssertionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> bytes:
    return hmac.new(key.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _query(query: bytes | str) -> str:
    return query.decode("latin-1") if isinstance(query, bytes) else query


def sign(key: str, *, actor: str, role: str, audience: str, method: str, path: str,
         query: bytes | str = b"", body: bytes = b"", ttl_s: float = DEFAULT_TTL_S,
         now: float | None = None) -> str:
    """The assertion (``v1.<payload>.<signature>``) for one request."""
    issued = int(now if now is not None else time.time())
    payload = _b64(orjson.dumps({
        "actor": actor, "role": role, "aud": audience, "method": method.upper(), "path": path,
        "query": _query(query), "body": body_digest(body), "iat": issued,
        "exp": issued + int(ttl_s)}))
    return f"{VERSION}.{payload}.{_b64(_mac(key, payload))}"


def authorization(key: str, **claims: Any) -> dict[str, str]:
    """The ``Authorization`` header carrying ``sign(key, **claims)``."""
    return {"Authorization": f"{SCHEME} {sign(key, **claims)}"}


def verify(token: str, keys: list[str], *, audience: str, method: str, path: str,
           query: bytes | str, body: bytes, now: float | None = None) -> Actor:
    """The actor of a valid assertion for this request; ``AssertionRefused`` otherwise."""
    if not keys:
        raise AssertionRefused(503, f"{KEY_VARIABLE} is not set: {audience} accepts no "
                                    "state-changing requests")
    version, _, rest = token.strip().partition(".")
    payload, _, signature = rest.partition(".")
    if version != VERSION or not payload or not signature:
        raise AssertionRefused(401, "the service assertion is malformed")
    try:
        sent = _unb64(signature)
    except ValueError as exc:
        raise AssertionRefused(401, "the service assertion is malformed") from exc
    # every key is tried (constant time each): which one matched says nothing by timing
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_mac(key, payload), sent)
    if not matched:
        raise AssertionRefused(401, "the service assertion's signature is not valid")
    try:
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise AssertionRefused(401, "the service assertion is malformed") from exc
    if not isinstance(claims, dict):
        raise AssertionRefused(401, "the service assertion is malformed")
    at = now if now is not None else time.time()
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise AssertionRefused(401, "the service assertion has no validity period")
    if expires < at:
        raise AssertionRefused(401, "the service assertion has expired")
    if issued > at + CLOCK_SKEW_S or expires - issued > MAX_TTL_S:
        raise AssertionRefused(401, "the service assertion's validity period is not believable")
    expected = {"aud": audience, "method": method.upper(), "path": path, "query": _query(query),
                "body": body_digest(body)}
    wrong = [name for name, value in expected.items() if claims.get(name) != value]
    if wrong:
        raise AssertionRefused(401, "the service assertion was made for another request "
                                    f"({', '.join(wrong)} differ)")
    actor, role = claims.get("actor"), claims.get("role")
    if (not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR_LENGTH
            or not actor.isprintable() or role not in ROLES):
        raise AssertionRefused(401, "the service assertion names no valid actor and role")
    return Actor(name=actor, role=str(role))


class ServiceCredentials(httpx.Auth):
    """httpx authentication that signs every request it sends as ``actor`` with ``role``, for
    ``audience`` (the service called): the console's calls, and tests'."""

    requires_request_body = True

    def __init__(self, key: str, *, actor: str, role: str, audience: str,
                 ttl_s: float = DEFAULT_TTL_S) -> None:
        self._key, self.actor, self.role, self.audience, self.ttl_s = key, actor, role, audience, ttl_s

    def __repr__(self) -> str:
        return f"ServiceCredentials(actor={self.actor!r}, role={self.role!r}, audience={self.audience!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.method.upper() not in SAFE_METHODS:
            request.headers.update(authorization(
                self._key, actor=self.actor, role=self.role, audience=self.audience,
                method=request.method, path=request.url.path, query=request.url.query,
                body=request.content, ttl_s=self.ttl_s))
        yield request


@dataclass(frozen=True)
class ServiceVerifier:
    """What a service's app verifies assertions with (``app.state.service_auth``)."""

    service: str
    keys: tuple[str, ...] = field(repr=False)

    @classmethod
    def from_environment(cls, service: str) -> ServiceVerifier:
        return cls(service, tuple(load_service_auth(service).keys()))


def install(app: FastAPI, service: str) -> None:
    """Give ``app`` the verifier of ``service``, from the environment (a bad key fails here);
    call it once the routes are added."""
    verifier = ServiceVerifier.from_environment(service)
    app.state.service_auth = verifier
    if not verifier.keys and _uses_assertions(app):
        log.warning(f"{KEY_VARIABLE} is not set: this service's state-changing HTTP routes "
                    "answer 503", service=service)


# the attribute that marks a dependency as a route's authentication (``unprotected_routes``):
# ``ASSERTION`` for ``require_actor``, what else it checks for ``authenticates_itself``
AUTH_MARK = "orderflow_authenticates"
ASSERTION = "service assertion"


def require_actor(role: str) -> Callable[[Request], Awaitable[Actor]]:
    """A FastAPI dependency: the verified actor of the request's service assertion, whose role
    holds ``role``'s rights (``GRANTS``). Put it on every state-changing route of a service."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")

    async def dependency(request: Request) -> Actor:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != SCHEME.lower() or not token.strip():
            raise HTTPException(401, "a service credential is required: this route is called "
                                     "through the console", headers={"WWW-Authenticate": SCHEME})
        verifier = getattr(request.app.state, "service_auth", None)
        if not isinstance(verifier, ServiceVerifier):
            raise HTTPException(503, f"{KEY_VARIABLE} is not configured for this service")
        try:
            actor = verify(token, list(verifier.keys), audience=verifier.service,
                           method=request.method, path=request.scope.get("path", ""),
                           query=request.scope.get("query_string", b""),
                           body=await request.body())
        except AssertionRefused as refused:
            if refused.status == 401:
                log.warning("service assertion refused", path=request.scope.get("path"),
                            reason=refused.message)
            raise HTTPException(refused.status, refused.message,
                                headers={"WWW-Authenticate": SCHEME} if refused.status == 401
                                else None) from refused
        if not actor.at_least(role):
            raise HTTPException(403, f"role {actor.role} may not do this (needs {role})")
        return actor

    setattr(dependency, AUTH_MARK, ASSERTION)
    return dependency


def authenticates_itself(what: str) -> Callable[[], Awaitable[None]]:
    """A no-op dependency declaring that a route checks its own credential (``what``: e.g. the
    Shopify HMAC signature), so that ``unprotected_routes`` does not count it."""
    if not what:
        raise ValueError("say what the route checks")

    async def dependency() -> None:
        return None

    setattr(dependency, AUTH_MARK, what)
    return dependency


def secret_file(path: Path, *, nbytes: int = 32) -> str:
    """The secret kept in ``path`` (mode 0600), created if absent: the dev stack's service key."""
    if path.exists():
        existing = path.read_text().strip()
        if len(existing) >= MIN_KEY_LENGTH:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    tmp.replace(path)
    return value


def _marks(dependant: Any) -> set[str]:
    found: set[str] = set()
    for dependency in getattr(dependant, "dependencies", []):
        mark = getattr(dependency.call, AUTH_MARK, None)
        if isinstance(mark, str) and mark:
            found.add(mark)
        found |= _marks(dependency)
    return found


def routes_of(app: FastAPI) -> list[tuple[str, set[str], Any]]:
    """(path, methods, dependant) of every route of ``app``, those of included routers too
    (FastAPI from 0.130 or so keeps an included router as one lazy entry of ``app.routes``)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: include_router copies the routes into the app
        entries: list[Any] = list(app.routes)
    else:
        entries = list(iter_route_contexts(app.routes))
    return [(str(getattr(e, "path", "")), set(getattr(e, "methods", None) or ()),
             getattr(e, "dependant", None)) for e in entries]


def _uses_assertions(app: FastAPI) -> bool:
    return any(ASSERTION in _marks(dependant) for _, _, dependant in routes_of(app))


def unprotected_routes(app: FastAPI) -> list[str]:
    """``METHOD path`` of every state-changing route of ``app`` that declares no authentication
    (neither ``require_actor`` nor another dependency marked as authenticating)."""
    found = []
    for path, methods, dependant in routes_of(app):
        unsafe = sorted(methods - SAFE_METHODS)
        if unsafe and not _marks(dependant):
            found += [f"{method} {path}" for method in unsafe]
    return found
