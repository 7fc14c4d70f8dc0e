"""Service credentials (``orderflow.runtime.service_auth``): an assertion holds for exactly one
request, for one service, for a minute, under the deployment's key; the service takes the actor
from it, never from the body; the console signs one for the operator it verified."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI

from orderflow.console.api import Console
from orderflow.console.pages import build_console, routers_of
from orderflow.review import handlers as review_handlers
from orderflow.runtime.http import create_http_app
from orderflow.runtime.service_auth import (
    ROLES,
    SCHEME,
    Actor,
    AssertionRefused,
    ServiceCredentials,
    authorization,
    require_actor,
    sign,
    verify,
)
from tests.security.service_apps import (
    ADMIN_TOKEN,
    SERVICE_KEY,
    FakeUnits,
    Route,
    StandInDecision,
    build_app,
    client,
    context,
    deployment_env,
    stand_in_decision,
)

pytestmark = pytest.mark.unit

AdminActor = Annotated[Actor, Depends(require_actor("admin"))]

REQUEST: dict[str, Any] = {"audience": "review", "method": "POST", "path": "/api/orders/o-1/approve",
           "query": b"", "body": b'{"comment":"ok"}'}


def claims(**changes: Any) -> dict[str, Any]:
    return {**REQUEST, "actor": "rita", "role": "reviewer", **changes}


def check(token: str, keys: list[str] | None = None, **request: Any) -> Any:
    return verify(token, keys or [SERVICE_KEY], **{**REQUEST, **request})


# --- the assertion --------------------------------------------------------------------------


def test_a_valid_assertion_names_its_actor() -> None:
    actor = check(sign(SERVICE_KEY, **claims()))
    assert (actor.name, actor.role) == ("rita", "reviewer")
    assert actor.at_least("viewer") and actor.at_least("reviewer") and not actor.at_least("admin")
    assert not actor.at_least("clerk")  # a reviewer decides orders but does not enter them


@pytest.mark.parametrize(("role", "holds"), [
    ("viewer", {"viewer"}), ("clerk", {"viewer", "clerk"}), ("reviewer", {"viewer", "reviewer"}),
    ("director", {"viewer", "reviewer", "director"}), ("admin", set(ROLES)),
])
def test_an_actor_holds_its_roles_rights_and_no_other(role: str, holds: set[str]) -> None:
    actor = check(sign(SERVICE_KEY, **claims(role=role)))
    assert {right for right in ROLES if actor.at_least(right)} == holds


@pytest.mark.parametrize(("changed", "value"), [
    ("audience", "inventory"), ("method", "PUT"), ("path", "/api/orders/o-2/approve"),
    ("path", "/api/orders/o-1/reject"), ("query", b"dry_run=1"), ("body", b'{"comment":"no"}'),
])
def test_an_assertion_holds_for_its_own_request_only(changed: str, value: Any) -> None:
    token = sign(SERVICE_KEY, **claims())
    with pytest.raises(AssertionRefused, match="another request") as refused:
        check(token, **{changed: value})
    assert refused.value.status == 401


def test_a_tampered_or_foreign_assertion_is_refused() -> None:
    token = sign(SERVICE_KEY, **claims())
    version, payload, signature = token.split(".")
    forged_payload = sign("another-key-" + "x" * 40, **claims(role="admin")).split(".")[1]
    for bad in (f"{version}.{forged_payload}.{signature}",  # claims swapped, signature kept
                sign("another-key-" + "x" * 40, **claims()),  # another deployment's key
                f"v2.{payload}.{signature}", f"{version}.{payload}", "", "v1..", "garbage"):
        with pytest.raises(AssertionRefused) as refused:
            check(bad)
        assert refused.value.status == 401, bad


def test_an_assertion_expires_and_cannot_be_made_long_lived() -> None:
    now = time.time()
    token = sign(SERVICE_KEY, **claims(), now=now - 61)
    with pytest.raises(AssertionRefused, match="expired"):
        check(token, now=now)
    assert check(sign(SERVICE_KEY, **claims(), now=now - 30), now=now).name == "rita"
    with pytest.raises(AssertionRefused, match="not believable"):
        check(sign(SERVICE_KEY, **claims(), ttl_s=86_400, now=now), now=now)
    with pytest.raises(AssertionRefused, match="not believable"):
        check(sign(SERVICE_KEY, **claims(), now=now + 600), now=now)


def test_the_previous_key_is_accepted_during_a_rotation() -> None:
    old = "the-key-before-the-rotation-0123456789"
    token = sign(old, **claims())
    assert check(token, keys=[SERVICE_KEY, old]).name == "rita"
    with pytest.raises(AssertionRefused):
        check(token, keys=[SERVICE_KEY])


@pytest.mark.parametrize("bad", [
    {"actor": ""}, {"actor": "   "}, {"actor": "x" * 101}, {"actor": "rita\nadmin"},
    {"role": "root"}, {"role": None},
])
def test_an_assertion_without_a_valid_actor_and_role_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(AssertionRefused, match="no valid actor"):
        check(sign(SERVICE_KEY, **claims(**bad)))


def test_the_key_never_shows_in_a_representation() -> None:
    from orderflow.runtime.service_auth import ServiceVerifier

    credentials = ServiceCredentials(SERVICE_KEY, actor="rita", role="reviewer", audience="review")
    verifier = ServiceVerifier("review", (SERVICE_KEY,))
    assert SERVICE_KEY not in repr(credentials) and SERVICE_KEY not in repr(verifier)
    assert SERVICE_KEY not in sign(SERVICE_KEY, **claims())


def test_without_a_key_nothing_is_accepted() -> None:
    with pytest.raises(AssertionRefused) as refused:
        verify(sign(SERVICE_KEY, **claims()), [], **REQUEST)
    assert refused.value.status == 503 and "ORDERFLOW_SERVICE_KEY" in refused.value.message


# --- the services take the actor from the credential ----------------------------------------


@dataclass
class Decided:
    """What a handler answers with (a ledger, an event)."""

    status: str

    def model_dump(self, mode: str = "json") -> dict[str, str]:
        return {"status": self.status}


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str, str | None]]:
    """Review's manual decisions, recorded instead of stored."""
    seen: list[tuple[str, str, str, str | None]] = []

    async def decide_manually(_uow: Any, _policy: Any, order_id: str, action: str,
                              decider: Any, comment: str | None) -> StandInDecision:
        seen.append((order_id, action, decider.name, comment))
        return stand_in_decision(action)

    monkeypatch.setattr(review_handlers, "decide_manually", decide_manually)
    return seen


