"""The channel drivers against real local receivers (an SMTP server, an HTTP server): no broker,
no database."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from orderflow.notify.channels import DeliveryFailed, OutgoingNotification
from orderflow.notify.channels.email import RecordingEmailDriver, SmtpEmailDriver, message_id
from orderflow.notify.channels.sms import LoggingSmsProvider, SmsDriver
from orderflow.notify.channels.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDriver,
    sign,
    verify,
)
from orderflow.notify.settings import NotifySettings
from orderflow.notify.templates import RenderedMessage

if TYPE_CHECKING:
    from orderflow.testing.sinks import HttpReceiver, SmtpSink

pytestmark = pytest.mark.unit

SECRET = b"s3cret"


def notification(recipient: str, *, channel: str = "email") -> OutgoingNotification:
    return OutgoingNotification(
        notification_id="7a0e8c4e-1111-4222-8333-944455556666", order_id="order-1",
        kind="shipment_dispatched", source_event_id="e1", source_event_type="ShipmentDispatched",
        channel=channel, recipient=recipient, language="zh-CN",  # type: ignore[arg-type]
        message=RenderedMessage("您的订单 SO-1 已发货", "尊敬的王芳：\n\n运单号：SF1\n", "【X】已发货"),
        context={"order": {"external_id": "SO-1"},
                 "event": {"shipments": [{"tracking_number": "SF1"}], "shipment_count": 1}})


def test_signatures_cover_the_timestamp_and_the_body() -> None:
    signature = sign(SECRET, "1700000000", b'{"a":1}')
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, "1700000000", b'{"a":1}', signature, now=1700000010)
    assert not verify(SECRET, "1700000001", b'{"a":1}', signature, now=1700000010)
    assert not verify(SECRET, "1700000000", b'{"a":2}', signature, now=1700000010)
    assert not verify(b"other", "1700000000", b'{"a":1}', signature, now=1700000010)
    assert not verify(SECRET, "1700000000", b'{"a":1}', signature, now=1700009999)  # too old


async def test_smtp_driver_sends_a_utf8_message_with_a_stable_message_id(smtp_sink: SmtpSink) -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp_sink.port,
                              smtp_from="Shop <shop@example.com>")
    delivered = await SmtpEmailDriver(settings).deliver(notification("wang@example.com"))
    assert delivered.status == "sent"
    [received] = smtp_sink.to("wang@example.com")
    assert received.subject == "您的订单 SO-1 已发货"
    assert "运单号：SF1" in received.text
    assert received.message["Message-ID"] == message_id("7a0e8c4e-1111-4222-8333-944455556666")
    assert received.message["X-OrderFlow-Order"] == "order-1"


async def test_a_refused_address_is_a_permanent_failure(smtp_sink: SmtpSink) -> None:
    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=smtp_sink.port)
    with pytest.raises(DeliveryFailed) as failed:
        await SmtpEmailDriver(settings).deliver(notification("refuse@example.com"))
    assert failed.value.permanent


async def test_an_unreachable_smtp_server_is_a_transient_failure() -> None:
    from orderflow.devstack.processes import free_port

    settings = NotifySettings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout_s=2)
    with pytest.raises(DeliveryFailed) as failed:
        await SmtpEmailDriver(settings).deliver(notification("wang@example.com"))
    assert not failed.value.permanent


async def test_without_smtp_host_emails_are_recorded() -> None:
    delivered = await RecordingEmailDriver().deliver(notification("wang@example.com"))
    assert delivered.status == "recorded"


async def test_webhook_posts_signed_json(http_receiver: HttpReceiver) -> None:
    driver = WebhookDriver({"shopify": http_receiver.url("/ok/unit")}, lambda _c: SECRET, timeout_s=2)
    try:
        delivered = await driver.deliver(notification("shopify", channel="webhook"))
    finally:
        await driver.close()
    assert delivered.status == "sent"
    [request] = http_receiver.to("/ok/unit")
    assert verify(SECRET, request.headers[TIMESTAMP_HEADER.lower()], request.body,
                  request.headers[SIGNATURE_HEADER.lower()])
    assert request.headers[DELIVERY_HEADER.lower()] == "7a0e8c4e-1111-4222-8333-944455556666"
    body = json.loads(request.body)
    assert body["status"] == "dispatched" and body["external_id"] == "SO-1"
    assert body["facts"]["shipments"][0]["tracking_number"] == "SF1"
    assert body["message"]["subject"] == "您的订单 SO-1 已发货"


@pytest.mark.parametrize(("path", "permanent"), [("/fail/unit", False), ("/hang/unit", False)])
async def test_webhook_errors_and_timeouts_are_retried(http_receiver: HttpReceiver, path: str,
                                                       permanent: bool) -> None:
    driver = WebhookDriver({"shop": http_receiver.url(path)}, lambda _c: SECRET, timeout_s=0.5)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await driver.deliver(notification("shop", channel="webhook"))
    finally:
        await driver.close()
    assert failed.value.permanent is permanent


async def test_a_registered_url_is_posted_to_before_the_configured_one(
        http_receiver: HttpReceiver) -> None:
    registered = {"shopify": http_receiver.url("/ok/registered")}

    async def registered_url(channel: str) -> str | None:
        return registered.get(channel)

    driver = WebhookDriver({"shopify": http_receiver.url("/ok/configured")}, lambda _c: SECRET,
                           timeout_s=2, registered=registered_url)
    try:
        await driver.deliver(notification("shopify", channel="webhook"))
        del registered["shopify"]  # removed: the configured URL serves again
        await driver.deliver(notification("shopify", channel="webhook"))
    finally:
        await driver.close()
    [first] = http_receiver.to("/ok/registered")
    assert verify(SECRET, first.headers[TIMESTAMP_HEADER.lower()], first.body,
                  first.headers[SIGNATURE_HEADER.lower()])
    assert len(http_receiver.to("/ok/configured")) == 1


async def test_a_channel_without_a_url_is_a_permanent_failure() -> None:
    driver = WebhookDriver({}, lambda _c: SECRET, timeout_s=1)
    with pytest.raises(DeliveryFailed) as failed:
        await driver.deliver(notification("douyin", channel="webhook"))
    await driver.close()
    assert failed.value.permanent


async def test_sms_logging_driver_records_the_short_text() -> None:
    delivered = await SmsDriver(LoggingSmsProvider()).deliver(notification("13800001234", channel="sms"))
    assert delivered.status == "recorded" and "logging" in delivered.detail


def test_webhook_urls_need_a_signing_key() -> None:
    with pytest.raises(ValidationError, match="ORDERFLOW_NOTIFY_WEBHOOK_SECRET"):
        NotifySettings(webhook_urls={"shopify": "http://x"})
    with pytest.raises(ValidationError, match="not an http"):
        NotifySettings(webhook_urls={"shopify": "ftp://x"}, webhook_secret="k")  # type: ignore[arg-type]
    ok = NotifySettings(webhook_urls={"shopify": "http://x"},
                        webhook_secrets={"shopify": "k"})  # type: ignore[dict-item]
    assert ok.secret_for("shopify") == b"k"


def test_settings_read_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_NOTIFY_WEBHOOK_URLS", '{"shopify": "https://shop.example/hook"}')
    monkeypatch.setenv("ORDERFLOW_NOTIFY_WEBHOOK_SECRET", "k")
    monkeypatch.setenv("ORDERFLOW_NOTIFY_TIMEZONE", "Nowhere/Else")
    with pytest.raises(ValidationError, match="ORDERFLOW_NOTIFY_TIMEZONE"):
        NotifySettings()
    monkeypatch.delenv("ORDERFLOW_NOTIFY_TIMEZONE")
    assert NotifySettings().webhook_urls == {"shopify": "https://shop.example/hook"}
