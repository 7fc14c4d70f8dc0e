"""Review's rules and the decision that explains itself. Pure: no I/O, no framework.

Every rule returns a ``RuleOutcome`` (passed or not, with the figures it used) and the
``HoldReason`` s it raises; the decision is *held* when any rule raised a reason, *rejected* when
one of those reasons is in the policy's ``reject_on``, else *approved*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import HoldCode, HoldReason, RuleOutcome
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.review.domain.accounts import (
    TERMS_STRICTNESS,
    ZERO,
    CreditAccount,
    ExposureKind,
    ListPrice,
    PromotionState,
    money,
    net_days,
    percent,
    terms_kind,
)
from orderflow.review.domain.policy import ReviewPolicy, promo_code_key

Outcome = Literal["approved", "held", "rejected"]


# --- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    outcome: RuleOutcome
    reasons: tuple[HoldReason, ...] = ()


def _passed(rule: str, message: str, figures: Mapping[str, str] | None = None) -> Evaluation:
    return Evaluation(RuleOutcome(rule=rule, passed=True, figures=dict(figures or {}),
                                  message=message))


def _failed(rule: str, code: HoldCode, message: str, figures: Mapping[str, str],
            reasons: Iterable[HoldReason] | None = None) -> Evaluation:
    figs = dict(figures)
    held = tuple(reasons) if reasons is not None else (
        HoldReason(code=code, message=message, figures=figs),)
    return Evaluation(RuleOutcome(rule=rule, passed=False, figures=figs, message=message), held)


@dataclass(frozen=True)
class OrderUnderReview:
    """Everything a decision needs, gathered by the handler."""

    order: CanonicalOrder
    totals: OrderTotals
    account: CreditAccount
    prices: Mapping[str, ListPrice]
    promotion: PromotionState | None = None
    paid_in_advance: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.totals.grand_total


def effective_terms(order: CanonicalOrder, account: CreditAccount) -> str:
    """The stricter of what the order asks and what the customer's account allows
    (prepaid > cod > netN); between two netN the order's own (the terms rule checks it)."""
    if not account.known:
        return order.payment_terms
    asked, allowed = terms_kind(order.payment_terms), terms_kind(account.payment_terms)
    if TERMS_STRICTNESS[allowed] > TERMS_STRICTNESS[asked]:
        return account.payment_terms
    return order.payment_terms


