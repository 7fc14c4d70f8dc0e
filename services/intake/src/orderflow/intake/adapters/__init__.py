"""One adapter per channel: a function from the platform's payload to canonical-order data.

Adding a channel is one module here (``to_canonical(payload) -> ChannelOrder``, raising
``AdapterError`` for a payload it cannot read) and one line in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orderflow.intake.adapters import canonical, douyin, shopify, spreadsheet
from orderflow.intake.adapters.channel_order import ChannelOrder
from orderflow.intake.adapters.errors import AdapterError

Adapter = Callable[[Any], ChannelOrder]
__all__ = ["ADAPTERS", "Adapter", "AdapterError", "ChannelOrder", "adapt"]


def desk_order(payload: Any) -> ChannelOrder:
    """The console's order desk: an order typed in (canonical JSON), or one order of a sheet
    pasted or imported at the desk (an order sheet's payload, ``orderflow.connector.spreadsheet``:
    its ``order_number`` and ``rows``)."""
    if isinstance(payload, Mapping) and "rows" in payload and "external_id" not in payload:
        return spreadsheet.to_canonical(payload)
    return canonical.to_canonical(payload)


ADAPTERS: dict[str, Adapter] = {
    "canonical": canonical.to_canonical,
    "desk": desk_order,  # the console's order desk: typed or pasted, no store
    "shopify": shopify.to_canonical,
    "douyin": douyin.to_canonical,
    "csv": spreadsheet.to_canonical,
    "xlsx": spreadsheet.to_canonical,
}


def adapt(adapter: Adapter, payload: Any) -> ChannelOrder:
    """Run an adapter; whatever it trips over becomes an ``AdapterError`` (a payload shaped in
    a way no adapter foresaw must reject that order, never fail the batch)."""
    try:
        return adapter(payload)
    except AdapterError:
        raise
    except Exception as exc:  # the safety net is the point
        raise AdapterError(f"the payload could not be read ({type(exc).__name__})") from exc
