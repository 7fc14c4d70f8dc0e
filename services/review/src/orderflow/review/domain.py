"""Review's rules, pure: credit accounts, order checks, and the decision that explains itself.

No I/O, no framework. Every rule returns a ``RuleOutcome`` (passed or not, with the figures it
used) and the ``HoldReason`` s it raises; the decision is *held* when any rule raised a reason,
*rejected* when one of those reasons is in the policy's ``reject_on``, else *approved*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import CustomerUpdated, HoldCode, HoldReason, RuleOutcome
from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.review.policy import ReviewPolicy

ZERO = Decimal("0")
ExposureKind = Literal["credit", "cod", "prepaid"]
OrderStatus = Literal["approved", "held", "rejected", "cancelled"]
Outcome = Literal["approved", "held", "rejected"]


def money(value: Decimal) -> str:
    return format(round_money(value), "f")


def percent(ratio: Decimal) -> str:
    return format((ratio * 100).quantize(Decimal("0.01")), "f")


# --- payment terms ------------------------------------------------------------------------------


def terms_kind(terms: str) -> ExposureKind:
    """``prepaid``, ``cod``, or ``credit`` for ``netN``."""
    if terms == "prepaid":
        return "prepaid"
    if terms == "cod":
        return "cod"
    return "credit"


def net_days(terms: str) -> int | None:
    return int(terms[3:]) if terms.startswith("net") and terms[3:].isdigit() else None


_STRICTNESS: dict[ExposureKind, int] = {"credit": 0, "cod": 1, "prepaid": 2}


# --- state --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditAccount:
    """A customer's credit position as review sees it.

    The profile (limit, terms, receivables, overdue, blocked) comes from ``customer.updated``; the
    running figures are review's own: ``approved_not_invoiced`` (credit orders approved and not yet
    invoiced), ``open_cod`` (COD orders approved and not yet paid) and ``approved_orders``."""

    customer_id: str
    known: bool
    currency: str
    credit_limit: Decimal
    payment_terms: str
    open_receivables: Decimal = ZERO
    overdue_amount: Decimal = ZERO
    overdue_days: int = 0
    blocked: bool = False
    approved_not_invoiced: Decimal = ZERO
    open_cod: Decimal = ZERO
    approved_orders: int = 0

    @property
    def exposure(self) -> Decimal:
        return self.open_receivables + self.approved_not_invoiced

    @classmethod
    def unknown(cls, customer_id: str, policy: ReviewPolicy) -> CreditAccount:
        """The documented default for a customer without ``customer.updated``: a new customer
        with the policy's (zero) limit; the order's own terms apply."""
        return cls(customer_id=customer_id, known=False, currency=policy.currency,
                   credit_limit=policy.unknown_customer_credit_limit, payment_terms="net30")

    def with_profile(self, profile: CustomerUpdated) -> CreditAccount:
        """The master data's snapshot replaces the profile; review's running figures stay."""
        return replace(self, known=True, currency=profile.currency,
                       credit_limit=profile.credit_limit, payment_terms=profile.payment_terms,
                       open_receivables=profile.open_receivables,
                       overdue_amount=profile.overdue_amount, overdue_days=profile.overdue_days,
                       blocked=profile.blocked)

    @property
    def is_new_customer(self) -> bool:
        """No order approved by review yet and nothing owed: no history with the company."""
        return self.approved_orders == 0 and self.open_receivables == 0


@dataclass(frozen=True)
class ListPrice:
    sku: str
    unit_price: Decimal
    currency: str
    active: bool = True


@dataclass(frozen=True)
class PromotionState:
    """A promotion code and how many approved orders used it so far."""

    code: str
    valid_from: date
    valid_to: date
    usage_limit: int | None
    used: int


@dataclass(frozen=True)
class OrderLedger:
    """What review keeps about an order it decided, for money arriving later."""

    order_id: str
    customer_id: str
    status: OrderStatus
    kind: ExposureKind
    grand_total: Decimal
    uninvoiced: Decimal = ZERO  # this order's share of approved_not_invoiced
    invoiced: Decimal = ZERO
    paid: Decimal = ZERO
    reasons: tuple[HoldReason, ...] = ()


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
    if _STRICTNESS[allowed] > _STRICTNESS[asked]:
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
    code = (r.order.promo_code or "").strip().upper()
    if not code:
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


# --- state changes ------------------------------------------------------------------------------


def approve(account: CreditAccount, ledger: OrderLedger) -> tuple[CreditAccount, OrderLedger]:
    """An order approved (automatically or by a reviewer) takes its place in the exposure:
    a credit order as approved-not-invoiced, a COD order as open COD; a prepaid one is paid."""
    if ledger.kind == "credit":
        share = max(ZERO, ledger.grand_total - ledger.invoiced)
        account = replace(account, approved_not_invoiced=account.approved_not_invoiced + share)
        ledger = replace(ledger, uninvoiced=share)
    elif ledger.kind == "cod":
        account = replace(account, open_cod=account.open_cod + max(ZERO, ledger.grand_total - ledger.paid))
    account = replace(account, approved_orders=account.approved_orders + 1)
    return account, replace(ledger, status="approved", reasons=())


def cancel(account: CreditAccount,
           ledger: OrderLedger) -> tuple[CreditAccount, OrderLedger] | None:
    """An order cancelled before dispatch gives back its place in the exposure: a credit order's
    uninvoiced share leaves approved-not-invoiced, a COD order's unpaid amount leaves open COD.
    A held order just leaves the queue. What was already invoiced stays receivable (finance
    credits it); a prepayment stays with the order (finance refunds it). None when there is
    nothing to cancel (rejected, or already cancelled)."""
    if ledger.status in ("rejected", "cancelled"):
        return None
    if ledger.status == "approved":
        if ledger.kind == "credit":
            account = replace(account, approved_not_invoiced=max(
                ZERO, account.approved_not_invoiced - ledger.uninvoiced))
            ledger = replace(ledger, uninvoiced=ZERO)
        elif ledger.kind == "cod":
            unpaid = max(ZERO, ledger.grand_total - ledger.paid)
            account = replace(account, open_cod=max(ZERO, account.open_cod - unpaid))
    return account, replace(ledger, status="cancelled", reasons=())


# --- changes ------------------------------------------------------------------------------------


def describe_changes(old: CanonicalOrder, new: CanonicalOrder) -> tuple[str, ...]:
    """What a change changes, as sorted codes: ``line_added``, ``line_removed``,
    ``quantity_increased``, ``quantity_decreased``, ``price_changed``, ``shipping_address``,
    ``requested_delivery_date``, ``priority``, ``payment_terms``, ``promo_code``,
    ``shipping_fee``, ``other``."""
    def units(order: CanonicalOrder) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in order.lines:
            out[line.sku] = out.get(line.sku, 0) + line.quantity
        return out

    def prices(order: CanonicalOrder) -> dict[str, tuple[Decimal, Decimal]]:
        return {line.sku: (line.unit_price, line.discount) for line in order.lines}

    codes: set[str] = set()
    before, after = units(old), units(new)
    for sku, quantity in after.items():
        if sku not in before:
            codes.add("line_added")
        elif quantity > before[sku]:
            codes.add("quantity_increased")
        elif quantity < before[sku]:
            codes.add("quantity_decreased")
    if set(before) - set(after):
        codes.add("line_removed")
    old_prices, new_prices = prices(old), prices(new)
    if any(old_prices[sku] != new_prices[sku] for sku in set(old_prices) & set(new_prices)):
        codes.add("price_changed")
    for name in ("shipping_address", "requested_delivery_date", "priority", "payment_terms",
                 "promo_code", "shipping_fee"):
        if getattr(old, name) != getattr(new, name):
            codes.add(name)
    ignored = {"lines", "shipping_address", "requested_delivery_date", "priority",
               "payment_terms", "promo_code", "shipping_fee", "revision", "stated_total"}
    if any(getattr(old, f) != getattr(new, f) for f in type(old).model_fields if f not in ignored):
        codes.add("other")
    return tuple(sorted(codes))


def without_order(account: CreditAccount, ledger: OrderLedger) -> CreditAccount:
    """The account as if this approved order were not in its exposure: what a change of the
    order is weighed against (so the credit check is for the difference only)."""
    if ledger.status != "approved":
        return account
    if ledger.kind == "credit":
        return replace(account, approved_not_invoiced=max(
            ZERO, account.approved_not_invoiced - ledger.uninvoiced))
    if ledger.kind == "cod":
        return replace(account, open_cod=max(
            ZERO, account.open_cod - max(ZERO, ledger.grand_total - ledger.paid)))
    return account


@dataclass(frozen=True)
class ExposureChange:
    """An approved order's new place in the exposure after a change, and how far it moved."""

    account: CreditAccount
    ledger: OrderLedger
    credit_delta: Decimal
    cod_delta: Decimal


