"""Two approvals in headless Chromium: a reviewer approves an order above review's director
threshold on its page (it then awaits a director, and the reviewer sees no director's button), a
director gives the second approval, the order is dispatched and both approvals are on its
timeline. Needs intake, review, inventory and logistics running."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from console_helpers import DEV_PASSWORDS, admin_token, console_view, held_order, new_id, until
from test_browser import browser_page, shot

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

__all__ = ["browser_page"]  # the fixture, shared with test_browser

NEEDED = {"intake", "review", "inventory", "logistics"}


async def signed_in(page: Any, base: str, user: str) -> None:
    await page.goto(base + "/login")
    await page.fill("#username", user)
    await page.fill("#password", DEV_PASSWORDS[user])
    await page.click("#sign-in")
    await page.wait_for_url(base + "/")


async def signed_out(page: Any) -> None:
    await page.click("form.logout button[type=submit]")
    await page.wait_for_url("**/login")


async def test_a_reviewer_then_a_director_approve_and_the_order_is_dispatched(
        pipeline: Pipeline, console_base: str, review_standin: Any, browser_page: Any) -> None:
    if review_standin is not None or not set(pipeline.services) >= NEEDED:
        pytest.skip(f"two approvals to dispatch need {', '.join(sorted(NEEDED))} running")
    page = browser_page
    eid = new_id("DIRB")
    # about 70 000 CNY, above the director threshold; customer C0042 is blocked: held
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", canonical_order(eid, customer_id="C0042",
                                                       lines=[("TEA-007", 100)]))
    order_id = order_id_for("canonical", eid)
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        async def held() -> bool:
            view = await console_view(admin, order_id)
            return view is not None and view.state is not None and view.state.value == "held"
        await until(held, timeout=90, what=f"{order_id} held")

    order_page = f"{console_base}/orders/{order_id}"
    await signed_in(page, console_base, "reviewer")
    await page.goto(order_page)
    await page.wait_for_selector("#o-actions:not([hidden]) #o-approve:not([hidden])")
    assert await page.is_hidden("#o-director_approve")
    await page.fill("#o-comment", "credit checked")
    await page.click("#o-approve")
    await page.wait_for_selector("#o-awaiting-director:not([hidden])", timeout=90_000)
    assert "approved by reviewer" in (await page.text_content("#o-awaiting-director") or "")
    assert await page.is_hidden("#o-approve")
    assert await page.is_hidden("#o-director_approve")  # the reviewer holds no direct right
    await page.wait_for_function(
        "() => document.getElementById('timeline').textContent.includes('awaiting a director')")
    # the queue says so too, without the director's button
    await page.click("[data-nav=exceptions]")
    row = page.locator(f"#exceptions-table tr[data-order-id='{order_id}']")
    await row.locator("[data-awaiting=director]").wait_for()
    assert await row.locator("button[data-act=director_approve]").count() == 0
    assert await row.locator("button[data-act=approve]").count() == 0
    await shot(page, "awaiting-director")
    await signed_out(page)

    await signed_in(page, console_base, "director")
    await page.goto(order_page)
    await page.wait_for_selector("#o-director_approve:not([hidden])")
    await page.fill("#o-comment", "year-end stock-up")
    await page.click("#o-director_approve")
    await page.wait_for_selector("#toast:not([hidden])")
    await page.wait_for_function(
        "() => ['dispatched', 'delivered'].includes(document.getElementById('o-state').dataset.state)",
        timeout=120_000)
    timeline = await page.text_content("#timeline") or ""
    assert "approved by reviewer; awaiting a director's approval" in timeline
    assert "approved by director (year-end stock-up)" in timeline
    await shot(page, "director-approved")


async def test_a_send_back_needs_its_comment_and_a_clerk_has_no_decision(
        pipeline: Pipeline, console_base: str, review_standin: Any, browser_page: Any) -> None:
    """A reviewer sends a held order back for rework: without a comment review refuses it and
    the page says so beside the comment field; with one the order is rejected for rework, said on
    its page and timeline. A clerk (no right to decide) is shown no decision on a held order."""
    if review_standin is not None or "intake" not in pipeline.services:
        pytest.skip("needs intake and review running")
    page = browser_page
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        order_id = await held_order(pipeline, None, admin, new_id("BACKB"))
    order_page = f"{console_base}/orders/{order_id}"

    await signed_in(page, console_base, "clerk")
    await page.goto(order_page)
    await page.wait_for_selector("#o-state[data-state=held]")
    assert await page.is_hidden("#o-actions")
    assert await page.locator("#o-send_back:visible").count() == 0
    await signed_out(page)

    await signed_in(page, console_base, "reviewer")
    await page.goto(order_page)
    await page.wait_for_selector("#o-actions:not([hidden]) #o-send_back")
    await page.click("#o-send_back")
    await page.wait_for_function(
        "() => document.getElementById('o-comment-err').textContent !== ''")
    assert "needs a comment" in (await page.text_content("#o-comment-err") or "")
    assert await page.get_attribute("#o-state", "data-state") == "held"
    await page.fill("#o-comment", "wrong delivery address")
    await page.click("#o-send_back")
    await page.wait_for_selector("#o-rework:not([hidden])", timeout=90_000)
    assert (await page.text_content("#o-comment-err") or "") == ""
    assert "wrong delivery address" in (await page.text_content("#o-rework-text") or "")
    await page.wait_for_function(
        "() => document.getElementById('timeline').textContent.includes('sent back for rework')")
    await shot(page, "sent-back")
