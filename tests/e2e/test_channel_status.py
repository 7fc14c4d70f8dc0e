"""A channel's view of its order end to end, every order service as its own process on a
pipeline of this module's own (its channel key, its webhook secret and its registered webhook
reach no other test): an order pushed through the channel order API is followed on the status
route until it is dispatched with a tracking number, and the outcome webhook the channel
registered receives notify's signed deliveries.

Run: timeout 900 .venv/bin/pytest tests/e2e/test_channel_status.py -q
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.notify.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra, connect
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline
from orderflow.testing.sinks import HttpReceiver

from .sagas import new_id

pytestmark = pytest.mark.e2e

KEY = secrets.token_hex(24)
SECRET = secrets.token_hex(24)
SERVICES = ["intake", "review", "inventory", "logistics", "notify"]
T = TypeVar("T")
WAIT_S = 120.0


@pytest.fixture(scope="module")
async def own(infra: Infra) -> AsyncIterator[tuple[Pipeline, EventLog]]:
    env = {"ORDERFLOW_INTAKE_CHANNEL_KEYS": json.dumps({"canonical": KEY}),
           "ORDERFLOW_INTAKE_OUTCOME_WEBHOOK_HTTP_HOSTS": '["127.0.0.1"]',
           "ORDERFLOW_NOTIFY_WEBHOOK_SECRETS": json.dumps({"canonical": SECRET})}
    async with private_pipeline(infra, "channel-status", SERVICES, env) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    started = await HttpReceiver().start()
    try:
        yield started
    finally:
        await started.stop()


async def until(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], what: str,
                timeout: float = WAIT_S) -> T:
    """``probe()`` again every quarter second until ``check`` holds of its answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await probe()
        if check(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last: {answer}")
        await asyncio.sleep(0.25)


async def test_a_channel_follows_its_order_to_dispatch_and_hears_of_it_signed(
        own: tuple[Pipeline, EventLog], receiver: HttpReceiver) -> None:
    pipeline, _events = own
    api = f"http://127.0.0.1:{pipeline.stack.find('intake').port}/api/v1/channels/canonical"
    auth = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=30, headers=auth) as client:
        registered = await client.put(f"{api}/webhook", json={"url": receiver.url("/ok/hooks")})
        assert registered.status_code == 202, registered.text

        async def notify_uses_it() -> Any:
            conn = await connect(pipeline.infra.database_url)
            try:
                return await conn.fetchval("SELECT usable FROM notify.notify_channel_webhooks "
                                           "WHERE channel = 'canonical'")
            finally:
                await conn.close()

        await until(notify_uses_it, lambda usable: usable is True,
                    "notify to use the registered webhook")

        eid = new_id("CST")
        order = canonical_order(eid, customer_id="C0070", lines=[("TEA-002", 1)],
                                address_index=0, payment_terms="net30")
        posted = await client.post(f"{api}/orders", json=order)
        assert posted.status_code == 202, posted.text
        order_id = order_id_for("canonical", eid)

        async def status() -> dict[str, Any]:
            response = await client.get(f"{api}/orders/{eid}")
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        dispatched = await until(
            status, lambda s: s["state"] == "dispatched"
            and any(sh["tracking_number"] for sh in s["shipments"]),
            "the order dispatched with a tracking number")
        tracking = dispatched["shipments"][0]["tracking_number"]

        def deliveries() -> list[dict[str, Any]]:
            return [json.loads(r.body) | {"_request": r} for r in receiver.to("/ok/hooks")
                    if json.loads(r.body)["order_id"] == order_id]

        hooks = await until(lambda: asyncio.sleep(0, deliveries()),
                            lambda found: any(d["kind"] == "shipment_dispatched" for d in found),
                            "the dispatch's webhook")
        dispatch = next(d for d in hooks if d["kind"] == "shipment_dispatched")
        request = dispatch["_request"]
        assert verify(SECRET.encode(), request.headers[TIMESTAMP_HEADER.lower()], request.body,
                      request.headers[SIGNATURE_HEADER.lower()])
        assert not verify(b"another secret", request.headers[TIMESTAMP_HEADER.lower()],
                          request.body, request.headers[SIGNATURE_HEADER.lower()])
        assert dispatch["external_id"] == eid and dispatch["status"] == "dispatched"
        assert tracking in [s["tracking_number"] for s in dispatch["facts"]["shipments"]]

        removed = await client.delete(f"{api}/webhook")
        assert removed.status_code == 202, removed.text
        await until(notify_uses_it, lambda usable: usable is None, "notify to drop the webhook")
