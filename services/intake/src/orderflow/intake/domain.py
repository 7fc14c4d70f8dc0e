"""Intake's rules, pure: turn a channel's payload into a checked canonical order with recomputed
totals, or into a list of machine-readable reasons. No I/O, no framework."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from pydantic import ValidationError

from orderflow.contracts.events import Reason
from orderflow.contracts.money import round_money
from orderflow.contracts.order import CanonicalOrder, OrderTotals

ISO_CURRENCIES = frozenset({"CNY", "USD", "EUR", "HKD", "JPY", "GBP", "SGD", "KRW", "AUD", "CAD"})


@dataclass(frozen=True)
class Product:
    sku: str
    unit_price: Decimal
    tax_rate: Decimal
    weight_kg: Decimal
    active: bool


@dataclass(frozen=True)
class IntakePolicy:
    """Company settings for intake (documented in the README)."""

    total_tolerance: Decimal = Decimal("0.00")
    hold_on_total_mismatch: bool = False  # reserved: intake rejects; review may hold instead


@dataclass(frozen=True)
class Accepted:
    order: CanonicalOrder
    totals: OrderTotals


@dataclass(frozen=True)
class Refused:
    reasons: tuple[Reason, ...]


_CODE_BY_PYDANTIC_TYPE = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "greater_than": "not_positive",
    "greater_than_equal": "negative",
    "less_than_equal": "too_large",
    "decimal_max_places": "too_many_decimals",
    "string_pattern_mismatch": "invalid_format",
    "string_too_short": "empty",
    "string_too_long": "too_long",
    "too_short": "empty",
    "too_long": "too_many",
    "int_parsing": "wrong_type",
    "int_type": "wrong_type",
    "int_from_float": "wrong_type",
    "decimal_parsing": "wrong_type",
    "decimal_type": "wrong_type",
    "string_type": "wrong_type",
    "datetime_from_date_parsing": "invalid_date",
    "datetime_parsing": "invalid_date",
    "datetime_type": "invalid_date",
    "date_from_datetime_parsing": "invalid_date",
    "date_parsing": "invalid_date",
    "date_type": "invalid_date",
    "literal_error": "invalid_value",
    "model_type": "wrong_type",
    "tuple_type": "wrong_type",
    "value_error": "invalid_value",
    "bool_type": "wrong_type",
}


def reasons_from_validation(exc: ValidationError) -> tuple[Reason, ...]:
    """Pydantic errors as reasons, without the input values (they may be personal data)."""
    reasons = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        code = _CODE_BY_PYDANTIC_TYPE.get(err["type"], "invalid_value")
        field_name = str(err.get("loc", ("",))[-1]) if err.get("loc") else ""
        if field_name == "quantity" and code in {"not_positive", "negative"}:
            code = "quantity_not_positive"
        elif field_name in {"unit_price", "discount", "shipping_fee", "stated_total"} and code == "negative":
            code = "negative_amount"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        reasons.append(Reason(code=code, field=loc or None, message=msg))
    return tuple(reasons)


def parse_canonical(data: Any) -> CanonicalOrder | Refused:
    if not isinstance(data, Mapping):
        return Refused((Reason(code="wrong_type", field=None,
                               message="the order must be a JSON object"),))
    try:
        return CanonicalOrder.model_validate(data)
    except ValidationError as exc:
        return Refused(reasons_from_validation(exc))


def compute_totals(order: CanonicalOrder, catalogue: Mapping[str, Product]) -> OrderTotals:
    """Subtotal, discounts, tax (per-SKU rate on the discounted line), shipping, grand total;
    each figure rounded half up to cents."""
    subtotal = Decimal("0")
    discount = Decimal("0")
    tax = Decimal("0")
    for line in order.lines:
        gross = line.unit_price * line.quantity
        subtotal += gross
        discount += line.discount
        product = catalogue.get(line.sku)
        rate = product.tax_rate if product else Decimal("0")
        tax += round_money((gross - line.discount) * rate)
    subtotal, discount = round_money(subtotal), round_money(discount)
    shipping = round_money(order.shipping_fee)
    grand = round_money(subtotal - discount + tax + shipping)
    return OrderTotals(subtotal=subtotal, discount=discount, tax=tax, shipping=shipping,
                       grand_total=grand)


def check_order(order: CanonicalOrder, catalogue: Mapping[str, Product],
                policy: IntakePolicy = IntakePolicy()) -> Accepted | Refused:
    """Completeness and form beyond the schema, the catalogue, and the totals."""
    reasons: list[Reason] = []
    if order.currency not in ISO_CURRENCIES:
        reasons.append(Reason(code="unknown_currency", field="currency",
                              message=f"currency {order.currency} is not one OrderFlow accepts"))
    seen: set[str] = set()
    for i, line in enumerate(order.lines):
        where = f"lines.{i}"
        if line.sku in seen:
            reasons.append(Reason(code="duplicate_line", field=f"{where}.sku",
                                  message=f"SKU {line.sku} appears on more than one line"))
        seen.add(line.sku)
        product = catalogue.get(line.sku)
        if product is None:
            reasons.append(Reason(code="unknown_sku", field=f"{where}.sku",
                                  message=f"SKU {line.sku} is not in the product catalogue"))
        elif not product.active:
            reasons.append(Reason(code="inactive_sku", field=f"{where}.sku",
                                  message=f"SKU {line.sku} is no longer sold"))
        if line.discount > line.unit_price * line.quantity:
            reasons.append(Reason(code="discount_exceeds_line", field=f"{where}.discount",
                                  message="the discount is larger than the line's amount"))
    if reasons:
        return Refused(tuple(reasons))
    totals = compute_totals(order, catalogue)
    if order.stated_total is not None:
        difference = abs(order.stated_total - totals.grand_total)
        if difference > policy.total_tolerance:
            return Refused((Reason(
                code="total_mismatch", field="stated_total",
                message=(f"the channel states {order.stated_total} {order.currency} but the "
                         f"lines, discounts, tax and shipping come to {totals.grand_total}"),
            ),))
    return Accepted(order, totals)


def payload_fingerprint(payload: Any) -> str:
    """A stable hash of a raw payload: the same re-push is recognised as the same."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class KnownOrder:
    order_id: str
    revision: int
    status: str
    payload_sha256: str


def classify_repush(known: KnownOrder | None, revision: int, fingerprint: str) -> str:
    """What a push of a (channel, external id) intake may already have is:
    ``new``, ``duplicate`` (same or older revision), or ``revision`` (a newer one: a change)."""
    if known is None:
        return "new"
    if revision > known.revision and fingerprint != known.payload_sha256:
        return "revision"
    return "duplicate"
