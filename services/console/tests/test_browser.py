"""The web page in headless Chromium: sign in, watch the dashboard's count change while orders
are pushed, open an order's timeline, approve a held order from the exception queue and see it
move on, switch to Chinese and back. Screenshots of every page go to ``var/artifacts/screenshots/``; with
``ORDERFLOW_UPDATE_SCREENSHOT=1`` the dashboard's is also copied to ``docs/console.png`` for the
README (a test run leaves tracked files alone otherwise)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_factories import OrderStory
from console_helpers import DEV_PASSWORDS, admin_token, console_view, held_order, new_id, until

from orderflow.connector import OrderPusher
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.stack import project_root
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = project_root() / "var" / "artifacts" / "screenshots"


def chromium_present() -> bool:
    return CHROMIUM.exists()


@pytest.fixture
async def browser_page() -> AsyncIterator[Any]:
    if not chromium_present():
        pytest.skip("/usr/bin/chromium is absent: run services/console/tests/browser_setup.sh")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 1000})
            page = await context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            await browser.close()


async def push_orders(pipeline: Pipeline, count: int) -> list[str]:
    """Orders as the simulator's connectors push them (through intake when it runs)."""
    ids = [new_id("WEB") for _ in range(count)]
    if "intake" in pipeline.services:
        async with OrderPusher(pipeline.kafka) as pusher:
            await pusher.push_many([("canonical", eid, canonical_order(eid)) for eid in ids])
        from orderflow.contracts.order import order_id_for

        return [order_id_for("canonical", eid) for eid in ids]
    stories = [OrderStory(eid, channel="testkit").received() for eid in ids]
    async with OrderPusher(pipeline.kafka, producer_name="intake") as pusher:
        await pusher.publish([e for s in stories for e in s.events])
    return [s.order_id for s in stories]


async def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"console-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_an_operator_watches_finds_and_approves_in_the_browser(
        pipeline: Pipeline, console_base: str, review_standin: Any, browser_page: Any) -> None:
    page = browser_page
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        # sign in
        await page.goto(console_base + "/")
        assert "/login" in page.url
        await shot(page, "sign-in")
        await page.fill("#username", "reviewer")
        await page.fill("#password", DEV_PASSWORDS["reviewer"])
        await page.click("#sign-in")
        await page.wait_for_url(console_base + "/")
        await page.wait_for_function(
            "() => /^[0-9]+$/.test(document.getElementById('count-orders').textContent)")
        before = int(await page.text_content("#count-orders") or "0")

        # the dashboard's count follows the orders pushed
        order_ids = await push_orders(pipeline, 5)
        await page.wait_for_function(
            f"() => Number(document.getElementById('count-orders').textContent) >= {before + 5}",
            timeout=90_000)
        await page.wait_for_selector("#topics table")
        dashboard = await shot(page, "dashboard")

        # find an order and open its timeline
        await until(lambda: console_view(admin, order_ids[0]), what="the pushed order")
        view = await console_view(admin, order_ids[0])
        assert view is not None
        await page.click("[data-nav=orders]")
        await page.fill("#f-q", view.external_id or "")
        await page.click("#order-filters button[type=submit]")
        row = page.locator(f"#orders-table tr[data-order-id='{order_ids[0]}'] a")
        await row.wait_for()
        await shot(page, "orders")
        await row.click()
        await page.wait_for_url(f"{console_base}/orders/{order_ids[0]}")
        await page.wait_for_selector("#timeline li")
        assert "OrderReceived" in (await page.text_content("#timeline") or "")
        await shot(page, "order-timeline")

        # approve a held order from the exception queue and watch it move on
        held = await held_order(pipeline, review_standin, admin, new_id("HELD"))
        await page.click("[data-nav=exceptions]")
        approve = page.locator(f"#exceptions-table tr[data-order-id='{held}'] button[data-act=approve]")
        await approve.wait_for()
        await shot(page, "exceptions")
        await page.fill("#x-comment", "customer paid, approved in the browser test")
        await approve.click()
        await page.wait_for_selector("#toast:not([hidden])")
        assert "approve" in (await page.text_content("#toast") or "")
        await page.locator(f"#exceptions-table tr[data-order-id='{held}']").wait_for(
            state="detached", timeout=90_000)
        await page.goto(f"{console_base}/orders/{held}")
        await page.wait_for_function(
            "() => !['held', ''].includes(document.getElementById('o-state').textContent)",
            timeout=90_000)
        assert "approved by reviewer" in (await page.text_content("#timeline") or "")
        await shot(page, "approved-order")

        # reports with charts, and the exports linked
        await page.click("[data-nav=reports]")
        await page.wait_for_selector("#r-orders")
        await page.wait_for_selector("#r-volumes .bar-row")
        assert (await page.get_attribute("#export-xlsx", "href") or "").startswith(
            "/api/reports/summary.xlsx")
        await shot(page, "reports")

        # switch to Chinese: the dashboard, the orders, an order and the exception queue in
        # Chinese, dates and money in Chinese format; then back to English
        await page.click("#langs [data-lang=zh-CN]")
        await page.wait_for_selector("html[lang=zh-CN]")
        await page.click("[data-nav=dashboard]")
        await page.wait_for_url(console_base + "/")
        assert await page.text_content("h1") == "仪表板"
        assert await page.text_content("[data-nav=orders]") == "订单"
        await page.wait_for_selector("#topics table")
        assert "主题" in (await page.text_content("#topics thead") or "")
        await shot(page, "dashboard-zh")
        await page.click("[data-nav=orders]")
        await page.fill("#f-q", view.external_id or "")
        await page.click("#order-filters button[type=submit]")
        row = page.locator(f"#orders-table tr[data-order-id='{order_ids[0]}']")
        await row.wait_for()
        assert "外部单号" in (await page.text_content("#orders-table thead") or "")
        await page.wait_for_function(
            "() => /^¥[0-9,]+\\.[0-9]{2}$/.test(document.querySelector("
            "'#orders-table td.money').textContent)")
        assert "共" in (await page.text_content("#order-total") or "")
        await shot(page, "orders-zh")
        await page.goto(f"{console_base}/orders/{held}")
        await page.wait_for_selector("#timeline li time:not(:empty)")
        placed = await page.text_content("#timeline li time") or ""
        assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2}", placed), placed
        timeline = await page.text_content("#timeline") or ""
        assert "由 reviewer 批准" in timeline and "approved by" not in timeline
        assert "金额" in (await page.text_content("#o-facts") or "")
        await shot(page, "order-zh")
        await page.click("[data-nav=exceptions]")
        await page.wait_for_selector("#exception-kpis [data-testid=x-count-held]")
        assert "暂扣" in (await page.text_content("#exception-kpis") or "")
        assert "原因" in (await page.text_content("#exceptions-table thead") or "")
        assert await page.text_content("h1") == "异常队列"
        await shot(page, "exceptions-zh")
        await page.click("#langs [data-lang=en]")
        await page.wait_for_selector("html[lang=en]")
        assert await page.text_content("h1") == "Exception queue"
        await page.click("[data-nav=dashboard]")
        assert await page.text_content("h1") == "Dashboard"

    if os.environ.get("ORDERFLOW_UPDATE_SCREENSHOT") == "1":
        docs = project_root() / "docs"
        docs.mkdir(exist_ok=True)
        shutil.copyfile(dashboard, docs / "console.png")
