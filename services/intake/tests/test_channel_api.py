"""The channel order API (``POST /api/v1/channels/{channel}/orders``) with real HTTP against the
running intake process: intake's checks answered at once, an accepted order going on through
the outbox as a pushed one would, duplicates, credentials and the backlog bound."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.intake.channel_api import body_signature
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra, connect
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline

from .conftest import TEST_SHOP, channel_key
from .samples import sample

pytestmark = pytest.mark.service


def new_id() -> str:
    return f"API-{uuid.uuid4().hex[:10]}"


def url(pipeline: Pipeline, channel: str, query: str = "") -> str:
    port = pipeline.stack.find("intake").port
    return f"http://127.0.0.1:{port}/api/v1/channels/{channel}/orders{query}"


async def post(pipeline: Pipeline, channel: str, body: bytes | dict[str, Any], *,
               headers: dict[str, str] | None = None, key: str | None = "own",
               query: str = "") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key == "own":
        key = channel_key(channel if channel != "shopify" else f"shopify/{TEST_SHOP}")
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url(pipeline, channel, query), content=content, headers=sent)


async def intake_rows(pipeline: Pipeline, channel: str, external_id: str) -> list[tuple[Any, ...]]:
    conn = await connect(pipeline.infra.database_url)
    try:
        rows = await conn.fetch("SELECT order_id, revision, status FROM intake.intake_orders "
                                "WHERE channel = $1 AND external_id = $2", channel, external_id)
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def test_an_accepted_order_is_answered_202_and_goes_on_as_order_received(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    response = await post(pipeline, "canonical", canonical_order(eid))
    assert response.status_code == 202, response.text
    order_id = order_id_for("canonical", eid)
    assert response.json() == {"order_id": order_id, "revision": 1, "status": "accepted"}
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.external_id == eid and received.event.totals.grand_total > 0
    # stored by intake itself, never pushed onto order.inbound
    assert not events.of("order.inbound", f"canonical:{eid}")
    assert await intake_rows(pipeline, "canonical", eid) == [(order_id, 1, "received")]


async def test_a_desk_order_signed_with_the_desk_key_is_accepted_without_a_store(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    body = json.dumps(canonical_order(eid)).encode()
    response = await post(pipeline, "desk", body, key=None, headers={
        "X-OrderFlow-Signature": body_signature(channel_key("desk"), body),
        "X-OrderFlow-Author": "operator-7"})
    assert response.status_code == 202, response.text
    assert response.json()["order_id"] == order_id_for("desk", eid)
    received = await events.wait_for_event("order.received", order_id_for("desk", eid))
    assert received.event.author == "operator-7"  # the desk's operator, in the event
    revised = canonical_order(eid, lines=[("TEA-001", 3)])
    revised["revision"] = 2
    again = await post(pipeline, "desk", revised, headers={"X-OrderFlow-Author": "operator-8"})
    assert again.status_code == 202, again.text
    revision = await events.wait_for_event("order.revision-received", order_id_for("desk", eid))
    assert revision.event.author == "operator-8"


async def test_a_shop_key_submits_in_the_shops_own_format_as_its_store(
        pipeline: Pipeline, events: EventLog) -> None:
    order = sample("shopify_orders_create.json")
    order["id"] = int(uuid.uuid4().int % 10**13)
    # a connector cannot claim that someone at the desk entered its order
    response = await post(pipeline, "shopify", order, headers={"X-OrderFlow-Author": "clerk"})
    assert response.status_code == 202, response.text
    order_id = order_id_for("shopify", str(order["id"]), TEST_SHOP)
    assert response.json()["order_id"] == order_id
    received = await events.wait_for_event("order.received", order_id)
    assert received.event.author is None


@pytest.mark.parametrize(("mutate", "code", "field"), [
    (lambda o: o["lines"][0].update(quantity=-2), "quantity_not_positive", "lines.0.quantity"),
    (lambda o: o["lines"][0].update(sku="NO-SUCH-SKU"), "unknown_sku", "lines.0.sku"),
    (lambda o: o.pop("customer"), "missing_field", "customer"),
    (lambda o: o["lines"][0].update(quantity="three"), "wrong_type", "lines.0.quantity"),
    (lambda o: o.update(stated_total="1.00"), "total_mismatch", "stated_total"),
])
async def test_a_refused_order_is_answered_422_with_the_reasons_and_nothing_is_stored(
        pipeline: Pipeline, events: EventLog, mutate: Any, code: str, field: str) -> None:
    eid = new_id()
    order = canonical_order(eid)
    mutate(order)
    response = await post(pipeline, "canonical", order)
    assert response.status_code == 422, response.text
    reasons = response.json()["reasons"]
    assert {(r["code"], r["field"]) for r in reasons} >= {(code, field)}
    assert all(r["message"] for r in reasons)
    assert await intake_rows(pipeline, "canonical", eid) == []
    # corrected under the same revision, it is accepted: a refusal left nothing behind
    assert (await post(pipeline, "canonical", canonical_order(eid))).status_code == 202
    await events.wait_for_event("order.received", order_id_for("canonical", eid))
    assert not events.of("order.rejected", order_id_for("canonical", eid))


async def test_the_same_order_again_is_answered_with_the_same_order_id_and_stored_once(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    order = canonical_order(eid)
    first = await post(pipeline, "canonical", order)
    again = await post(pipeline, "canonical", order)
    assert first.status_code == 202 and again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    changed = {**order, "notes": "another payload under revision 1"}
    conflict = await post(pipeline, "canonical", changed)
    assert conflict.status_code == 409, conflict.text
    assert [r["code"] for r in conflict.json()["reasons"]] == ["revision_conflict"]
    order_id = order_id_for("canonical", eid)
    await events.wait_for_event("order.received", order_id)
    # a newer revision is a change of the order, as a pushed one is
    revised = await post(pipeline, "canonical", {**changed, "revision": 2})
    assert revised.status_code == 202, revised.text
    assert revised.json() == {"order_id": order_id, "revision": 2, "status": "accepted"}
    await events.wait_for_event("order.change-requested", order_id)
    assert len(events.of("order.received", order_id)) == 1
    assert await intake_rows(pipeline, "canonical", eid) == [(order_id, 2, "received")]


async def test_no_credential_or_an_unknown_key_gets_401(pipeline: Pipeline) -> None:
    order = canonical_order(new_id())
    assert (await post(pipeline, "canonical", order, key=None)).status_code == 401
    assert (await post(pipeline, "canonical", order, key="not-a-key-of-any-channel")
            ).status_code == 401
    body = json.dumps(order).encode()
    forged = await post(pipeline, "canonical", body, key=None, headers={
        "X-OrderFlow-Signature": body_signature("not-the-channel-key", body)})
    assert forged.status_code == 401
    assert (await intake_rows(pipeline, "canonical", order["external_id"])) == []


async def test_a_key_of_another_channel_or_store_gets_403(pipeline: Pipeline) -> None:
    eid = new_id()
    order = canonical_order(eid)
    response = await post(pipeline, "canonical", order, key=channel_key("desk"))
    assert response.status_code == 403 and "desk" in response.json()["error"]
    shop = await post(pipeline, "shopify", sample("shopify_orders_create.json"),
                      query="?store=another-shop")
    assert shop.status_code == 403
    assert await intake_rows(pipeline, "canonical", eid) == []


@pytest.mark.parametrize("body", [b'{"external_id": "X", "lines": [', b"[1, 2]", b'"text"',
                                  b"", b'{"external_id": 12345678901234567890123456789}',
                                  b'{"external_id": {"nested": true}}',
                                  b'{"external_id": "A\\u0000B"}'])
async def test_a_malformed_body_gets_422_with_reasons_never_500(
        pipeline: Pipeline, body: bytes) -> None:
    response = await post(pipeline, "canonical", body)
    assert response.status_code == 422, response.text
    assert response.json()["reasons"] and all(r["code"] for r in response.json()["reasons"])


async def test_a_nul_character_in_an_otherwise_good_order_gets_422(pipeline: Pipeline) -> None:
    eid = new_id()
    response = await post(pipeline, "canonical", {**canonical_order(eid), "notes": "a\x00b"})
    assert response.status_code == 422, response.text
    assert [r["code"] for r in response.json()["reasons"]] == ["nul_character"]
    assert await intake_rows(pipeline, "canonical", eid) == []


async def test_a_backlog_at_the_bound_gets_429_with_retry_after(infra: Infra) -> None:
    key = uuid.uuid4().hex
    env = {"ORDERFLOW_INTAKE_CHANNEL_KEYS": json.dumps({"canonical": key}),
           "ORDERFLOW_INTAKE_HTTP_MAX_BACKLOG": "0", "ORDERFLOW_INTAKE_HTTP_RETRY_AFTER_S": "7"}
    async with private_pipeline(infra, "intake-throttled", ["intake"], env,
                                master_data=False) as (pipeline, _events):
        response = await post(pipeline, "canonical", canonical_order(new_id()), key=key)
        # registering an outcome webhook stores and announces too: bound the same way
        port = pipeline.stack.find("intake").port
        async with httpx.AsyncClient(timeout=30) as client:
            webhook = await client.put(
                f"http://127.0.0.1:{port}/api/v1/channels/canonical/webhook",
                json={"url": "https://hooks.example.com/outcomes"},
                headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == "7"
    assert webhook.status_code == 429, webhook.text
    assert webhook.headers["Retry-After"] == "7"


async def test_without_channel_keys_the_route_is_closed_with_503(
        infra: Infra, tmp_path: Path) -> None:
    no_keys = tmp_path / "no-channel-keys.json"  # in place of the keys a dev stack generates
    no_keys.write_text("{}")
    async with private_pipeline(infra, "intake-no-keys", ["intake"],
                                {"ORDERFLOW_INTAKE_CHANNEL_KEYS": "{}",
                                 "ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE": str(no_keys)},
                                master_data=False) as (pipeline, _events):
        response = await post(pipeline, "canonical", canonical_order(new_id()), key="anything")
    assert response.status_code == 503
    assert "ORDERFLOW_INTAKE_CHANNEL_KEYS" in response.json()["error"]


async def test_the_route_is_in_the_openapi_document_with_examples(pipeline: Pipeline) -> None:
    port = pipeline.stack.find("intake").port
    async with httpx.AsyncClient(timeout=30) as client:
        document = (await client.get(f"http://127.0.0.1:{port}/openapi.json")).json()
    route = document["paths"]["/api/v1/channels/{channel}/orders"]["post"]
    assert route["requestBody"]["content"]["application/json"]["example"]["lines"]
    answers = route["responses"]
    assert {"200", "202", "401", "403", "409", "422", "429", "503"} <= set(answers)
    assert answers["202"]["content"]["application/json"]["example"]["status"] == "accepted"
    assert answers["422"]["content"]["application/json"]["example"]["reasons"][0]["code"]


async def test_a_dry_run_answers_intakes_totals_and_stores_nothing(
        pipeline: Pipeline, events: EventLog) -> None:
    eid = new_id()
    order = canonical_order(eid)
    checked = await post(pipeline, "desk", order, query="?dry_run=true",
                         headers={"X-OrderFlow-Author": "clerk"})
    assert checked.status_code == 200, checked.text
    answer = checked.json()
    order_id = order_id_for("desk", eid)
    assert answer["status"] == "valid" and answer["dry_run"] is True
    assert answer["order_id"] == order_id and answer["revision"] == 1
    assert [line["sku"] for line in answer["order"]["lines"]] == \
        [line["sku"] for line in order["lines"]]
    assert len(answer["line_amounts"]) == len(order["lines"])
    totals = answer["totals"]
    # the demo order states its total: intake's figures agree with it, tax included
    assert totals["grand_total"] == order["stated_total"] and float(totals["tax"]) > 0
    assert await intake_rows(pipeline, "desk", eid) == []
    # the same order posted for real is a new order, received with the same totals
    posted = await post(pipeline, "desk", order)
    assert posted.status_code == 202, posted.text
    received = await events.wait_for_event("order.received", order_id)
    assert format(received.event.totals.grand_total, "f") == totals["grand_total"]
    # a dry run of the order intake has is answered as the duplicate it would be
    again = await post(pipeline, "desk", order, query="?dry_run=true")
    assert again.status_code == 200 and again.json()["duplicate"] is True


@pytest.mark.parametrize(("mutate", "code", "field"), [
    (lambda o: o["lines"][0].update(quantity=0), "quantity_not_positive", "lines.0.quantity"),
    (lambda o: o["lines"][1].update(sku="NO-SUCH-SKU"), "unknown_sku", "lines.1.sku"),
    (lambda o: o["shipping_address"].pop("city"), "missing_field", "shipping_address.city"),
])
async def test_a_refused_dry_run_answers_422_with_the_reasons_and_publishes_nothing(
        pipeline: Pipeline, events: EventLog, mutate: Any, code: str, field: str) -> None:
    eid = new_id()
    order = canonical_order(eid, lines=[("TEA-001", 2), ("TEA-002", 1)])
    mutate(order)
    response = await post(pipeline, "desk", order, query="?dry_run=true")
    assert response.status_code == 422, response.text
    reasons = response.json()["reasons"]
    assert (code, field) in {(r["code"], r["field"]) for r in reasons}, reasons
    assert await intake_rows(pipeline, "desk", eid) == []
    # a later accepted order is published; the dry run before it never was
    marker = new_id()
    assert (await post(pipeline, "desk", canonical_order(marker))).status_code == 202
    await events.wait_for_event("order.received", order_id_for("desk", marker))
    assert not events.of("order.rejected", order_id_for("desk", eid))
    assert not events.of("order.received", order_id_for("desk", eid))
