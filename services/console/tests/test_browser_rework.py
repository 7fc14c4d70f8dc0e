"""The rework path and the import in headless Chromium (the fixtures of ``test_browser.py`` and
``test_browser_worklists.py``): a desk order review holds over its customer's credit limit is
rejected by a reviewer on its page, listed on the worklists as rejected with its reason,
assigned to the clerk, found under "my work", fixed at the desk from "fix and resubmit" (a
quantity lowered) and goes on as revision 2 to dispatch, leaving the worklists. Rows pasted at
``/desk/import`` with one bad order: the preview shows its reason at its sheet row, the valid
order is posted and dispatched, the bad one stays; a CSV upload is previewed the same way;
missing input is shown beside the form; a viewer gets no import page and the API refuses it."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_helpers import admin_token, console_view, new_id, sign_in, until
from test_browser import browser_page, shot
from test_browser_desk import sign_in_as
from test_browser_worklists import browser, signed_in

from orderflow.contracts.events import CustomerUpdated, ProductUpdated, StockReceived
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import ADDRESSES, canonical_order
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

__all__ = ["browser", "browser_page"]  # the fixtures, shared

NEEDED = ("intake", "review", "inventory", "logistics")
DISPATCHED = "() => ['dispatched', 'delivered'].includes(document.getElementById('o-state').dataset.state)"


def needs_order_services(pipeline: Pipeline, review_standin: Any = None) -> None:
    missing = [s for s in NEEDED if s not in pipeline.services]
    if missing or review_standin is not None:
        pytest.skip(f"needs {', '.join(NEEDED)} among ORDERFLOW_TEST_SERVICES")


async def tight_customer_and_sku(pipeline: Pipeline) -> tuple[str, str, str]:
    """A customer of this test only with room for 200.00 (limit 1200, owing 1000) and a phone
    of its own, and a SKU of this test only (100.00 + 13 % VAT) with 5 units at WH-SH."""
    customer_id, sku = new_id("RWC"), new_id("RWS").upper()
    phone = "139" + str(uuid.uuid4().int)[:8]
    await pipeline.publish_and_wait([
        CustomerUpdated(customer_id=customer_id, name="返工客户", phone=phone,
                        email=f"{customer_id.lower()}@example.com", credit_limit=Decimal("1200"),
                        currency="CNY", payment_terms="net30", open_receivables=Decimal("1000")),
        ProductUpdated(sku=sku, name="返工测试商品", unit_price=Decimal("100.00"), currency="CNY",
                       tax_rate=Decimal("0.13"), weight_kg=Decimal("1.000")),
        StockReceived(warehouse_id="WH-SH", sku=sku, quantity=5, reference="rework test")])
    return customer_id, sku, phone


async def state_is(client: httpx.AsyncClient, order_id: str, state: str) -> bool:
    view = await console_view(client, order_id)
    return view is not None and view.state is not None and view.state.value == state


@pytest.mark.timeout(900)  # the first test of a session also starts the pipeline
async def test_a_rejected_desk_order_is_assigned_fixed_resubmitted_and_dispatched(
        pipeline: Pipeline, console_base: str, review_standin: Any, events: EventLog,
        browser: Any) -> None:
    needs_order_services(pipeline, review_standin)
    customer_id, sku, phone = await tight_customer_and_sku(pipeline)
    order: dict[str, Any] = canonical_order("unused", address_index=2, payment_terms="net30")
    for key in ("external_id", "stated_total", "placed_at"):
        order.pop(key)
    order["customer"] = {"id": customer_id, "name": "返工客户", "phone": phone}
    order["shipping_address"].update(name="返工客户", phone=phone)
    # 3 × 113.00 + 10.00 shipping = 349.00: over the 200.00 of room, held for credit
    order["lines"] = [{"sku": sku, "quantity": 3, "unit_price": "100.00", "discount": "0.00"}]
    async with httpx.AsyncClient(base_url=console_base, timeout=60) as clerk_api:
        clerk_api.headers["X-CSRF-Token"] = await sign_in(clerk_api, "clerk")
        posted = await clerk_api.post("/api/desk/orders", json={"order": order})
    assert posted.status_code == 202, posted.text
    order_id = posted.json()["order_id"]
    held = await events.wait_for_event("order.held", order_id, timeout=90)
    assert "credit_limit" in [r.code for r in held.event.reasons]
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        await until(lambda: state_is(admin, order_id, "held"), timeout=90,
                    what=f"{order_id} held in the console")

        # the reviewer rejects it on its page
        reviewer = await signed_in(browser, console_base, "reviewer")
        await reviewer.goto(f"{console_base}/orders/{order_id}")
        await reviewer.wait_for_selector("#o-actions:not([hidden]) #o-reject")
        await reviewer.fill("#o-comment", "over the credit limit: take fewer")
        await reviewer.click("#o-reject")
        await reviewer.wait_for_function(
            "() => document.getElementById('o-state').dataset.state === 'rejected'",
            timeout=90_000)
        rejected = await events.wait_for_event("order.rejected", order_id, timeout=60)
        assert rejected.event.stage == "review"

        # listed on the worklists as rejected with its reason; the reviewer assigns it to the
        # clerk (the reviewer enters no orders: no resubmit link for them)
        await reviewer.goto(f"{console_base}/worklists")
        row = reviewer.locator(f"#worklist-table tr[data-key='rejected:{order_id}']")
        await row.wait_for(timeout=60_000)
        assert await row.get_attribute("data-kind") == "rejected"
        assert "credit_limit" in (await row.locator("td.reason").get_attribute("title") or "")
        assert await row.locator("a[data-act=resubmit]").count() == 0
        await row.locator("select[data-assign-for]").select_option("clerk")
        await row.locator("button[data-act=assign]").click()
        await until(lambda: _assignee_is(row, "clerk"), what="the item assigned to the clerk")

        # the clerk finds it under "my work" and fixes it at the desk
        clerk = await signed_in(browser, console_base, "clerk")
        await clerk.select_option("#wl-view", "mine")
        mine = clerk.locator(f"#worklist-table tr[data-key='rejected:{order_id}']")
        await mine.wait_for()
        assert (await mine.locator("td.assignee").text_content() or "").strip() == "clerk"
        await shot(clerk, "rework-mine")
        await mine.locator("a[data-act=resubmit]").click()
        await clerk.wait_for_url(f"{console_base}/desk?from={order_id}")
        await clerk.wait_for_selector(f"#d-lines tr[data-sku='{sku}']")
        assert "2" in (await clerk.text_content("#d-revision-label") or "")
        assert await clerk.input_value("#d-lines input[data-qty='0']") == "3"
        assert await clerk.input_value("#d-recipient") == "返工客户"  # the master data's
        # the read model keeps no street: typed again
        _province, _city, district, line1, postal = ADDRESSES[2]
        await clerk.fill("#d-district", district)
        await clerk.fill("#d-line1", line1)
        await clerk.fill("#d-postal", postal)
        await clerk.fill("#d-lines input[data-qty='0']", "1")  # 123.00: fits
        await clerk.wait_for_function(
            "() => document.getElementById('d-grand').textContent.includes('123')",
            timeout=30_000)
        await shot(clerk, "rework-desk")
        await clerk.click("#d-submit")
        await clerk.wait_for_url(f"{console_base}/orders/{order_id}", timeout=60_000)

        # revision 2 on the order's page, and on to dispatch
        await clerk.wait_for_function(
            "() => { const dt = document.querySelector(\"#o-facts dt[data-fact='fact.revision']\");"
            " return !!dt && dt.nextElementSibling.textContent.trim() === '2'; }",
            timeout=90_000)
        await clerk.wait_for_selector("#timeline li.t-ShipmentDispatched", timeout=180_000)
        await clerk.wait_for_function(DISPATCHED, timeout=60_000)  # off "rejected" for good
        # who entered revision 2: the event's author, on its line of the timeline
        entered = " ".join(await clerk.locator(
            "#timeline li.t-OrderRevisionReceived").all_text_contents())
        assert "clerk" in entered and ("revision 2" in entered or "第 2 版" in entered), entered
        await shot(clerk, "rework-dispatched")
        changed = await events.wait_for_event("order.changed", order_id, timeout=30,
                                              where=lambda e: e.event.revision == 2)
        assert [(line.sku, line.quantity) for line in changed.event.order.lines] == [(sku, 1)]

        # the item left the worklists
        await clerk.goto(f"{console_base}/worklists")
        await clerk.locator("#worklist-table tbody tr").first.wait_for()
        assert await clerk.locator(
            f"#worklist-table tr[data-key='rejected:{order_id}']").count() == 0
        listed = (await admin.get("/api/worklist")).json()["items"]
        assert not [i for i in listed if i["key"] in (f"rejected:{order_id}", f"rework:{order_id}")]


async def _assignee_is(row: Any, name: str) -> bool:
    return (await row.locator("td.assignee").text_content() or "").strip() == name


HEADER = ["order_number", "customer_id", "customer_name", "recipient_name", "recipient_phone",
          "province", "city", "district", "address", "sku", "quantity", "unit_price"]


def sheet_rows(order_number: str, lines: list[tuple[str, str, str]],
               address_index: int = 0) -> list[list[str]]:
    """An order of the sheet template for customer C0002: its first row carries the order's
    columns, each row one line (sku, quantity, unit price)."""
    province, city, district, line1, _postal = ADDRESSES[address_index]
    first = [order_number, "C0002", "郭敏", "郭敏", "13975767125", province, city, district, line1]
    return [(first if i == 0 else [""] * len(first)) + list(line)
            for i, line in enumerate(lines)]


@pytest.mark.timeout(900)  # the first test of a session also starts the pipeline
async def test_pasted_rows_are_previewed_at_their_rows_and_only_the_valid_order_is_posted(
        pipeline: Pipeline, console_base: str, events: EventLog, browser_page: Any,
        tmp_path: Path) -> None:
    needs_order_services(pipeline)
    page = browser_page
    await sign_in_as(page, console_base, "clerk", "/desk/import")

    # nothing pasted: said beside the form, nothing checked
    await page.click("#i-check-text")
    await page.wait_for_function("() => document.getElementById('i-error').textContent !== ''")
    assert await page.locator("#i-orders tbody tr").count() == 0

    good, bad = new_id("PASTEOK").upper(), new_id("PASTEBAD").upper()
    unknown = new_id("NOSKU").upper()
    rows = [HEADER,
            *sheet_rows(good, [("TEA-001", "2", "379.08"), ("TEA-002", "1", "507.86")]),
            *sheet_rows(bad, [("TEA-001", "1", "379.08"), (unknown, "1", "10.00")])]
    # rows 2 and 3 are the good order, 4 and 5 the bad one (its unknown SKU on row 5)
    await page.fill("#i-text", "\n".join("\t".join(r) for r in rows))
    await page.click("#i-check-text")
    good_row = page.locator(f"#i-orders tr[data-order-number='{good}']")
    bad_row = page.locator(f"#i-orders tr[data-order-number='{bad}']")
    await good_row.wait_for(timeout=60_000)
    assert await page.text_content("#i-error") == ""
    assert await good_row.get_attribute("class") == "valid"
    assert await bad_row.get_attribute("class") == "invalid"
    await bad_row.locator("li[data-row='5']").first.wait_for()
    text = " ".join(await bad_row.locator("li[data-row='5']").all_text_contents())
    assert ("row 5" in text or "第 5 行" in text) and "sku" in text.lower(), text
    assert "1 of 2" in (await page.text_content("#i-summary") or "") or \
        "2 个订单中 1 个" in (await page.text_content("#i-summary") or "")
    await shot(page, "import-preview")

    # only the valid order is posted; the bad one stays to be fixed
    good_id, bad_id = order_id_for("desk", good), order_id_for("desk", bad)
    await page.click("#i-submit")
    await page.wait_for_function(
        f"() => document.querySelector(\"#i-orders tr[data-order-number='{good}']\")"
        f".textContent.includes('{good_id}')", timeout=60_000)
    assert await bad_row.get_attribute("class") == "invalid"
    assert await bad_row.locator("li[data-row='5']").count() >= 1
    assert await page.is_disabled("#i-submit")  # nothing valid is left to post
    await events.wait_for_event("order.received", good_id, timeout=60)
    assert not events.of("order.received", bad_id) and not events.of("order.rejected", bad_id)
    await page.goto(f"{console_base}/orders/{good_id}")
    await page.wait_for_function(DISPATCHED, timeout=180_000)
    await page.wait_for_selector("#timeline li.t-ShipmentDispatched", timeout=60_000)

    # a CSV upload, previewed the same way: no file chosen is said beside the form first
    await page.goto(f"{console_base}/desk/import")
    await page.click("#i-check-file")
    await page.wait_for_function("() => document.getElementById('i-error').textContent !== ''")
    upload_good, upload_bad = new_id("CSVOK").upper(), new_id("CSVBAD").upper()
    sheet = tmp_path / "orders.csv"
    lines = [HEADER, *sheet_rows(upload_good, [("TEA-002", "1", "507.86")], address_index=1),
             *sheet_rows(upload_bad, [("TEA-001", "zero", "379.08")], address_index=1)]
    sheet.write_text("\n".join(",".join(r) for r in lines) + "\n", encoding="utf-8")
    await page.set_input_files("#i-file", str(sheet))
    await page.click("#i-check-file")
    upload_good_row = page.locator(f"#i-orders tr[data-order-number='{upload_good}']")
    await page.wait_for_function(
        f"() => document.getElementById('i-error').textContent !== '' || "
        f"!!document.querySelector(\"#i-orders tr[data-order-number='{upload_good}']\")",
        timeout=60_000)
    assert await page.text_content("#i-error") == ""
    assert await upload_good_row.get_attribute("class") == "valid"
    upload_bad_row = page.locator(f"#i-orders tr[data-order-number='{upload_bad}']")
    assert await upload_bad_row.get_attribute("class") == "invalid"
    quantity = " ".join(await upload_bad_row.locator("li[data-row='3']").all_text_contents())
    assert "quantity" in quantity, quantity
    await shot(page, "import-upload")
    assert not events.of("order.received", order_id_for("desk", upload_good))


async def test_a_viewer_gets_no_import_page_and_the_api_refuses_an_import(
        console_base: str, browser_page: Any) -> None:
    page = browser_page
    await sign_in_as(page, console_base, "viewer", "/")
    response = await page.goto(f"{console_base}/desk/import")
    assert response is not None and response.status == 403
    await page.wait_for_selector("#desk-refused")
    assert await page.locator("#i-text, #i-file, #i-submit").count() == 0
    await page.goto(f"{console_base}/")
    status = await page.evaluate(
        """async () => (await fetch('/api/desk/import', {method: 'POST',
            credentials: 'same-origin', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
            body: JSON.stringify({text: 'order_number\\tsku\\tquantity\\nX-1\\tTEA-001\\t1'})})).status""")
    assert status == 403
