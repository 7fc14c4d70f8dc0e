"""The order desk in headless Chromium (the fixtures of ``test_browser.py``): a five-line phone
order typed with the keyboard only (the customer's address filled from master data, typed over)
reaches ``dispatched``, its timeline naming who entered it; a bad quantity and an
unknown SKU show intake's reasons beside their fields and nothing is published; a viewer gets
no desk; a backordered order opened as its next revision with a quantity raised moves only the
stock difference."""

from decimal import Decimal
from typing import Any

import httpx
import pytest
from console_helpers import new_id, sign_in
from test_browser import browser_page, shot  # noqa: F401 - the fixture, reused

from orderflow.contracts.events import ProductUpdated, StockReceived
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import ADDRESSES, canonical_order, customers
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
        pipeline: Pipeline, console_base: str, events: EventLog,
        browser_page: Any) -> None:  # noqa: F811
    for needed in ("intake", "review", "inventory", "logistics"):
        if needed not in pipeline.services:
            pytest.skip(f"needs {needed} among ORDERFLOW_TEST_SERVICES")
    page = browser_page
    await sign_in_as(page, console_base, "clerk", "/desk")
    await choose_customer(page, "C0002")
    assert await focused(page) == "d-province"
    # the customer's delivery address (master data) fills the address fields
    home = customers()["C0002"].delivery_address
    assert home is not None
    for field, value in (("#d-province", home.province), ("#d-city", home.city),
                         ("#d-district", home.district), ("#d-line1", home.line1),
                         ("#d-postal", home.postal_code), ("#d-recipient", home.name),
                         ("#d-phone", home.phone)):
        assert await page.input_value(field) == value, field
    # and stays editable: this order goes elsewhere
    province, city, district, line1, postal = ADDRESSES[0]
    assert line1 != home.line1
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
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.order.shipping_address.line1 == line1  # as typed over the customer's
    assert received.event.author == "clerk"
    entered = page.locator("#timeline li.t-OrderReceived")
    await entered.wait_for(timeout=60_000)
    assert "clerk" in (await entered.text_content() or "")  # who entered it, from the event
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


async def _available(client: httpx.AsyncClient, sku: str) -> int:
    return int((await client.get(f"/inventory/stock/{sku}")).json()["available"])


async def test_a_change_entered_at_the_desk_moves_only_the_stock_difference(
        pipeline: Pipeline, console_base: str, events: EventLog,
        browser_page: Any) -> None:  # noqa: F811
    """A backordered order (one line reserved, one short) opened at the desk as its next
    revision, a quantity raised and submitted: inventory reserves the extra units only, the
    short line stays as it was, and the order's timeline shows the change and who entered it."""
    for needed in ("intake", "review", "inventory", "logistics"):
        if needed not in pipeline.services:
            pytest.skip(f"needs {needed} among ORDERFLOW_TEST_SERVICES")
    held, short = new_id("DKH").upper(), new_id("DKS").upper()
    await pipeline.publish_and_wait([
        *(ProductUpdated(sku=sku, name="录单变更测试", unit_price=Decimal("100.00"), currency="CNY",
                         tax_rate=Decimal("0.13"), weight_kg=Decimal("1.000"))
          for sku in (held, short)),
        StockReceived(warehouse_id="WH-SH", sku=held, quantity=5, reference="desk change test")])
    first = canonical_order("unused", lines=[("TEA-001", 1)], address_index=0)
    for key in ("external_id", "stated_total", "placed_at"):
        first.pop(key)
    first["lines"] = [{"sku": sku, "quantity": q, "unit_price": "100.00", "discount": "0.00"}
                      for sku, q in ((held, 2), (short, 1))]
    async with httpx.AsyncClient(base_url=console_base, timeout=60) as clerk:
        clerk.headers["X-CSRF-Token"] = await sign_in(clerk, "clerk", "clerk-dev")
        posted = await clerk.post("/api/desk/orders", json={"order": first})
    assert posted.status_code == 202, posted.text
    order_id = posted.json()["order_id"]
    await events.wait_for_event("stock.backordered", order_id, timeout=60)
    inventory = f"http://127.0.0.1:{pipeline.stack.find('inventory').port}"
    async with httpx.AsyncClient(base_url=inventory, timeout=10) as stock:
        assert await _available(stock, held) == 3  # 2 of 5 held for the order
        short_before = await _available(stock, short)

        page = browser_page
        await sign_in_as(page, console_base, "clerk", f"/desk?from={order_id}")
        await page.wait_for_selector(f"#d-lines tr[data-sku='{held}']")
        assert "2" in (await page.text_content("#d-revision-label") or "")
        assert await page.input_value("#d-lines input[data-qty='0']") == "2"
        # the read model keeps no street: typed again, as it was
        _province, _city, district, line1, postal = ADDRESSES[0]
        await page.fill("#d-district", district)
        await page.fill("#d-line1", line1)
        await page.fill("#d-postal", postal)
        await page.fill("#d-lines input[data-qty='0']", "4")
        await page.wait_for_function(
            "() => document.getElementById('d-grand').textContent !== '–'", timeout=30_000)
        await shot(page, "desk-change")
        await page.keyboard.press("Control+Enter")
        await page.wait_for_url(f"{console_base}/orders/{order_id}", timeout=60_000)

        done = await events.wait_for_event("order.changed", order_id, timeout=90,
                                           where=lambda e: e.event.revision == 2)
        assert "quantity_increased" in done.event.changes
        assert done.event.stock_status == "backordered"
        assert sorted((line.sku, line.quantity) for line in done.event.order.lines) == sorted(
            [(held, 4), (short, 1)])
        assert await _available(stock, held) == 1  # the 2 extra units only
        assert await _available(stock, short) == short_before
        assert not events.of("shipment.dispatched", order_id)
    await page.wait_for_selector("#timeline li.t-OrderChanged", timeout=60_000)
    # who entered the revision: order.revision-received's author
    entered = page.locator("#timeline li.t-OrderRevisionReceived")
    await entered.first.wait_for(timeout=60_000)
    texts = " ".join(await entered.all_text_contents())
    assert "clerk" in texts and ("revision 2" in texts or "第 2 版" in texts), texts
    await shot(page, "desk-change-timeline")
