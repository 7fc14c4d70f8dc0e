"""Credit accounts and what moves them: approvals, cancellations, invoices and payments. Pure: no
I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from orderflow.contracts.events import CustomerUpdated, HoldReason, OrderReceived, RuleOutcome
from orderflow.contracts.money import round_money
from orderflow.review.domain.policy import ReviewPolicy

ZERO = Decimal("0")
ExposureKind = Literal["credit", "cod", "prepaid"]
# sent_back: a reviewer refused the order for rework; its next revision is reviewed again
OrderStatus = Literal["approved", "held", "rejected", "cancelled", "sent_back"]


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


TERMS_STRICTNESS: dict[ExposureKind, int] = {"credit": 0, "cod": 1, "prepaid": 2}


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


@dataclass(frozen=True)
class ReviewedOrder:
    """An order as review recorded it (for the queue, the API, manual decisions, payments and
    changes)."""

    ledger: OrderLedger
    received: OrderReceived
    rules: tuple[RuleOutcome, ...]
    amount_due: Decimal | None
    promo_code: str | None  # as ``promo_code_key`` writes it
    reviewed_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    comment: str | None = None


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
    nothing to cancel (rejected, sent back, or already cancelled)."""
    if ledger.status in ("rejected", "sent_back", "cancelled"):
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


def refuse_foreign_order(what: str, customer_id: str, ledger: OrderLedger | None) -> None:
    """Money (``what``: "invoice X", "payment Y") naming another customer than its order's cannot
    be applied: ValueError, and the event is dead-lettered."""
    if ledger is not None and ledger.customer_id != customer_id:
        raise ValueError(f"{what} names customer {customer_id} but its order belongs to "
                         f"{ledger.customer_id}")


def amount_due(ledger: OrderLedger) -> Decimal | None:
    """What a held order still waits for before it ships: its prepayment, when that is one of
    its holds; None otherwise."""
    if any(r.code == "prepayment_due" for r in ledger.reasons):
        return max(ZERO, ledger.grand_total - ledger.paid)
    return None