def change_exposure(account: CreditAccount, ledger: OrderLedger, new_total: Decimal,
                    kind: ExposureKind) -> ExposureChange:
    """An approved order changed to ``new_total``: its uninvoiced share (credit) or unpaid amount
    (COD) moves by the difference; an increase raises the exposure only by the increase, a
    decrease lowers it. What was invoiced stays invoiced."""
    old_credit = ledger.uninvoiced if ledger.kind == "credit" else ZERO
    old_cod = max(ZERO, ledger.grand_total - ledger.paid) if ledger.kind == "cod" else ZERO
    new_credit = max(ZERO, new_total - ledger.invoiced) if kind == "credit" else ZERO
    new_cod = max(ZERO, new_total - ledger.paid) if kind == "cod" else ZERO
    credit_delta, cod_delta = new_credit - old_credit, new_cod - old_cod
    account = replace(account,
                      approved_not_invoiced=max(ZERO, account.approved_not_invoiced + credit_delta),
                      open_cod=max(ZERO, account.open_cod + cod_delta))
    ledger = replace(ledger, grand_total=new_total, kind=kind, uninvoiced=new_credit)
    return ExposureChange(account, ledger, credit_delta, cod_delta)


def undo_exposure(account: CreditAccount, credit_delta: Decimal,
                  cod_delta: Decimal) -> CreditAccount:
    """Compensation: a change refused after review applied it gives its movement back."""
    return replace(account,
                   approved_not_invoiced=max(ZERO, account.approved_not_invoiced - credit_delta),
                   open_cod=max(ZERO, account.open_cod - cod_delta))