async def test_review_records_the_credentials_actor_never_the_bodys(
        monkeypatch: pytest.MonkeyPatch, decisions: list[Any]) -> None:
    deployment_env(monkeypatch)
    app = build_app("review", context("review", FakeUnits()))
    rita = ServiceCredentials(SERVICE_KEY, actor="rita", role="reviewer", audience="review")
    async with client(app, auth=rita) as http:
        ok = await http.post("/api/orders/o-1/approve", json={"comment": "checked"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["decided_by"] == "rita"
        impostor = await http.post("/api/orders/o-1/approve",
                                   json={"reviewer": "the.boss", "comment": "approve it"})
        assert impostor.status_code == 422
        viewer = await http.post("/api/orders/o-1/reject", json={}, auth=ServiceCredentials(
            SERVICE_KEY, actor="vic", role="viewer", audience="review"))
        assert viewer.status_code == 403
        other_service = await http.post("/api/orders/o-1/reject", json={}, auth=ServiceCredentials(
            SERVICE_KEY, actor="rita", role="reviewer", audience="inventory"))
        assert other_service.status_code == 401
    assert decisions == [("o-1", "approve", "rita", "checked")]


async def test_a_captured_assertion_cannot_be_replayed_on_another_order_or_decision(
        monkeypatch: pytest.MonkeyPatch, decisions: list[Any]) -> None:
    deployment_env(monkeypatch)
    app = build_app("review", context("review", FakeUnits()))
    body = b'{"comment":"ok"}'
    captured = authorization(SERVICE_KEY, actor="rita", role="reviewer", audience="review",
                             method="POST", path="/api/orders/o-1/approve", body=body)
    headers = {**captured, "Content-Type": "application/json"}
    async with client(app) as http:
        for path, content in (("/api/orders/o-2/approve", body), ("/api/orders/o-1/reject", body),
                              ("/api/orders/o-1/approve", b'{"comment":"changed"}')):
            r = await http.post(path, content=content, headers=headers)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"] == SCHEME
        assert (await http.post("/api/orders/o-1/approve", content=body,
                                headers=headers)).status_code == 200
    assert [d[:3] for d in decisions] == [("o-1", "approve", "rita")]


async def test_inventory_and_logistics_writes_need_an_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    from orderflow.inventory import handlers as inventory_handlers
    from orderflow.logistics.delay_watcher import DelayWatcher

    released: list[tuple[str, str]] = []

    async def release(_uow: Any, _policy: Any, order_id: str, reason: str) -> Any:
        released.append((order_id, reason))
        return Decided(status="released")

    async def run_once(_self: Any, _units: Any, *, now: Any, order_ids: Any = None) -> list[Any]:
        return []

    monkeypatch.setattr(inventory_handlers, "release", release)
    monkeypatch.setattr(DelayWatcher, "run_once", run_once)
    deployment_env(monkeypatch)
    for service, path, body in (("inventory", "/inventory/orders/o-1/release", {"reason": "x"}),
                                ("logistics", "/api/delay-watch/run", {})):
        app = build_app(service, context(service, FakeUnits()))
        async with client(app) as http:
            reviewer = ServiceCredentials(SERVICE_KEY, actor="rita", role="reviewer",
                                          audience=service)
            admin = ServiceCredentials(SERVICE_KEY, actor="ada", role="admin", audience=service)
            assert (await http.post(path, json=body, auth=reviewer)).status_code == 403
            r = await http.post(path, json=body, auth=admin)
            assert r.status_code == 200, r.text
    assert released == [("o-1", "x")]


# --- the console signs for the operator it verified -----------------------------------------


def console_app(monkeypatch: pytest.MonkeyPatch, services: dict[str, Any]) -> tuple[Any, list[Any]]:
    """The console's app (routers as the runtime builds them) reaching ``services`` in-process;
    its audit log recorded in a list instead of its database."""
    audited: list[Any] = []

    async def audit(_self: Console, op: Any, action: str, target: str | None, outcome: str,
                    **detail: Any) -> None:
        audited.append((op.name, action, target, outcome))

    monkeypatch.setattr(Console, "audit", audit)
    console = build_console(context("console"))
    console.transport = Route(services)
    app = create_http_app("console", _healthy, routers_of(console), public_openapi=False)
    return app, audited


async def _healthy() -> dict[str, bool]:
    return {"ok": True}


async def test_the_console_forwards_a_decision_in_the_operators_name(
        monkeypatch: pytest.MonkeyPatch, decisions: list[Any]) -> None:
    deployment_env(monkeypatch)
    review = build_app("review", context("review", FakeUnits()))
    app, audited = console_app(monkeypatch, {"review": review})
    async with client(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        r = await http.post("/api/orders/o-9/approve", json={"comment": "fine"})
        assert r.status_code == 200, r.text
        assert r.json()["review"]["decided_by"] == "admin-token"
    assert decisions == [("o-9", "approve", "admin-token", "fine")]
    assert audited == [("admin-token", "approve", "o-9", "accepted")]


async def test_the_console_forwards_releases_and_delay_watch_rounds(
        monkeypatch: pytest.MonkeyPatch) -> None:
    deployment_env(monkeypatch)
    seen: list[tuple[str, str, str]] = []

    def standin(service: str, path: str) -> FastAPI:
        """The service's write route, checking the credential as the service does."""
        router = APIRouter()

        @router.post(path)
        async def endpoint(actor: AdminActor) -> dict[str, str]:
            seen.append((service, path, actor.name))
            return {"status": "done"}

        return create_http_app(service, _healthy, [router])

    app, audited = console_app(monkeypatch, {
        "inventory": standin("inventory", "/inventory/orders/o-3/release"),
        "logistics": standin("logistics", "/api/delay-watch/run")})
    async with client(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        assert (await http.post("/api/orders/o-3/release-stock",
                                json={"reason": "damaged"})).status_code == 200
        assert (await http.post("/api/delay-watch/run", json={})).status_code == 200
    assert seen == [("inventory", "/inventory/orders/o-3/release", "admin-token"),
                    ("logistics", "/api/delay-watch/run", "admin-token")]
    assert [a[1] for a in audited] == ["release", "delay_watch"]


async def test_a_console_without_the_key_says_so_and_acts_through_nothing(
        monkeypatch: pytest.MonkeyPatch, decisions: list[Any]) -> None:
    deployment_env(monkeypatch)
    review = build_app("review", context("review", FakeUnits()))
    monkeypatch.delenv("ORDERFLOW_SERVICE_KEY")
    app, audited = console_app(monkeypatch, {"review": review})
    async with client(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        r = await http.post("/api/orders/o-9/approve", json={"comment": "fine"})
    assert r.status_code == 503 and "ORDERFLOW_SERVICE_KEY" in r.json()["message"]
    assert decisions == [] and audited == [("admin-token", "approve", "o-9", "not_configured")]
