"""The HTTP entry points fed malformed bodies, wrong types and huge requests: intake's Shopify
webhook receiver and the console's API answer 4xx with a message that says what is wrong, never
500; every webhook they accept ends as an order or a rejection with reasons."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orderflow.contracts.order import order_id_for
from orderflow.intake.webhooks import shopify_signature
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

from ..conftest import shopify_shop
from .strategies import examples, finite_json_values, json_values

pytestmark = pytest.mark.service

LIVE = settings(max_examples=examples(40), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def webhook_url(pipeline: Pipeline) -> str:
    if "intake" not in pipeline.services:
        pytest.skip("intake is not among ORDERFLOW_TEST_SERVICES")
    shop, _ = shopify_shop()
    return f"http://127.0.0.1:{pipeline.stack.find('intake').port}/webhooks/shopify/{shop}"


def signed_post(url: str, body: bytes, *, sign: bool = True,
                extra: dict[str, str] | None = None) -> httpx.Response:
    _, secret = shopify_shop()
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create", **(extra or {})}
    if sign:
        headers["X-Shopify-Hmac-Sha256"] = shopify_signature(secret, body)
    with httpx.Client(timeout=30) as client:
        return client.post(url, content=body, headers=headers)


def assert_refused_with_a_message(r: httpx.Response, *allowed: int) -> None:
    assert r.status_code != 500 and r.status_code < 500, (r.status_code, r.text[:300])
    assert r.status_code in allowed, (r.status_code, r.text[:300])
    body = r.json()
    message = body.get("error") or body.get("detail")
    assert message, f"no message in {body}"


not_an_order = (st.binary(max_size=400)
                | json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())
                | st.dictionaries(st.sampled_from(["name", "email", "line_items", "ID", "order_id"]),
                                  json_values, max_size=4).map(lambda d: json.dumps(d).encode())
                | st.sampled_from([b"", b"{", b"null", b'{"id": null}', b'{"id": true}',
                                   b'{"id": ""}', b'{"id": [1]}', b'{"id": {"a": 1}}',
                                   b"\xef\xbb\xbf{}", "{\"id\": \"\u0000\"}".encode()]))


@LIVE
@given(body=not_an_order)
def test_a_signed_body_that_is_not_an_order_gets_400(pipeline: Pipeline, body: bytes) -> None:
    url = webhook_url(pipeline)
    r = signed_post(url, body)
    if r.status_code == 200:  # an object with a usable id: accepted, judged by intake later
        assert json.loads(body)["id"] not in (None, "", True)
        return
    assert_refused_with_a_message(r, 400)


@LIVE
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
       signature=st.none() | st.text(max_size=60))
def test_an_unsigned_or_wrongly_signed_body_gets_401(
        pipeline: Pipeline, body: bytes, signature: str | None) -> None:
    url = webhook_url(pipeline)
    extra = {"X-Shopify-Hmac-Sha256": signature} if signature and signature.isascii() \
        and signature.isprintable() else {}
    r = signed_post(url, body, sign=False, extra=extra)
    assert_refused_with_a_message(r, 401)


@pytest.mark.parametrize("size", [600 * 1024, 5 * 1024 * 1024])
def test_a_huge_webhook_gets_413_signed_or_not(pipeline: Pipeline, size: int) -> None:
    url = webhook_url(pipeline)
    body = b'{"id": 1, "note": "' + b"x" * size + b'"}'
    assert_refused_with_a_message(signed_post(url, body), 413)
    assert_refused_with_a_message(signed_post(url, body, sign=False), 413)


@LIVE
@given(order=st.fixed_dictionaries(
    {"id": st.integers(10**12, 10**13 - 1)},
    optional={"line_items": finite_json_values, "currency": finite_json_values,
              "created_at": finite_json_values, "customer": finite_json_values,
              "shipping_address": finite_json_values, "total_price": finite_json_values,
              "taxes_included": finite_json_values}))
async def test_every_accepted_webhook_ends_as_an_order_or_a_rejection(
        pipeline: Pipeline, events: EventLog, order: dict[str, Any]) -> None:
    url = webhook_url(pipeline)
    shop, secret = shopify_shop()
    body = json.dumps(order).encode()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(url, content=body, headers={
            "Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
            "X-Shopify-Hmac-Sha256": shopify_signature(secret, body)})
    assert r.status_code == 200, r.text
    assert r.json()["key"] == f"shopify:{order['id']}"
    oid = order_id_for("shopify", str(order["id"]), shop)  # the URL's shop is the store
    outcome = await events.wait_for(
        lambda: (events.of("order.received", oid) + events.of("order.rejected", oid))[:1],
        timeout=60, what=f"intake's answer to webhook order {order['id']}")
    if outcome[0].topic == "order.rejected":
        assert all(reason.code and reason.message for reason in outcome[0].event.reasons)


# --- the console API ---------------------------------------------------------------------------

def console(pipeline: Pipeline) -> tuple[str, dict[str, str]]:
    if "console" not in pipeline.services:
        pytest.skip("the console is not among ORDERFLOW_TEST_SERVICES")
    token = (pipeline.stack.root / "console-token").read_text().strip()
    return (f"http://127.0.0.1:{pipeline.stack.find('console').port}",
            {"Authorization": f"Bearer {token}"})


@LIVE
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
       | st.fixed_dictionaries({"comment": json_values}).map(lambda d: json.dumps(d).encode()),
       decision=st.sampled_from(["approve", "reject"]),
       order_id=st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=122), min_size=1,
                        max_size=40))
def test_the_console_api_answers_malformed_decisions_with_4xx(
        pipeline: Pipeline, body: bytes, decision: str, order_id: str) -> None:
    base, auth = console(pipeline)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    with httpx.Client(base_url=base, timeout=30, headers=auth) as client:
        r = client.post(f"/api/orders/{quote(order_id, safe='')}/{decision}", content=body,
                        headers={"Content-Type": "application/json"})
    assert r.status_code != 500, r.text[:300]
    valid = body == b"" or (  # no body: a decision without a comment
        isinstance(parsed, dict)
        and isinstance(parsed.get("comment", ""), str) and len(parsed.get("comment", "")) <= 2000)
    if not valid:
        assert_refused_with_a_message(r, 400, 422)


@pytest.mark.parametrize("body", [b"Infinity", b"NaN", b'{"comment": -Infinity}'])
def test_a_decision_body_with_a_non_finite_number_gets_422(pipeline: Pipeline, body: bytes) -> None:
    base, auth = console(pipeline)
    with httpx.Client(base_url=base, timeout=30, headers=auth) as client:
        r = client.post("/api/orders/x/approve", content=body,
                        headers={"Content-Type": "application/json"})
    assert_refused_with_a_message(r, 400, 422)


@LIVE
@given(params=st.dictionaries(st.sampled_from(["page", "page_size", "state", "q", "from", "to",
                                                "channel", "customer_id", "sort"]),
                              st.text(max_size=30) | st.integers().map(str), max_size=5),
       path=st.sampled_from(["/api/orders", "/api/reports/summary", "/api/exceptions",
                             "/api/audit", "/api/review-queue"]))
@example(params={"q": "\x00"}, path="/api/orders")  # found by this test: PostgreSQL refuses NUL
@example(params={"customer_id": "a\x00b", "q": "tea"}, path="/api/exceptions")
# found by this test: a page whose offset passes PostgreSQL's bigint answered 500 (now 422)
@example(params={"page": "184467440737095518"}, path="/api/orders")
def test_the_console_api_answers_bad_query_parameters_with_4xx(
        pipeline: Pipeline, params: dict[str, str], path: str) -> None:
    base, auth = console(pipeline)
    with httpx.Client(base_url=base, timeout=30, headers=auth) as client:
        r = client.get(path, params=params)
    assert r.status_code != 500, (path, params, r.text[:300])
    if r.status_code >= 400 and r.status_code != 502:
        assert_refused_with_a_message(r, 400, 404, 422)


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/api/orders?q=%00", None),
    ("get", "/api/orders/a%00b", None),
    ("post", "/api/orders/x/approve", {"comment": "ok\u0000"}),
    ("post", "/api/orders/x/cancel", {"reason": "\u0000"}),
])
def test_a_nul_character_anywhere_gets_422_saying_so(
        pipeline: Pipeline, method: str, path: str, body: dict[str, str] | None) -> None:
    base, auth = console(pipeline)
    with httpx.Client(base_url=base, timeout=30, headers=auth) as client:
        r = client.request(method, path, json=body)
    assert_refused_with_a_message(r, 422)
    assert "NUL" in r.text


def test_a_huge_request_to_the_console_gets_4xx(pipeline: Pipeline) -> None:
    base, auth = console(pipeline)
    with httpx.Client(base_url=base, timeout=60, headers=auth) as client:
        r = client.post("/api/orders/x/approve", json={"comment": "x" * 3_000_000})
        assert_refused_with_a_message(r, 413, 422)
        r = client.post("/api/orders/x/approve", content=b"[" * 200_000,
                        headers={"Content-Type": "application/json"})
        assert_refused_with_a_message(r, 400, 413, 422)