def refuse_change(ledger: OrderLedger | None, current_revision: int | None, revision: int,
                  customer_id: str, currency: str | None,
                  new_currency: str) -> tuple[str, str] | None:
    """Why review cannot consider a change at all, as (code, message); None when it can."""
    if ledger is None:
        return None
    if current_revision is not None and revision <= current_revision:
        return ("stale_revision",
                f"revision {revision} is not newer than revision {current_revision}")
    if ledger.status == "rejected":
        return ("order_rejected", "the order was rejected; it cannot change")
    if ledger.status == "cancelled":
        return ("order_cancelled", "the order is cancelled")
    if customer_id != ledger.customer_id:
        return ("customer_changed", "a change cannot move the order to another customer")
    if currency is not None and new_currency != currency:
        return ("currency_changed", "a change cannot change the order's currency")
    return None


@dataclass(frozen=True)
class InvoiceApplied:
    account: CreditAccount
    ledger: OrderLedger | None
    to_receivables: Decimal
    moved_from_approved: Decimal


def apply_invoice(account: CreditAccount, ledger: OrderLedger | None,
                  amount: Decimal) -> InvoiceApplied:
    """An invoice moves its order's amount from approved-not-invoiced to receivables. A prepaid
    order's invoice is settled by its prepayment (only what the prepayment does not cover becomes
    receivable); a COD order's stays in open COD until paid. An invoice without a known order
    is all receivable."""
    if ledger is None:
        return InvoiceApplied(replace(account, open_receivables=account.open_receivables + amount),
                              None, amount, ZERO)
    moved, receivable = ZERO, amount
    if ledger.kind == "credit":
        moved = min(amount, ledger.uninvoiced)
    elif ledger.kind == "prepaid":
        covered_before = min(ledger.paid, ledger.invoiced)
        covered_after = min(ledger.paid, ledger.invoiced + amount)
        receivable = amount - (covered_after - covered_before)
    else:  # cod
        receivable = ZERO
    account = replace(account, approved_not_invoiced=max(ZERO, account.approved_not_invoiced - moved),
                      open_receivables=account.open_receivables + receivable)
    ledger = replace(ledger, uninvoiced=ledger.uninvoiced - moved,
                     invoiced=ledger.invoiced + amount)
    return InvoiceApplied(account, ledger, receivable, moved)


