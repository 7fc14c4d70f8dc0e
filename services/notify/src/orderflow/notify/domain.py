"""Notify's rules: who is told what, on which channel, when, and what happens when a send fails.

Pure functions and values only: no I/O, no framework. The handlers feed them what the tables
know; the sender asks them what to do after a failed attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

Kind = Literal[
    "order_received",
    "order_rejected",
    "order_held",
    "order_approved",
    "stock_backordered",
    "shipment_dispatched",
    "shipment_delayed",
    "shipment_delivered",
    "shipment_exception",
    "order_cancelled",
    "order_cancel_refused",
    "return_approved",
    "return_refused",
    "refund_issued",
    "order_changed",
    "order_change_rejected",
]
KINDS: tuple[Kind, ...] = (
    "order_received", "order_rejected", "order_held", "order_approved", "stock_backordered",
    "shipment_dispatched", "shipment_delayed", "shipment_delivered", "shipment_exception",
    "order_cancelled", "order_cancel_refused", "return_approved", "return_refused", "refund_issued",
    "order_changed", "order_change_rejected",
)
Channel = Literal["email", "sms", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "sms", "webhook")
Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

# Messages a customer may opt out of (``opt_out_marketing``): progress notes that change nothing
# for them. Everything that asks something of them or changes what they receive, or when, is
# essential and always sent.
NON_ESSENTIAL: frozenset[Kind] = frozenset({"order_approved", "shipment_delivered"})

# Hold reasons a customer is told about in so many words; every other hold is internal (credit,
# overdue receivables, a manager's approval, prices, promotions, dates) and gets a neutral
# "being reviewed" notice, once per order.
PAYMENT_HOLDS: frozenset[str] = frozenset({"prepayment_due"})
# Hold reasons the customer is not told about at all: a second approval inside the company (the
# customer heard of the order's first hold already).
UNTOLD_HOLDS: frozenset[str] = frozenset({"director_approval"})
# Rejection reasons the customer is not told about: an order sent back to whoever entered it for
# rework (its next revision is reviewed again; the customer hears of that decision).
UNTOLD_REJECTIONS: frozenset[str] = frozenset({"rework"})


@dataclass(frozen=True)
class Contact:
    """Who to write to about one order (from the order itself, else the customer master)."""

    name: str = ""
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Preferences:
    channel: Channel = "email"
    language: Language = "zh-CN"
    opt_out_marketing: bool = False


@dataclass(frozen=True)
class Planned:
    """One notification the handler stages: pending for the sender, or suppressed with why."""

    channel: Channel
    recipient: str
    status: Literal["pending", "suppressed"]
    detail: str = ""

    @property
    def finished(self) -> bool:
        """A suppressed notification is done as it is recorded; a pending one when sent."""
        return self.status == "suppressed"


def normalise_language(value: str | None, default: Language = "zh-CN") -> Language:
    """``zh``, ``zh-CN``, ``zh_Hans`` become ``zh-CN``; ``en``, ``en-GB`` become ``en``."""
    text = (value or "").strip().lower().replace("_", "-")
    if text.startswith("zh"):
        return "zh-CN"
    if text.startswith("en"):
        return "en"
    return default


def normalise_channel(value: str | None) -> Channel:
    text = (value or "").strip().lower()
    if text in {"sms", "text"}:
        return "sms"
    if text == "webhook":
        return "webhook"
    return "email"


def merge_contact(order: Contact | None, master: Contact | None) -> Contact | None:
    """The order's own contact wins; gaps are filled from the customer master."""
    if order is None:
        return master
    if master is None:
        return order
    return Contact(name=order.name or master.name, email=order.email or master.email,
                   phone=order.phone or master.phone)


@dataclass(frozen=True)
class HeldNotice:
    """What a customer hears about a hold: a payment request, a neutral notice, or nothing."""

    notice: Literal["payment_due", "under_review"]
    suppress: str | None = None


def held_notice(hold_codes: Iterable[str], *, review_notice_already_sent: bool) -> HeldNotice:
    """A prepayment hold asks the customer to pay (with the amount). Internal holds (credit,
    overdue, approval, price, promotion, date, blocked) are never explained to the customer: they
    get one neutral "your order is being reviewed" notice per order; later internal holds of the
    same order are suppressed so a re-held order does not send the same notice again. A hold for
    a director's approval alone (``UNTOLD_HOLDS``) is never told."""
    codes = set(hold_codes)
    if codes & PAYMENT_HOLDS:
        return HeldNotice("payment_due")
    if codes and codes <= UNTOLD_HOLDS:
        return HeldNotice("under_review",
                          suppress="a second approval inside the company: the customer is not "
                                   "told again")
    if review_notice_already_sent:
        return HeldNotice("under_review",
                          suppress="the customer was already told this order is being reviewed")
    return HeldNotice("under_review")


