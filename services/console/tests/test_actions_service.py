"""An order specialist's actions through the console's API against the running services: a
recorded payment releases a prepaid hold and the order goes on to dispatch; a hand scan
"delivered" delivers the shipment; a return entered is approved, received with its inspection
(inventory's stock rises) and refunded on the timeline. Each action refused with its fields'
reasons (422, nothing published), for a viewer and a reviewer (403), and without the CSRF token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from console_helpers import admin_token, console_view, new_id, sign_in, until

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service
NEEDED = {"intake", "review", "inventory", "logistics", "console"}


async def session_of(base: str, user: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    client = httpx.AsyncClient(base_url=base, timeout=30)
    return client, {"X-CSRF-Token": await sign_in(client, user)}


async def state_of(client: httpx.AsyncClient, order_id: str, *states: str) -> Any:
    view = await console_view(client, order_id)
    return view if view is not None and view.state is not None and view.state.value in states \
        else None


async def timeline_has(client: httpx.AsyncClient, order_id: str, event_type: str) -> bool:
    r = await client.get(f"/api/orders/{order_id}")
    return any(i["event_type"] == event_type for i in r.json().get("timeline", []))


async def available(pipeline: Pipeline, sku: str) -> int:
    base = f"http://127.0.0.1:{pipeline.stack.find('inventory').port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as api:
        return int((await api.get(f"/inventory/stock/{sku}")).json()["available"])


async def test_payment_scan_and_return_through_the_services(pipeline: Pipeline,
                                                             console_base: str) -> None:
    if not set(pipeline.services) >= NEEDED:
        pytest.skip(f"needs {sorted(NEEDED)} among ORDERFLOW_TEST_SERVICES")
    external_id = new_id("ACT")
    order_id = order_id_for("canonical", external_id)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(external_id, payment_terms="prepaid",
                                                       lines=[("TEA-001", 3)]))
    admin = httpx.AsyncClient(base_url=console_base, timeout=30,
                              headers={"Authorization": f"Bearer {admin_token(pipeline)}"})
    clerk, clerk_h = await session_of(console_base, "clerk")
    viewer, viewer_h = await session_of(console_base, "viewer")
    reviewer, reviewer_h = await session_of(console_base, "reviewer")
    try:
        held = await until(lambda: state_of(admin, order_id, "held"), timeout=120,
                           what="the prepaid order held")
        assert "prepayment_due" in held.hold_codes
        r = await clerk.get(f"/api/orders/{order_id}/actions")
        assert r.status_code == 200, r.text
        offered = r.json()
        # a connector's order: its revisions come from its channel, not from the desk
        assert offered["may_change"] is False and offered["returnable"] == {}
        total = str(held.grand_total)
        pay = f"/api/orders/{order_id}/payment"
        good = {"amount": total, "currency": held.currency, "reference": "BANK-" + external_id}
        # refused: who may not, no CSRF token, bad fields (nothing published)
        assert (await viewer.post(pay, json=good, headers=viewer_h)).status_code == 403
        assert (await reviewer.post(pay, json=good, headers=reviewer_h)).status_code == 403
        assert (await clerk.post(pay, json=good)).status_code == 403
        bad = await clerk.post(pay, json={"amount": "1.001", "currency": "USD", "reference": ""},
                               headers=clerk_h)
        assert bad.status_code == 422
        assert {tuple(d["loc"]) for d in bad.json()["detail"]} == {
            ("body", "amount"), ("body", "currency"), ("body", "reference")}
        r = await clerk.post(pay, json=good, headers=clerk_h)
        assert r.status_code == 202, r.text
        again = await clerk.post(pay, json=good, headers=clerk_h)
        assert again.status_code == 422 and again.json()["detail"][0]["loc"] == ["body",
                                                                                "reference"]
        # the payment releases the hold: the order goes on to dispatch
        view = await until(lambda: state_of(admin, order_id, "dispatched", "delivered"),
                           timeout=120, what="the paid order dispatched")
        assert await timeline_has(admin, order_id, "PaymentReceived")
        assert (await clerk.get(f"/api/orders/{order_id}/actions")).json()["may_change"] is False

        # a hand scan: another order's shipment refused, "delivered" delivers it
        scan = f"/api/orders/{order_id}/scan"
        r = await clerk.post(scan, json={"shipment_id": "nope", "status": "exception"},
                             headers=clerk_h)
        assert r.status_code == 422
        assert {d["loc"][-1] for d in r.json()["detail"]} == {"shipment_id", "code"}
        shipment = view.shipments[0].shipment_id
        r = await clerk.post(scan, json={"shipment_id": shipment, "status": "delivered",
                                         "location": "Shanghai"}, headers=clerk_h)
        assert r.status_code == 202, r.text
        await until(lambda: state_of(admin, order_id, "delivered"), timeout=90,
                    what="the shipment delivered by the hand scan")

        # a return: too many units refused; 2 restocked raise the stock and are refunded
        ret = f"/api/orders/{order_id}/return"
        r = await clerk.post(ret, json={"reason": "", "refund": "0", "lines": [
            {"sku": "TEA-001", "quantity": 4, "outcome": "restock"}]}, headers=clerk_h)
        assert r.status_code == 422
        assert {tuple(d["loc"][1:]) for d in r.json()["detail"]} == {("reason",),
                                                                   ("lines", 0, "quantity")}
        before = await available(pipeline, "TEA-001")
        r = await clerk.post(ret, json={"reason": "too many", "refund": "1.00", "lines": [
            {"sku": "TEA-001", "quantity": 2, "outcome": "restock"}]}, headers=clerk_h)
        assert r.status_code == 202, r.text
        await until(lambda: timeline_has(admin, order_id, "RefundIssued"), timeout=90,
                    what="the refund on the timeline")

        async def restocked() -> bool:
            return await available(pipeline, "TEA-001") >= before + 2
        await until(restocked, what="the returned units restocked")
        # a clerk may ask for a cancel (refused by logistics after dispatch)
        r = await clerk.post(f"/api/orders/{order_id}/cancel", json={"reason": "changed mind"},
                             headers=clerk_h)
        assert r.status_code == 202
        actions = (await admin.get(f"/api/orders/{order_id}/activity")).json()["actions"]
        seen = {(a["user_name"], a["action"], a["outcome"]) for a in actions}
        assert {("clerk", "payment", "published"), ("clerk", "payment", "refused"),
                ("clerk", "scan", "published"), ("clerk", "return", "published"),
                ("clerk", "cancel", "requested")} <= seen
        page = await clerk.get(f"/orders/{order_id}/timeline")
        assert "recorded a payment of" in page.text and "entered return" in page.text
    finally:
        for c in (admin, clerk, viewer, reviewer):
            await c.aclose()
