"""The order desk's routes against the running services: master data lookups (a customer's
delivery address among them), stock from inventory, credit from review, intake's dry run and
submission relayed (its totals, its reasons, its order id), the author in intake's event and on
the timeline, the import of pasted rows, a prefilled revision, the audit, and the right
``enter`` (a viewer is refused)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from console_helpers import admin_token, sign_in, until

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import ADDRESSES, canonical_order, customers
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

DESK_USERS = {"clerk": "clerk-dev", "viewer": "viewer-dev"}


def needs(pipeline: Pipeline, *services: str) -> None:
    missing = [s for s in services if s not in pipeline.services]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} among ORDERFLOW_TEST_SERVICES")


async def signed_in(console_base: str, user: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=console_base, timeout=60)
    csrf = await sign_in(client, user, DESK_USERS[user])
    client.headers["X-CSRF-Token"] = csrf
    return client


@pytest.fixture
async def clerk(console_base: str) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(console_base, "clerk")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def viewer(console_base: str) -> AsyncIterator[httpx.AsyncClient]:
    client = await signed_in(console_base, "viewer")
    try:
        yield client
    finally:
        await client.aclose()


def form(**changes: Any) -> dict[str, Any]:
    """What desk.js sends: a canonical order without an external id (the desk makes one)."""
    order = canonical_order("unused", lines=[("TEA-001", 2), ("TEA-002", 1)])
    order.pop("external_id")
    order.pop("stated_total")
    order.pop("placed_at")
    order.update(changes)
    return order


async def test_a_viewer_gets_no_desk(viewer: httpx.AsyncClient) -> None:
    page = await viewer.get("/desk")
    assert page.status_code == 403 and 'id="desk-refused"' in page.text
    assert 'data-nav="desk"' not in page.text
    assert (await viewer.get("/desk/import")).status_code == 403
    assert (await viewer.get("/api/desk/customers", params={"q": "C0"})).status_code == 403
    assert (await viewer.post("/api/desk/check", json={"order": form()})).status_code == 403
    assert (await viewer.post("/api/desk/orders", json={"order": form()})).status_code == 403


async def test_a_clerk_finds_customers_and_products_with_their_terms_prices_and_stock(
        pipeline: Pipeline, clerk: httpx.AsyncClient) -> None:
    page = await clerk.get("/desk")
    assert page.status_code == 200 and 'id="desk-form"' in page.text
    assert "/static/desk.js" in page.text and 'data-nav="desk"' in page.text
    found = (await clerk.get("/api/desk/customers", params={"q": "C0002"})).json()["customers"]
    assert found[0]["customer_id"] == "C0002"
    assert found[0]["payment_terms"] == "net30" and found[0]["phone"]
    # with the delivery address master data gives the customer (what fills the desk's address)
    home = customers()["C0002"].delivery_address
    assert home is not None and found[0]["delivery_address"] == home.model_dump(mode="json")
    by_phone = (await clerk.get("/api/desk/customers",
                                params={"q": found[0]["phone"]})).json()["customers"]
    assert [c["customer_id"] for c in by_phone] == ["C0002"]
    products = (await clerk.get("/api/desk/products", params={"q": "TEA-001"})).json()["products"]
    assert products[0]["sku"] == "TEA-001" and products[0]["unit_price"] == "379.08"
    if "inventory" in pipeline.services:
        stock = (await clerk.get("/api/desk/stock/TEA-001")).json()
        assert stock["status"] == 200 and stock["warehouses"]
        assert stock["available"] == sum(w["available"] for w in stock["warehouses"])
    if "review" in pipeline.services:
        detail = (await clerk.get("/api/desk/customers/C0002")).json()
        assert detail["customer"]["customer_id"] == "C0002"
        assert detail["customer"]["delivery_address"]["line1"] == home.line1
        assert detail["credit"]["status"] == 200
        assert {"exposure", "credit_limit", "overdue_amount"} <= set(detail["credit"])
    assert (await clerk.get("/api/desk/customers/NO-SUCH")).status_code == 404


async def test_the_dry_run_answers_intakes_totals_or_its_reasons(
        pipeline: Pipeline, clerk: httpx.AsyncClient) -> None:
    needs(pipeline, "intake")
    checked = await clerk.post("/api/desk/check", json={"order": form()})
    assert checked.status_code == 200, checked.text
    answer = checked.json()
    assert answer["external_id"].startswith("DESK-") and answer["dry_run"] is True
    assert float(answer["totals"]["tax"]) > 0 and len(answer["line_amounts"]) == 2
    bad = form()
    bad["lines"][1]["quantity"] = 0
    bad["lines"][0]["sku"] = "NO-SUCH-SKU"
    refused = await clerk.post("/api/desk/check", json={"order": bad})
    assert refused.status_code == 422, refused.text
    fields = {(r["code"], r["field"]) for r in refused.json()["reasons"]}
    assert ("quantity_not_positive", "lines.1.quantity") in fields


async def test_a_submitted_order_is_received_audited_and_prefills_its_next_revision(
        pipeline: Pipeline, events: EventLog, console_base: str,
        clerk: httpx.AsyncClient) -> None:
    needs(pipeline, "intake")
    posted = await clerk.post("/api/desk/orders", json={"order": form(notes="call first")})
    assert posted.status_code == 202, posted.text
    answer = posted.json()
    order_id = answer["order_id"]
    assert order_id == order_id_for("desk", answer["external_id"])
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.channel == "desk" and received.event.author == "clerk"
    assert received.event.order.notes == "call first\n[desk: clerk]"
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as admin:
        audit = (await admin.get("/api/audit", params={"action": "desk_submit"})).json()
    rows = audit["entries"]
    assert any(r["target"] == order_id and r["user_name"] == "clerk"
               and r["outcome"] == "accepted" for r in rows), rows
    # the order's timeline says who entered it (order.received's author), in the reader's
    # language, once
    for lang, said in (("en", "entered at the desk by clerk, accepted by intake"),
                       ("zh-CN", "由 clerk 在录单台录入，接单已接受")):
        timeline = await until(lambda lang=lang, said=said: _timeline_with(clerk, order_id, lang, said),
                               what="the order's timeline naming its author")
        assert timeline.count(said) == 1, timeline
    filled = await until(lambda: _prefill(clerk, order_id), what="the order's prefill")
    assert filled["order"]["external_id"] == answer["external_id"]
    # the read model keeps no notes (nor the street): those are typed again
    assert filled["order"]["revision"] == 2 and filled["order"]["notes"] == ""
    assert [line["sku"] for line in filled["order"]["lines"]] == ["TEA-001", "TEA-002"]
    assert filled["customer"]["customer_id"] == "C0002"


async def _timeline_with(client: httpx.AsyncClient, order_id: str, lang: str,
                         said: str) -> str | None:
    r = await client.get(f"/orders/{order_id}/timeline", headers={"Accept-Language": lang})
    assert r.status_code == 200, r.text
    return r.text if said in r.text else None


async def _prefill(client: httpx.AsyncClient, order_id: str) -> dict[str, Any] | None:
    r = await client.get(f"/api/desk/prefill/{order_id}")
    return r.json() if r.status_code == 200 else None


async def test_a_refused_submission_passes_intakes_reasons_and_publishes_nothing(
        pipeline: Pipeline, events: EventLog, clerk: httpx.AsyncClient) -> None:
    needs(pipeline, "intake")
    bad = form(external_id="DESK-TEST-" + str(id(events))[-6:] + "-BAD")
    bad["shipping_address"] = {**bad["shipping_address"], "city": ""}
    bad["lines"][0]["sku"] = "NO-SUCH-SKU"
    refused = await clerk.post("/api/desk/orders", json={"order": bad})
    assert refused.status_code == 422, refused.text
    fields = {r["field"] for r in refused.json()["reasons"]}
    assert "shipping_address.city" in fields or "lines.0.sku" in fields
    marker = await clerk.post("/api/desk/orders", json={"order": form()})
    assert marker.status_code == 202
    await events.wait_for_event("order.received", marker.json()["order_id"])
    order_id = order_id_for("desk", bad["external_id"])
    assert not events.of("order.received", order_id) and not events.of("order.rejected", order_id)


async def test_pasted_rows_are_previewed_with_each_orders_reasons_and_the_valid_ones_posted(
        pipeline: Pipeline, events: EventLog, clerk: httpx.AsyncClient) -> None:
    needs(pipeline, "intake")
    province, city, district, line1, _postal = ADDRESSES[0]
    tag = str(id(clerk))[-6:]
    header = ["order_number", "customer_id", "customer_name", "recipient_name",
              "recipient_phone", "province", "city", "district", "address", "sku", "quantity",
              "unit_price"]
    good, bad = f"PASTE-{tag}-1", f"PASTE-{tag}-2"
    rows = [header,
            [good, "C0002", "郭敏", "郭敏", "13975767125", province, city, district, line1,
             "TEA-001", "2", "379.08"],
            ["", "", "", "", "", "", "", "", "", "TEA-002", "1", "507.86"],
            [bad, "C0002", "郭敏", "郭敏", "13975767125", province, city, district, line1,
             "TEA-001", "zero", "379.08"]]
    text = "\n".join("\t".join(r) for r in rows)
    preview = await clerk.post("/api/desk/import", json={"text": text})
    assert preview.status_code == 200, preview.text
    orders = {o["order_number"]: o for o in preview.json()["orders"]}
    assert orders[good]["status"] == 200, orders[good]["answer"]
    assert orders[good]["rows"] == [2, 3]
    assert orders[bad]["status"] == 422 and orders[bad]["answer"]["reasons"]
    posted = await clerk.post("/api/desk/import/submit",
                              json={"orders": [orders[good]["payload"]]})
    assert posted.status_code == 200 and posted.json()["accepted"] == 1, posted.text
    order_id = posted.json()["results"][0]["answer"]["order_id"]
    assert order_id == order_id_for("desk", good)
    await events.wait_for_event("order.received", order_id)
    assert not events.of("order.received", order_id_for("desk", bad))
    header_only = await clerk.post("/api/desk/import", json={"text": "sku\tquantity\nTEA-001\t1"})
    assert header_only.status_code == 422 and "order_number" in header_only.json()["message"]


async def test_an_xlsx_sheet_uploaded_is_previewed_like_pasted_rows(
        pipeline: Pipeline, clerk: httpx.AsyncClient) -> None:
    needs(pipeline, "intake")
    from openpyxl import Workbook

    province, city, district, line1, _postal = ADDRESSES[1]
    tag = str(id(clerk))[-6:]
    good, bad = f"XLSX-{tag}-1", f"XLSX-{tag}-2"
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["order_number", "customer_id", "customer_name", "recipient_name",
                 "recipient_phone", "province", "city", "district", "address", "sku",
                 "quantity", "unit_price"],
                [good, "C0002", "郭敏", "郭敏", "13975767125", province, city, district, line1,
                 "TEA-001", 2, 379.08],
                [bad, "C0002", "郭敏", "郭敏", "13975767125", province, city, district, line1,
                 "NO-SUCH-SKU", 1, 10]):
        sheet.append(row)
    content = io.BytesIO()
    book.save(content)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    preview = await clerk.post("/api/desk/import",
                               files={"file": ("orders.xlsx", content.getvalue(), xlsx)})
    assert preview.status_code == 200, preview.text
    orders = {o["order_number"]: o for o in preview.json()["orders"]}
    assert orders[good]["status"] == 200 and orders[good]["rows"] == [2], orders[good]["answer"]
    assert orders[bad]["status"] == 422
    assert "unknown_sku" in {r["code"] for r in orders[bad]["answer"]["reasons"]}
    # what is no sheet is refused with its reason
    text = await clerk.post("/api/desk/import", files={"file": ("orders.txt", b"x", "text/plain")})
    assert text.status_code == 422 and ".xlsx" in text.json()["message"]
