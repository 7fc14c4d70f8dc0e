"""A run of customer-facing events decided: each event's occurrence, who is told what on which
channel, what the message may say (its context), and when each notification is due."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orderflow.contracts.events import Event
from orderflow.notify.domain.coalescing import Dispatch, coalesce_key, dispatch_waits
from orderflow.notify.domain.occurrences import Occurrence, Tracking, occurrence
from orderflow.notify.domain.plans import (
    Channel,
    Contact,
    Language,
    Planned,
    Preferences,
    merge_contact,
    plan_notifications,
)
from orderflow.notify.domain.state import OrderRecord, RunState, bare_facts


@dataclass(frozen=True)
class RunSettings:
    """What the configuration says about a run: the language of a customer notify does not
    know, the sales channels with a webhook, the tracking links."""

    default_language: Language
    webhook_channels: frozenset[str]
    tracking: Tracking


@dataclass(frozen=True)
class Decided:
    """One event of a run, decided: its occurrence, its plans (each with its coalesce key: a
    pending dispatch's) and what their rows say."""

    occurrence: Occurrence
    plans: list[Planned]
    keys: list[str | None]
    context: dict[str, Any]
    language: Language
    now: datetime


def decide_run(state: RunState, events: Sequence[Event], settings: RunSettings,
               now: datetime) -> list[Decided]:
    """Each event of a run in batch order, on the state the events before it left (as if one
    after another): what it changes in ``state``, and who is told what on which channel."""
    return [_decide(state, event, occurrence(state, event, settings.tracking), settings, now)
            for event in events]


def _decide(state: RunState, event: Event, o: Occurrence, settings: RunSettings,
            now: datetime) -> Decided:
    """Who is told what on which channel, from the order's state as the event finds it."""
    record = state.orders.get(o.order_id)
    customer_id = (record.customer_id if record else None) or (o.customer.id if o.customer else None)
    profile = state.profiles.get(customer_id) if customer_id else None
    preferences = profile.preferences if profile else Preferences(
        language=settings.default_language)
    known = record is not None and bool(record.customer_id or record.contact.email
                                        or record.contact.phone)
    order_contact = record.contact if record is not None and known else (
        Contact(o.customer.name, o.customer.email, o.customer.phone) if o.customer else None)
    contact = merge_contact(order_contact, profile.contact if profile else None)
    sales_channel = record.channel if record else getattr(event, "channel", None)
    plans = plan_notifications(
        o.kind, contact=contact, preferences=preferences, sales_channel=sales_channel,
        webhook_channels=settings.webhook_channels, suppress=o.suppress)
    keys = [coalesce_key(o.order_id, o.kind) if plan.status == "pending" else None
            for plan in plans]
    return Decided(o, plans, keys, message_context(o, record, contact, event),
                   preferences.language, now)


def message_context(o: Occurrence, record: OrderRecord | None, contact: Contact | None,
                    event: Event) -> dict[str, Any]:
    """What the message may say: the order's facts, the customer's name and the event's details
    (a shipment's tracking from the order's dispatches when the event has none)."""
    facts = (record.facts if record and record.facts else None) or bare_facts(
        o.order_id, getattr(event, "channel", None) or (record.channel if record else None),
        getattr(event, "external_id", None) or (record.external_id if record else None))
    details = dict(o.event)
    shipment_id = details.get("shipment_id")
    if record and shipment_id and "tracking_number" not in details:
        known = record.shipments.get(str(shipment_id), {})
        details["tracking_number"] = known.get("tracking_number")
        details["tracking_url"] = known.get("tracking_url")
        details.setdefault("carrier", known.get("carrier"))
    return {"order": facts, "customer_name": contact.name if contact else "", "event": details}


# --- when a run's notifications are due ---------------------------------------------------------


def waiting_pairs(decided: Sequence[Decided]) -> list[tuple[str, Channel]]:
    """The (coalesce key, channel) pairs under which the run stages dispatches, sorted."""
    return sorted({(key, plan.channel) for d in decided
                   for plan, key in zip(d.plans, d.keys, strict=True) if key is not None})


@dataclass(frozen=True)
class RunWaits:
    """When each planned notification of a run is due (by event, then by plan; ``None``: now,
    as it is stored), and the stored waiting rows the run lets go now."""

    due_at: list[list[datetime | None]]
    released: list[int]


def run_waits(decided: Sequence[Decided], *, stored: Sequence[Collection[Channel]],
              window: timedelta, waiting: Mapping[tuple[str, Channel], Sequence[int]],
              ) -> RunWaits:
    """Every notification is due as it is decided, but a dispatch waits for its order's other
    shipments (``dispatch_waits``, in batch order). ``stored``: by event, the channels it has a
    row on already (such a dispatch is not staged again); ``waiting``: the stored rows waiting
    under each of the run's ``waiting_pairs``."""
    due_at: list[list[datetime | None]] = [[d.now] * len(d.plans) for d in decided]
    slots: list[tuple[int, int]] = []  # the dispatches' (event, plan) indexes
    dispatches: list[Dispatch] = []
    for i, (d, channels) in enumerate(zip(decided, stored, strict=True)):
        for j, (plan, key) in enumerate(zip(d.plans, d.keys, strict=True)):
            if key is not None:
                slots.append((i, j))
                dispatches.append(Dispatch(
                    key, plan.channel, d.now, int(d.occurrence.event.get("shipment_count", 1)),
                    new=plan.channel not in channels))
    if not dispatches:
        return RunWaits(due_at, [])
    waits = dispatch_waits(dispatches, window=window, waiting=waiting)
    for (i, j), due in zip(slots, waits.due_at, strict=True):
        due_at[i][j] = due
    return RunWaits(due_at, waits.released)
