"""The AsyncAPI documents as one HTML page: every service and every catalogue topic on it, who
publishes and who consumes each topic, payloads as tables of fields, the same bytes whatever the
documents' key order, everything escaped, nothing fetched."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from orderflow.contracts.topics import CATALOGUE
from orderflow.devstack import asyncapi, asyncapi_html

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return asyncapi_html.load_documents(DOCS)


def _reversed_keys(node: Any) -> Any:
    """``node`` with every mapping's keys in reverse order, except a schema's properties (their
    order is the model's, and the page keeps it)."""
    if isinstance(node, dict):
        return {k: (v if k == "properties" else _reversed_keys(v))
                for k, v in reversed(list(node.items()))}
    if isinstance(node, list):
        return [_reversed_keys(v) for v in node]
    return node


def _row(page: str, topic: str) -> str:
    match = re.search(rf'<tr><td><a href="#topic-{re.escape(topic)}">.*?</tr>', page)
    assert match, topic
    return match.group(0)


def test_every_service_and_every_catalogue_topic_is_on_the_page(
        documents: dict[str, dict[str, Any]]) -> None:
    page = asyncapi_html.page(documents)
    assert list(documents) == list(asyncapi.SERVICES)
    for service in asyncapi.SERVICES:
        assert f'<section class="service" id="service-{service}">' in page
        assert f"<code>orderflow.{service}</code>" in page  # its consumer group
    for topic in CATALOGUE:
        assert f'<section class="topic" id="topic-{topic.name}">' in page, topic.name
        assert f'<h4 id="type-{topic.model.__name__}">' in page, topic.name
    assert '<code id="topic-order.received.dlq">' in page


def test_the_index_says_who_publishes_and_who_consumes(
        documents: dict[str, dict[str, Any]]) -> None:
    view = asyncapi_html.build_view(documents)
    received = next(t for t in view.topics if t.name == "order.received")
    assert "intake" in received.publishers and "review" in received.consumers
    invoices = next(t for t in view.topics if t.name == "finance.invoice-issued")
    assert invoices.publishers == [] and "review" in invoices.consumers  # the finance connector
    row = _row(asyncapi_html.page(documents), "finance.invoice-issued")
    assert "outside the services" in row and '<a href="#service-review">review</a>' in row


def test_a_payload_is_a_table_of_its_fields(documents: dict[str, dict[str, Any]]) -> None:
    view = asyncapi_html.build_view(documents)
    fields = {f.name: f for f in view.payloads["OrderReceived"].fields}
    assert fields["order_id"].required and fields["order_id"].type == (("string", None),)
    assert fields["order"].type == (("CanonicalOrder", "CanonicalOrder"),)
    author = fields["author"]
    assert not author.required and author.type == (("string", None), (" or ", None), ("null", None))
    assert "(max length 200; default null)" in author.description
    assert "CanonicalOrder" in {t.name for t in view.types}
    assert {"EventHeaders", "DeadLetterHeaders"} <= {t.name for t in view.types}


def test_the_same_page_whatever_the_documents_key_order(
        documents: dict[str, dict[str, Any]]) -> None:
    page, fragment = asyncapi_html.page(documents), asyncapi_html.fragment(documents)
    shuffled = {s: _reversed_keys(doc) for s, doc in documents.items()}
    assert asyncapi_html.page(shuffled) == page
    assert asyncapi_html.fragment(shuffled) == fragment
    assert fragment.strip() in page


def test_text_of_the_documents_is_escaped_and_nothing_is_fetched(
        documents: dict[str, dict[str, Any]]) -> None:
    hostile = copy.deepcopy(documents)
    hostile["review"]["info"]["description"] = '<script>alert("x")</script>'
    page = asyncapi_html.page(hostile)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


@pytest.mark.parametrize(("schema", "said"), [
    ({"type": "array", "items": {"$ref": "#/components/schemas/OrderLine"}}, "array of OrderLine"),
    ({"type": "string", "format": "date-time"}, "string (date-time)"),
    ({"enum": ["low", "high"], "type": "string"}, 'one of "low", "high"'),
    ({"type": "object", "additionalProperties": {"type": "string"}}, "map of string to string"),
    ({}, "any"),
])
def test_a_types_words(schema: dict[str, Any], said: str) -> None:
    assert "".join(text for text, _ in asyncapi_html.type_pieces(schema)) == said
