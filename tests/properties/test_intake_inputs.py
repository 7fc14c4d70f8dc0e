"""Intake's adapters, the canonical schema and the consumer's decoding fed random and mutated
payloads: nothing raises but the documented error, every input ends as an order or as reasons,
and no reason repeats the personal data it was given."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orderflow.channels import channel_names
from orderflow.contracts.events import OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder
from orderflow.contracts.topics import BY_NAME, ORDER_INBOUND
from orderflow.devstack.catalogue import canonical_order, customers, products
from orderflow.intake import domain
from orderflow.intake.adapters import AdapterError, ChannelOrder, adapter_of
from orderflow.intake.handlers import Normalised, normalise
from orderflow.runtime.consumer import Poison, Subscription, decode
from orderflow.runtime.unit_of_work import IncomingEvent

from .strategies import REALISTIC, examples, json_values, mutated, realistic_then_mutated

pytestmark = pytest.mark.unit

CHANNELS = list(channel_names())
CATALOGUE = {sku: domain.Product(sku, p.unit_price, p.tax_rate, p.weight_kg, p.active)
             for sku, p in products().items()}
FAST = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome_of(channel: str, payload: Any) -> domain.Accepted | domain.Refused:
    """What intake makes of a payload: the adapter, the schema, then the order checks."""
    envelope = OrderSubmitted(channel=channel, external_id=_external_id(channel, payload),
                              received_at=datetime.now(UTC), payload=payload)
    normalised = normalise(envelope)
    if isinstance(normalised, domain.Refused):
        return normalised
    assert isinstance(normalised, Normalised)
    return domain.check_order(normalised.order, CATALOGUE,
                              prices_include_tax=normalised.prices_include_tax)


def _external_id(channel: str, payload: Any) -> str:
    """The id a connector would put on the envelope: the one the platform's payload carries."""
    try:
        data = adapter_of(channel)(payload).data
    except AdapterError:
        return "unknown"
    value = data.get("external_id") if isinstance(data, dict) else None
    return str(value)[:128] if isinstance(value, str) and value.strip() else "unknown"


def assert_ends_with_order_or_reasons(result: domain.Accepted | domain.Refused) -> None:
    if isinstance(result, domain.Accepted):
        assert isinstance(result.order, CanonicalOrder)
        assert result.totals.grand_total >= 0
        return
    assert isinstance(result, domain.Refused)
    assert result.reasons, "a refusal must say why"
    for reason in result.reasons:
        assert reason.code and reason.message


LAST_CALENDAR_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z


def run_adapter(channel: str, payload: Any) -> ChannelOrder | AdapterError:
    """The adapter itself (not ``adapt``'s safety net): only ``AdapterError`` may come out."""
    try:
        return adapter_of(channel)(payload)
    except AdapterError as exc:
        refused = exc
    assert str(refused), "an AdapterError must say what is wrong"
    return refused


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_realistic_payload_is_accepted(channel: str) -> None:
    """The baseline the mutations start from: the samples and simulated orders go through."""
    for payload in REALISTIC[channel]:
        result = outcome_of(channel, payload)
        assert isinstance(result, domain.Accepted), (channel, getattr(result, "reasons", None))


@pytest.mark.parametrize("channel", CHANNELS)
@FAST
@given(payload=json_values)
@example(payload=None)
@example(payload=[])
@example(payload={"rows": [{}]})
@example(payload={"id": True})
@example(payload={"order_id": 1, "order_status": 2, "create_time": 2**40})
def test_no_adapter_raises_anything_but_adapter_error_on_random_json(channel: str, payload: Any) -> None:
    run_adapter(channel, payload)
    assert_ends_with_order_or_reasons(outcome_of(channel, payload))


@pytest.mark.parametrize("channel", CHANNELS)
@FAST
@given(data=st.data())
def test_mutated_platform_payloads_end_as_an_order_or_reasons(channel: str, data: st.DataObject) -> None:
    payload = data.draw(realistic_then_mutated(channel))
    run_adapter(channel, payload)
    assert_ends_with_order_or_reasons(outcome_of(channel, payload))


