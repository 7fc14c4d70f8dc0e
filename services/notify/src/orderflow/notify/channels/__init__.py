"""The ways a notification leaves OrderFlow: e-mail (SMTP), a signed webhook to the order's sales
channel, and SMS through a provider. Each driver delivers one rendered notification and says
how it went; it never touches the database (the sender marks the outcome)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from orderflow.notify.domain import Channel, Kind, Language
from orderflow.notify.templates import RenderedMessage


@dataclass(frozen=True)
class OutgoingNotification:
    notification_id: str  # stable across retries: the e-mail Message-ID and the webhook delivery id
    order_id: str
    kind: Kind
    source_event_id: str
    source_event_type: str
    channel: Channel
    recipient: str  # an e-mail address, a phone number, or the sales channel's name
    language: Language
    message: RenderedMessage
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivered:
    status: Literal["sent", "recorded"]
    detail: str = ""


class DeliveryFailed(Exception):
    """A send that did not happen. ``permanent`` ones (a refused address, a 4xx) are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ChannelDriver(Protocol):
    channel: Channel
    # True when a delivery only records the message (no SMTP host, the logging SMS provider):
    # it finishes at once, so the sender keeps ``record_only_concurrency`` of them in flight
    records_only: bool

    async def deliver(self, notification: OutgoingNotification) -> Delivered: ...

    async def close(self) -> None: ...
