"""SMS through a provider. Only the logging driver ships: it records the text (the phone masked)
with status ``recorded``. A real provider implements ``SmsProvider``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from orderflow.notify.channels import Delivered, DeliveryFailed, OutgoingNotification
from orderflow.notify.domain import Channel

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SmsReceipt:
    status: Literal["sent", "recorded"]
    provider_reference: str


class SmsProvider(Protocol):
    name: str
    records_only: bool  # True: nothing leaves the process (see ``ChannelDriver.records_only``)

    async def send(self, phone: str, text: str, *, reference: str) -> SmsReceipt:
        """Send ``text`` to ``phone``; ``reference`` is stable across retries (deduplication).
        Raise ``DeliveryFailed`` (``permanent=True`` for a number that can never receive)."""
        ...


def masked_phone(phone: str) -> str:
    digits = phone.strip()
    return "***" + digits[-4:] if len(digits) > 4 else "***"


class LoggingSmsProvider:
    name = "logging"
    records_only = True

    async def send(self, phone: str, text: str, *, reference: str) -> SmsReceipt:
        log.info("SMS recorded, not sent (logging provider)", phone=masked_phone(phone), text=text,
                 reference=reference)
        return SmsReceipt("recorded", f"logging:{reference}")


class SmsDriver:
    channel: Channel = "sms"

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider
        self.records_only = provider.records_only

    async def deliver(self, n: OutgoingNotification) -> Delivered:
        if not n.recipient.strip():
            raise DeliveryFailed("no phone number", permanent=True)
        receipt = await self.provider.send(n.recipient, n.message.sms, reference=n.notification_id)
        verb = "sent by" if receipt.status == "sent" else "recorded by"
        return Delivered(receipt.status, f"SMS {verb} {self.provider.name}: {receipt.provider_reference}")

    async def close(self) -> None:
        return None
