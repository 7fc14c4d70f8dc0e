"""Contracts: money never a float, headers round-trip, committed schemas match the models."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from orderflow.contracts.events import ALL_EVENTS, OrderReceived, OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.money import Money
from orderflow.contracts.order import (
    CanonicalOrder,
    OrderTotals,
    order_id_for,
)
from orderflow.contracts.schemas import documents
from orderflow.contracts.topics import CATALOGUE, all_topic_names
from orderflow.devstack.catalogue import canonical_order

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_money_serialises_as_strings_and_refuses_floats() -> None:
    assert Money(amount=Decimal("199.00"), currency="CNY").model_dump(mode="json") == {
        "amount": "199.00", "currency": "CNY"}
    with pytest.raises(ValidationError):
        Money(amount=1.1, currency="CNY")  # type: ignore[arg-type]


def test_an_event_round_trips_through_json_with_decimal_amounts() -> None:
    order = CanonicalOrder.model_validate(canonical_order("SO-1"))
    totals = OrderTotals(subtotal=Decimal("1.10"), discount=Decimal("0"), tax=Decimal("0.10"),
                         shipping=Decimal("0"), grand_total=Decimal("1.20"))
    event = OrderReceived(order_id=order_id_for("canonical", "SO-1"), channel="canonical",
                          external_id="SO-1", order=order, totals=totals)
    text = event.model_dump_json()
    assert '"grand_total":"1.20"' in text
    assert OrderReceived.model_validate_json(text) == event


def test_headers_round_trip_and_name_what_is_missing() -> None:
    parent = EventHeaders.new(event_type="A", schema_version=1, producer="p", correlation_id="o")
    child = EventHeaders.new(event_type="B", schema_version=1, producer="q", correlation_id="o",
                             causation=parent)
    back = EventHeaders.from_kafka(child.to_kafka())
    assert back.causation_id == parent.event_id
    assert back.traceparent.split("-")[1] == parent.traceparent.split("-")[1]
    with pytest.raises(ValueError, match="event_id"):
        EventHeaders.from_kafka([("event_type", b"A"), ("schema_version", b"1")])


def test_every_event_has_a_topic_and_every_topic_a_dlq() -> None:
    assert {t.model for t in CATALOGUE} == set(ALL_EVENTS)
    names = dict(all_topic_names())
    assert all(f"{t.name}.dlq" in names for t in CATALOGUE)


def test_order_ids_are_stable_per_channel_and_external_id() -> None:
    assert order_id_for("shopify", "1001") == order_id_for("shopify", "1001")
    assert order_id_for("shopify", "1001") != order_id_for("douyin", "1001")


def test_the_store_is_part_of_an_order_id_and_without_one_ids_are_as_before() -> None:
    namespace = uuid.UUID("0b6c1f7e-3a52-4f0e-8d2c-6e9a4b1d7c30")
    # without a store: the id every order had before stores counted (canonical, sheets, ...)
    assert order_id_for("canonical", "SO-1") == str(uuid.uuid5(namespace, "canonical:SO-1"))
    assert order_id_for("canonical", "SO-1", None) == order_id_for("canonical", "SO-1")
    # with one: uuid5 of <channel>:<store>:<external id>, one order per store
    assert order_id_for("shopify", "1001", "shop-a") == str(
        uuid.uuid5(namespace, "shopify:shop-a:1001"))
    ids = {order_id_for("shopify", "1001", "shop-a"), order_id_for("shopify", "1001", "shop-b"),
           order_id_for("shopify", "1001"), order_id_for("douyin", "1001", "shop-a"),
           order_id_for("shopify", "1001", "")}
    assert len(ids) == 5
    assert order_id_for("shopify", "1001", "shop-a") == order_id_for("shopify", "1001", "shop-a")


def test_a_submission_without_a_store_still_parses_and_a_store_is_checked() -> None:
    old = {"channel": "shopify", "external_id": "1001", "received_at": "2026-11-20T10:00:00Z",
           "payload": {"id": 1001}}
    assert OrderSubmitted.model_validate_json(json.dumps(old)).store is None
    assert OrderSubmitted.model_validate({**old, "store": "shop-a"}).store == "shop-a"
    for bad in ("", "shop:a", "shop a", "x" * 129):
        with pytest.raises(ValidationError):
            OrderSubmitted.model_validate({**old, "store": bad})
    assert OrderSubmitted.model_validate({**old, "store": "shop-a"}).key() == "shopify:1001"


def test_committed_schemas_match_the_models() -> None:
    folder = ROOT / "docs" / "schemas"
    for name, text in documents().items():
        path = folder / name
        assert path.exists(), f"{path} missing: run `make docs`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make docs`"
