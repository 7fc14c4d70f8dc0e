"""The order desk in headless Chromium (the fixtures of ``test_browser.py``): a five-line phone
order typed with the keyboard only reaches ``dispatched`` on its timeline; a bad quantity and an
unknown SKU show intake's reasons beside their fields and nothing is published; a viewer gets
no desk."""

from typing import Any

import pytest
from console_helpers import new_id
from test_browser import browser_page, shot  # noqa: F401 - the fixture, reused

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import ADDRESSES
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

FIVE_LINES = [("TEA-001", "2"), ("TEA-002", "1"), ("TEA-003", "3"), ("TEA-004", "1"),
              ("TEA-005", "2")]


async def sign_in_as(page: Any, console_base: str, user: str, next_path: str) -> None:
    await page.goto(f"{console_base}/login?next={next_path}")
    await page.fill("#username", user)
    await page.fill("#password", f"{user}-dev")
    await page.click("#sign-in")
    await page.wait_for_url(console_base + next_path)


async def focused(page: Any) -> str:
    return str(await page.evaluate("() => document.activeElement && document.activeElement.id"))


async def type_field(page: Any, text: str) -> None:
    """Replace what the focused field holds with ``text``, then Tab on (keyboard only)."""
    await page.keyboard.press("Control+A")
    await page.keyboard.type(text)
    await page.keyboard.press("Tab")


async def choose_customer(page: Any, customer_id: str) -> None:
    assert await focused(page) == "d-customer-q"  # the form opens in the customer search
    await page.keyboard.type(customer_id)
    await page.wait_for_selector("#d-customer-results li.sel")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        f"() => document.getElementById('d-customer-id').textContent === '{customer_id}'")


async def add_line(page: Any, sku: str, quantity: str) -> None:
    assert await focused(page) == "d-sku-q"
    await page.keyboard.type(sku)
    await page.wait_for_selector(f"#d-sku-results li.sel:has-text('{sku}')")
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f"#d-lines tr[data-sku='{sku}']")
    assert (await focused(page)) == ""  # the quantity input (no id): typed over, Enter returns
    await page.keyboard.press("Control+A")
    await page.keyboard.type(quantity)
    await page.keyboard.press("Enter")


async def test_a_phone_order_typed_without_the_mouse_is_dispatched(
        pipeline: Pipeline, console_base: str, browser_page: Any) -> None:  # noqa: F811
    for needed in ("intake", "review", "inventory", "logistics"):
        if needed not in pipeline.services:
            pytest.skip(f"needs {needed} among ORDERFLOW_TEST_SERVICES")
    page = browser_page
    await sign_in_as(page, console_base, "clerk", "/desk")
    await choose_customer(page, "C0002")
    assert await focused(page) == "d-province"
    province, city, district, line1, postal = ADDRESSES[0]
    for text in (province, city, district, line1, postal):
        await type_field(page, text)
    # recipient and phone came from the customer's master data: Tab past them
    assert await page.input_value("#d-recipient") and await page.input_value("#d-phone")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    for sku, quantity in FIVE_LINES:
        await add_line(page, sku, quantity)
    assert await page.locator("#d-lines tbody tr").count() == 5
    # intake's totals, from its dry run
    await page.wait_for_function(
        "() => document.getElementById('d-grand').textContent !== '–'", timeout=30_000)
    assert await page.text_content("#d-tax") != "–"
    await page.wait_for_selector("#d-credit dl")
    await shot(page, "desk")
    await page.keyboard.press("Control+Enter")
    await page.wait_for_url(f"{console_base}/orders/*", timeout=60_000)
    order_id = page.url.rsplit("/", 1)[1]
    await page.wait_for_function(
        "() => document.getElementById('o-external').textContent.trim() !== ''", timeout=60_000)
    channel, external_id = (await page.text_content("#o-external") or "").split()
    assert channel == "desk" and order_id == order_id_for("desk", external_id)
    await page.wait_for_function(
        "() => document.getElementById('o-state').dataset.state === 'dispatched'",
        timeout=180_000)
    await page.wait_for_selector("#timeline li")
    await shot(page, "desk-dispatched")


async def test_a_bad_quantity_and_an_unknown_sku_are_shown_beside_their_fields(
        pipeline: Pipeline, console_base: str, events: EventLog,
        browser_page: Any) -> None:  # noqa: F811
    if "intake" not in pipeline.services:
        pytest.skip("needs intake among ORDERFLOW_TEST_SERVICES")
    page = browser_page
    await sign_in_as(page, console_base, "clerk", "/desk")
    await choose_customer(page, "C0002")
    province, city, district, line1, postal = ADDRESSES[1]
    for text in (province, city, district, line1, postal):
        await type_field(page, text)
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await add_line(page, "TEA-001", "0")
    unknown = new_id("NOSKU")
    await page.keyboard.type(unknown)
    await page.wait_for_timeout(400)  # the search answers with nothing
    await page.keyboard.press("Enter")  # a SKU the catalogue lacks is added as typed
    await page.wait_for_selector(f"#d-lines tr[data-sku='{unknown}']")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("1")
    await page.keyboard.press("Tab")  # the catalogue has no price for it: typed
    await page.keyboard.type("10.00")
    await page.keyboard.press("Enter")  # a plain Enter submits nothing
    await page.wait_for_timeout(300)
    assert "422" not in (await page.text_content("#d-check-status") or "")
    await page.keyboard.press("Control+Enter")
    quantity = page.locator(".field-error[data-field='lines.0.quantity']")
    sku = page.locator(".field-error[data-field='lines.1.sku']")
    await page.wait_for_function(
        "() => document.querySelector(\".field-error[data-field='lines.0.quantity']\")"
        ".textContent !== ''", timeout=30_000)
    assert await quantity.text_content()
    await shot(page, "desk-refused-fields")
    assert "/desk" in page.url  # the form stays, nothing was accepted
    external_id = await page.text_content("#d-external") or ""
    assert external_id.startswith("DESK-")
    # the unknown SKU is refused with the quantity corrected
    await page.focus("#d-lines input[data-qty='0']")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("2")
    await page.keyboard.press("Control+Enter")
    await page.wait_for_function(
        "() => document.querySelector(\".field-error[data-field='lines.1.sku']\")"
        ".textContent !== ''", timeout=30_000)
    assert "unknown" in (await sku.text_content() or "").lower()
    order_id = order_id_for("desk", external_id)
    assert not events.of("order.received", order_id)
    assert not events.of("order.rejected", order_id)


async def test_a_viewer_gets_no_desk_in_the_browser(
        console_base: str, browser_page: Any) -> None:  # noqa: F811
    page = browser_page
    await page.goto(f"{console_base}/login?next=/")
    await page.fill("#username", "viewer")
    await page.fill("#password", "viewer-dev")
    await page.click("#sign-in")
    await page.wait_for_url(console_base + "/")
    assert await page.locator("[data-nav=desk]").count() == 0
    response = await page.goto(f"{console_base}/desk")
    assert response is not None and response.status == 403
    await page.wait_for_selector("#desk-refused")
    assert await page.locator("#desk-form").count() == 0
