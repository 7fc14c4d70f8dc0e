"""Whether notify uses an outcome webhook a channel registered through intake
(``domain.webhooks.registration``): no broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orderflow.contracts.events import ChannelWebhookSet
from orderflow.notify.domain.webhooks import Registration, registration

pytestmark = pytest.mark.unit


def event(url: str | None) -> ChannelWebhookSet:
    return ChannelWebhookSet(channel="desk", url=url, set_by="desk", set_at=datetime.now(UTC))


def test_a_registration_with_a_secret_is_used() -> None:
    assert registration(event("https://hooks.example.com/x"), has_secret=True) == \
        Registration("desk", "https://hooks.example.com/x", True, "")


def test_a_registration_without_a_secret_is_recorded_with_the_reason_and_not_used() -> None:
    kept = registration(event("https://hooks.example.com/x"), has_secret=False)
    assert kept is not None and not kept.usable
    assert "no signing secret for channel desk" in kept.reason
    assert "ORDERFLOW_NOTIFY_WEBHOOK_SECRETS" in kept.reason


def test_a_url_that_is_not_http_is_not_used_and_a_removal_leaves_nothing() -> None:
    kept = registration(event("ftp://hooks.example.com/x"), has_secret=True)
    assert kept is not None and not kept.usable and kept.reason == "not an http(s) URL"
    assert registration(event(None), has_secret=True) is None
