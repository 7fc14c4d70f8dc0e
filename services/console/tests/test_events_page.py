"""``/events``: the generated AsyncAPI page inside the console's frame, for any signed-in
operator; the sign-in form otherwise. The unit tests take the operator from a stand-in for the
session store (no database; the route, ``pages.page_for``, the template and the shipped fragment
are real); the service test signs a viewer in on the running console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from console_helpers import sign_in
from fastapi import Request

from orderflow.console import i18n
from orderflow.console.api import Console
from orderflow.console.auth import SESSION_COOKIE, Operator
from orderflow.console.events_page import EVENTS_FRAGMENT, events_router
from orderflow.console.pages import page_for
from orderflow.contracts.topics import CATALOGUE
from orderflow.runtime.http import create_http_app

SESSIONS = {"viewer-session": Operator(name="vic", role="viewer", via="session", csrf_token="c"),
            "admin-token-as-cookie": Operator(name="api", role="admin", via="token")}


class SessionStandIn:
    async def operator(self, request: Request) -> Operator | None:
        return SESSIONS.get(request.cookies.get(SESSION_COOKIE, ""))


async def _healthy() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    console = cast(Console, SessionStandIn())

    async def page(request: Request, name: str, **values: Any) -> Any:
        return await page_for(console, request, name, **values)

    app = create_http_app("console", _healthy, [events_router(page)], public_openapi=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://console.test") as http:
        yield http


@pytest.mark.unit
async def test_a_signed_in_viewer_reads_every_topic(client: httpx.AsyncClient) -> None:
    client.cookies.set(SESSION_COOKIE, "viewer-session")
    response = await client.get("/events")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    page = response.text
    for topic in CATALOGUE:
        assert f'id="topic-{topic.name}"' in page, topic.name
    assert EVENTS_FRAGMENT.read_text(encoding="utf-8").strip() in page  # unescaped, whole
    assert i18n.translate("events.title", "en") in page
    assert f'href="/events" class="active" data-nav="events">{i18n.translate("nav.events", "en")}' in page


@pytest.mark.unit
async def test_the_frame_is_in_the_readers_language(client: httpx.AsyncClient) -> None:
    client.cookies.set(SESSION_COOKIE, "viewer-session")
    client.cookies.set(i18n.LANG_COOKIE, "zh-CN")
    response = await client.get("/events")
    assert response.status_code == 200
    assert i18n.translate("events.title", "zh-CN") in response.text
    assert f'data-nav="events">{i18n.translate("nav.events", "zh-CN")}</a>' in response.text
    assert '<div class="asyncapi" lang="en">' in response.text


@pytest.mark.unit
@pytest.mark.parametrize("cookie", [None, "unknown-session", "admin-token-as-cookie"])
async def test_without_a_session_the_sign_in_form(client: httpx.AsyncClient,
                                                  cookie: str | None) -> None:
    if cookie:
        client.cookies.set(SESSION_COOKIE, cookie)
    response = await client.get("/events")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/events"
    assert "order.received" not in response.text


@pytest.mark.service
async def test_the_running_console_serves_it_to_a_viewer_only_signed_in(console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as anonymous:
        refused = await anonymous.get("/events")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as viewer:
        await sign_in(viewer, "viewer", "viewer-dev")
        home = await viewer.get("/")
        assert 'href="/events"' in home.text  # the navigation links it
        page = await viewer.get("/events")
        assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
        for topic in ("order.received", "order.approved", "stock.reserved", "shipment.dispatched"):
            assert f'id="topic-{topic}"' in page.text, topic
