"""The order page's actions in headless Chromium, each form as a clerk fills it, its refusal
shown beside the refused field first and its outcome awaited on the timeline: the payment of a
prepaid order held by review (then approved); the cancel of a held order (then cancelled); a
hand-entered carrier scan of a dispatched order (then delivered) and its return with a restock
and a refund (received, refunded, the stock back up). A viewer sees no action form and the API
refuses the viewer's cancel (403, audited)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from console_helpers import DEV_PASSWORDS, admin_token, new_id, until
from test_actions_service import available, state_of
from test_browser import shot
from test_browser_worklists import browser  # noqa: F401  (the fixture)

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


async def order_page(browser: Any, base: str, user: str, order_id: str) -> Any:  # noqa: F811
    context = await browser.new_context(viewport={"width": 1600, "height": 1200})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(f"{base}/login?next=/orders/{order_id}")
    await page.fill("#username", user)
    await page.fill("#password", DEV_PASSWORDS[user])
    await page.click("#sign-in")
    await page.wait_for_url(f"{base}/orders/{order_id}")
    return page


async def held_prepaid(pipeline: Pipeline, base: str, external_id: str) -> tuple[str, Any]:
    """A prepaid order pushed by a connector, once review holds it: its id and its view."""
    order_id = order_id_for("canonical", external_id)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(external_id, payment_terms="prepaid"))
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        held = await until(lambda: state_of(admin, order_id, "held"), timeout=120,
                           what="the prepaid order held")
    return order_id, held


async def test_a_payment_entered_in_the_browser_releases_a_prepaid_hold(
        pipeline: Pipeline, console_base: str, browser: Any) -> None:  # noqa: F811
    if not {"intake", "review", "console"} <= set(pipeline.services):
        pytest.skip("needs intake, review and the console")
    external_id = new_id("BACT")
    order_id, held = await held_prepaid(pipeline, console_base, external_id)
    clerk = await order_page(browser, console_base, "clerk", order_id)
    await clerk.wait_for_function(
        "() => document.getElementById('act-payment-currency').value !== ''")
    # a connector's order is changed by its channel: the desk offers no change of it
    assert not await clerk.is_visible("#act-change")
    await clerk.fill("#act-payment-amount", "1.001")
    await clerk.fill("#act-payment-reference", "BANK-" + external_id)
    await clerk.click("#act-payment")
    await clerk.wait_for_function(
        "() => document.getElementById('act-payment-err-amount').textContent !== ''")
    assert "2 decimals" in (await clerk.text_content("#act-payment-err-amount") or "")
    await clerk.fill("#act-payment-amount", str(held.grand_total))
    await clerk.click("#act-payment")
    await clerk.wait_for_selector("#toast:not([hidden])")
    await clerk.wait_for_selector("#timeline li.t-OrderApproved", timeout=90_000)
    text = await clerk.text_content("#timeline") or ""
    assert "recorded a payment of" in text and "BANK-" + external_id in text
    await shot(clerk, "order-actions")

    viewer = await order_page(browser, console_base, "viewer", order_id)
    await viewer.wait_for_selector("#timeline li")
    assert await viewer.locator("#act, #act-payment-form, #act-cancel-form").count() == 0


async def sent(page: Any, button: str) -> None:
    """Submit a form and wait for the page's word that the action was sent (a toast of an
    earlier action hidden first)."""
    await page.eval_on_selector("#toast", "el => { el.hidden = true; }")
    await page.click(button)
    await page.wait_for_selector("#toast.ok:not([hidden])")


async def field_error(page: Any, element_id: str) -> str:
    """The refusal shown beside a field, once the page shows one."""
    await page.wait_for_function(
        f"() => document.getElementById('{element_id}').textContent !== ''")
    return await page.text_content(f"#{element_id}") or ""


async def test_a_held_order_cancelled_in_the_browser_and_refused_to_a_viewer(
        pipeline: Pipeline, console_base: str, browser: Any) -> None:  # noqa: F811
    if not {"intake", "review", "logistics", "console"} <= set(pipeline.services):
        pytest.skip("needs intake, review, logistics and the console")
    external_id = new_id("BCAN")
    order_id, _held = await held_prepaid(pipeline, console_base, external_id)
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        clerk = await order_page(browser, console_base, "clerk", order_id)
        await clerk.wait_for_selector("#timeline li.t-OrderHeld")
        # no reason: refused in the page; a reason too long: refused by the server, beside it
        await clerk.click("#act-cancel")
        assert await field_error(clerk, "act-cancel-err-reason") == "Required"
        await clerk.fill("#act-cancel-reason", "x" * 501)
        await clerk.click("#act-cancel")
        assert "500 characters" in await field_error(clerk, "act-cancel-err-reason")
        assert await clerk.get_attribute("#o-state", "data-state") == "held"
        await clerk.fill("#act-cancel-reason", "customer changed their mind " + external_id)
        await sent(clerk, "#act-cancel")
        assert await clerk.text_content("#act-cancel-err-reason") == ""
        await clerk.wait_for_selector("#timeline li.t-OrderCancelled", timeout=90_000)
        await clerk.wait_for_selector("#o-state[data-state=cancelled]")
        cancelled = await clerk.text_content("#timeline li.t-OrderCancelled") or ""
        assert "customer changed their mind " + external_id in cancelled and "clerk" in cancelled
        assert "asked to cancel" in (await clerk.text_content("#timeline") or "")
        await shot(clerk, "order-cancel")

        # a viewer: no action form, and the API refuses the cancel the page does not offer
        viewer = await order_page(browser, console_base, "viewer", order_id)
        await viewer.wait_for_selector("#timeline li.t-OrderCancelled")
        assert await viewer.locator("#act, [id^=act-]").count() == 0
        refused = await viewer.evaluate("""async (id) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch("/api/orders/" + encodeURIComponent(id) + "/cancel", {
                method: "POST", credentials: "same-origin", body: JSON.stringify({reason: "no"}),
                headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}});
            return {status: r.status, detail: (await r.json()).detail};
        }""", order_id)
        # a cancel takes decide (a held order) or amend: refused, and audited, under both
        assert refused == {"status": 403,
                           "detail": "role viewer holds none of the rights decide, amend"}
        audit = (await admin.get("/api/audit", params={"action": "decide|amend"})).json()["entries"]
        assert any(a["user_name"] == "viewer" and a["outcome"] == "forbidden"
                   and a["target"] == f"/api/orders/{order_id}/cancel" for a in audit)
        requested = (await admin.get(f"/api/orders/{order_id}/activity")).json()["actions"]
        assert [(a["user_name"], a["action"], a["outcome"]) for a in requested
                if a["action"] == "cancel"] == [("clerk", "cancel", "requested")]


async def test_a_carrier_scan_and_a_return_entered_in_the_browser(
        pipeline: Pipeline, console_base: str, browser: Any) -> None:  # noqa: F811
    if not {"intake", "review", "inventory", "logistics", "console"} <= set(pipeline.services):
        pytest.skip("needs intake, review, inventory, logistics and the console")
    external_id = new_id("BRET")
    order_id = order_id_for("canonical", external_id)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(external_id, lines=[("TEA-001", 3)]))
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        view = await until(lambda: state_of(admin, order_id, "dispatched"), timeout=120,
                           what="the order dispatched")
        shipment = view.shipments[0].shipment_id
        clerk = await order_page(browser, console_base, "clerk", order_id)
        await clerk.wait_for_selector(f"#act-scan-shipment option[value='{shipment}']",
                                      state="attached")

        # a scan: an exception without its code, dated tomorrow, refused beside both fields
        await clerk.select_option("#act-scan-status", "exception")
        await clerk.fill("#act-scan-at", "2099-01-01T10:00")
        await clerk.click("#act-scan")
        assert "what went wrong" in await field_error(clerk, "act-scan-err-code")
        assert "future" in await field_error(clerk, "act-scan-err-at")
        # "delivered", entered by hand, delivers the shipment
        await clerk.eval_on_selector("#act-scan-at", "el => { el.value = ''; }")
        await clerk.select_option("#act-scan-shipment", shipment)
        await clerk.select_option("#act-scan-status", "delivered")
        await clerk.fill("#act-scan-location", "Shanghai " + external_id)
        await sent(clerk, "#act-scan")
        await clerk.wait_for_selector("#timeline li.t-ShipmentDelivered", timeout=90_000)
        await clerk.wait_for_selector("#o-state[data-state=delivered]")
        text = await clerk.text_content("#timeline") or ""
        assert "entered a carrier scan of " + shipment in text
        assert "Shanghai " + external_id in (
            await clerk.text_content("#timeline li.t-TrackingUpdated:has-text('Shanghai')") or "")
        await shot(clerk, "order-scan")

        # a return of 2 of the 3 units, restocked: a refund above the maximum refused first
        row = clerk.locator("#act-return-lines tr[data-sku='TEA-001']")
        await row.wait_for()
        assert await row.locator("td:nth-child(2)").text_content() == "3"
        assert view.grand_total is not None
        await row.locator("[data-qty]").fill("2")
        await row.locator("[data-outcome]").select_option("restock")
        await clerk.fill("#act-return-reason", "too many " + external_id)
        await clerk.fill("#act-return-refund", str(view.grand_total + 1))
        await clerk.click("#act-return")
        assert f"at most {view.grand_total}" in await field_error(clerk, "act-return-err-refund")
        before = await available(pipeline, "TEA-001")
        await clerk.fill("#act-return-refund", "1.00")
        await sent(clerk, "#act-return")
        assert await clerk.text_content("#act-return-err-refund") == ""
        for event_type in ("ReturnApproved", "ReturnReceived", "RefundIssued"):
            await clerk.wait_for_selector(f"#timeline li.t-{event_type}", timeout=90_000)
        await clerk.wait_for_selector("#o-state[data-state=returned]")
        text = await clerk.text_content("#timeline") or ""
        assert "entered return" in text and "TEA-001 x2 restock" in text
        received = await clerk.text_content("#timeline li.t-ReturnReceived") or ""
        assert "2 restocked, 0 scrapped" in received
        await shot(clerk, "order-return")

        async def restocked() -> bool:
            return await available(pipeline, "TEA-001") >= before + 2
        await until(restocked, what="the returned units restocked")
        # the units that came back are no longer offered: the form follows the timeline
        await clerk.wait_for_selector(
            "#act-return-lines tr[data-sku='TEA-001'] td:nth-child(2):text-is('1')")
