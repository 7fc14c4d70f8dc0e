"""What an adapter returns: canonical-order JSON, and how the channel states its prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChannelOrder:
    """``data`` is validated as a ``CanonicalOrder`` by intake. ``prices_include_tax`` says the
    channel's unit prices, discounts and stated total include VAT (Douyin, Shopify with
    ``taxes_included``); intake then takes the tax out with the catalogue's per-SKU rate."""

    data: Any
    prices_include_tax: bool = False
