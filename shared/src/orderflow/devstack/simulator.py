"""The marketplace simulator: orders from every channel at a set rate, with a configurable share
of bad, duplicate, rush and large orders (used by the demo and the benchmark).

Each channel's orders are produced in that platform's own format (see ``CHANNEL_FORMATS``)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orderflow.devstack.catalogue import (
    ADDRESSES,
    canonical_order,
    customers,
    products,
    stock_totals,
)


@dataclass(frozen=True)
class SimulatedOrder:
    channel: str
    external_id: str
    payload: Any
    kind: str  # valid | bad | duplicate | rush | large


@dataclass(frozen=True)
class Mix:
    bad: float = 0.05
    duplicate: float = 0.03
    rush: float = 0.10
    large: float = 0.05


def _to_canonical(order: dict[str, Any]) -> dict[str, Any]:
    return order


# channel -> function turning a canonical order dict into that channel's payload
CHANNEL_FORMATS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "canonical": _to_canonical,
}


def _plentiful_skus() -> list[str]:
    totals = stock_totals()
    return [sku for sku, p in products().items()
            if p.active and totals.get(sku, 0) >= 500 and not sku.startswith("SERV")]


def generate_orders(count: int, *, seed: int = 7, mix: Mix = Mix(),
                    channels: tuple[str, ...] | None = None,
                    prefix: str = "SIM") -> list[SimulatedOrder]:
    """``count`` distinct orders (duplicates are extra re-pushes of earlier ones)."""
    rnd = random.Random(seed)
    chosen_channels = channels or tuple(CHANNEL_FORMATS)
    skus = _plentiful_skus()
    all_skus = [sku for sku, p in products().items() if p.active]
    customer_ids = sorted(customers())
    out: list[SimulatedOrder] = []
    for i in range(count):
        channel = chosen_channels[i % len(chosen_channels)]
        external_id = f"{prefix}-{seed}-{i:06d}"
        roll = rnd.random()
        kind = "valid"
        n_lines = rnd.choice([1, 1, 2, 3])
        qty_max = 3
        if roll < mix.large:
            kind, n_lines, qty_max = "large", rnd.randint(6, 12), 8
        elif roll < mix.large + mix.rush:
            kind = "rush"
        pool = all_skus if rnd.random() < 0.1 else skus
        lines = [(sku, rnd.randint(1, qty_max)) for sku in rnd.sample(pool, n_lines)]
        order = canonical_order(
            external_id, customer_id=rnd.choice(customer_ids), lines=lines,
            priority="rush" if kind == "rush" else "normal",
            address_index=rnd.randrange(len(ADDRESSES)),
            requested_delivery_date=None if rnd.random() < 0.5 else "2026-12-20",
        )
        if rnd.random() < mix.bad:
            kind = "bad"
            breakage = rnd.choice(["negative_quantity", "unknown_sku", "total", "missing_address"])
            if breakage == "negative_quantity":
                order["lines"][0]["quantity"] = -1  # type: ignore[index]
            elif breakage == "unknown_sku":
                order["lines"][0]["sku"] = "NO-SUCH-SKU"  # type: ignore[index]
            elif breakage == "total":
                order["stated_total"] = "1.00"
            else:
                del order["shipping_address"]
        out.append(SimulatedOrder(channel, external_id, CHANNEL_FORMATS[channel](order), kind))
    duplicates = [SimulatedOrder(o.channel, o.external_id, o.payload, "duplicate")
                  for o in rnd.sample(out, int(count * mix.duplicate))] if out else []
    for dup in duplicates:
        out.insert(rnd.randrange(len(out) + 1), dup)
    return out
