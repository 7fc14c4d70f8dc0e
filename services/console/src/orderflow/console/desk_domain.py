"""The order desk's decisions, pure: the order an operator typed as the canonical order the desk
posts to intake (its external id, its time, its author), a stored order as the form to enter
a new revision of, and a pasted sheet's rows. Intake checks and prices every order; nothing
here judges one."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from orderflow.console.domain import TimelineEntry

DESK_CHANNEL = "desk"
# the line the desk adds to an order's notes naming who entered it (the canonical order has no
# other field for it); a prefilled form drops it, and the next submission adds its own
AUTHOR_TAG = re.compile(r"\n?\[desk: [^\]\n]*\]$")
# the events whose payload carries the order as intake accepted it, latest wins
_ORDER_EVENTS = ("OrderReceived", "OrderRevisionReceived", "OrderChangeRequested")


def new_external_id(now: datetime) -> str:
    """``DESK-<yyyymmdd>-<6 random hex>``: unique per desk order, readable on the phone."""
    return f"DESK-{now.astimezone(UTC):%Y%m%d}-{secrets.token_hex(3).upper()}"


def with_author(notes: str, author: str) -> str:
    """The notes with the desk's author line (one, at the end)."""
    text = AUTHOR_TAG.sub("", notes or "").rstrip()
    tag = f"[desk: {author}]"
    return f"{text}\n{tag}" if text else tag


def without_author(notes: str) -> str:
    return AUTHOR_TAG.sub("", notes or "").rstrip()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def desk_order(form: Mapping[str, Any], author: str, now: datetime) -> dict[str, Any]:
    """The canonical order the desk posts for a form: its external id (generated when the form
    has none), placed now unless the form says when, the author in its notes, and the optional
    fields left blank omitted (intake's defaults apply). The values are passed on as typed:
    intake's checks answer for them, beside their fields."""
    order = {k: v for k, v in form.items() if not _blank(v)}
    order["external_id"] = str(form.get("external_id") or "").strip() or new_external_id(now)
    order.setdefault("placed_at", now.astimezone(UTC).isoformat())
    order["notes"] = with_author(str(form.get("notes") or ""), author)
    for optional in ("customer", "shipping_address"):
        part = order.get(optional)
        if isinstance(part, Mapping):
            order[optional] = {k: v for k, v in part.items() if not _blank(v)}
    return order


def prefill(order_id: str, entries: Iterable[TimelineEntry]) -> dict[str, Any] | None:
    """The form for a new revision of a stored order: its latest content as intake accepted it
    (received, a later revision, a change), its revision one higher; None when the console has
    no content of it. The read model keeps no personal data: the contact and the street are
    the customer's master data's or typed again."""
    latest: TimelineEntry | None = None
    for entry in entries:
        if entry.event_type in _ORDER_EVENTS and isinstance(entry.payload.get("order"), dict) \
                and (latest is None or entry.sort_key() > latest.sort_key()):
            latest = entry
    if latest is None:
        return None
    order = dict(latest.payload["order"])
    destination = order.pop("destination", None) or {}
    order["shipping_address"] = {"province": destination.get("province", ""),
                                 "city": destination.get("city", "")}
    order["notes"] = without_author(str(order.get("notes") or ""))
    order["revision"] = int(order.get("revision") or 1) + 1
    return {"order_id": order_id, "channel": latest.payload.get("channel"), "order": order}


def sheet_order(payload: Mapping[str, Any], author: str, now: datetime) -> dict[str, Any]:
    """One order of a pasted or imported sheet as the desk posts it: placed now unless a row
    gives its ``order_date``, the author in its notes (on every row giving notes, else on the
    first). The cells are otherwise passed on as typed."""
    rows = [dict(row) for row in payload.get("rows") or []]
    if rows and not any(str(row.get("order_date") or "").strip() for row in rows):
        rows[0]["order_date"] = now.astimezone(UTC).isoformat(sep=" ", timespec="minutes")
    noted = [row for row in rows if str(row.get("notes") or "").strip()]
    for row in noted or rows[:1]:
        row["notes"] = with_author(str(row.get("notes") or ""), author)
    return {**payload, "rows": rows}


def pasted_rows(text: str) -> list[list[str]]:
    """Rows pasted from a spreadsheet (what a spreadsheet puts on the clipboard): one per line,
    cells separated by tabs; blank lines dropped. Grouped into orders by the connector's own
    ``group_order_rows``, as an uploaded sheet's rows are."""
    return [line.split("\t") for line in text.splitlines() if line.strip()]
