"""Every state-changing route of every service refuses a request without credentials.

Each service's HTTP app is built as the runtime builds it; every route whose methods include
POST, PUT, PATCH or DELETE is sent requests without a credential (no body, a JSON body, a bearer
token nobody issued, a forged assertion, an assertion signed with another key) and must answer
401 or 403: not 2xx, not 422, not 500, and without reaching the database. A new route without
authentication fails this test; so does one that declares none (``unprotected_routes``).
Connectors' routes authenticate themselves (intake's Shopify webhook: its HMAC signature; its
channel order API: a channel's key)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI

from orderflow.devstack.stack import ALL_SERVICES
from orderflow.runtime.service_auth import (
    SAFE_METHODS,
    SCHEME,
    authorization,
    routes_of,
    unprotected_routes,
)
from tests.security.service_apps import SERVICE_KEY, build_app, client, deployment_env

pytestmark = pytest.mark.unit

# the writes each service is known to have: the enumeration below must find at least these
KNOWN_WRITES = {
    "intake": {"POST /webhooks/shopify/{shop}", "POST /webhooks/douyin/{shop}",
               "POST /api/v1/channels/{channel}/orders",
               "PUT /api/v1/channels/{channel}/webhook",
               "DELETE /api/v1/channels/{channel}/webhook"},
    "review": {"POST /api/orders/{order_id}/approve", "POST /api/orders/{order_id}/reject"},
    "inventory": {"POST /inventory/orders/{order_id}/release"},
    "logistics": {"POST /api/delay-watch/run"},
    "notify": set(),
    "console": {"POST /api/orders/{order_id}/approve", "POST /api/orders/{order_id}/reject",
                "POST /api/orders/{order_id}/cancel", "POST /api/orders/{order_id}/release-stock",
                "POST /api/delay-watch/run", "POST /api/dlq/{topic}/replay",
                "POST /api/dlq/{topic}/{partition}/{offset}/replay", "POST /login",
                "POST /logout"},
}


def write_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route of ``app`` that is not read-only (those of the
    routers it includes too)."""
    return [(method, path) for path, methods, _ in routes_of(app)
            for method in sorted(methods - SAFE_METHODS)]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def attempts(service: str, method: str, path: str) -> dict[str, dict[str, Any]]:
    """Ways to call a route without a credential the service accepts."""
    body = b'{"comment": "let me in"}'
    json_type = {"Content-Type": "application/json"}
    forged = authorization(secrets.token_urlsafe(32) + "-another-deployment's-key",
                           actor="mallory", role="admin", audience=service, method=method,
                           path=path, body=body)
    return {
        "nothing": {},
        "a JSON body": {"content": body, "headers": json_type},
        "a form body": {"data": {"username": "admin", "password": "admin-dev",
                                 "csrf_token": "x"}},
        "a bearer token nobody issued": {"content": body, "headers": {
            **json_type, "Authorization": f"Bearer {secrets.token_urlsafe(32)}"}},
        "a malformed assertion": {"content": body, "headers": {
            **json_type, "Authorization": f"{SCHEME} v1.e30.AAAA"}},
        "an assertion signed with another key": {"content": body, "headers": {
            **json_type, **forged}},
        "a body naming the actor": {"json": {"reviewer": "someone", "actor": "someone",
                                             "role": "admin"}},
    }


async def refusals(service: str, app: FastAPI, *, only: set[str] | None = None) -> list[str]:
    """Every write route of ``app`` that did not refuse an attempt with 401 or 403."""
    failures = []
    async with client(app) as http:
        for method, template in write_routes(app):
            path = concrete(template)
            for what, kwargs in attempts(service, method, path).items():
                if only is not None and what not in only:
                    continue
                r = await http.request(method, path, **kwargs)
                if r.status_code not in {401, 403}:
                    failures.append(f"{service}: {method} {template} with {what}: "
                                    f"{r.status_code} {r.text[:160]}")
    return failures


@pytest.mark.parametrize("service", ALL_SERVICES)
async def test_every_write_route_refuses_a_request_without_credentials(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment_env(monkeypatch)
    app = build_app(service)
    found = {f"{method} {path}" for method, path in write_routes(app)}
    assert KNOWN_WRITES[service] <= found, f"the enumeration missed {KNOWN_WRITES[service] - found}"
    assert not await refusals(service, app)


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_every_write_route_declares_its_authentication(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment_env(monkeypatch)
    assert unprotected_routes(build_app(service)) == []


@pytest.mark.parametrize("service", ["review", "inventory", "logistics"])
async def test_a_service_without_its_key_still_refuses_and_says_why(
        service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment_env(monkeypatch, service_key=None)
    app = build_app(service)
    assert not await refusals(service, app, only={"nothing", "a JSON body",
                                                  "a bearer token nobody issued"})
    (method, template), *_ = write_routes(app)
    path = concrete(template)
    async with client(app) as http:  # a well-formed assertion it cannot check: 503, not open
        r = await http.request(method, path, content=b"{}", headers=authorization(
            "x" * 40, actor="a", role="admin", audience=service, method=method, path=path,
            body=b"{}"))
    assert r.status_code == 503 and "ORDERFLOW_SERVICE_KEY" in r.text


async def test_a_new_unprotected_route_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """What this test guards against: a route added without a credential check."""
    deployment_env(monkeypatch)
    app = build_app("review")
    extra = APIRouter()

    @extra.post("/api/orders/{order_id}/expedite")
    async def expedite(order_id: str) -> dict[str, str]:
        return {"order_id": order_id, "status": "expedited"}

    app.include_router(extra)
    assert unprotected_routes(app) == ["POST /api/orders/{order_id}/expedite"]
    failures = await refusals("review", app)
    assert failures and all("/expedite" in f for f in failures)


async def test_reads_and_operations_stay_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Health, liveness and metrics answer without credentials (probes and Prometheus; the
    NetworkPolicies decide who reaches them)."""
    deployment_env(monkeypatch)
    async with client(build_app("review")) as http:
        assert (await http.get("/livez")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/healthz")).status_code == 200


def test_a_too_short_key_fails_the_start_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    deployment_env(monkeypatch, service_key="short")
    with pytest.raises(ValueError, match="ORDERFLOW_SERVICE_KEY must be at least 32"):
        build_app("review")


async def test_no_header_but_a_valid_assertion_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a forwarded address, an actor header nor the key itself as a bearer token:
    review checks the assertion's signature, not who seems to call."""
    deployment_env(monkeypatch)
    async with client(build_app("review")) as http:
        r = await http.post("/api/orders/x/approve", json={"comment": "hi"},
                            headers={"X-Forwarded-For": "10.0.0.5", "X-OrderFlow-Actor": "admin",
                                     "Authorization": f"Bearer {SERVICE_KEY}"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == SCHEME
