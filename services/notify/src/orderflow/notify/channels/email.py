"""E-mail over SMTP (aiosmtplib), or only recorded when no SMTP host is configured."""

from __future__ import annotations

import asyncio
import contextlib
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import structlog

from orderflow.notify.channels import Delivered, DeliveryFailed, OutgoingNotification
from orderflow.notify.domain import Channel
from orderflow.notify.settings import NotifySettings
from orderflow.runtime.logging import mask_email

log = structlog.get_logger(__name__)


def message_id(notification_id: str) -> str:
    """The same notification always has the same Message-ID, so a mail system can drop a
    duplicate of it (the one case notify cannot rule out: a crash after the SMTP server
    accepted it and before it was marked sent)."""
    return f"<{notification_id}@notify.orderflow>"


def build_email(n: OutgoingNotification, *, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = n.recipient
    msg["Subject"] = n.message.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(n.notification_id)
    msg["Content-Language"] = n.language
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-OrderFlow-Order"] = n.order_id
    msg["X-OrderFlow-Event"] = n.source_event_type
    msg["X-OrderFlow-Notification"] = n.notification_id
    msg.set_content(n.message.text, charset="utf-8")
    return msg


class SmtpEmailDriver:
    channel: Channel = "email"
    records_only = False

    def __init__(self, settings: NotifySettings) -> None:
        assert settings.smtp_host
        self.settings = settings
        self.host = settings.smtp_host

    async def deliver(self, n: OutgoingNotification) -> Delivered:
        s = self.settings
        client = aiosmtplib.SMTP(hostname=self.host, port=s.smtp_port, timeout=s.smtp_timeout_s,
                                 use_tls=s.smtp_tls == "tls", start_tls=s.smtp_tls == "starttls")
        try:
            await client.connect()
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                await client.login(s.smtp_username, password)
            _refused, response = await client.send_message(build_email(n, sender=s.smtp_from))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(f"recipient refused: {_codes(exc)}", permanent=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            raise DeliveryFailed(f"SMTP {exc.code} {exc.message}"[:300], permanent=permanent) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc
        finally:
            await _quit(client)
        return Delivered("sent", f"accepted by {self.host}: {response}"[:300])

    async def close(self) -> None:
        return None


def _codes(exc: aiosmtplib.SMTPRecipientsRefused) -> str:
    return ", ".join(str(r.code) for r in exc.recipients) or "refused"


async def _quit(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), 2)
    except Exception:  # noqa: BLE001 - the message is already accepted or already failed
        with contextlib.suppress(Exception):
            client.close()


class RecordingEmailDriver:
    """The dev-stack default: no SMTP host, so e-mails are written to the log (subject only,
    the address masked) and recorded with status ``recorded``."""

    channel: Channel = "email"
    records_only = True

    async def deliver(self, n: OutgoingNotification) -> Delivered:
        log.info("e-mail recorded, not sent (no SMTP host configured)", order_id=n.order_id,
                 email=mask_email(n.recipient), subject=n.message.subject, language=n.language)
        return Delivered("recorded", "no SMTP host configured: e-mail recorded, not sent")

    async def close(self) -> None:
        return None
