"""Channels: what OrderFlow knows of a sales channel, and where it finds them.

A channel is an entry point of group ``orderflow.channels`` in an installed package: the entry
point's name is the channel's name (``shopify``, ``douyin``, a plugin's own), its object a
``Channel``: the adapter from the platform's payload to canonical-order data, and where the
platform keeps the order's id and store. Intake's own channels are registered the same way, in
intake's ``pyproject.toml``; a plugin package adds a channel without a change to intake::

    [project.entry-points."orderflow.channels"]
    acme = "acme_orderflow:CHANNEL"

    # acme_orderflow.py
    from orderflow.channels import AdapterError, Channel, ChannelOrder

    def to_canonical(payload):
        if "ref" not in payload:
            raise AdapterError("an Acme order needs its ref", "ref")
        return ChannelOrder({"external_id": payload["ref"], ...})

    CHANNEL = Channel(to_canonical, external_id_fields=("ref",))

The registry (``registry()``) is read once per process. A plugin that cannot be loaded (its
module fails to import, its object is not a ``Channel``, its name cannot name a channel) is
logged with its reason and skipped; two entry points claiming one name raise
``ChannelConflict``: which one is meant cannot be told, and intake refuses to start."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

log = logging.getLogger(__name__)
#: the extras of a skipped plugin's log record (a structured log handler may render them as fields)
LOG_FIELDS: tuple[str, ...] = ("entry_point", "reason")

ENTRY_POINT_GROUP = "orderflow.channels"
#: a channel's name: short, lower case, no colon or slash (it is joined into the order's key,
#: ``<channel>:<external id>``, and into a channel key's name, ``<channel>/<store>``)
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")


class AdapterError(ValueError):
    """A payload that is not an order of its channel. ``code`` is the reason code intake puts on
    the rejection (``unreadable_payload`` unless the adapter knows better, e.g. ``order_cancelled``);
    ``field`` is the offending field's path in the platform's payload, if any."""

    def __init__(self, message: str, field: str | None = None, *,
                 code: str = "unreadable_payload") -> None:
        super().__init__(message)
        self.field = field
        self.code = code


@dataclass(frozen=True)
class ChannelOrder:
    """What an adapter returns. ``data`` is validated as a ``CanonicalOrder`` by intake.
    ``prices_include_tax`` says the channel's unit prices, discounts and stated total include VAT
    (Douyin, Shopify with ``taxes_included``); intake then takes the tax out with the catalogue's
    per-SKU rate."""

    data: Any
    prices_include_tax: bool = False


Adapter = Callable[[Any], ChannelOrder]


@dataclass(frozen=True)
class Channel:
    """A channel, as its entry point's object.

    ``to_canonical(payload) -> ChannelOrder``: the platform's order (parsed JSON) as canonical
    data; raises ``AdapterError`` with a reason for a payload it cannot read (any other exception
    is taken as ``unreadable_payload``).
    ``external_id_fields``: where the order's id is, the first present wins (a connector keys its
    push ``<channel>:<id>`` with it, the channel order API reads it).
    ``per_store``: the platform's order numbers are only unique within one store (a marketplace
    shop): a push must name its store, and the store is part of the order's identity.
    ``order_wrappers``: objects the platform's format may wrap the order in, outermost first.
    ``store_fields``: where the platform's order names its store, if it does."""

    to_canonical: Adapter
    external_id_fields: tuple[str, ...] = ("external_id",)
    per_store: bool = False
    order_wrappers: tuple[str, ...] = ()
    store_fields: tuple[str, ...] = ()


class ChannelConflict(RuntimeError):
    """Two entry points name one channel: which adapter is meant cannot be told."""


@dataclass(frozen=True)
class Registry:
    """The channels found, by name, and the entry points skipped with why."""

    channels: Mapping[str, Channel]
    skipped: Mapping[str, str] = field(default_factory=dict)


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    package = f" (package {dist.name})" if dist is not None else ""
    return f"{ep.name} = {ep.value}{package}"


def discover(found: Iterable[EntryPoint] | None = None) -> Registry:
    """The channels of ``found`` (default: the installed entry points of ``ENTRY_POINT_GROUP``).
    Raises ``ChannelConflict`` when two name one channel; a plugin that cannot be loaded is in
    ``skipped`` with its reason."""
    eps = list(entry_points(group=ENTRY_POINT_GROUP) if found is None else found)
    claims: dict[str, list[EntryPoint]] = {}
    for ep in eps:
        claims.setdefault(ep.name, []).append(ep)
    conflicts = {name: claimed for name, claimed in claims.items() if len(claimed) > 1}
    if conflicts:
        raise ChannelConflict("; ".join(
            f"channel {name!r} is claimed by {len(claimed)} entry points of group "
            f"{ENTRY_POINT_GROUP}: " + ", ".join(_origin(ep) for ep in claimed)
            for name, claimed in sorted(conflicts.items()))
            + ": uninstall or rename all but one")
    channels: dict[str, Channel] = {}
    skipped: dict[str, str] = {}
    for ep in eps:
        if not CHANNEL_NAME.match(ep.name):
            skipped[_origin(ep)] = ("a channel's name is 1 to 32 characters: lower-case letters, "
                                    "digits, '_', '.', '-'")
            continue
        try:
            loaded = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is skipped, never fatal
            skipped[_origin(ep)] = f"cannot be loaded: {type(exc).__name__}: {exc}"
            continue
        if not isinstance(loaded, Channel):
            skipped[_origin(ep)] = (f"is a {type(loaded).__name__}, not an "
                                    "orderflow.channels.Channel")
            continue
        channels[ep.name] = loaded
    return Registry(channels, skipped)


@functools.cache
def registry() -> Registry:
    """The installed channels, read once per process; each plugin skipped is logged with why."""
    found = discover()
    for origin, reason in found.skipped.items():
        log.error("channel plugin skipped: %s (%s)", origin, reason,
                  extra={"entry_point": origin, "reason": reason})
    return found


def channel(name: str) -> Channel | None:
    """The installed channel ``name``, if there is one."""
    return registry().channels.get(name)


def channel_names() -> tuple[str, ...]:
    """The installed channels' names, sorted."""
    return tuple(sorted(registry().channels))


def per_store(name: str) -> bool:
    """Whether channel ``name``'s orders are only known by their store (``Channel.per_store``)."""
    found = channel(name)
    return found is not None and found.per_store


__all__ = ["CHANNEL_NAME", "ENTRY_POINT_GROUP", "Adapter", "AdapterError", "Channel",
           "ChannelConflict", "ChannelOrder", "Registry", "channel", "channel_names", "discover",
           "per_store", "registry"]
