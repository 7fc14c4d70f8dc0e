"""Money: ``Decimal`` amounts serialised as strings, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

CENT = Decimal("0.01")


def _to_str(value: Decimal) -> str:
    return format(value, "f")


def _reject_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError("money must be a string or an integer, never a float")
    return value


Amount = Annotated[
    Decimal,
    PlainSerializer(_to_str, return_type=str, when_used="always"),
    Field(description="A decimal amount serialised as a string, e.g. \"199.00\""),
]


def round_money(value: Decimal) -> Decimal:
    """Round to cents, half up (the rule every total in OrderFlow uses)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


class Money(BaseModel):
    """An amount with its ISO 4217 currency."""

    model_config = ConfigDict(frozen=True)

    amount: Amount
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code")

    @field_validator("amount", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        return _reject_float(value)