PaymentUse = Literal["receivables", "prepayment", "cod", "advance"]


@dataclass(frozen=True)
class PaymentApplied:
    account: CreditAccount
    ledger: OrderLedger | None
    applied_as: PaymentUse
    release: bool = False  # the order's last hold was its prepayment: approve it now
    reasons_left: tuple[HoldReason, ...] = field(default=())


def apply_payment(account: CreditAccount, ledger: OrderLedger | None, amount: Decimal, *,
                  for_order: bool) -> PaymentApplied:
    """Money received: against a prepaid order it counts toward the prepayment (and releases the
    order once covered, if that was its only hold); against a COD order it settles open COD;
    otherwise it reduces open receivables (never below zero). Money for an order review has
    not seen yet is kept as an advance for it."""
    if for_order and ledger is None:
        return PaymentApplied(account, None, "advance")
    if ledger is not None and ledger.kind == "prepaid":
        ledger = replace(ledger, paid=ledger.paid + amount)
        if ledger.status == "held" and ledger.paid >= ledger.grand_total:
            left = tuple(x for x in ledger.reasons if x.code != "prepayment_due")
            return PaymentApplied(account, replace(ledger, reasons=left), "prepayment",
                                  release=not left, reasons_left=left)
        return PaymentApplied(account, ledger, "prepayment", reasons_left=ledger.reasons)
    if ledger is not None and ledger.kind == "cod":
        settled = ZERO
        if ledger.status == "approved":
            settled = min(amount, max(ZERO, ledger.grand_total - ledger.paid))
        account = replace(account, open_cod=max(ZERO, account.open_cod - settled))
        return PaymentApplied(account, replace(ledger, paid=ledger.paid + amount), "cod",
                              reasons_left=ledger.reasons)
    account = replace(account, open_receivables=max(ZERO, account.open_receivables - amount))
    if ledger is not None:
        ledger = replace(ledger, paid=ledger.paid + amount)
    return PaymentApplied(account, ledger, "receivables",
                          reasons_left=ledger.reasons if ledger else ())


def prepayment_rule_after_payment(ledger: OrderLedger) -> RuleOutcome:
    """The prepayment rule re-evaluated when money arrives, for the decision's explanation."""
    due = max(ZERO, ledger.grand_total - ledger.paid)
    return RuleOutcome(rule="prepayment", passed=due == 0,
                       figures={"order_total": money(ledger.grand_total),
                                "paid": money(ledger.paid), "amount_due": money(due)},
                       message="prepaid in full" if due == 0 else
                       f"{money(due)} still to be paid before it ships")


ManualAction = Literal["approve", "reject"]


def refuse_manual_decision(ledger: OrderLedger | None, order_id: str,
                           action: ManualAction) -> str | None:
    """Why a reviewer may not decide this order now, or None when they may (it is held)."""
    if ledger is None:
        return f"order {order_id} is not known to review"
    if ledger.status != "held":
        return (f"order {order_id} is {ledger.status}, not held: it cannot be "
                f"{'approved' if action == 'approve' else 'rejected'} any more")
    return None
