"""Channel ``canonical``: OrderFlow's own JSON, taken as it is (prices without tax)."""

from __future__ import annotations

from typing import Any

from orderflow.channels import Channel, ChannelOrder


def to_canonical(payload: Any) -> ChannelOrder:
    return ChannelOrder(payload, prices_include_tax=False)


CHANNEL = Channel(to_canonical, external_id_fields=("external_id",))