@pytest.mark.parametrize("create_time", [10**20, 2**63, LAST_CALENDAR_SECOND * 1000 + 1000])
def test_a_douyin_time_beyond_the_calendar_is_an_adapter_error(create_time: int) -> None:
    payload = {"order_id": "6948217736519034871", "order_status": 2, "create_time": create_time}
    with pytest.raises(AdapterError) as refused:
        adapter_of("douyin")(payload)
    assert refused.value.field == "create_time"


@pytest.mark.parametrize("field", ["unit_price", "shipping_fee"])
def test_an_amount_too_large_for_money_is_refused_with_a_reason(field: str) -> None:
    order: dict[str, Any] = canonical_order("PROP-HUGE", customer_id="C0025", lines=[("TEA-001", 1)])
    huge = "1" + "0" * 30 + ".00"
    if field == "unit_price":
        order["lines"][0]["unit_price"] = huge
    else:
        order["shipping_fee"] = huge
    result = outcome_of("canonical", order)
    assert isinstance(result, domain.Refused)


def test_a_sheet_quantity_too_large_is_an_adapter_error_or_a_reason() -> None:
    sheet = next(p for p in REALISTIC["csv"])
    sheet = {**sheet, "rows": [{**sheet["rows"][0], "quantity": "9" * 400}]}
    try:
        data = adapter_of("csv")(sheet)
    except AdapterError:
        return
    assert isinstance(data, ChannelOrder)


CUSTOMER = customers()["C0025"]


@FAST
@given(order=mutated(canonical_order("PROP-CANON", customer_id="C0025",
                                     lines=[("TEA-001", 2), ("RICE-003", 1)])))
def test_the_canonical_schema_refuses_with_reasons_that_repeat_no_personal_data(order: Any) -> None:
    with contextlib.suppress(ValidationError):  # the only error the schema may raise
        CanonicalOrder.model_validate(order)
    parsed = domain.parse_canonical(order)
    if isinstance(parsed, domain.Refused):
        assert parsed.reasons
        said = " ".join(f"{r.field} {r.message}" for r in parsed.reasons)
        assert CUSTOMER.email not in said and CUSTOMER.phone not in said


def _record(topic: str, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    class Record:
        pass
    r = Record()
    r.topic, r.partition, r.offset, r.key = topic, 0, 0, b"k"  # type: ignore[attr-defined]
    r.value, r.headers = value, headers  # type: ignore[attr-defined]
    return r


async def _nothing(*_args: Any) -> None:
    return None


header_strategy = st.lists(
    st.tuples(st.sampled_from(["event_id", "event_type", "schema_version", "occurred_at",
                               "producer", "correlation_id", "x"]),
              st.binary(max_size=40)), max_size=8)


@pytest.mark.parametrize("topic", ["order.inbound", "order.received", "stock.reserved",
                                   "customer.updated"])
@FAST
@given(value=st.none() | st.binary(max_size=300) | json_values.map(lambda v: repr(v).encode()),
       headers=header_strategy, valid_headers=st.booleans())
def test_the_consumer_decodes_any_record_into_an_event_or_a_reason(
        topic: str, value: bytes | None, headers: list[tuple[str, bytes]], valid_headers: bool) -> None:
    model = BY_NAME[topic].model
    if valid_headers:
        headers = EventHeaders.new(event_type=model.EVENT_TYPE, schema_version=1, producer="prop",
                                   correlation_id="k").to_kafka()
    sub = Subscription(BY_NAME[topic], _nothing, headerless=BY_NAME[topic] is ORDER_INBOUND)
    result = decode(_record(topic, value, headers), sub, 1_000_000)
    if isinstance(result, Poison):
        assert result.reason in {"payload_too_large", "bad_headers", "unexpected_event_type",
                                 "unknown_schema_version", "malformed_json", "invalid_payload"}
        assert result.error
    else:
        assert isinstance(result, IncomingEvent)
        uuid.UUID(result.headers.event_id)
