"""Helpers of the console's service and browser tests."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from console_factories import OrderStory

from orderflow.connector import OrderPusher
from orderflow.console.domain import OrderView, entry_for, project
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

T = TypeVar("T")

DEV_PASSWORDS = {"viewer": "viewer-dev", "clerk": "clerk-dev", "reviewer": "reviewer-dev",
                 "director": "director-dev", "admin": "admin-dev"}


def console_url(pipeline: Pipeline) -> str:
    return f"http://127.0.0.1:{pipeline.stack.find('console').port}"


def admin_token(pipeline: Pipeline) -> str:
    return (pipeline.stack.root / "console-token").read_text().strip()


async def sign_in(client: httpx.AsyncClient, user: str, password: str | None = None) -> str:
    """Sign ``client`` in on the console; returns the session's CSRF token."""
    page = await client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    r = await client.post("/login", data={"username": user, "password": password or DEV_PASSWORDS[user],
                                          "csrf_token": csrf.group(1), "next_url": "/"})
    assert r.status_code == 303, r.text
    home = await client.get("/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
    assert token is not None
    return token.group(1)


def new_id(prefix: str = "CON") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def until(check: Callable[[], Awaitable[T | None]], *, timeout: float = 60.0,
                what: str = "a condition") -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def projected(events: EventLog, order_id: str) -> OrderView:
    """The view the pure projection gives from every event of the order on the topics."""
    entries = []
    for seen in events.events:
        if seen.event is None or seen.topic.endswith(".dlq"):
            continue
        headers = EventHeaders.from_kafka({k: v.encode() for k, v in seen.headers.items()})
        entry = entry_for(seen.topic, headers, seen.event)
        if entry is not None and entry.order_id == order_id:
            entries.append(entry)
    return project(order_id, entries)


async def console_view(client: httpx.AsyncClient, order_id: str) -> OrderView | None:
    r = await client.get(f"/api/orders/{order_id}")
    return OrderView.model_validate(r.json()) if r.status_code == 200 else None


async def caught_up(client: httpx.AsyncClient, events: EventLog, order_id: str,
                    timeout: float = 60.0) -> OrderView:
    """Wait until the console's view of the order equals the projection of the topics."""
    async def same() -> OrderView | None:
        view = await console_view(client, order_id)
        if view is None:
            return None
        expected = projected(events, order_id)
        return view if view.model_dump(mode="json") == expected.model_dump(mode="json") else None
    return await until(same, timeout=timeout, what=f"the console's view of {order_id}")


async def held_order(pipeline: Pipeline, standin: Any, client: httpx.AsyncClient,
                     external_id: str) -> str:
    """An order held by review: pushed through intake and review when they run (customer C0042
    is blocked), else received and held by published events with the stand-in holding it."""
    if standin is None:
        async with OrderPusher(pipeline.kafka) as pusher:
            await pusher.push("canonical", canonical_order(external_id, customer_id="C0042"))
        order_id = order_id_for("canonical", external_id)
    else:
        story = OrderStory(external_id, channel="testkit", customer_id="C0042").received().held(
            code="blocked_customer")
        standin.hold(story.events[0])
        async with OrderPusher(pipeline.kafka, producer_name="intake") as pusher:
            await pusher.publish(story.events[:1])
        async with OrderPusher(pipeline.kafka, producer_name="review") as pusher:
            await pusher.publish(story.events[1:])
        order_id = story.order_id

    async def is_held() -> bool:
        view = await console_view(client, order_id)
        return view is not None and view.state is not None and view.state.value == "held"
    await until(is_held, timeout=90, what=f"order {external_id} held in the console")
    return order_id
