"""What the lifecycle and change end-to-end tests share: every order service must run, and each
test makes its own customer and SKUs so its exposure and stock are its own."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from orderflow.contracts.events import CustomerUpdated, ProductUpdated, StockReceived
from orderflow.testing.pipeline import Pipeline

D = Decimal
ORDER_SERVICES = frozenset({"intake", "review", "inventory", "logistics", "notify"})


def require_order_services(pipeline: Pipeline, what: str) -> None:
    missing = ORDER_SERVICES - set(pipeline.services)
    if missing:
        pytest.skip(f"{what} need every order service; not running: {sorted(missing)}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def new_customer(pipeline: Pipeline, *, prefix: str, name: str,
                       limit: str = "1000000") -> str:
    """A customer of this test only (its exposure is this test's alone), paying net 30 and
    owing 1000 (not a new customer)."""
    customer_id = new_id(prefix)
    await pipeline.publish_and_wait([CustomerUpdated(
        customer_id=customer_id, name=name, email=f"{customer_id.lower()}@example.com",
        credit_limit=D(limit), currency="CNY", payment_terms="net30",
        open_receivables=D("1000"))])
    return customer_id


async def new_sku(pipeline: Pipeline, *, prefix: str, name: str, stock: int,
                  warehouse: str = "WH-SH") -> str:
    """A product of this test only, 100.00 + 13 % VAT, with ``stock`` units in ``warehouse``."""
    sku = new_id(prefix).upper()
    events: list[Any] = [ProductUpdated(sku=sku, name=name, unit_price=D("100.00"),
                                        currency="CNY", tax_rate=D("0.13"), weight_kg=D("1.000"))]
    if stock:
        events.append(StockReceived(warehouse_id=warehouse, sku=sku, quantity=stock,
                                    reference=f"{name} (test)"))
    await pipeline.publish_and_wait(events)
    return sku
