"""The committed AsyncAPI documents (docs/asyncapi/), their HTML page and the console's copy of
it are what the code generates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orderflow.contracts import events as ev
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack import asyncapi, asyncapi_html

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "asyncapi"
REGENERATE = "python -m orderflow.devstack.asyncapi docs/asyncapi (make docs)"


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, Any]]:
    return {s: asyncapi.build_document(asyncapi.load_definition(s)) for s in asyncapi.SERVICES}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + [
            r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_service_is_present_in_this_checkout() -> None:
    assert asyncapi.available_services() == list(asyncapi.SERVICES)


def test_no_stale_or_missing_documents() -> None:
    assert sorted(p.stem for p in DOCS.glob("*.json")) == sorted(asyncapi.SERVICES), (
        f"docs/asyncapi/ does not hold one document per service: run {REGENERATE}")


@pytest.mark.parametrize("service", asyncapi.SERVICES)
def test_committed_document_matches_the_code(service: str, generated: dict[str, dict[str, Any]]) -> None:
    committed = (DOCS / f"{service}.json").read_text(encoding="utf-8")
    assert committed == asyncapi.render(generated[service]), (
        f"docs/asyncapi/{service}.json is stale: run {REGENERATE} and commit the result")


@pytest.mark.parametrize("service", asyncapi.SERVICES)
def test_document_describes_what_the_service_consumes_and_emits(
        service: str, generated: dict[str, dict[str, Any]]) -> None:
    doc = generated[service]
    definition = asyncapi.load_definition(service)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["x-consumer-group"] == f"orderflow.{service}"
    for ref in _refs(doc):
        _resolve(doc, ref)  # every reference resolves

    received: dict[str, str] = {}
    sent: dict[str, str | None] = {}
    for op in doc["operations"].values():
        channel = _resolve(doc, op["channel"]["$ref"])
        (message_ref,) = op["messages"]
        message = _resolve(doc, _resolve(doc, message_ref["$ref"])["$ref"])
        payload = message["payload"].get("$ref", "").rsplit("/", 1)[-1] or None
        if op["action"] == "receive":
            assert op["bindings"]["kafka"]["groupId"]["enum"] == [f"orderflow.{service}"]
            assert payload is not None
            received[channel["address"]] = payload
        else:
            sent[channel["address"]] = payload
        assert message["headers"]["$ref"].endswith(
            "DeadLetterHeaders" if channel["address"].endswith(".dlq") else "EventHeaders")

    assert received == {s.topic.name: s.topic.model.__name__ for s in definition.subscriptions}
    for sub in definition.subscriptions:
        assert sent.pop(sub.topic.dlq) is None
    assert sent == {TOPIC_OF_EVENT[m].name: m.__name__ for m in asyncapi.published_events(service)}
    for name in [*received.values(), *(p for p in sent.values() if p)]:
        schema = doc["components"]["schemas"][name]
        assert schema["type"] == "object" and schema["properties"]


def test_the_main_line_is_documented_end_to_end(generated: dict[str, dict[str, Any]]) -> None:
    """Every main-line topic has a producer and a consumer among the documents."""
    def addresses(action: str) -> set[str]:
        return {_resolve(doc, op["channel"]["$ref"])["address"]
                for doc in generated.values() for op in doc["operations"].values()
                if op["action"] == action}
    produced, consumed = addresses("send"), addresses("receive")
    for topic in ("order.received", "order.approved", "stock.reserved", "shipment.dispatched"):
        assert topic in produced and topic in consumed, topic


def test_events_constructed_finds_direct_and_qualified_calls() -> None:
    source = (
        "from orderflow.contracts import events as ev\n"
        "from orderflow.contracts.events import OrderHeld\n"
        "def f(uow, x):\n"
        "    uow.emit(OrderHeld(order_id=x))\n"
        "    uow.emit(ev.StockReleased(order_id=x))\n"
        "    ev.OrderApproved.model_validate(x)\n"  # decoding is not emitting
        "    return isinstance(x, ev.OrderRejected)\n"
    )
    names = [m.__name__ for m in TOPIC_OF_EVENT]
    assert asyncapi.events_constructed(source, names) == {"OrderHeld", "StockReleased"}


def test_intake_publishes_what_its_handlers_emit() -> None:
    published = asyncapi.published_events("intake")
    assert {ev.OrderReceived, ev.OrderRejected} <= set(published)
    assert ev.OrderSubmitted not in published


CONSOLE_EVENTS = (ROOT / "services" / "console" / "src" / "orderflow" / "console" / "asyncapi"
                  / "events.html")
REGENERATE_HTML = ("python -m orderflow.devstack.asyncapi_html docs/asyncapi "
                   "services/console/src/orderflow/console/asyncapi/events.html (make docs)")


def test_committed_page_and_console_fragment_match_the_code(
        generated: dict[str, dict[str, Any]]) -> None:
    documents = {s: generated[s] for s in asyncapi.SERVICES}
    assert (DOCS / asyncapi_html.INDEX).read_text(encoding="utf-8") == asyncapi_html.page(
        documents), f"docs/asyncapi/index.html is stale: run {REGENERATE_HTML}"
    assert CONSOLE_EVENTS.read_text(encoding="utf-8") == asyncapi_html.fragment(documents), (
        f"the console's asyncapi/events.html is stale: run {REGENERATE_HTML}")


def test_the_page_is_read_from_the_committed_documents_in_service_order() -> None:
    assert list(asyncapi_html.load_documents(DOCS)) == list(asyncapi.SERVICES)
