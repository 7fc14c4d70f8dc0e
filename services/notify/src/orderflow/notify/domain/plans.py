"""Who is told what, on which channel: the kinds of message, contacts, preferences and the plan
of one customer-facing event's notifications."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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
class CustomerProfile:
    """What the customer master says of a customer: how they like to be told, and where."""

    preferences: Preferences
    contact: Contact


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