def rule_customer_profile(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    if r.account.known:
        return _passed("customer_profile", "the customer has a credit profile",
                       {"customer_id": r.account.customer_id})
    return _failed("customer_profile", "manager_approval",
                   f"customer {r.account.customer_id} has no credit profile: reviewed as a new "
                   f"customer with a limit of {money(r.account.credit_limit)} {policy.currency}, "
                   "a manager must approve",
                   {"customer_id": r.account.customer_id,
                    "credit_limit": money(r.account.credit_limit)})


def rule_blocked(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    figures = {"blocked": str(r.account.blocked).lower()}
    if r.account.blocked:
        return _failed("customer_blocked", "blocked_customer",
                       f"customer {r.account.customer_id} is blocked", figures)
    return _passed("customer_blocked", "the customer is not blocked", figures)


def rule_overdue(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    a = r.account
    figures = {"overdue_days": str(a.overdue_days), "overdue_amount": money(a.overdue_amount),
               "tolerance_days": str(policy.overdue_tolerance_days),
               "tolerance_amount": money(policy.overdue_tolerance_amount)}
    if a.overdue_days > policy.overdue_tolerance_days and \
            a.overdue_amount > policy.overdue_tolerance_amount:
        return _failed("overdue", "overdue",
                       f"{money(a.overdue_amount)} {a.currency} overdue by {a.overdue_days} days "
                       f"(tolerance {policy.overdue_tolerance_days} days)", figures)
    return _passed("overdue", "no receivables overdue beyond the tolerance", figures)


def rule_payment_terms(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    asked, allowed = r.order.payment_terms, r.account.payment_terms
    effective = effective_terms(r.order, r.account)
    figures = {"order_terms": asked, "customer_terms": allowed if r.account.known else "",
               "effective_terms": effective}
    asked_days, allowed_days = net_days(asked), net_days(allowed)
    if r.account.known and effective == asked and asked_days is not None \
            and allowed_days is not None and asked_days > allowed_days:
        return _failed("payment_terms", "manager_approval",
                       f"the order asks {asked} but the customer's terms are {allowed}", figures)
    if effective != asked:
        return _passed("payment_terms",
                       f"the order asks {asked}; the customer's account requires {effective}",
                       figures)
    return _passed("payment_terms", f"terms {effective} are within the customer's", figures)


def rule_currency(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    figures = {"order_currency": r.order.currency, "account_currency": r.account.currency}
    if r.order.currency != r.account.currency:
        return _failed("currency", "manager_approval",
                       f"the order is in {r.order.currency} but the credit account in "
                       f"{r.account.currency}: its credit cannot be weighed", figures)
    return _passed("currency", "the order and the credit account share a currency", figures)


def rule_credit_limit(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    a = r.account
    kind = terms_kind(effective_terms(r.order, a))
    after = a.exposure + r.total
    figures = {"credit_limit": money(a.credit_limit), "open_receivables": money(a.open_receivables),
               "approved_not_invoiced": money(a.approved_not_invoiced),
               "exposure": money(a.exposure), "order_total": money(r.total),
               "exposure_after": money(after)}
    if kind != "credit":
        return _passed("credit_limit", f"{kind} orders do not use the credit limit", figures)
    if after > a.credit_limit:
        return _failed("credit_limit", "credit_limit",
                       f"exposure would be {money(after)} {a.currency}, over the credit limit of "
                       f"{money(a.credit_limit)} (receivables {money(a.open_receivables)}, "
                       f"approved not invoiced {money(a.approved_not_invoiced)}, this order "
                       f"{money(r.total)})", figures)
    return _passed("credit_limit", f"exposure {money(after)} within the limit "
                                   f"{money(a.credit_limit)}", figures)


def rule_cod_limit(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    a = r.account
    kind = terms_kind(effective_terms(r.order, a))
    after = a.open_cod + r.total
    figures = {"cod_limit": money(policy.cod_limit), "open_cod": money(a.open_cod),
               "order_total": money(r.total), "open_cod_after": money(after)}
    if kind != "cod":
        return _passed("cod_limit", "not a cash-on-delivery order", figures)
    if after > policy.cod_limit:
        return _failed("cod_limit", "credit_limit",
                       f"open cash-on-delivery orders would come to {money(after)}, over the COD "
                       f"limit of {money(policy.cod_limit)}", figures)
    return _passed("cod_limit", f"open COD {money(after)} within {money(policy.cod_limit)}",
                   figures)


def rule_prepayment(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    kind = terms_kind(effective_terms(r.order, r.account))
    due = max(ZERO, r.total - r.paid_in_advance)
    figures = {"order_total": money(r.total), "paid": money(r.paid_in_advance),
               "amount_due": money(due)}
    if kind != "prepaid":
        return _passed("prepayment", "no prepayment required", figures)
    if due > 0:
        return _failed("prepayment", "prepayment_due",
                       f"prepaid order: {money(due)} {r.order.currency} to be paid before it ships",
                       figures)
    return _passed("prepayment", "prepaid in full", figures)


def rule_price_list(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    reasons: list[HoldReason] = []
    worst_sku, worst = "", ZERO
    for line in r.order.lines:
        listed = r.prices.get(line.sku)
        if listed is None or listed.currency != r.order.currency:
            why = "no list price" if listed is None else f"listed in {listed.currency}"
            reasons.append(HoldReason(code="price_deviation",
                                      message=f"{line.sku}: {why}, the price cannot be checked",
                                      figures={"sku": line.sku, "unit_price": money(line.unit_price)}))
            continue
        if listed.unit_price == 0:
            deviation = ZERO if line.unit_price == 0 else Decimal("1")
        else:
            deviation = (line.unit_price - listed.unit_price) / listed.unit_price
        if abs(deviation) > abs(worst) or not worst_sku:
            worst_sku, worst = line.sku, deviation
        if abs(deviation) > policy.price_tolerance:
            reasons.append(HoldReason(
                code="price_deviation",
                message=(f"{line.sku}: {money(line.unit_price)} is {percent(deviation)} % from the "
                         f"list price {money(listed.unit_price)} (tolerance "
                         f"{percent(policy.price_tolerance)} %)"),
                figures={"sku": line.sku, "unit_price": money(line.unit_price),
                         "list_price": money(listed.unit_price),
                         "deviation_pct": percent(deviation)}))
    figures = {"lines": str(len(r.order.lines)), "tolerance_pct": percent(policy.price_tolerance),
               "worst_sku": worst_sku, "worst_deviation_pct": percent(worst),
               "lines_outside": str(len(reasons))}
    if reasons:
        return _failed("price_list", "price_deviation",
                       f"{len(reasons)} line(s) priced outside the tolerance", figures, reasons)
    return _passed("price_list", "every unit price is within the tolerance of the list price",
                   figures)


def rule_discount_cap(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    reasons: list[HoldReason] = []
    for line in r.order.lines:
        gross = line.unit_price * line.quantity
        if line.discount == 0:
            continue
        share = line.discount / gross if gross else Decimal("1")
        if share > policy.max_line_discount:
            reasons.append(HoldReason(
                code="price_deviation",
                message=(f"{line.sku}: discount {money(line.discount)} is {percent(share)} % of the "
                         f"line, over the cap of {percent(policy.max_line_discount)} %"),
                figures={"sku": line.sku, "discount": money(line.discount),
                         "line_amount": money(gross), "discount_pct": percent(share)}))
    subtotal, discount = r.totals.subtotal, r.totals.discount
    order_share = discount / subtotal if subtotal else ZERO
    if order_share > policy.max_order_discount:
        reasons.append(HoldReason(
            code="price_deviation",
            message=(f"the order's discounts {money(discount)} are {percent(order_share)} % of its "
                     f"subtotal, over the cap of {percent(policy.max_order_discount)} %"),
            figures={"discount": money(discount), "subtotal": money(subtotal),
                     "discount_pct": percent(order_share)}))
    figures = {"order_discount_pct": percent(order_share),
               "max_line_discount_pct": percent(policy.max_line_discount),
               "max_order_discount_pct": percent(policy.max_order_discount)}
    if reasons:
        return _failed("discount_cap", "price_deviation", "discounts over the cap", figures, reasons)
    return _passed("discount_cap", "discounts within the caps", figures)


def placed_day(order: CanonicalOrder, policy: ReviewPolicy) -> date:
    """The calendar day the order was placed, in the company's time zone (a naive timestamp is
    taken as already in it)."""
    placed: datetime = order.placed_at
    if placed.tzinfo is None:
        return placed.date()
    return placed.astimezone(ZoneInfo(policy.timezone)).date()


def rule_promotion(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    code = promo_code_key(r.order.promo_code)
    if code is None:
        return _passed("promo_code", "no promotion code on the order")
    day = placed_day(r.order, policy)
    p = r.promotion
    if p is None:
        return _failed("promo_code", "promo_invalid", f"promotion code {code} is not known",
                       {"promo_code": code})
    figures = {"promo_code": code, "valid_from": p.valid_from.isoformat(),
               "valid_to": p.valid_to.isoformat(), "placed_on": day.isoformat(),
               "used": str(p.used),
               "usage_limit": "unlimited" if p.usage_limit is None else str(p.usage_limit)}
    if day < p.valid_from or day > p.valid_to:
        return _failed("promo_code", "promo_invalid",
                       f"promotion code {code} is valid {p.valid_from} to {p.valid_to}, not on "
                       f"{day}", figures)
    if p.usage_limit is not None and p.used >= p.usage_limit:
        return _failed("promo_code", "promo_invalid",
                       f"promotion code {code} reached its usage limit of {p.usage_limit}", figures)
    return _passed("promo_code", f"promotion code {code} is valid", figures)


def earliest_delivery(order: CanonicalOrder, policy: ReviewPolicy) -> tuple[date, int, int]:
    """(earliest delivery day, lead days, transit days): placed day + lead time + transit."""
    lead = policy.rush_lead_time_days if order.priority == "rush" else policy.lead_time_days
    transit = policy.transit_days.get(order.shipping_address.province, policy.default_transit_days)
    return placed_day(order, policy) + timedelta(days=lead + transit), lead, transit


def rule_delivery_date(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    requested = r.order.requested_delivery_date
    earliest, lead, transit = earliest_delivery(r.order, policy)
    figures = {"placed_on": placed_day(r.order, policy).isoformat(), "lead_time_days": str(lead),
               "province": r.order.shipping_address.province, "transit_days": str(transit),
               "earliest": earliest.isoformat(),
               "requested": requested.isoformat() if requested else ""}
    if requested is None:
        return _passed("delivery_date", "no delivery date requested", figures)
    if requested < earliest:
        return _failed("delivery_date", "date_infeasible",
                       f"delivery requested for {requested}, but the earliest possible is "
                       f"{earliest} ({lead} day(s) to ship, {transit} in transit to "
                       f"{r.order.shipping_address.province})", figures)
    return _passed("delivery_date", f"{requested} is on or after the earliest {earliest}", figures)


def rule_order_value(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    figures = {"order_total": money(r.total), "threshold": money(policy.manager_approval_above)}
    if r.total > policy.manager_approval_above:
        return _failed("order_value", "manager_approval",
                       f"order total {money(r.total)} {r.order.currency} is above "
                       f"{money(policy.manager_approval_above)}: a manager must approve", figures)
    return _passed("order_value", "below the manager-approval threshold", figures)


def rule_new_customer(r: OrderUnderReview, policy: ReviewPolicy) -> Evaluation:
    new = r.account.is_new_customer
    figures = {"new_customer": str(new).lower(), "approved_orders": str(r.account.approved_orders),
               "order_total": money(r.total),
               "threshold": money(policy.new_customer_first_order_above)}
    if new and r.total > policy.new_customer_first_order_above:
        return _failed("new_customer_first_order", "manager_approval",
                       f"first order of a new customer, {money(r.total)} {r.order.currency} is "
                       f"above {money(policy.new_customer_first_order_above)}: a manager must "
                       "approve", figures)
    message = "first order within the threshold" if new else "not a new customer"
    return _passed("new_customer_first_order", message, figures)


RULES: tuple[Callable[[OrderUnderReview, ReviewPolicy], Evaluation], ...] = (
    rule_customer_profile,
    rule_blocked,
    rule_overdue,
    rule_payment_terms,
    rule_currency,
    rule_credit_limit,
    rule_cod_limit,
    rule_prepayment,
    rule_price_list,
    rule_discount_cap,
    rule_promotion,
    rule_delivery_date,
    rule_order_value,
    rule_new_customer,
)


# --- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    kind: ExposureKind
    rules: tuple[RuleOutcome, ...]
    reasons: tuple[HoldReason, ...] = ()
    amount_due: Decimal | None = None

    @property
    def codes(self) -> list[str]:
        return sorted({r.code for r in self.reasons})


def review_order(r: OrderUnderReview, policy: ReviewPolicy) -> Decision:
    """Evaluate every rule (none is skipped, so the decision explains itself in full)."""
    evaluations = [rule(r, policy) for rule in RULES]
    rules = tuple(e.outcome for e in evaluations)
    reasons = tuple(reason for e in evaluations for reason in e.reasons)
    kind = terms_kind(effective_terms(r.order, r.account))
    if not reasons:
        return Decision("approved", kind, rules)
    due = max(ZERO, r.total - r.paid_in_advance) \
        if any(x.code == "prepayment_due" for x in reasons) else None
    outcome: Outcome = "rejected" if any(x.code in policy.reject_on for x in reasons) else "held"
    return Decision(outcome, kind, rules, reasons, due)


