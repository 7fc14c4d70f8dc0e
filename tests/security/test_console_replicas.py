"""A sign-in valid on every replica: two console instances (two apps, two engines, as two pods
would run them) over one PostgreSQL, configured from the same Secret. A session made by one is
accepted by the other, a sign-out on one ends it on both, the admin token from the Secret works
on both, and a decision made through the second reaches review in the name of the operator who
signed in on the first.

Only PostgreSQL is started (the embedded one, or ``ORDERFLOW_TEST_DATABASE_URL``'s server with a
database of its own); no broker."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orderflow.console.auth import SESSION_COOKIE
from orderflow.console.pages import build_console, routers_of
from orderflow.devstack.stack import var_dir
from orderflow.review import handlers as review_handlers
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.http import create_http_app
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.infra import create_database
from tests.security.service_apps import (
    ADMIN_TOKEN,
    RITA_PASSWORD,
    FakeUnits,
    Route,
    StandInDecision,
    build_app,
    context,
    deployment_env,
    stand_in_decision,
)

pytestmark = pytest.mark.service

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "console" / "src" / "orderflow" \
    / "console" / "migrations" / "versions"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    external = os.environ.get("ORDERFLOW_TEST_DATABASE_URL")
    if external:
        import asyncio

        yield asyncio.run(create_database(external, f"replicas_{secrets.token_hex(4)}"))
        return
    from orderflow.devstack.embedded import EmbeddedPostgres

    root = var_dir() / "test" / str(os.getpid()) / "console-replicas"
    shutil.rmtree(root, ignore_errors=True)
    postgres = EmbeddedPostgres(root)
    postgres.start()
    try:
        yield postgres.url
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Replica:
    app: FastAPI
    engine: Any

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://console.test", follow_redirects=False, **kwargs)


async def _healthy() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
async def replicas(database_url: str, monkeypatch: pytest.MonkeyPatch,
                   decisions: list[Any]) -> AsyncIterator[tuple[Replica, Replica]]:
    deployment_env(monkeypatch)  # the same Secret for both: users, admin token, service key
    review = build_app("review", context("review", FakeUnits()))
    made = []
    for _ in range(2):
        engine = make_engine(DatabaseSettings(url=database_url), "console")
        await migrate(engine, "console", MIGRATIONS)
        console = build_console(context("console", engine=engine))
        console.transport = Route({"review": review})
        app = create_http_app("console", _healthy, routers_of(console), public_openapi=False)
        made.append(Replica(app, engine))
    try:
        yield made[0], made[1]
    finally:
        for replica in made:
            await replica.engine.dispose()


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []

    async def decide_manually(_uow: Any, _policy: Any, order_id: str, action: str,
                              decider: Any, _comment: str | None) -> StandInDecision:
        seen.append((order_id, action, decider.name))
        return stand_in_decision(action)

    monkeypatch.setattr(review_handlers, "decide_manually", decide_manually)
    return seen


async def sign_in(replica: Replica, client: httpx.AsyncClient, user: str, password: str) -> None:
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    r = await client.post("/login", data={"username": user, "password": password,
                                          "csrf_token": token.group(1), "next_url": "/"})
    assert r.status_code == 303, r.text


async def csrf_of(client: httpx.AsyncClient) -> str:
    home = await client.get("/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
    assert token is not None, home.text[:300]
    return token.group(1)


async def test_a_sign_in_on_one_replica_holds_on_the_other(
        replicas: tuple[Replica, Replica], decisions: list[Any]) -> None:
    first, second = replicas
    async with first.client() as a:
        await sign_in(first, a, "rita", RITA_PASSWORD)
        cookie = a.cookies[SESSION_COOKIE]
        csrf = await csrf_of(a)
    async with second.client(cookies={SESSION_COOKIE: cookie}) as b:
        me = await b.get("/api/me")
        assert me.status_code == 200, me.text
        assert (me.json()["name"], me.json()["role"]) == ("rita", "reviewer")
        assert await csrf_of(b) == csrf  # the same session, its CSRF token with it
        # a decision through the second replica: review records the operator who signed in
        r = await b.post("/api/orders/o-7/approve", json={"comment": "ok"},
                         headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert decisions == [("o-7", "approve", "rita")]
        # a sign-out on the second ends the session on the first too
        out = await b.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303
    async with first.client(cookies={SESSION_COOKIE: cookie}) as a:
        assert (await a.get("/api/me")).status_code == 401


async def test_the_sign_in_form_of_one_replica_is_accepted_by_the_other(
        replicas: tuple[Replica, Replica]) -> None:
    """A load balancer without sticky sessions: the form from one, the post to the other."""
    first, second = replicas
    async with first.client() as a:
        page = await a.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        login_cookies = dict(a.cookies)
    async with second.client(cookies=login_cookies) as b:
        r = await b.post("/login", data={"username": "rita", "password": RITA_PASSWORD,
                                         "csrf_token": token.group(1), "next_url": "/"})
        assert r.status_code == 303, r.text
        assert SESSION_COOKIE in b.cookies


async def test_the_admin_token_from_the_secret_works_on_every_replica(
        replicas: tuple[Replica, Replica]) -> None:
    for replica in replicas:
        async with replica.client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as c:
            me = await c.get("/api/me")
            assert me.status_code == 200 and me.json()["role"] == "admin"


async def test_a_session_signed_out_or_unknown_is_refused_by_both(
        replicas: tuple[Replica, Replica]) -> None:
    for replica in replicas:
        async with replica.client(cookies={SESSION_COOKIE: secrets.token_urlsafe(32)}) as c:
            assert (await c.get("/api/me")).status_code == 401
            assert (await c.post("/logout", data={"csrf_token": "x"})).status_code == 401
