"""Notify's domain, pure: no I/O, no framework. The handlers feed it what the tables know; the
sender asks it what to fold and what to do after a failed attempt.

- ``plans``: the kinds of message, contacts, preferences and who is told what on which channel;
- ``state``: what a run knows of its orders, customers and products (``RunState``), and an
  order's facts as messages show them;
- ``occurrences``: what each customer-facing event announces and changes in its order's state
  (one function per event class, ``OCCURRENCES``), and what a run needs read (``run_needs``);
- ``runs``: a run of events decided one after another (``decide_run``), each message's context
  and when each notification is due;
- ``coalescing``: dispatches of one order told together (waits, carriers, folds);
- ``retries``: what happens after a failed send.
"""

from __future__ import annotations

from orderflow.notify.domain.coalescing import (
    Dispatch,
    DispatchWaits,
    Fold,
    Keyed,
    carriers,
    coalesce_key,
    coalesced_detail,
    dispatch_due_at,
    dispatch_waits,
    folded_record_detail,
    folds,
    merge_shipments,
)
from orderflow.notify.domain.occurrences import (
    OCCURRENCES,
    CustomerFacing,
    Occurrence,
    RunNeeds,
    Tracking,
    occurrence,
    reason_codes,
    run_needs,
    saves_order,
    tracking_url,
)
from orderflow.notify.domain.plans import (
    CHANNELS,
    KINDS,
    LANGUAGES,
    NON_ESSENTIAL,
    PAYMENT_HOLDS,
    Channel,
    Contact,
    CustomerProfile,
    HeldNotice,
    Kind,
    Language,
    Planned,
    Preferences,
    held_notice,
    merge_contact,
    normalise_channel,
    normalise_language,
    plan_notifications,
    rejected_suppression,
)
from orderflow.notify.domain.retries import GiveUp, RetryLater, after_failure
from orderflow.notify.domain.runs import (
    Decided,
    RunSettings,
    RunWaits,
    decide_run,
    message_context,
    run_waits,
    waiting_pairs,
)
from orderflow.notify.domain.state import OrderRecord, RunState, bare_facts, order_facts

__all__ = [
    "CHANNELS",
    "KINDS",
    "LANGUAGES",
    "NON_ESSENTIAL",
    "OCCURRENCES",
    "PAYMENT_HOLDS",
    "Channel",
    "Contact",
    "CustomerFacing",
    "CustomerProfile",
    "Decided",
    "Dispatch",
    "DispatchWaits",
    "Fold",
    "GiveUp",
    "HeldNotice",
    "Keyed",
    "Kind",
    "Language",
    "Occurrence",
    "OrderRecord",
    "Planned",
    "Preferences",
    "RetryLater",
    "RunNeeds",
    "RunSettings",
    "RunState",
    "RunWaits",
    "Tracking",
    "after_failure",
    "bare_facts",
    "carriers",
    "coalesce_key",
    "coalesced_detail",
    "decide_run",
    "dispatch_due_at",
    "dispatch_waits",
    "folded_record_detail",
    "folds",
    "held_notice",
    "merge_contact",
    "merge_shipments",
    "message_context",
    "normalise_channel",
    "normalise_language",
    "occurrence",
    "order_facts",
    "plan_notifications",
    "reason_codes",
    "rejected_suppression",
    "run_needs",
    "run_waits",
    "saves_order",
    "tracking_url",
    "waiting_pairs",
]
