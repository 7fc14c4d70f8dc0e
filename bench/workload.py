"""The benchmark's workload: master data that lets every order through (credit and stock), and
orders that review approves automatically, in every channel's own format."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from orderflow.contracts.events import CustomerUpdated, Event, StockReceived
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import (
    ADDRESSES,
    canonical_order,
    customers,
    products,
    stated_total,
    stock_totals,
)
from orderflow.devstack.simulator import CHANNEL_FORMATS, STORES, external_id_in

# review holds orders above 10,000 for a manager and a new customer's first order above 5,000:
# the benchmark's orders stay well under both
MAX_ORDER_TOTAL = Decimal("4000")
HUGE_CREDIT = Decimal("1000000000000")
STOCK_PER_WAREHOUSE = 1_000_000
WAREHOUSES = ("WH-SH", "WH-GZ", "WH-BJ", "WH-CD", "WH-WH", "WH-HZ")
DEFAULT_CHANNELS = ("canonical", "shopify", "douyin", "csv")


@dataclass(frozen=True)
class BenchOrder:
    channel: str
    external_id: str  # as the channel's payload carries it (what the connector keys by)
    payload: Any
    store: str | None = None  # the marketplace channels' store (the simulator's ``STORES``)

    @cached_property
    def order_id(self) -> str:  # a uuid5: computed once (the driver asks for it often)
        return order_id_for(self.channel, self.external_id, self.store)

    @property
    def inbound_key(self) -> str:
        return f"{self.channel}:{self.external_id}"

    def submission(self) -> tuple[str, str, Any, str | None]:
        """What ``OrderPusher.push_many`` takes."""
        return self.channel, self.external_id, self.payload, self.store


def credit_customers() -> list[str]:
    """Customers on credit terms who are not blocked: their limit is raised so that the
    benchmark's volume never exhausts it (overdue ones are cleared by the same update)."""
    return sorted(c.customer_id for c in customers().values()
                  if c.payment_terms.startswith("net") and not c.blocked)


def bench_skus() -> list[str]:
    """Active physical goods that the demo stocks (the same pool as the simulator's valid orders)."""
    totals = stock_totals()
    return sorted(sku for sku, p in products().items()
                  if p.active and totals.get(sku, 0) > 0 and not sku.startswith("SERV"))


def master_data_events() -> list[Event]:
    """``customer.updated`` with a huge limit for the credit customers, ``stock.received`` with
    plenty of every benchmark SKU in every warehouse."""
    events: list[Event] = []
    for cid in credit_customers():
        c = customers()[cid]
        events.append(CustomerUpdated(
            customer_id=c.customer_id, name=c.name, email=c.email, phone=c.phone,
            language=c.language, credit_limit=HUGE_CREDIT, currency="CNY",
            payment_terms=c.payment_terms, open_receivables=Decimal(0),
            overdue_amount=Decimal(0), overdue_days=0, blocked=False))
    for sku in bench_skus():
        for wh in WAREHOUSES:
            events.append(StockReceived(warehouse_id=wh, sku=sku, quantity=STOCK_PER_WAREHOUSE,
                                        reference="bench"))
    return events


def make_orders(count: int, *, prefix: str, seed: int = 11,
                channels: tuple[str, ...] = DEFAULT_CHANNELS, rush: float = 0.1) -> list[BenchOrder]:
    """``count`` distinct valid orders that review approves automatically and inventory can fill,
    spread round-robin over ``channels`` (each in its platform's format)."""
    rnd = random.Random(seed)
    cat = products()
    skus = bench_skus()
    who = credit_customers()
    out: list[BenchOrder] = []
    for i in range(count):
        channel = channels[i % len(channels)]
        while True:
            lines = [(sku, rnd.randint(1, 2)) for sku in rnd.sample(skus, rnd.choice([1, 1, 2, 3]))]
            priced = [(sku, q, cat[sku].unit_price, Decimal(0)) for sku, q in lines]
            if stated_total(priced, Decimal("10.00")) <= MAX_ORDER_TOTAL:
                break
        order = canonical_order(
            f"{prefix}-{i:06d}", customer_id=who[i % len(who)], lines=lines,
            priority="rush" if rnd.random() < rush else "normal",
            address_index=rnd.randrange(len(ADDRESSES)))
        payload = CHANNEL_FORMATS[channel](order)
        out.append(BenchOrder(channel, external_id_in(channel, payload, f"{prefix}-{i:06d}"),
                              payload, STORES.get(channel)))
    return out
