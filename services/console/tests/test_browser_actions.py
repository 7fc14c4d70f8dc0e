"""The order page's actions in headless Chromium: a clerk records the payment of a prepaid order
held by review (a bad amount first, refused beside its field) and sees it approved on the
timeline; a viewer sees no action form."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from console_helpers import DEV_PASSWORDS, admin_token, new_id, until
from test_actions_service import state_of
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


async def test_a_payment_entered_in_the_browser_releases_a_prepaid_hold(
        pipeline: Pipeline, console_base: str, browser: Any) -> None:  # noqa: F811
    if not {"intake", "review", "console"} <= set(pipeline.services):
        pytest.skip("needs intake, review and the console")
    external_id = new_id("BACT")
    order_id = order_id_for("canonical", external_id)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(external_id, payment_terms="prepaid"))
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        held = await until(lambda: state_of(admin, order_id, "held"), timeout=120,
                           what="the prepaid order held")
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