def rejected_suppression(reason_codes: Iterable[str]) -> str | None:
    """Why the customer is not told of a rejection (an order sent back for rework), or None."""
    codes = set(reason_codes)
    if codes and codes <= UNTOLD_REJECTIONS:
        return "sent back for rework to whoever entered it: the customer hears of its next review"
    return None


def plan_notifications(
    kind: Kind,
    *,
    contact: Contact | None,
    preferences: Preferences,
    sales_channel: str | None,
    webhook_channels: Iterable[str],
    suppress: str | None = None,
) -> list[Planned]:
    """The notifications one customer-facing event causes.

    - The order's sales channel (a marketplace or shop) gets a signed webhook for every
      customer-facing event when a URL is configured for it: it is how the channel learns the
      status and tells the buyer itself. Opt-outs do not apply to it (system to system).
    - The customer gets one message on their preferred channel. ``webhook`` as preference means
      "let my channel tell me": the channel's webhook is the message. When the preferred channel
      cannot be used (no address, no phone, no webhook URL) the next one that can is used:
      e-mail, then SMS. With none, the message is suppressed and says why.
    - Non-essential messages (approved, delivered) are suppressed for customers who opted out;
      a ``suppress`` reason (e.g. a repeated review notice) suppresses the customer message.
    """
    plans: list[Planned] = []
    has_webhook = sales_channel is not None and sales_channel in set(webhook_channels)
    if has_webhook:
        assert sales_channel is not None
        plans.append(Planned("webhook", sales_channel, "pending"))

    preferred = preferences.channel
    if preferred == "webhook" and has_webhook:
        return plans  # the channel's webhook is the customer's message

    if contact is None:
        plans.append(Planned(_first_channel(preferred), "", "suppressed",
                             "no contact is known for this order (its order.received was not seen)"))
        return plans
    if suppress is not None:
        plans.append(Planned(_first_channel(preferred), "", "suppressed", suppress))
        return plans
    if kind in NON_ESSENTIAL and preferences.opt_out_marketing:
        plans.append(Planned(_first_channel(preferred), "", "suppressed",
                             "the customer opted out of non-essential messages"))
        return plans

    order: list[Channel] = [preferred] if preferred != "webhook" else []
    order += [c for c in ("email", "sms") if c not in order]
    for channel in order:
        recipient = contact.email if channel == "email" else contact.phone
        if recipient:
            detail = "" if channel == preferred else f"preferred channel {preferred} not usable; " \
                                                     f"sent by {channel}"
            plans.append(Planned(channel, recipient, "pending", detail))
            return plans
    plans.append(Planned(_first_channel(preferred), "", "suppressed",
                         "no e-mail address or phone number is known for this order"))
    return plans


def _first_channel(preferred: Channel) -> Channel:
    # a suppressed customer message is recorded on the channel it would have used; a webhook
    # preference without a usable webhook is recorded on e-mail (the unique key stays free)
    return "email" if preferred == "webhook" else preferred


# --- rate and noise -----------------------------------------------------------------------------


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


# --- retries ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryLater:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


def after_failure(attempts: int, *, max_attempts: int, permanent: bool, error: str,
                  initial_s: float, maximum_s: float) -> RetryLater | GiveUp:
    """Exponential backoff (initial, 2x, 4x, ... capped) until ``max_attempts``; a permanent
    failure (a refused address, a 4xx from a webhook) is not retried."""
    if permanent:
        return GiveUp(f"permanent failure after {attempts} attempt(s): {error}")
    if attempts >= max_attempts:
        return GiveUp(f"gave up after {attempts} attempts: {error}")
    return RetryLater(min(initial_s * (2 ** max(attempts - 1, 0)), maximum_s))


def tracking_url(carrier: str, tracking_number: str, *, default_template: str,
                 per_carrier: Mapping[str, str]) -> str:
    """The link a customer follows to track a shipment."""
    template = per_carrier.get(carrier) or per_carrier.get(carrier.upper()) or default_template
    return template.format(carrier=carrier, tracking_number=tracking_number)
