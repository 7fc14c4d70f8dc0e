"""Review's rules for order changes: what changed, credit for the difference, compensation."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.devstack import catalogue
from orderflow.review import domain
from orderflow.review.domain import CreditAccount, OrderLedger, OrderUnderReview, ReviewPolicy

pytestmark = pytest.mark.unit

D = Decimal


def order(**kwargs: Any) -> CanonicalOrder:
    return CanonicalOrder.model_validate(catalogue.canonical_order("T-1", **kwargs))


def account(**changes: Any) -> CreditAccount:
    base = CreditAccount(customer_id="C0002", known=True, currency="CNY", credit_limit=D("10000"),
                         payment_terms="net30", open_receivables=D("1000"),
                         approved_not_invoiced=D("3000"), approved_orders=3)
    return replace(base, **changes)


def ledger(**changes: Any) -> OrderLedger:
    base = OrderLedger(order_id="O1", customer_id="C0002", status="approved", kind="credit",
                       grand_total=D("2000"), uninvoiced=D("2000"))
    return replace(base, **changes)


def test_changes_are_described_by_kind() -> None:
    old = order(lines=[("TEA-001", 2), ("TEA-002", 1)])
    assert domain.describe_changes(old, old) == ()
    assert domain.describe_changes(old, order(lines=[("TEA-001", 3), ("TEA-002", 1)])) == (
        "quantity_increased",)
    assert domain.describe_changes(old, order(lines=[("TEA-001", 1)])) == (
        "line_removed", "quantity_decreased")
    assert domain.describe_changes(old, order(lines=[("TEA-001", 2), ("TEA-002", 1),
                                                     ("TEA-003", 1)])) == ("line_added",)
    assert domain.describe_changes(old, order(lines=[("TEA-001", 2), ("TEA-002", 1)],
                                              address_index=1)) == ("shipping_address",)
    later = order(lines=[("TEA-001", 2), ("TEA-002", 1)], requested_delivery_date="2026-12-24")
    assert domain.describe_changes(old, later) == ("requested_delivery_date",)


def test_an_increase_raises_the_exposure_by_the_increase_only() -> None:
    moved = domain.change_exposure(account(), ledger(), D("2500"), "credit")
    assert moved.credit_delta == D("500") and moved.cod_delta == 0
    assert moved.account.approved_not_invoiced == D("3500")
    assert moved.ledger.grand_total == D("2500") and moved.ledger.uninvoiced == D("2500")


def test_a_decrease_lowers_it_and_what_was_invoiced_stays_invoiced() -> None:
    moved = domain.change_exposure(account(), ledger(invoiced=D("500"), uninvoiced=D("1500")),
                                   D("1200"), "credit")
    assert moved.credit_delta == D("-800")  # new share 1200 - 500 invoiced = 700
    assert moved.account.approved_not_invoiced == D("2200")
    assert domain.undo_exposure(moved.account, moved.credit_delta, moved.cod_delta) == account()


def test_cod_orders_move_open_cod() -> None:
    moved = domain.change_exposure(account(open_cod=D("2000")), ledger(kind="cod", uninvoiced=D(0)),
                                   D("2600"), "cod")
    assert moved.cod_delta == D("600") and moved.account.open_cod == D("2600")
    assert moved.account.approved_not_invoiced == D("3000")


def test_the_credit_check_of_a_change_is_for_the_difference() -> None:
    """An approved order of 2000 is weighed without its own share: changed to 2500 it fits a
    limit of 6600 (receivables 1000 + other orders 3000 - 2000 + 2500 = 4500 ... 6600), where
    counting it twice (4000 + 2500 on top of 4000) would not."""
    policy = ReviewPolicy()
    acct = account(credit_limit=D("6600"), approved_not_invoiced=D("5000"))  # 2000 is this order
    new = order(lines=[("TEA-001", 1)])
    totals = new_totals(D("2500"))
    weighed = domain.without_order(acct, ledger())
    assert weighed.approved_not_invoiced == D("3000")
    fits = domain.review_order(OrderUnderReview(
        order=new, totals=totals, account=weighed, prices={}, promotion=None), policy)
    assert "credit_limit" not in fits.codes
    twice = domain.review_order(OrderUnderReview(
        order=new, totals=totals, account=acct, prices={}, promotion=None), policy)
    assert "credit_limit" in twice.codes
    over = domain.review_order(OrderUnderReview(
        order=new, totals=new_totals(D("2700")), account=weighed, prices={}, promotion=None),
        policy)
    assert "credit_limit" in over.codes  # 1000 + 3000 + 2700 > 6600


def new_totals(grand_total: Decimal) -> OrderTotals:
    return OrderTotals(subtotal=grand_total, discount=D(0), tax=D(0), shipping=D(0),
                       grand_total=grand_total)


def test_changes_review_cannot_consider() -> None:
    assert domain.refuse_change(None, None, 2, "C0002", None, "CNY") is None
    assert domain.refuse_change(ledger(), 1, 2, "C0002", "CNY", "CNY") is None
    assert domain.refuse_change(ledger(), 2, 2, "C0002", "CNY", "CNY")[0] == "stale_revision"  # type: ignore[index]
    # a rejected order's new revision is its fix: reviewed again, not refused
    assert domain.refuse_change(ledger(status="rejected"), 1, 2, "C0002", "CNY", "CNY") is None
    assert domain.refuse_change(ledger(status="cancelled"), 1, 2, "C0002", "CNY",
                                "CNY")[0] == "order_cancelled"  # type: ignore[index]
    assert domain.refuse_change(ledger(), 1, 2, "C0009", "CNY", "CNY")[0] == \
        "customer_changed"  # type: ignore[index]
    assert domain.refuse_change(ledger(), 1, 2, "C0002", "CNY", "USD")[0] == \
        "currency_changed"  # type: ignore[index]


def test_without_order_leaves_held_orders_alone() -> None:
    assert domain.without_order(account(), ledger(status="held", uninvoiced=D(0))) == account()
