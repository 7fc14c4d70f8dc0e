"""Intake's rules, without a broker or a database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orderflow.contracts.order import CanonicalOrder
from orderflow.devstack.catalogue import canonical_order
from orderflow.intake import domain

pytestmark = pytest.mark.unit

CATALOGUE = {
    "TEA-001": domain.Product("TEA-001", Decimal("100.00"), Decimal("0.09"), Decimal("1"), True),
    "FAN-030": domain.Product("FAN-030", Decimal("10.00"), Decimal("0.13"), Decimal("1"), False),
}


def order(**changes: object) -> CanonicalOrder:
    data = canonical_order("SO-1")
    data.update(changes)
    parsed = domain.parse_canonical(data)
    assert isinstance(parsed, CanonicalOrder), parsed
    return parsed


def test_totals_are_recomputed_with_tax_and_half_up_rounding() -> None:
    o = order(lines=[{"sku": "TEA-001", "quantity": 3, "unit_price": "33.35", "discount": "0.10"}],
              shipping_fee="5.00", stated_total=None)
    totals = domain.compute_totals(o, CATALOGUE)
    assert totals.subtotal == Decimal("100.05")
    assert totals.discount == Decimal("0.10")
    assert totals.tax == Decimal("9.00")  # 99.95 * 0.09 = 8.9955 -> 9.00 half up
    assert totals.grand_total == Decimal("113.95")


def test_stated_total_that_differs_is_refused_with_both_figures() -> None:
    o = order(lines=[{"sku": "TEA-001", "quantity": 1, "unit_price": "100.00"}],
              shipping_fee="0.00", stated_total="100.00")
    result = domain.check_order(o, CATALOGUE)
    assert isinstance(result, domain.Refused)
    (reason,) = result.reasons
    assert reason.code == "total_mismatch"
    assert "100.00" in reason.message and "109.00" in reason.message


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"lines": [{"sku": "TEA-001", "quantity": -1, "unit_price": "1.00"}]}, "quantity_not_positive"),
        ({"lines": [{"sku": "TEA-001", "quantity": 0, "unit_price": "1.00"}]}, "quantity_not_positive"),
        ({"lines": [{"sku": "TEA-001", "quantity": 1.5, "unit_price": "1.00"}]}, "wrong_type"),
        ({"lines": [{"sku": "TEA-001", "quantity": "two", "unit_price": "1.00"}]}, "wrong_type"),
        ({"lines": [{"sku": "TEA-001", "quantity": 1, "unit_price": "-1.00"}]}, "negative_amount"),
        ({"lines": [{"sku": "TEA-001", "quantity": 1, "unit_price": "1.001"}]}, "too_many_decimals"),
        ({"currency": "yuan"}, "invalid_format"),
        ({"placed_at": "yesterday"}, "invalid_date"),
        ({"lines": []}, "empty"),
        ({"priority": "urgent"}, "invalid_value"),
        ({"payment_terms": "whenever"}, "invalid_value"),
    ],
)
def test_bad_form_gives_a_reason_code(change: dict[str, object], code: str) -> None:
    data = canonical_order("SO-1")
    data.update(change)
    result = domain.parse_canonical(data)
    assert isinstance(result, domain.Refused)
    assert code in {r.code for r in result.reasons}


def test_missing_fields_are_named() -> None:
    data = canonical_order("SO-1")
    del data["shipping_address"]
    result = domain.parse_canonical(data)
    assert isinstance(result, domain.Refused)
    assert [(r.code, r.field) for r in result.reasons] == [("missing_field", "shipping_address")]


def test_unknown_and_inactive_skus_are_refused() -> None:
    o = order(lines=[{"sku": "NOPE-1", "quantity": 1, "unit_price": "1.00"},
                     {"sku": "FAN-030", "quantity": 1, "unit_price": "10.00"}], stated_total=None)
    result = domain.check_order(o, CATALOGUE)
    assert isinstance(result, domain.Refused)
    assert {r.code for r in result.reasons} == {"unknown_sku", "inactive_sku"}


def test_repush_classification() -> None:
    known = domain.KnownOrder("o1", 1, "received", "abc")
    assert domain.classify_repush(None, 1, "abc") == "new"
    assert domain.classify_repush(known, 1, "abc") == "duplicate"
    assert domain.classify_repush(known, 1, "other") == "duplicate"
    assert domain.classify_repush(known, 2, "other") == "revision"


def test_validation_reasons_never_contain_input_values() -> None:
    data = canonical_order("SO-1")
    data["customer"] = {"id": "C1", "email": 12345678}
    result = domain.parse_canonical(data)
    assert isinstance(result, domain.Refused)
    assert all("12345678" not in r.message for r in result.reasons)
