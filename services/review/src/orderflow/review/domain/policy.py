"""The company's review policy: every threshold review applies, in one place, and the promotion
codes customers may quote.

Defaults suit the demo (most demo orders pass; the demo's customers still produce holds for
several reasons). A company overrides any of them with a JSON file (``settings``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orderflow.contracts.events import HoldCode

# Days in transit from the nearest warehouse, by destination province (the shipping address's
# ``province`` as the canonical order spells it). Provinces with a warehouse ship in a day; the
# rest of the east and centre in two or three; the far west in five to seven. Logistics refines
# this with carriers and services; review only needs a feasibility floor.
DEFAULT_TRANSIT_DAYS: dict[str, int] = {
    "上海": 1, "广东": 1, "北京": 1, "四川": 1, "湖北": 1, "浙江": 1,
    "江苏": 2, "安徽": 2, "天津": 2, "河北": 2, "湖南": 2, "江西": 2, "福建": 2, "重庆": 2,
    "河南": 2, "山东": 2, "广西": 3, "海南": 3, "贵州": 3, "云南": 3, "陕西": 3, "山西": 3,
    "辽宁": 3, "吉林": 4, "黑龙江": 4, "内蒙古": 4, "宁夏": 4, "甘肃": 4, "青海": 5,
    "新疆": 6, "西藏": 7, "香港": 3, "澳门": 3, "台湾": 5,
}


def promo_code_key(code: str | None) -> str | None:
    """A promotion code as review knows it, however the order writes it (case and blanks do
    not matter); None for no code."""
    return (code or "").strip().upper() or None


class Promotion(BaseModel):
    """A promotion code customers may quote on an order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=64, description="Matched case-insensitively")
    valid_from: date = Field(description="First day the code is valid (order's placed date)")
    valid_to: date = Field(description="Last day the code is valid, inclusive")
    usage_limit: int | None = Field(default=None, ge=0,
                                    description="Orders that may use it; null = unlimited")
    description: str = ""

    @field_validator("code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return promo_code_key(value) or ""

    @model_validator(mode="after")
    def _dates(self) -> Promotion:
        if self.valid_to < self.valid_from:
            raise ValueError(f"promotion {self.code}: valid_to is before valid_from")
        return self


DEFAULT_PROMOTIONS: tuple[Promotion, ...] = (
    Promotion(code="WELCOME10", valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31),
              usage_limit=10_000, description="10 % off a first order"),
    Promotion(code="DOUBLE11", valid_from=date(2026, 11, 1), valid_to=date(2026, 11, 11),
              usage_limit=5_000, description="Singles' Day"),
    Promotion(code="DOUBLE12", valid_from=date(2026, 12, 1), valid_to=date(2026, 12, 12),
              usage_limit=5_000, description="Double Twelve"),
    Promotion(code="VIP2026", valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31),
              usage_limit=100, description="Key accounts, limited uses"),
)


class ReviewPolicy(BaseModel):
    """Every threshold review applies. Amounts are in ``currency``; ratios are fractions
    (``0.02`` = 2 %)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company: str = Field(default="OrderFlow demo company", description="Whose policy this is")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$",
                          description="Currency of the amounts below and of credit accounts "
                                      "of customers review has no profile for")
    timezone: str = Field(default="Asia/Shanghai",
                          description="Where 'the day an order was placed' is counted")

    # credit and terms
    overdue_tolerance_days: int = Field(
        default=30, ge=0,
        description="Hold when the customer has receivables overdue by more days than this")
    overdue_tolerance_amount: Decimal = Field(
        default=Decimal("0"), ge=0,
        description="... and the overdue amount is above this (0: any amount counts)")
    cod_limit: Decimal = Field(
        default=Decimal("10000"), ge=0,
        description="Cash-on-delivery orders a customer may have open (approved, not yet paid), "
                    "including the order under review; COD orders do not use the credit limit")
    unknown_customer_credit_limit: Decimal = Field(
        default=Decimal("0"), ge=0,
        description="Credit limit of a customer review has no customer.updated for; such an "
                    "order is also held for a manager (rule customer_profile)")

    # prices, discounts, promotions
    price_tolerance: Decimal = Field(
        default=Decimal("0.02"), ge=0, le=1,
        description="Largest deviation of a unit price from the list price, either way")
    max_line_discount: Decimal = Field(
        default=Decimal("0.20"), ge=0, le=1,
        description="Largest discount on one line, as a fraction of the line's amount")
    max_order_discount: Decimal = Field(
        default=Decimal("0.15"), ge=0, le=1,
        description="Largest discount on the whole order, as a fraction of its subtotal")
    promotions: tuple[Promotion, ...] = Field(
        default=DEFAULT_PROMOTIONS,
        description="Known promotion codes; seeded into review_promotions, which counts uses")

    # manager approval
    manager_approval_above: Decimal = Field(
        default=Decimal("10000"), ge=0,
        description="An order whose grand total is above this needs a manager")
    new_customer_first_order_above: Decimal = Field(
        default=Decimal("5000"), ge=0,
        description="The first order of a new customer (no order approved by review yet and no "
                    "open receivables) above this needs a manager")

    # director approval: a second approval, by a director, of a held order a reviewer approved
    director_approval_above: Decimal | None = Field(
        default=Decimal("50000"), ge=0,
        description="A held order whose grand total is above this needs a director's approval "
                    "after a reviewer's; null or 0: no threshold on the total")
    director_approval_discount: Decimal | None = Field(
        default=Decimal("0.25"), ge=0, le=1,
        description="... or whose discounts are above this fraction of its subtotal; null or 0: "
                    "no threshold on the discount")
    director_approval_alone: bool = Field(
        default=False,
        description="A director's approval of such an order counts as both approvals; false: a "
                    "reviewer approves it first and a director, another person, second")

    # delivery date
    lead_time_days: int = Field(default=1, ge=0,
                                description="Days to pick and pack before the goods leave")
    rush_lead_time_days: int = Field(default=0, ge=0, description="The same for rush orders")
    transit_days: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_TRANSIT_DAYS),
                                         description="Days in transit by destination province")
    default_transit_days: int = Field(default=4, ge=0,
                                      description="Transit days to a province not in the table")

    # outcomes
    reject_on: frozenset[HoldCode] = Field(
        default=frozenset(),
        description="Hold reasons that reject the order outright instead of holding it, e.g. "
                    "[\"blocked_customer\"]; empty: every failed rule holds for a person")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _unique_codes(self) -> ReviewPolicy:
        codes = [p.code for p in self.promotions]
        duplicates = sorted({c for c in codes if codes.count(c) > 1})
        if duplicates:
            raise ValueError(f"promotion codes listed twice: {', '.join(duplicates)}")
        return self

    def promotion(self, code: str | None) -> Promotion | None:
        """The promotion ``code`` names (however it is written), or None if the policy does not
        know it."""
        wanted = promo_code_key(code)
        return next((p for p in self.promotions if p.code == wanted), None)


def known_promotions(codes: Iterable[str | None], policy: ReviewPolicy) -> list[Promotion]:
    """The policy's promotions among ``codes`` (each once, by code): those whose uses are
    counted and locked."""
    known = {p.code: p for c in codes if (p := policy.promotion(c)) is not None}
    return [known[code] for code in sorted(known)]
