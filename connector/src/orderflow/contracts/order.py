"""The canonical order: what every channel's order becomes after intake normalises it."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from orderflow.contracts.money import Amount


class OrderState(StrEnum):
    """One vocabulary for events, API, UI and the demo summary."""

    RECEIVED = "received"
    REJECTED = "rejected"
    HELD = "held"
    APPROVED = "approved"
    BACKORDERED = "backordered"
    RESERVED = "reserved"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    RETURNED = "returned"


SETTLED_STATES: frozenset[OrderState] = frozenset(
    {
        OrderState.REJECTED,
        OrderState.HELD,
        OrderState.BACKORDERED,
        OrderState.DISPATCHED,
        OrderState.DELIVERED,
        OrderState.CANCELLED,
        OrderState.RETURNED,
    }
)

Priority = Literal["normal", "rush"]
PAYMENT_TERMS_PATTERN = re.compile(r"^(prepaid|cod|net[1-9][0-9]{0,2})$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class Customer(_Frozen):
    id: str = Field(min_length=1, max_length=64, description="The customer's id in master data")
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=40)


class OrderLine(_Frozen):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=1_000_000, description="A positive whole number of units")
    unit_price: Amount = Field(ge=0, max_digits=14, decimal_places=2)
    discount: Amount = Field(default=Decimal("0.00"), ge=0, max_digits=14, decimal_places=2,
                             description="Discount on the whole line")

    @field_validator("quantity", mode="before")
    @classmethod
    def _strict_int(cls, value: Any) -> Any:
        if isinstance(value, bool | float):
            raise PydanticCustomError("int_type", "quantity must be a whole number")
        return value

    @field_validator("unit_price", "discount", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float | bool):
            raise PydanticCustomError("decimal_type",
                                      "amounts are strings such as \"199.00\", never floats")
        return value


class Address(_Frozen):
    name: str = Field(default="", max_length=200)
    phone: str = Field(min_length=3, max_length=40)
    country: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    province: str = Field(min_length=1, max_length=64)
    city: str = Field(min_length=1, max_length=64)
    district: str = Field(default="", max_length=64)
    line1: str = Field(min_length=1, max_length=300)
    postal_code: str = Field(default="", max_length=16)


class CanonicalOrder(_Frozen):
    """OrderFlow's own order JSON (channel ``canonical``); every adapter produces one."""

    external_id: str = Field(min_length=1, max_length=128,
                             description="The order's id in its channel")
    placed_at: datetime
    customer: Customer
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 currency code")
    lines: tuple[OrderLine, ...] = Field(min_length=1, max_length=500)
    shipping_address: Address
    requested_delivery_date: date | None = None
    priority: Priority = "normal"
    payment_terms: str = Field(default="net30", description="prepaid, cod or netN (N days)")
    promo_code: str | None = Field(default=None, max_length=64)
    shipping_fee: Amount = Field(default=Decimal("0.00"), ge=0, max_digits=14, decimal_places=2)
    stated_total: Amount | None = Field(default=None, ge=0, max_digits=16, decimal_places=2,
                                        description="The total the channel says the customer pays")
    notes: str = Field(default="", max_length=2000)
    amount_paid: Amount = Field(default=Decimal("0.00"), ge=0, max_digits=16, decimal_places=2,
                                description="Already paid to the channel (marketplace checkout)")
    revision: int = Field(default=1, ge=1, description="The channel's revision of this order")

    @field_validator("payment_terms")
    @classmethod
    def _terms(cls, value: str) -> str:
        if not PAYMENT_TERMS_PATTERN.match(value):
            raise ValueError("payment_terms must be prepaid, cod or netN")
        return value

    @field_validator("shipping_fee", "stated_total", "amount_paid", mode="before")
    @classmethod
    def _no_float(cls, value: Any) -> Any:
        if isinstance(value, float | bool):
            raise PydanticCustomError("decimal_type",
                                      "amounts are strings such as \"199.00\", never floats")
        return value


class OrderTotals(_Frozen):
    """Totals recomputed by intake with Decimal and half-up rounding."""

    subtotal: Amount
    discount: Amount
    tax: Amount
    shipping: Amount
    grand_total: Amount


_ORDER_NAMESPACE = uuid.UUID("0b6c1f7e-3a52-4f0e-8d2c-6e9a4b1d7c30")


# a store: no colon (it is joined into the identity with colons), no blanks
STORE_PATTERN = r"^[^:\s]+$"
_STORE = re.compile(STORE_PATTERN)


def valid_store(store: str) -> bool:
    """Whether ``store`` can name a store (``STORE_PATTERN``, at most 128 characters)."""
    return 0 < len(store) <= 128 and _STORE.match(store) is not None


def order_id_for(channel: str, external_id: str, store: str | None = None) -> str:
    """The order id: the same (channel, store, external id) always names the same order, a uuid5
    of ``<channel>:<store>:<external id>``; without a store (channels that have none, and orders
    intake received before stores were part of the identity), of ``<channel>:<external id>``."""
    if store is None:
        return str(uuid.uuid5(_ORDER_NAMESPACE, f"{channel}:{external_id}"))
    return str(uuid.uuid5(_ORDER_NAMESPACE, f"{channel}:{store}:{external_id}"))
