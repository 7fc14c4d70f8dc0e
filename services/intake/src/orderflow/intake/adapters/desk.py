"""Channel ``desk``: the console's order desk, an order typed in (canonical JSON) or one order of
a sheet pasted or imported at the desk (an order sheet's payload,
``orderflow.connector.spreadsheet``: its ``order_number`` and ``rows``); no store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orderflow.channels import Channel, ChannelOrder
from orderflow.intake.adapters import canonical, spreadsheet


def to_canonical(payload: Any) -> ChannelOrder:
    if isinstance(payload, Mapping) and "rows" in payload and "external_id" not in payload:
        return spreadsheet.to_canonical(payload)
    return canonical.to_canonical(payload)


CHANNEL = Channel(to_canonical, external_id_fields=("external_id", "order_number"))
