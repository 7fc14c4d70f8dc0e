"""The outcome webhooks channels register through intake (``channel.webhook-set``): whether
notify can use one. Notify signs every webhook with the secret it is configured with for the
channel; the event carries none."""

from __future__ import annotations

from dataclasses import dataclass

from orderflow.contracts.events import ChannelWebhookSet


@dataclass(frozen=True)
class Registration:
    """A channel's registered webhook as notify keeps it: used, or recorded with the reason it
    is not."""

    channel: str
    url: str
    usable: bool
    reason: str


def registration(event: ChannelWebhookSet, has_secret: bool) -> Registration | None:
    """What a registration event leaves: None for a removal; a registration notify uses when it
    has a signing secret for the channel and the URL is http(s), else one recorded with why."""
    if event.url is None:
        return None
    if not event.url.startswith(("https://", "http://")):
        return Registration(event.channel, event.url, False, "not an http(s) URL")
    if not has_secret:
        return Registration(
            event.channel, event.url, False,
            f"no signing secret for channel {event.channel} in notify's configuration "
            "(ORDERFLOW_NOTIFY_WEBHOOK_SECRETS or ORDERFLOW_NOTIFY_WEBHOOK_SECRET): nothing is "
            "posted unsigned")
    return Registration(event.channel, event.url, True, "")
