"""Small, strict readers adapters share: each raises ``AdapterError`` naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from orderflow.channels import AdapterError

CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")


def mapping(value: Any, field: str | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AdapterError(f"{field or 'the payload'} must be a JSON object", field)
    return value


def optional_mapping(value: Any, field: str) -> Mapping[str, Any]:
    """An object, or an empty one when absent (``null``)."""
    return {} if value is None else mapping(value, field)


def object_list(value: Any, field: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        raise AdapterError(f"{field} must be a list", field)
    return [mapping(item, f"{field}.{i}") for i, item in enumerate(value)]


def text(value: Any, field: str, *, default: str = "") -> str:
    """A string field; numbers are taken as their text (ids often arrive as numbers)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AdapterError(f"{field} must be a string", field)
    return str(value).strip()


def fen_to_yuan(value: Any, field: str) -> str:
    """An amount in fen (an integer, as Chinese platforms send it) as a yuan string, "12.34"."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(f"{field} must be a whole number of fen", field)
    return format(Decimal(value).scaleb(-2), "f")


LAST_BELIEVABLE_SECOND = 4_102_444_800  # 2100-01-01T00:00:00Z


def epoch_seconds(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AdapterError(f"{field} must be a Unix time in seconds", field)
    seconds = int(value)
    seconds = seconds // 1000 if seconds > 10**11 else seconds  # milliseconds
    if seconds > LAST_BELIEVABLE_SECOND:
        raise AdapterError(f"{field} is after the year 2100: not a time an order was placed", field)
    return seconds


def china_time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, CHINA_TIME).isoformat()


def iso_timestamp(value: Any, field: str) -> datetime:
    """An ISO 8601 timestamp with its offset (Shopify's ``2026-11-20T10:00:00+08:00``)."""
    if not isinstance(value, str):
        raise AdapterError(f"{field} must be an ISO 8601 timestamp", field)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise AdapterError(f"{field} is not an ISO 8601 timestamp", field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def revision_from(moment: datetime) -> int:
    """A revision that grows with the platform's update time: its Unix time in seconds."""
    return max(1, int(moment.timestamp()))
