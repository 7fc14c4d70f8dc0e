"""The error an adapter raises when a payload cannot be read as an order of its channel."""

from __future__ import annotations


class AdapterError(ValueError):
    """A payload that is not an order of its channel. ``code`` is the reason code intake puts on
    the rejection (``unreadable_payload`` unless the adapter knows better, e.g. ``order_cancelled``);
    ``field`` is the offending field's path in the platform's payload, if any."""

    def __init__(self, message: str, field: str | None = None, *,
                 code: str = "unreadable_payload") -> None:
        super().__init__(message)
        self.field = field
        self.code = code
