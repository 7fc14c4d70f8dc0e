"""The error an adapter raises when a payload cannot be read as an order of its channel."""

from __future__ import annotations


class AdapterError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
