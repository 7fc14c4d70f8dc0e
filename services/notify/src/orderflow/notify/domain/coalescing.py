"""Dispatches of one order told together: when each waits for its siblings and which it lets
go (``dispatch_waits``), and which claimed row carries an order's dispatches and which rows fold
into it (``carriers``, ``folds``), with the folded rows' wording."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from orderflow.notify.domain.plans import Channel, Kind


def coalesce_key(order_id: str, kind: Kind) -> str | None:
    """Dispatches of one order are told together (a big order split into several shipments)."""
    return f"{order_id}:{kind}" if kind == "shipment_dispatched" else None


def dispatch_due_at(now: datetime, *, window: timedelta, already_waiting: int,
                    shipment_count: int) -> tuple[datetime, bool]:
    """When the message for a newly dispatched shipment may go, and whether every waiting
    dispatch of the order may go now. Shipments wait ``window`` for their siblings; when all
    ``shipment_count`` shipments are waiting, there is nothing left to wait for."""
    if already_waiting + 1 >= max(shipment_count, 1):
        return now, True
    return now + window, False


@dataclass(frozen=True)
class Dispatch:
    """One dispatch notification a run stages on a coalescing key and channel, in batch order."""

    key: str
    channel: Channel
    now: datetime
    shipment_count: int
    new: bool = True  # False: its (event, channel) pair is stored already, nothing is inserted


@dataclass(frozen=True)
class DispatchWaits:
    """When each of a run's dispatches is due (by its index in the run; ``None``: now, as the
    run is stored), and the stored waiting rows a dispatch of the run let go now."""

    due_at: list[datetime | None]
    released: list[int]


def dispatch_waits(dispatches: Sequence[Dispatch], *, window: timedelta,
                   waiting: Mapping[tuple[str, Channel], Sequence[int]]) -> DispatchWaits:
    """The coalescing waits of a run's dispatches, decided in batch order on what the ones
    before left: each counts the rows already waiting under its key and channel (stored,
    ``waiting``, and staged by the run before it); the one that completes its order's shipments
    lets every one of them go now."""
    due_at: list[datetime | None] = []
    released: set[int] = set()
    in_run: dict[tuple[str, Channel], list[int]] = {}
    for d in dispatches:
        pair = (d.key, d.channel)
        stored, ours = waiting.get(pair, ()), in_run.setdefault(pair, [])
        due, release = dispatch_due_at(d.now, window=window,
                                       already_waiting=len(stored) + len(ours),
                                       shipment_count=d.shipment_count)
        if release:
            released.update(stored)
            for index in ours:
                due_at[index] = None
        if d.new:
            ours.append(len(due_at))
        due_at.append(due)
    return DispatchWaits(due_at, sorted(released))


@dataclass(frozen=True)
class Fold:
    """A notification told in another's message: marked ``coalesced`` into the carrying row."""

    row_id: int
    carrier_id: int
    detail: str


def coalesced_detail(carrier_notification_id: str) -> str:
    """What the log says of a notification told in another's message."""
    return f"told together with notification {carrier_notification_id}"


def folded_record_detail(shipments: int, carrier_notification_id: str) -> str:
    """What a folded notification's record says (``NotificationRecorded``)."""
    return (f"coalesced: told together with {shipments} shipment(s) in notification "
            f"{carrier_notification_id}")


class Keyed(Protocol):
    """A claimed or waiting notification as the fold sees it."""

    @property
    def id(self) -> int: ...
    @property
    def notification_id(self) -> str: ...
    @property
    def coalesce_key(self) -> str | None: ...


_K = TypeVar("_K", bound=Keyed)


def carriers(claimed: Iterable[_K]) -> dict[str, _K]:
    """The notification that carries each coalesce key among ``claimed``: its first (oldest)
    claimed row."""
    chosen: dict[str, _K] = {}
    for row in sorted(claimed, key=lambda r: r.id):
        if row.coalesce_key is not None:
            chosen.setdefault(row.coalesce_key, row)
    return chosen


def folds(carrying: Mapping[str, Keyed], others: Iterable[Keyed]) -> list[Fold]:
    """Every other notification of a carried key (claimed with its carrier, or waiting) is told
    in the carrier's message; in id order."""
    out: list[Fold] = []
    for row in sorted(others, key=lambda r: r.id):
        carrier = carrying.get(row.coalesce_key) if row.coalesce_key is not None else None
        if carrier is not None and carrier.id != row.id:
            out.append(Fold(row.id, carrier.id, coalesced_detail(carrier.notification_id)))
    return out


def merge_shipments(contexts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The shipments of several waiting dispatch notifications, once each, oldest first."""
    seen: dict[str, dict[str, Any]] = {}
    for context in contexts:
        for shipment in context.get("event", {}).get("shipments", []):
            seen.setdefault(str(shipment.get("shipment_id")), dict(shipment))
    return sorted(seen.values(), key=lambda s: (str(s.get("dispatched_at", "")),
                                                 str(s.get("shipment_id", ""))))
