"""One adapter per channel: a function from the platform's payload to canonical-order data.

Adding a channel is one module here and one line in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orderflow.intake.adapters import canonical
from orderflow.intake.adapters.errors import AdapterError

Adapter = Callable[[Any], Any]
__all__ = ["ADAPTERS", "Adapter", "AdapterError"]


ADAPTERS: dict[str, Adapter] = {
    "canonical": canonical.to_canonical,
}
