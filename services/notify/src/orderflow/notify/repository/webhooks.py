"""The outcome webhooks channels registered (``channel.webhook-set``): written by its handler,
read by a run's planning (which channels have one in use) and by the webhook sender (where to
post)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orderflow.notify.domain.webhooks import Registration
from orderflow.notify.repository.tables import Rows
from orderflow.runtime.sqlalchemy_bridge import Statement

_SET = Statement(
    "INSERT INTO notify_channel_webhooks (channel, url, usable, reason, set_by, set_at) "
    "VALUES (:channel, :url, :usable, :reason, :set_by, :set_at) "
    "ON CONFLICT (channel) DO UPDATE SET url = excluded.url, usable = excluded.usable, "
    "reason = excluded.reason, set_by = excluded.set_by, set_at = excluded.set_at, "
    "updated_at = now() WHERE notify_channel_webhooks.set_at <= excluded.set_at")
_REMOVE = Statement(
    "DELETE FROM notify_channel_webhooks WHERE channel = :channel AND set_at <= :set_at")
_USABLE_CHANNELS = Statement("SELECT channel FROM notify_channel_webhooks WHERE usable")
_URL = Statement("SELECT url FROM notify_channel_webhooks WHERE channel = :channel AND usable")


class ChannelWebhookRows(Rows):
    """The channels' registered webhooks."""

    async def set_channel_webhook(self, channel: str, registration: Registration | None,
                                  set_by: str, set_at: datetime) -> None:
        """Record a registration (None: remove the channel's), unless a later one is recorded."""
        if registration is None:
            await _REMOVE.run(self.session, {"channel": channel, "set_at": set_at})
            return
        await _SET.run(self.session, {"channel": channel, "url": registration.url,
                                      "usable": registration.usable,
                                      "reason": registration.reason, "set_by": set_by,
                                      "set_at": set_at})

    async def registered_webhook_channels(self) -> frozenset[str]:
        """The channels whose registered webhook is in use."""
        return frozenset(r[0] for r in await _USABLE_CHANNELS.fetch(self.session))


async def registered_url(engine: AsyncEngine, channel: str) -> str | None:
    """Where a channel's outcome notifications go when it registered a webhook in use."""
    conn: AsyncConnection
    async with engine.connect() as conn:
        rows = await _URL.fetch(conn, {"channel": channel})
    return str(rows[0][0]) if rows else None
