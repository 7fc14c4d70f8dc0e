"""Channel ``canonical``: OrderFlow's own JSON, taken as it is."""

from __future__ import annotations

from typing import Any


def to_canonical(payload: Any) -> Any:
    return payload
