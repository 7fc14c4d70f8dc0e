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


def test_a_newer_revision_of_a_rejected_order_is_checked_afresh() -> None:
    rejected = domain.KnownOrder("o1", 5, "rejected", "abc")
    assert domain.classify_repush(rejected, 6, "other") == "retry"
    assert domain.classify_repush(rejected, 5, "other") == "duplicate"
    assert domain.classify_repush(rejected, 4, "other") == "duplicate"


def test_tax_inclusive_prices_are_taken_net_with_the_contained_vat() -> None:
    catalogue = {"LAMP": domain.Product("LAMP", Decimal("141.59"), Decimal("0.13"), Decimal("1"), True)}
    o = order(lines=[{"sku": "LAMP", "quantity": 1, "unit_price": "160.00", "discount": "20.00"}],
              shipping_fee="12.00", stated_total="152.00")
    result = domain.check_order(o, catalogue, prices_include_tax=True)
    assert isinstance(result, domain.Accepted), result
    (line,) = result.order.lines
    assert line.unit_price == Decimal("141.59")  # 160.00 / 1.13 = 141.5929...
    assert line.discount == Decimal("17.70")  # 141.59 - (140.00 - 16.11)
    assert result.totals.tax == Decimal("16.11")  # 140.00 x 0.13 / 1.13 = 16.1062...
    assert result.totals.grand_total == Decimal("152.00")
    refused = domain.check_order(o.model_copy(update={"stated_total": Decimal("160.00")}), catalogue,
                                 prices_include_tax=True)
    assert isinstance(refused, domain.Refused)
    assert "including tax" in refused.reasons[0].message


def test_net_of_tax_adds_up_to_what_the_channel_charged_whatever_the_figures() -> None:
    import random

    rnd = random.Random(20261120)
    rates = [Decimal("0"), Decimal("0.06"), Decimal("0.09"), Decimal("0.13")]
    for _ in range(2000):
        skus = [f"S{i}" for i in range(rnd.randint(1, 4))]
        catalogue = {s: domain.Product(s, Decimal("1"), rnd.choice(rates), Decimal("1"), True)
                     for s in skus}
        lines = []
        for s in skus:
            price = Decimal(rnd.randint(1, 200_000)) / 100
            quantity = rnd.randint(1, 60)
            discount = min(Decimal(rnd.randint(0, 5000)) / 100, price * quantity)
            lines.append({"sku": s, "quantity": quantity, "unit_price": str(price),
                          "discount": str(discount)})
        gross = order(lines=lines, shipping_fee="8.00", stated_total=None)
        net, totals = domain.net_of_tax(gross, catalogue)
        charged = sum((ln.unit_price * ln.quantity - ln.discount for ln in gross.lines), Decimal(0))
        assert totals.grand_total == charged + Decimal("8.00")
        assert totals.subtotal - totals.discount + totals.tax + totals.shipping == totals.grand_total
        for before, after in zip(gross.lines, net.lines, strict=True):
            rate = catalogue[before.sku].tax_rate
            assert after.discount >= 0 and after.discount <= after.unit_price * after.quantity
            assert abs(after.unit_price - before.unit_price / (1 + rate)) <= Decimal("0.01")
            assert after.unit_price.as_tuple().exponent >= -2
            assert after.discount.as_tuple().exponent >= -2
        if all(catalogue[s].tax_rate == 0 for s in skus):
            assert net == gross


# --- a run of pushes ---------------------------------------------------------------------------


def push(external_id: str, revision: int = 1, store: str | None = None, **changes: object,
         ) -> domain.Push:
    data = canonical_order(external_id)
    data.update(revision=revision, **changes)
    parsed = domain.parse_canonical(data)
    read = domain.Normalised(parsed, False) if isinstance(parsed, CanonicalOrder) else parsed
    return domain.Push(domain.Identity.of("canonical", external_id, store),
                       domain.payload_fingerprint(data), read)


def test_a_run_is_decided_push_after_push_against_what_the_earlier_ones_left() -> None:
    good = {"lines": [{"sku": "TEA-001", "quantity": 1, "unit_price": "100.00"}],
            "stated_total": None}
    bad = {"lines": [{"sku": "NO-SUCH", "quantity": 1, "unit_price": "1.00"}]}
    run = [push("A", **good), push("A", **good),              # new, then the same: duplicate
           push("B", **bad), push("B", 2, **good),            # rejected, then retried
           push("C", 2, **good), push("C", 3, **bad),         # a change, then a refused one
           push("C", 3, **bad)]                               # refused again, recorded once
    a, b, c = (domain.Identity.of("canonical", e, None).order_id for e in "ABC")
    decision = domain.decide_pushes(run, {c: domain.KnownOrder(c, 1, "received", "f1")},
                                    CATALOGUE)
    assert [(o.kind, type(o.result).__name__) for o in decision.outcomes] == [
        ("new", "Accepted"), ("duplicate", "NoneType"), ("new", "Refused"),
        ("retry", "Accepted"), ("revision", "Accepted"), ("revision", "Refused"),
        ("revision", "Refused")]
    assert {(r.order_id, r.status, r.revision) for r in decision.added} == {
        (a, "received", 1), (b, "rejected", 1)}
    # B's retry and C's change update their rows; C's refused revision leaves it at 2
    assert {(r.order_id, r.status, r.revision) for r in decision.updated} == {
        (b, "received", 2), (c, "received", 2)}
    assert [(r.order_id, r.revision, r.status) for r in decision.recorded] == [
        (a, 1, "received"), (b, 1, "rejected"), (b, 2, "received"), (c, 2, "change"),
        (c, 3, "refused")]


def test_a_push_refused_for_its_store_touches_no_order() -> None:
    refusal = domain.StoreRefusal("X", domain.Refused(()))
    refused = domain.Push(refusal, "f", domain.Refused(()))
    decision = domain.decide_pushes([refused], {}, CATALOGUE)
    (outcome,) = decision.outcomes
    assert outcome.store_refused is refusal and outcome.result is None
    assert decision.added == decision.updated == decision.recorded == ()
