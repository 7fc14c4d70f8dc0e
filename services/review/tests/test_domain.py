"""Review's rules, without broker or database: every rule passing and failing, the decision,
and the credit account's changes on approvals, invoices and payments."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orderflow.contracts.events import CustomerUpdated, HoldReason
from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.devstack import catalogue
from orderflow.devstack.simulator import generate_orders
from orderflow.review import domain
from orderflow.review.domain import (
    CreditAccount,
    ListPrice,
    OrderLedger,
    OrderUnderReview,
    PromotionState,
    ReviewPolicy,
)
from orderflow.review.settings import PolicyError, load_policy

pytestmark = pytest.mark.unit

POLICY = ReviewPolicy()
D = Decimal


def totals_of(order: CanonicalOrder) -> OrderTotals:
    cat = catalogue.products()
    subtotal = sum((line.unit_price * line.quantity for line in order.lines), D(0))
    discount = sum((line.discount for line in order.lines), D(0))
    tax = sum((round_money((line.unit_price * line.quantity - line.discount)
                           * (cat[line.sku].tax_rate if line.sku in cat else D(0)))
               for line in order.lines), D(0))
    grand = round_money(round_money(subtotal) - round_money(discount) + tax
                        + round_money(order.shipping_fee))
    return OrderTotals(subtotal=round_money(subtotal), discount=round_money(discount), tax=tax,
                       shipping=round_money(order.shipping_fee), grand_total=grand)


def price_list() -> dict[str, ListPrice]:
    return {sku: ListPrice(sku, p.unit_price, "CNY", p.active)
            for sku, p in catalogue.products().items()}


def account(**changes: Any) -> CreditAccount:
    base = CreditAccount(customer_id="C0002", known=True, currency="CNY",
                         credit_limit=D("100000"), payment_terms="net30",
                         open_receivables=D("10000"), approved_orders=3)
    return replace(base, **changes)


def order(**kwargs: Any) -> CanonicalOrder:
    mutate = kwargs.pop("mutate", None)
    data = catalogue.canonical_order(kwargs.pop("external_id", "T-1"), **kwargs)
    if mutate:
        mutate(data)
    return CanonicalOrder.model_validate(data)


def under_review(o: CanonicalOrder | None = None, acct: CreditAccount | None = None,
                 **kwargs: Any) -> OrderUnderReview:
    o = o or order()
    return OrderUnderReview(order=o, totals=totals_of(o), account=acct or account(),
                            prices=kwargs.pop("prices", price_list()), **kwargs)


def decide(r: OrderUnderReview, policy: ReviewPolicy = POLICY) -> domain.Decision:
    return domain.review_order(r, policy)


def codes(d: domain.Decision) -> list[str]:
    return d.codes


def rule(d: domain.Decision, name: str) -> Any:
    return next(r for r in d.rules if r.rule == name)


# --- the decision -------------------------------------------------------------------------------


def test_an_ordinary_order_is_approved_with_every_rule_explained() -> None:
    d = decide(under_review())
    assert d.outcome == "approved"
    assert d.reasons == ()
    assert [r.rule for r in d.rules] == [
        "customer_profile", "customer_blocked", "overdue", "payment_terms", "currency",
        "credit_limit", "cod_limit", "prepayment", "price_list", "discount_cap", "promo_code",
        "delivery_date", "order_value", "new_customer_first_order"]
    assert all(r.passed for r in d.rules)
    credit = rule(d, "credit_limit")
    assert credit.figures["credit_limit"] == "100000.00"
    assert credit.figures["exposure"] == "10000.00"


def test_several_failures_give_several_typed_reasons() -> None:
    d = decide(under_review(acct=account(blocked=True, overdue_days=90, overdue_amount=D("500")),
                            o=order(requested_delivery_date="2026-11-20")))
    assert d.outcome == "held"
    assert codes(d) == ["blocked_customer", "date_infeasible", "overdue"]
    assert not rule(d, "customer_blocked").passed


def test_reject_on_turns_a_hold_into_a_rejection() -> None:
    policy = ReviewPolicy(reject_on=frozenset({"blocked_customer"}))
    assert decide(under_review(acct=account(blocked=True)), policy).outcome == "rejected"
    assert decide(under_review(acct=account(overdue_days=90, overdue_amount=D(1))),
                  policy).outcome == "held"


# --- customer and credit ------------------------------------------------------------------------


def test_unknown_customer_is_new_with_zero_limit_and_needs_a_manager() -> None:
    d = decide(under_review(acct=CreditAccount.unknown("C9999", POLICY)))
    assert d.outcome == "held"
    assert codes(d) == ["credit_limit", "manager_approval"]
    assert not rule(d, "customer_profile").passed
    assert rule(d, "credit_limit").figures["credit_limit"] == "0.00"


def test_blocked_customer_is_held() -> None:
    d = decide(under_review(acct=account(blocked=True)))
    assert codes(d) == ["blocked_customer"]


@pytest.mark.parametrize(("days", "amount", "held"), [
    (45, "1000", True), (90, "0.01", True), (30, "1000", False), (15, "5000", False),
    (0, "0", False)])
def test_overdue_beyond_tolerance_is_held(days: int, amount: str, held: bool) -> None:
    d = decide(under_review(acct=account(overdue_days=days, overdue_amount=D(amount))))
    assert ("overdue" in codes(d)) is held
    assert rule(d, "overdue").figures["tolerance_days"] == "30"


def test_overdue_amount_tolerance() -> None:
    policy = ReviewPolicy(overdue_tolerance_amount=D("2000"))
    d = decide(under_review(acct=account(overdue_days=90, overdue_amount=D("1500"))), policy)
    assert d.outcome == "approved"


def test_credit_limit_counts_receivables_and_approved_not_invoiced() -> None:
    o = order()
    total = totals_of(o).grand_total
    at_limit = account(credit_limit=D("10000") + D("500") + total, approved_not_invoiced=D("500"))
    assert decide(under_review(o, at_limit)).outcome == "approved"
    over = replace(at_limit, approved_not_invoiced=D("500.01"))
    d = decide(under_review(o, over))
    assert codes(d) == ["credit_limit"]
    figures = rule(d, "credit_limit").figures
    assert figures["exposure"] == "10500.01"
    assert D(figures["exposure_after"]) == D("10500.01") + total


def test_prepaid_and_cod_orders_do_not_use_the_credit_limit() -> None:
    full = account(credit_limit=D("0"), open_receivables=D("0"))
    assert "credit_limit" not in codes(decide(under_review(order(payment_terms="cod"), full)))
    assert "credit_limit" not in codes(decide(under_review(order(payment_terms="prepaid"), full,
                                                           paid_in_advance=D("99999"))))


def test_cod_orders_have_their_own_limit() -> None:
    o = order(payment_terms="cod")
    total = totals_of(o).grand_total
    ok = decide(under_review(o, account(payment_terms="cod", open_cod=D("10000") - total)))
    assert ok.outcome == "approved"
    d = decide(under_review(o, account(payment_terms="cod", open_cod=D("10000") - total + D("0.01"))))
    assert codes(d) == ["credit_limit"]
    assert not rule(d, "cod_limit").passed


def test_prepaid_order_is_held_for_its_amount_until_paid() -> None:
    o = order(payment_terms="prepaid")
    total = totals_of(o).grand_total
    d = decide(under_review(o))
    assert codes(d) == ["prepayment_due"]
    assert d.amount_due == total
    part = decide(under_review(o, paid_in_advance=D("100")))
    assert part.amount_due == total - D("100")
    assert decide(under_review(o, paid_in_advance=total)).outcome == "approved"


def test_customer_terms_stricter_than_the_order_apply() -> None:
    o = order(payment_terms="net30")
    d = decide(under_review(o, account(payment_terms="prepaid")))
    assert codes(d) == ["prepayment_due"]
    assert rule(d, "payment_terms").figures["effective_terms"] == "prepaid"
    assert domain.effective_terms(o, account(payment_terms="cod")) == "cod"
    assert domain.effective_terms(order(payment_terms="prepaid"), account()) == "prepaid"


def test_longer_terms_than_agreed_need_a_manager() -> None:
    d = decide(under_review(order(payment_terms="net60"), account(payment_terms="net30")))
    assert codes(d) == ["manager_approval"]
    assert not rule(d, "payment_terms").passed
    assert decide(under_review(order(payment_terms="net15"), account())).outcome == "approved"


def test_an_order_in_another_currency_than_the_account_needs_a_manager() -> None:
    d = decide(under_review(acct=account(currency="USD")))
    assert "manager_approval" in codes(d)
    assert not rule(d, "currency").passed


# --- order checks -------------------------------------------------------------------------------


def test_unit_price_within_tolerance_passes_and_outside_is_held() -> None:
    sku = "TEA-001"
    listed = catalogue.products()[sku].unit_price

    def priced(price: Decimal) -> CanonicalOrder:
        return order(lines=[(sku, 2)], mutate=lambda o: o["lines"][0].update(
            unit_price=f"{price:.2f}"))

    assert decide(under_review(priced(round_money(listed * D("0.98"))))).outcome == "approved"
    low = decide(under_review(priced(round_money(listed * D("0.90")))))
    assert codes(low) == ["price_deviation"]
    assert low.reasons[0].figures["sku"] == sku
    assert low.reasons[0].figures["deviation_pct"] == "-10.00"
    high = decide(under_review(priced(round_money(listed * D("1.05")))))
    assert codes(high) == ["price_deviation"]


def test_a_sku_without_list_price_cannot_be_checked() -> None:
    prices = price_list()
    del prices["TEA-001"]
    d = decide(under_review(order(lines=[("TEA-001", 1)]), prices=prices))
    assert codes(d) == ["price_deviation"]
    assert "no list price" in d.reasons[0].message


def test_line_and_order_discount_caps() -> None:
    # TEA-001 lists at 379.08: 2 units = 758.16; 20 % = 151.63
    ok = decide(under_review(order(lines=[("TEA-001", 2), ("TEA-002", 2)], discount="151.63")))
    assert ok.outcome == "approved"
    line = decide(under_review(order(lines=[("TEA-001", 2), ("TEA-002", 8)], discount="160.00")))
    assert codes(line) == ["price_deviation"]
    assert not rule(line, "discount_cap").passed
    # one line at the cap, but the whole order over 15 %
    whole = decide(under_review(order(lines=[("TEA-001", 2)], discount="150.00")))
    assert codes(whole) == ["price_deviation"]
    assert "subtotal" in whole.reasons[0].message


def promotion(**changes: Any) -> PromotionState:
    base = PromotionState("WELCOME10", date(2026, 1, 1), date(2026, 12, 31), 10, 0)
    return replace(base, **changes)


def test_a_valid_promotion_code_passes() -> None:
    d = decide(under_review(order(promo_code="welcome10"), promotion=promotion()))
    assert d.outcome == "approved"
    assert rule(d, "promo_code").figures["promo_code"] == "WELCOME10"


@pytest.mark.parametrize(("state", "words"), [
    (None, "not known"),
    (promotion(valid_to=date(2026, 11, 11)), "valid"),
    (promotion(valid_from=date(2026, 12, 1)), "valid"),
    (promotion(used=10), "usage limit"),
])
def test_invalid_promotion_codes_are_held(state: PromotionState | None, words: str) -> None:
    d = decide(under_review(order(promo_code="WELCOME10"), promotion=state))
    assert codes(d) == ["promo_invalid"]
    assert words in d.reasons[0].message


def test_unlimited_promotion() -> None:
    d = decide(under_review(order(promo_code="X"), promotion=promotion(usage_limit=None, used=10**6)))
    assert d.outcome == "approved"


@pytest.mark.parametrize(("address", "priority", "requested", "feasible"), [
    (0, "normal", None, True),             # nothing requested
    (0, "normal", "2026-12-20", True),     # the demo's date
    (0, "normal", "2026-11-22", True),     # 上海: placed 11-20 + 1 lead + 1 transit
    (0, "normal", "2026-11-21", False),
    (0, "rush", "2026-11-21", True),       # rush: no lead time
    (7, "normal", "2026-11-23", False),    # 陕西: 1 + 3 -> 11-24
    (7, "normal", "2026-11-24", True),
    (0, "normal", "2026-11-19", False),    # before the order was placed
])
def test_delivery_date_feasibility(address: int, priority: str, requested: str | None,
                                   feasible: bool) -> None:
    d = decide(under_review(order(address_index=address, priority=priority,
                                  requested_delivery_date=requested)))
    assert ("date_infeasible" not in codes(d)) is feasible
    assert rule(d, "delivery_date").figures["placed_on"] == "2026-11-20"


def test_placed_day_is_counted_in_the_company_time_zone() -> None:
    # 2026-11-20 17:30 UTC is already the 21st in Shanghai
    o = order(placed_at="2026-11-20T17:30:00+00:00", requested_delivery_date="2026-11-22")
    assert domain.placed_day(o, POLICY) == date(2026, 11, 21)
    assert "date_infeasible" in codes(decide(under_review(o)))
    assert domain.placed_day(o, ReviewPolicy(timezone="UTC")) == date(2026, 11, 20)


def test_unknown_province_uses_the_default_transit() -> None:
    o = order(requested_delivery_date="2026-11-24",
              mutate=lambda x: x["shipping_address"].update(province="Atlantis"))
    earliest, lead, transit = domain.earliest_delivery(o, POLICY)
    assert (lead, transit, earliest) == (1, 4, date(2026, 11, 25))
    assert "date_infeasible" in codes(decide(under_review(o)))


def test_large_orders_need_a_manager() -> None:
    big = order(lines=[("TEA-002", 8), ("TEA-004", 8), ("TEA-001", 8)])  # about 12 000
    assert totals_of(big).grand_total > D("10000")
    d = decide(under_review(big))
    assert codes(d) == ["manager_approval"]
    assert not rule(d, "order_value").passed


def test_a_new_customers_first_large_order_needs_a_manager() -> None:
    o = order(lines=[("TEA-002", 8), ("TEA-004", 5)])  # about 6 900
    total = totals_of(o).grand_total
    assert D("5000") < total < D("10000")
    new = account(approved_orders=0, open_receivables=D("0"))
    d = decide(under_review(o, new))
    assert codes(d) == ["manager_approval"]
    assert not rule(d, "new_customer_first_order").passed
    assert decide(under_review(o, replace(new, approved_orders=1))).outcome == "approved"
    assert decide(under_review(o, replace(new, open_receivables=D("1")))).outcome == "approved"
    assert decide(under_review(order(), new)).outcome == "approved"


# --- credit account changes ---------------------------------------------------------------------


def ledger(kind: domain.ExposureKind = "credit", total: str = "1000", **changes: Any) -> OrderLedger:
    return replace(OrderLedger(order_id="O1", customer_id="C0002", status="held", kind=kind,
                               grand_total=D(total)), **changes)


def test_profile_update_keeps_reviews_running_figures() -> None:
    a = account(approved_not_invoiced=D("700"), open_cod=D("50"), approved_orders=4)
    profile = CustomerUpdated(customer_id="C0002", name="x", credit_limit=D("5000"),
                              currency="CNY", payment_terms="net15", open_receivables=D("123"),
                              overdue_amount=D("9"), overdue_days=40, blocked=True)
    updated = a.with_profile(profile)
    assert (updated.credit_limit, updated.open_receivables, updated.blocked) == \
        (D("5000"), D("123"), True)
    assert (updated.approved_not_invoiced, updated.open_cod, updated.approved_orders) == \
        (D("700"), D("50"), 4)
    assert updated.exposure == D("823")
    assert CreditAccount.unknown("C9", POLICY).with_profile(profile).known


def test_approving_adds_to_the_right_exposure() -> None:
    a, led = domain.approve(account(), ledger("credit"))
    assert (a.approved_not_invoiced, led.uninvoiced, led.status) == (D("1000"), D("1000"), "approved")
    assert a.approved_orders == 4
    a, _ = domain.approve(account(), ledger("cod"))
    assert (a.open_cod, a.approved_not_invoiced) == (D("1000"), D("0"))
    a, _ = domain.approve(account(), ledger("prepaid", paid=D("1000")))
    assert (a.open_cod, a.approved_not_invoiced) == (D("0"), D("0"))


def test_an_invoice_moves_approved_not_invoiced_to_receivables() -> None:
    a, led = domain.approve(account(), ledger("credit"))
    applied = domain.apply_invoice(a, led, D("1000"))
    assert applied.account.approved_not_invoiced == D("0")
    assert applied.account.open_receivables == D("11000")
    assert applied.account.exposure == a.exposure
    assert applied.moved_from_approved == D("1000")
    # an invoice without an order known to review is all receivable
    loose = domain.apply_invoice(account(), None, D("300"))
    assert (loose.account.open_receivables, loose.moved_from_approved) == (D("10300"), D("0"))


def test_a_prepaid_orders_invoice_is_settled_by_its_prepayment() -> None:
    led = ledger("prepaid", status="approved", paid=D("1000"))
    applied = domain.apply_invoice(account(), led, D("1000"))
    assert applied.to_receivables == D("0")
    again = domain.apply_invoice(applied.account, applied.ledger, D("200"))
    assert again.to_receivables == D("200")


def test_a_payment_reduces_receivables_never_below_zero() -> None:
    p = domain.apply_payment(account(), None, D("4000"), for_order=False)
    assert (p.account.open_receivables, p.applied_as) == (D("6000"), "receivables")
    p = domain.apply_payment(account(), None, D("40000"), for_order=False)
    assert p.account.open_receivables == D("0")


def test_a_payment_covering_a_prepaid_order_releases_it() -> None:
    held = ledger("prepaid", reasons=(HoldReason(code="prepayment_due", message="pay"),))
    part = domain.apply_payment(account(), held, D("400"), for_order=True)
    assert (part.release, part.applied_as) == (False, "prepayment")
    assert part.ledger is not None and part.ledger.paid == D("400")
    assert part.account.open_receivables == D("10000")
    rest = domain.apply_payment(part.account, part.ledger, D("600"), for_order=True)
    assert rest.release
    assert rest.ledger is not None
    assert domain.prepayment_rule_after_payment(rest.ledger).passed


def test_a_covered_prepayment_with_other_holds_stays_held() -> None:
    held = ledger("prepaid", reasons=(HoldReason(code="prepayment_due", message="pay"),
                                      HoldReason(code="blocked_customer", message="blocked")))
    p = domain.apply_payment(account(), held, D("1000"), for_order=True)
    assert not p.release
    assert [r.code for r in p.reasons_left] == ["blocked_customer"]


def test_a_payment_for_an_unseen_order_is_kept_as_an_advance() -> None:
    p = domain.apply_payment(account(), None, D("100"), for_order=True)
    assert (p.applied_as, p.account) == ("advance", account())


def test_a_cod_payment_settles_open_cod() -> None:
    a, led = domain.approve(account(), ledger("cod"))
    p = domain.apply_payment(a, led, D("1000"), for_order=True)
    assert (p.account.open_cod, p.applied_as) == (D("0"), "cod")


def test_manual_decisions_only_on_held_orders() -> None:
    assert domain.refuse_manual_decision(ledger(), "O1", "approve") is None
    msg = domain.refuse_manual_decision(ledger(status="approved"), "O1", "reject")
    assert msg == "order O1 is approved, not held: it cannot be rejected any more"
    assert "not known" in (domain.refuse_manual_decision(None, "O1", "approve") or "")


# --- the policy ---------------------------------------------------------------------------------


def test_policy_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"company": "ACME", "manager_approval_above": "50000",
                                "price_tolerance": 0.05, "transit_days": {"上海": 3},
                                "reject_on": ["blocked_customer"],
                                "promotions": [{"code": "acme1", "valid_from": "2026-01-01",
                                                "valid_to": "2026-03-31", "usage_limit": 5}]}))
    p = load_policy(path)
    assert (p.company, p.manager_approval_above, p.price_tolerance) == \
        ("ACME", D("50000"), D("0.05"))
    assert p.cod_limit == D("10000")  # untouched default
    assert p.promotion("Acme1") is not None
    assert p.promotion("WELCOME10") is None
    assert p.transit_days == {"上海": 3}


@pytest.mark.parametrize(("content", "words"), [
    ({"manager_approval_above": "-1"}, "manager_approval_above"),
    ({"no_such_threshold": 1}, "no_such_threshold"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"reject_on": ["not_a_code"]}, "reject_on"),
])
def test_a_bad_policy_file_names_the_variable_and_the_field(
        tmp_path: Path, content: dict[str, Any], words: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(content))
    with pytest.raises(PolicyError, match="ORDERFLOW_REVIEW_POLICY_FILE") as caught:
        load_policy(path)
    assert words in str(caught.value)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


def test_default_policy_lets_most_demo_orders_through_and_holds_for_several_reasons() -> None:
    """The simulator's demo orders, reviewed one after another against the demo customers'
    profiles (approvals building up exposure as they would): most pass, and the holds span
    several reasons."""
    accounts: dict[str, CreditAccount] = {}
    for c in catalogue.customers().values():
        profile = CustomerUpdated(customer_id=c.customer_id, name=c.name,
                                  credit_limit=c.credit_limit, currency="CNY",
                                  payment_terms=c.payment_terms,
                                  open_receivables=c.open_receivables,
                                  overdue_amount=D("1000") if c.overdue_days else D("0"),
                                  overdue_days=c.overdue_days, blocked=c.blocked)
        accounts[c.customer_id] = CreditAccount.unknown(c.customer_id, POLICY).with_profile(profile)
    prices = price_list()
    outcomes: dict[str, int] = {}
    reasons: set[str] = set()
    for sim in generate_orders(400, seed=11, channels=("canonical",)):
        if sim.kind in {"bad", "duplicate"}:
            continue
        o = CanonicalOrder.model_validate(sim.payload)
        r = OrderUnderReview(o, totals_of(o), accounts[o.customer.id], prices)
        d = domain.review_order(r, POLICY)
        outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
        reasons.update(d.codes)
        if d.outcome == "approved":
            led = OrderLedger(o.external_id, o.customer.id, "held", d.kind, r.total)
            accounts[o.customer.id], _ = domain.approve(accounts[o.customer.id], led)
    total = sum(outcomes.values())
    assert outcomes["approved"] / total > 0.6, outcomes
    assert {"credit_limit", "overdue", "prepayment_due", "blocked_customer",
            "manager_approval"} <= reasons
    assert not reasons & {"price_deviation", "promo_invalid", "date_infeasible"}


# --- cancellation -------------------------------------------------------------------------------


def _ledger(status: str, kind: str, **changes: Any) -> domain.OrderLedger:
    return domain.OrderLedger(order_id="O-1", customer_id="C1", status=status,  # type: ignore[arg-type]
                              kind=kind, grand_total=Decimal("1000.00"), **changes)  # type: ignore[arg-type]


def test_cancelling_an_approved_credit_order_releases_its_uninvoiced_share() -> None:
    acct, ledger = domain.approve(account(approved_not_invoiced=Decimal("500.00")),
                                  _ledger("held", "credit"))
    assert acct.approved_not_invoiced == Decimal("1500.00")
    outcome = domain.cancel(acct, ledger)
    assert outcome is not None
    after, cancelled = outcome
    assert after.approved_not_invoiced == Decimal("500.00")
    assert after.exposure == acct.exposure - Decimal("1000.00")
    assert cancelled.status == "cancelled" and cancelled.uninvoiced == 0


def test_cancelling_a_partly_invoiced_order_releases_only_what_is_not_invoiced() -> None:
    acct, ledger = domain.approve(account(), _ledger("held", "credit"))
    invoiced = domain.apply_invoice(acct, ledger, Decimal("400.00"))
    assert invoiced.ledger is not None
    outcome = domain.cancel(invoiced.account, invoiced.ledger)
    assert outcome is not None
    after, _ = outcome
    assert after.approved_not_invoiced == 0
    assert after.open_receivables == invoiced.account.open_receivables  # finance credits it


def test_cancelling_a_cod_order_releases_its_unpaid_amount() -> None:
    acct, ledger = domain.approve(account(), _ledger("held", "cod", paid=Decimal("200.00")))
    assert acct.open_cod == Decimal("800.00")
    outcome = domain.cancel(acct, ledger)
    assert outcome is not None and outcome[0].open_cod == 0


def test_cancelling_a_held_order_changes_no_figure_and_takes_it_off_the_queue() -> None:
    acct = account(approved_not_invoiced=Decimal("300.00"))
    outcome = domain.cancel(acct, _ledger("held", "credit"))
    assert outcome is not None
    assert outcome[0] == acct
    assert outcome[1].status == "cancelled"
    assert domain.refuse_manual_decision(outcome[1], "O-1", "approve") is not None


@pytest.mark.parametrize("status", ["rejected", "cancelled"])
def test_nothing_to_cancel_after_a_rejection_or_a_cancellation(status: str) -> None:
    assert domain.cancel(account(), _ledger(status, "credit")) is None
