"""Notify as its own process, through the real broker and PostgreSQL, sending to a real SMTP
server and a real HTTP receiver started by the tests.

The module starts its own notify process on a private broker and database (no other service
reacts to the events it publishes, and the session's notify, with other settings, never sees
them) and publishes the source events itself: no other service is needed."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from orderflow.connector import OrderPusher
from orderflow.contracts.events import (
    CustomerUpdated,
    Event,
    HoldReason,
    OrderApproved,
    OrderHeld,
    OrderReceived,
    OrderRejected,
    Reason,
    ReservedLine,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    ShortLine,
    StockBackordered,
)
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder, Customer, OrderTotals, order_id_for
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.stack import subscriptions_of
from orderflow.notify.channels.webhook import verify
from orderflow.runtime.lag import wait_consumed
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.infra import Infra
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline

if TYPE_CHECKING:
    from orderflow.testing.sinks import HttpReceiver, ReceivedEmail, SmtpSink

pytestmark = pytest.mark.service

SECRET = "notify-test-secret"
MAX_ATTEMPTS = 3


@dataclass
class NotifyUnderTest:
    pipeline: Pipeline
    events: EventLog
    group: str

    async def publish(self, events: list[Event]) -> None:
        """Publish and wait until this notify committed past them (applied, not yet sent)."""
        async with OrderPusher(self.pipeline.kafka, producer_name="tests") as pusher:
            metadata = await pusher.publish(events)
        await self._wait(metadata)

    async def publish_twice(self, event: Event) -> None:
        """The same event twice, with identical headers: a redelivery."""
        key = event.key()
        headers = EventHeaders.new(event_type=event.EVENT_TYPE, schema_version=event.SCHEMA_VERSION,
                                   producer="tests", correlation_id=key).to_kafka()
        producer = AIOKafkaProducer(**self.pipeline.kafka.producer_kwargs())
        await producer.start()
        try:
            topic = TOPIC_OF_EVENT[type(event)].name
            value = event.model_dump_json().encode()
            metadata = [await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
                        for _ in range(2)]
        finally:
            await producer.stop()
        await self._wait(metadata)

    async def _wait(self, metadata: list[Any]) -> None:
        targets: dict[TopicPartition, int] = {}
        for md in metadata:
            tp = TopicPartition(md.topic, md.partition)
            targets[tp] = max(targets.get(tp, 0), md.offset + 1)
        assert set(subscriptions_of("notify")) >= {tp.topic for tp in targets}
        await wait_consumed(self.pipeline.kafka, self.group, targets, timeout=60)

    def recorded(self, order_id: str, **match: str) -> list[Any]:
        # the outbox publishes at least once: a copy after a crash has the same event_id
        unique = {e.event_id: e.event for e in self.events.of("notification.recorded", order_id) if e.event}
        found = list(unique.values())
        return [r for r in found if all(getattr(r, k) == v for k, v in match.items())]


@pytest.fixture(scope="module")
async def notify(infra: Infra, smtp_sink: SmtpSink,
                 http_receiver: HttpReceiver) -> AsyncIterator[NotifyUnderTest]:
    prefix = f"notifytest{uuid.uuid4().hex[:8]}"
    env = {
        "ORDERFLOW_CONSUMER_GROUP_PREFIX": prefix,
        "ORDERFLOW_NOTIFY_SMTP_HOST": "127.0.0.1",
        "ORDERFLOW_NOTIFY_SMTP_PORT": str(smtp_sink.port),
        "ORDERFLOW_NOTIFY_SMTP_FROM": "TeaHouse <orders@teahouse.example>",
        "ORDERFLOW_NOTIFY_SENDER_NAME": "TeaHouse",
        "ORDERFLOW_NOTIFY_WEBHOOK_URLS": json.dumps({
            "shopify": http_receiver.url("/ok/shopify"),
            "flaky": http_receiver.url("/hang/flaky"),
        }),
        "ORDERFLOW_NOTIFY_WEBHOOK_SECRET": SECRET,
        "ORDERFLOW_NOTIFY_WEBHOOK_TIMEOUT_S": "1",
        "ORDERFLOW_NOTIFY_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "ORDERFLOW_NOTIFY_RETRY_INITIAL_S": "0.5",
        "ORDERFLOW_NOTIFY_COALESCE_WINDOW_S": "2",
        "ORDERFLOW_NOTIFY_POLL_INTERVAL_S": "0.1",
        "ORDERFLOW_NOTIFY_TRACKING_URL_TEMPLATE": "https://track.example/{carrier}/{tracking_number}",
    }
    async with private_pipeline(infra, "notify", ["notify"], env, master_data=False) as (
            pipeline, events):
        yield NotifyUnderTest(pipeline, events, f"{prefix}.notify")


# --- building the source events ----------------------------------------------------------------


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


def customer_updated(customer_id: str, *, language: str, channel: str = "email",
                     opt_out: bool = False) -> CustomerUpdated:
    return CustomerUpdated(customer_id=customer_id, name=f"Customer {customer_id}",
                           email=f"{customer_id.lower()}@buyer.example", phone="13800001234",
                           language=language, credit_limit=Decimal("100000"), currency="CNY",
                           payment_terms="net30", preferred_channel=channel,
                           opt_out_marketing=opt_out)


def an_order(external_id: str, customer_id: str, *, name: str) -> CanonicalOrder:
    data = canonical_order(external_id, lines=[("TEA-001", 2)])
    data["customer"] = {"id": customer_id, "name": name,
                        "email": f"{customer_id.lower()}@buyer.example", "phone": "13800001234"}
    return CanonicalOrder.model_validate(data)


TOTALS = OrderTotals(subtotal=Decimal("200.00"), discount=Decimal("0.00"), tax=Decimal("18.00"),
                     shipping=Decimal("10.00"), grand_total=Decimal("228.00"))


def received(channel: str, order: CanonicalOrder) -> OrderReceived:
    return OrderReceived(order_id=order_id_for(channel, order.external_id), channel=channel,
                         external_id=order.external_id, order=order, totals=TOTALS)


def dispatched(order_id: str, shipment: str, tracking: str, *, count: int) -> ShipmentDispatched:
    return ShipmentDispatched(
        order_id=order_id, shipment_id=shipment, warehouse_id="WH-SH", carrier="SF", service="express",
        tracking_number=tracking, lines=(ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1),),
        weight_kg=Decimal("1.0"), dispatched_at=datetime(2026, 11, 21, 2, tzinfo=UTC),
        promised_date=date(2026, 11, 23), shipment_count=count)


def emails(sink: SmtpSink, address: str, order_ref: str) -> list[ReceivedEmail]:
    return [m for m in sink.to(address) if order_ref in m.subject]


def signed_ok(request: Any) -> bool:
    return verify(SECRET.encode(), request.headers["x-orderflow-timestamp"], request.body,
                  request.headers["x-orderflow-signature"])


# --- the tests -----------------------------------------------------------------------------------


async def test_each_event_gives_the_right_message_on_the_right_channel_in_the_right_language(
        notify: NotifyUnderTest, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> None:
    tag = new_tag()
    en, zh, sms, quiet = (f"NT{tag}EN", f"NT{tag}ZH", f"NT{tag}SMS", f"NT{tag}Q")
    await notify.publish([customer_updated(en, language="en"),
                          customer_updated(zh, language="zh-CN"),
                          customer_updated(sms, language="en", channel="sms"),
                          customer_updated(quiet, language="en", opt_out=True)])
    order_a = an_order(f"A-{tag}", en, name="Anna Smith")      # English e-mail, Shopify webhook
    order_b = an_order(f"B-{tag}", zh, name="王芳")            # Chinese e-mail
    order_c = an_order(f"C-{tag}", sms, name="Sam")             # SMS
    order_q = an_order(f"Q-{tag}", quiet, name="Quinn")         # opted out of non-essential
    a, b, c, q = (received("shopify", order_a), received("canonical", order_b),
                  received("canonical", order_c), received("canonical", order_q))
    await notify.publish([a, b, c, q])

    ship = f"SF{tag}"
    await notify.publish([
        OrderHeld(order_id=a.order_id, reasons=(HoldReason(code="credit_limit", message="over limit",
                                                           figures={"limit": "5000"}),)),
        OrderApproved(order_id=a.order_id, channel="shopify", external_id=order_a.external_id,
                      order=order_a, totals=TOTALS, approved_by="auto"),
        StockBackordered(order_id=a.order_id, expected_date=date(2026, 12, 1),
                         short_lines=(ShortLine(sku="TEA-001", ordered=2, reserved=1, short=1),)),
        dispatched(a.order_id, f"S1-{tag}", f"{ship}1", count=2),
        dispatched(a.order_id, f"S2-{tag}", f"{ship}2", count=2),
        ShipmentDelayed(order_id=a.order_id, shipment_id=f"S1-{tag}", reason="weather",
                        promised_date=date(2026, 11, 23), expected_date=date(2026, 11, 26),
                        carrier="SF", tracking_number=f"{ship}1"),
        ShipmentDelivered(order_id=a.order_id, shipment_id=f"S2-{tag}", on_time=True,
                          delivered_at=datetime(2026, 11, 23, 6, 30, tzinfo=UTC), order_delivered=False),
        ShipmentException(order_id=a.order_id, shipment_id=f"S1-{tag}", tracking_number=f"{ship}1",
                          carrier="SF", code="damaged"),
        OrderHeld(order_id=b.order_id, amount_due=Decimal("228.00"), currency="CNY",
                  reasons=(HoldReason(code="prepayment_due", message="prepaid"),)),
        OrderRejected(order_id=order_id_for("canonical", f"R-{tag}"), channel="canonical",
                      external_id=f"R-{tag}", stage="intake",
                      reasons=(Reason(code="unknown_sku", field="lines.0.sku", message="no SKU"),),
                      customer=Customer(id=zh, name="王芳", email=f"{zh.lower()}@buyer.example")),
        OrderApproved(order_id=q.order_id, channel="canonical", external_id=order_q.external_id,
                      order=order_q, totals=TOTALS, approved_by="auto"),
    ])

    # English e-mails for order A: one per event, the two dispatches in one message
    address_a = f"{en.lower()}@buyer.example"
    got = await notify.events.wait_for(lambda: len(emails(smtp_sink, address_a, order_a.external_id)) >= 8
                           and emails(smtp_sink, address_a, order_a.external_id),
                           timeout=60, what="8 e-mails for order A")
    by_subject = {m.subject: m for m in got}
    ref = order_a.external_id
    expected_subjects = {
        f"We have received your order {ref}", f"Your order {ref} is being reviewed",
        f"Your order {ref} is confirmed", f"Part of your order {ref} is on backorder",
        f"2 shipments of your order {ref} are on the way",
        f"Your order {ref} will arrive later than promised",
        f"A shipment of your order {ref} has been delivered",
        f"A problem with the delivery of your order {ref}",
    }
    assert set(by_subject) == expected_subjects
    assert "Dear Anna Smith" in by_subject[f"We have received your order {ref}"].text
    assert "Total: CNY 228.00" in by_subject[f"We have received your order {ref}"].text
    assert "credit" not in by_subject[f"Your order {ref} is being reviewed"].text.lower()
    assert "1 Dec 2026" in by_subject[f"Part of your order {ref} is on backorder"].text
    shipped = by_subject[f"2 shipments of your order {ref} are on the way"].text
    assert f"{ship}1" in shipped and f"{ship}2" in shipped
    assert f"https://track.example/SF/{ship}1" in shipped
    assert "26 Nov 2026" in by_subject[f"Your order {ref} will arrive later than promised"].text
    assert f"{ship}1" in by_subject[f"Your order {ref} will arrive later than promised"].text
    assert "damaged" in by_subject[f"A problem with the delivery of your order {ref}"].text

    # Shopify heard of every step of order A, signed, the dispatches in one call
    def hooks() -> list[Any]:
        return [r for r in http_receiver.to("/ok/shopify") if json.loads(r.body)["order_id"] == a.order_id]
    calls = await notify.events.wait_for(lambda: len(hooks()) >= 8 and hooks(), timeout=30, what="8 webhooks")
    assert all(signed_ok(r) for r in calls)
    statuses = sorted(json.loads(r.body)["status"] for r in calls)
    assert statuses == sorted(["received", "under_review", "approved", "backordered", "dispatched",
                               "delayed", "delivered", "delivery_exception"])
    [hook] = [json.loads(r.body) for r in calls if json.loads(r.body)["status"] == "dispatched"]
    assert {s["tracking_number"] for s in hook["facts"]["shipments"]} == {f"{ship}1", f"{ship}2"}
    assert hook["language"] == "en" and hook["external_id"] == ref

    # Chinese e-mails for the zh customer: received, payment due with the amount, rejected
    address_b = f"{zh.lower()}@buyer.example"
    zh_mail = await notify.events.wait_for(
        lambda: len(smtp_sink.to(address_b)) >= 3 and smtp_sink.to(address_b),
        timeout=30, what="3 Chinese e-mails")
    zh_subjects = {m.subject: m for m in zh_mail}
    assert f"我们已收到您的订单 {order_b.external_id}" in zh_subjects
    assert "¥228.00" in zh_subjects[f"您的订单 {order_b.external_id} 待付款"].text
    rejected = zh_subjects[f"很抱歉，您的订单 R-{tag} 未能受理"].text
    assert "第1行：有商品不在我们的商品目录中" in rejected

    # the SMS customer got an SMS (the logging provider records it), no e-mail
    sms_record = await notify.events.wait_for(
        lambda: notify.recorded(c.order_id, channel="sms"), timeout=30, what="the SMS record")
    assert sms_record[0].status == "recorded"
    assert smtp_sink.to(f"{sms.lower()}@buyer.example") == []

    # the opted-out customer got the order confirmation suppressed, with the reason, on the topic
    suppressed = await notify.events.wait_for(
        lambda: notify.recorded(q.order_id, source_event_type="OrderApproved"), timeout=30,
        what="the opted-out record")
    assert suppressed[0].status == "suppressed" and "opted out" in suppressed[0].detail
    assert [m.subject for m in smtp_sink.to(f"{quiet.lower()}@buyer.example")] == [
        f"We have received your order {order_q.external_id}"]

    # every notification of order A was published: 8 e-mails, 8 webhooks, 2 coalesced records
    records = await notify.events.wait_for(
        lambda: len(notify.recorded(a.order_id)) >= 18 and notify.recorded(a.order_id), timeout=30,
        what="the records of order A")
    assert sorted((r.channel, r.status) for r in records) == sorted(
        [("email", "sent")] * 8 + [("webhook", "sent")] * 8
        + [("email", "suppressed"), ("webhook", "suppressed")])


async def test_a_redelivered_event_or_a_restart_sends_nothing_twice(
        notify: NotifyUnderTest, smtp_sink: SmtpSink) -> None:
    tag = new_tag()
    customer = f"NT{tag}R"
    address = f"{customer.lower()}@buyer.example"
    await notify.publish([customer_updated(customer, language="en")])
    order = an_order(f"D-{tag}", customer, name="Dana")
    event = received("canonical", order)
    ref = order.external_id

    await notify.publish_twice(event)
    await notify.events.wait_for(lambda: notify.recorded(event.order_id, status="sent"),
                                 timeout=30, what="the confirmation to be sent")
    # a later event of the same order proves the duplicate was handled, not still pending
    await notify.publish([OrderApproved(order_id=event.order_id, channel="canonical", external_id=ref,
                                        order=order, totals=TOTALS, approved_by="auto")])
    await notify.events.wait_for(lambda: emails(smtp_sink, address, f"order {ref} is confirmed"), timeout=30,
                     what="the approval e-mail")
    # its mark committed: a sender killed between a send and its mark sends again (at least
    # once, decision 0015), which is not what this test is about
    await notify.events.wait_for(
        lambda: [r for r in notify.recorded(event.order_id, status="sent")
                 if r.source_event_type == "OrderApproved"],
        timeout=30, what="the approval marked sent")

    # killed at once, restarted: what was sent is not sent again; what came meanwhile is sent once
    notify.pipeline.kill("notify")
    async with OrderPusher(notify.pipeline.kafka, producer_name="tests") as pusher:
        await pusher.publish([dispatched(event.order_id, f"S-{tag}", f"SF{tag}", count=1)])
    notify.pipeline.restart("notify")
    await notify.events.wait_for(
        lambda: emails(smtp_sink, address, f"Your order {ref} is on its way"), timeout=60,
        what="the dispatch e-mail after the restart")
    await notify.publish([ShipmentDelivered(order_id=event.order_id, shipment_id=f"S-{tag}", on_time=True,
                                            delivered_at=datetime.now(UTC), order_delivered=True)])
    await notify.events.wait_for(
        lambda: emails(smtp_sink, address, f"Your order {ref} has been delivered"),
        timeout=30, what="the delivery e-mail")
    expected_kinds = ["OrderApproved", "OrderReceived", "ShipmentDelivered", "ShipmentDispatched"]
    # the records are published by each send's own transaction (the approval's maybe only after
    # the restart): wait for all of them, then check there is nothing more
    await notify.events.wait_for(
        lambda: {r.source_event_type for r in notify.recorded(event.order_id)} >= set(expected_kinds),
        timeout=30, what="every record")

    subjects = sorted(m.subject for m in smtp_sink.to(address))
    assert subjects == sorted([f"We have received your order {ref}", f"Your order {ref} is confirmed",
                               f"Your order {ref} is on its way", f"Your order {ref} has been delivered"])
    kinds = sorted(r.source_event_type for r in notify.recorded(event.order_id))
    assert kinds == expected_kinds


async def test_a_failing_webhook_retries_then_lands_in_the_dlq_while_email_continues(
        notify: NotifyUnderTest, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> None:
    tag = new_tag()
    customer = f"NT{tag}F"
    address = f"{customer.lower()}@buyer.example"
    await notify.publish([customer_updated(customer, language="zh-CN")])
    flaky = received("flaky", an_order(f"F-{tag}", customer, name="赵六"))
    fine = received("canonical", an_order(f"G-{tag}", customer, name="赵六"))
    await notify.publish([flaky, fine])

    def dead() -> list[SeenEvent]:
        return notify.events.of("order.received.dlq", flaky.order_id)

    # e-mail for both orders goes out while the flaky channel's webhook is still being retried
    await notify.events.wait_for(lambda: len(smtp_sink.to(address)) >= 2, timeout=30, what="both e-mails")
    assert not dead(), "the e-mails waited for the failing webhook"
    assert {m.subject for m in smtp_sink.to(address)} == {
        f"我们已收到您的订单 {flaky.external_id}", f"我们已收到您的订单 {fine.external_id}"}

    [dlq] = await notify.events.wait_for(dead, timeout=60, what="the DLQ message")
    assert dlq.headers["dlq_reason"] == "notification_failed"
    assert dlq.headers["dlq_service"] == "notify"
    assert "webhook" in dlq.headers["dlq_error"] and f"{MAX_ATTEMPTS} attempts" in dlq.headers["dlq_error"]
    assert json.loads(dlq.value)["order_id"] == flaky.order_id

    attempts = [r for r in http_receiver.to("/hang/flaky")
                if json.loads(r.body)["order_id"] == flaky.order_id]
    assert len(attempts) == MAX_ATTEMPTS
    assert len({r.headers["x-orderflow-delivery"] for r in attempts}) == 1  # one delivery, retried
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps[1] > gaps[0]  # backoff grows
    failed = await notify.events.wait_for(
        lambda: notify.recorded(flaky.order_id, channel="webhook", status="failed"), timeout=30,
        what="the failed record")
    assert "gave up after 3 attempts" in failed[0].detail
