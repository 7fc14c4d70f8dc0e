"""The worklists page in headless Chromium: a rejected order listed with its reason and the
customer's contact, assigned to the clerk and found under "my work"; two held orders approved at
once with one comment; a case recorded on an order and shown on its timeline, with a validation
error beside its field; a viewer sees no action buttons and the API refuses them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from console_helpers import DEV_PASSWORDS, admin_token, held_order, new_id, until
from test_browser import CHROMIUM, CHROMIUM_ARGS, chromium_present, shot
from test_worklist_service import rejected_order

from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not chromium_present():
        pytest.skip("/usr/bin/chromium is absent: run services/console/tests/browser_setup.sh")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def signed_in(browser: Any, base: str, user: str) -> Any:
    context = await browser.new_context(viewport={"width": 1600, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(base + "/login?next=/worklists")
    await page.fill("#username", user)
    await page.fill("#password", DEV_PASSWORDS[user])
    await page.click("#sign-in")
    await page.wait_for_url(base + "/worklists")
    return page


async def test_worklists_in_the_browser(pipeline: Pipeline, console_base: str,
                                        review_standin: Any, browser: Any) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        rejected = await rejected_order(pipeline, new_id("WLREJ"))
        first = await held_order(pipeline, review_standin, admin, new_id("WLHELD"))
        second = await held_order(pipeline, review_standin, admin, new_id("WLHELD"))

        # the clerk finds the rejected order with its reason and contact and takes it
        clerk = await signed_in(browser, console_base, "clerk")
        row = clerk.locator(f"#worklist-table tr[data-key='rejected:{rejected}']")
        await row.wait_for()
        text = await row.text_content() or ""
        assert "13800000000" in text and "li@example.com" in text and "Li Lei" in text
        assert await row.locator("td.reason").get_attribute("title") == "unknown_sku: no such SKU"
        assert await row.locator("a[data-act=resubmit]").get_attribute("href") == \
            f"/desk?from={rejected}"
        await row.locator("select[data-assign-for]").select_option("clerk")
        await row.locator("button[data-act=assign]").click()
        await until(lambda: _assignee_is(row, "clerk"), what="the item assigned to the clerk")
        await clerk.select_option("#wl-view", "mine")
        await clerk.locator(f"#worklist-table tr[data-key='held:{first}']").wait_for(
            state="detached")  # not the clerk's
        await row.wait_for()
        await shot(clerk, "worklists-mine")

        # a case on an order: a missing text is shown beside its field, then recorded
        await clerk.fill("#case-customer", "C0002")
        await clerk.fill("#case-order", first)
        await clerk.click("#case-save")
        assert await clerk.text_content("#case-err-text") != ""
        await clerk.fill("#case-text", "customer asks when it ships")
        await clerk.click("#case-save")
        await clerk.wait_for_selector("#toast:not([hidden])")
        await clerk.goto(f"{console_base}/orders/{first}")
        await clerk.wait_for_function(
            "() => (document.getElementById('timeline') || {}).textContent"
            "?.includes('customer asks when it ships')")
        # the clerk decides nothing: no bulk buttons
        await clerk.goto(console_base + "/worklists")
        await clerk.locator("#worklist-table tbody tr").first.wait_for()
        assert await clerk.locator("#wl-bulk-approve").count() == 0

        # the reviewer approves both held orders at once with one comment
        reviewer = await signed_in(browser, console_base, "reviewer")
        for order_id in (first, second):
            box = reviewer.locator(f"#worklist-table tr[data-key='held:{order_id}'] input[data-pick]")
            await box.check()
        await reviewer.fill("#wl-comment", "both paid, approved together")
        await reviewer.click("#wl-bulk-approve")
        for order_id in (first, second):
            await reviewer.wait_for_selector(
                f"#wl-results li[data-result-for='{order_id}'][data-status='200']")
        await shot(reviewer, "worklists-bulk")
        for order_id in (first, second):
            await reviewer.locator(f"#worklist-table tr[data-key='held:{order_id}']").wait_for(
                state="detached", timeout=90_000)
        decisions = {d[0]: d for d in getattr(review_standin, "decisions", [])}
        if review_standin is not None:
            assert decisions[first][1:] == ("approve", "reviewer", "both paid, approved together")

        # a viewer reads the worklists without any action, and the API refuses one
        viewer = await signed_in(browser, console_base, "viewer")
        await viewer.locator(f"#worklist-table tr[data-key='rejected:{rejected}']").wait_for()
        assert await viewer.locator("#worklist-table button").count() == 0
        assert await viewer.locator("#case-form, #wl-bulk").count() == 0
        status = await viewer.evaluate(
            """async key => (await fetch('/api/worklist/claim', {method: 'POST',
                credentials: 'same-origin', headers: {'Content-Type': 'application/json',
                'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
                body: JSON.stringify({key: key})})).status""", f"rejected:{rejected}")
        assert status == 403


async def _assignee_is(row: Any, name: str) -> bool:
    return (await row.locator("td.assignee").text_content() or "").strip() == name
