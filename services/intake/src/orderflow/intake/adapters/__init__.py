"""Intake's own channels: one module per channel, each a function from the platform's payload to
canonical-order data (``to_canonical(payload) -> ChannelOrder``, raising ``AdapterError`` for a
payload it cannot read) and its ``CHANNEL`` (``orderflow.channels.Channel``), registered as an
entry point of group ``orderflow.channels`` in intake's ``pyproject.toml``, as a plugin's
channel is in its own package (README, "Adding a channel")."""

from __future__ import annotations

from typing import Any

from orderflow.channels import Adapter, AdapterError, ChannelOrder, channel

__all__ = ["Adapter", "AdapterError", "ChannelOrder", "adapt", "adapter_of"]


def adapter_of(name: str) -> Adapter | None:
    """The adapter of the installed channel ``name``, if there is one."""
    found = channel(name)
    return found.to_canonical if found is not None else None


def adapt(adapter: Adapter, payload: Any) -> ChannelOrder:
    """Run an adapter; whatever it trips over becomes an ``AdapterError`` (a payload shaped in
    a way no adapter foresaw must reject that order, never fail the batch)."""
    try:
        return adapter(payload)
    except AdapterError:
        raise
    except Exception as exc:  # the safety net is the point
        raise AdapterError(f"the payload could not be read ({type(exc).__name__})") from exc
