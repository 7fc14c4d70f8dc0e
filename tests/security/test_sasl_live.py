"""Against a live Apache Kafka that requires authentication (SASL_SSL, SCRAM-SHA-512, the standard
authorizer; ``tests/security/conftest.py`` starts it): every client OrderFlow builds (the
services' FastStream broker, the outbox relay producer, the connector kit, the lag reader, a
plain consumer) connects as the principal it runs as and does what that principal's ACLs allow;
a client with a wrong password is refused, and the runtime says so instead of retrying; a write
outside a principal's ACLs is refused by the broker.

Never skipped: where Kafka cannot start, the fixture fails with the reason."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from orderflow.connector import OrderPusher
from orderflow.connector.broker_auth import BrokerAuthenticationFailed, check_broker_credentials
from orderflow.contracts.topics import ORDER_APPROVED, ORDER_INBOUND
from orderflow.devstack import acls
from orderflow.devstack.catalogue import canonical_order
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.lag import end_offsets
from orderflow.runtime.outbox import make_producer
from orderflow.runtime.service import ServiceDefinition, build_broker
from orderflow.runtime.settings import KafkaSettings, ServiceSettings
from tests.security.conftest import SecuredKafka

pytestmark = pytest.mark.service

INTAKE = acls.principal_of("intake")


def _wrong(kafka: KafkaSettings) -> KafkaSettings:
    return kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})


async def _nothing(*_args: object) -> None:
    return None


async def test_every_client_connects_as_its_principal_and_is_refused_with_a_wrong_password(
        secured_kafka: SecuredKafka) -> None:
    connector, intake = secured_kafka.settings(acls.CONNECTOR), secured_kafka.settings(INTAKE)
    assert intake.security_protocol == "SASL_SSL" and intake.sasl_mechanism == "SCRAM-SHA-512"
    topic = ORDER_INBOUND.name
    eid = f"SASL-{uuid.uuid4().hex[:8]}"
    async with OrderPusher(connector) as pusher:  # the connector kit, idempotent, no cluster ACL
        pushed = await pusher.push("canonical", canonical_order(eid), external_id=eid)
    tp = TopicPartition(topic, pushed.partition)
    assert (await end_offsets(intake, [tp]))[tp] > pushed.offset  # the lag reader
    consumer = AIOKafkaConsumer(**intake.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:  # intake reads what it consumes
        consumer.assign([tp])
        consumer.seek(tp, pushed.offset)
        got = await consumer.getmany(tp, timeout_ms=10_000)
        assert any(r.key == f"canonical:{eid}".encode() for r in got.get(tp, []))
    finally:
        await consumer.stop()
    relay = make_producer(intake, client_id="orderflow-sasl-relay")
    await relay.start()
    try:  # the relay writes what intake may: the DLQ of a topic it consumes
        await relay.send_and_wait(ORDER_INBOUND.dlq, b"{}", key=b"sasl-relay-check")
    finally:
        await relay.stop()
    subscriptions = [Subscription(ORDER_INBOUND, _nothing)]
    broker = build_broker(ServiceDefinition("intake", Path("."), subscriptions), intake,
                          ServiceSettings(), BatchProcessor(service="intake", subscriptions=subscriptions,
                                                            engine=None, max_bytes=1000))  # type: ignore[arg-type]
    await broker.connect()
    try:
        assert await broker.ping(timeout=10)
    finally:
        await broker.stop()
    await check_broker_credentials(intake, client_id="orderflow-sasl-check")  # accepted

    wrong = _wrong(intake)
    with pytest.raises(BrokerAuthenticationFailed, match=f"authentication failed for user '{INTAKE}'"):
        await check_broker_credentials(wrong, client_id="orderflow-sasl-check")
    refused = make_producer(wrong, client_id="orderflow-wrong-credentials")
    with pytest.raises(KafkaError):  # aiokafka itself only says it could not bootstrap
        await refused.start()
    await refused.stop()
    with pytest.raises(BrokerAuthenticationFailed, match=acls.CONNECTOR):  # at once, no retries
        async with OrderPusher(_wrong(connector)) as pusher:
            await pusher.push("canonical", canonical_order(f"{eid}-X"), external_id=f"{eid}-X")


async def test_a_write_outside_a_principals_acls_is_refused_by_the_broker(
        secured_kafka: SecuredKafka) -> None:
    notify = secured_kafka.settings(acls.principal_of("notify"))
    assert ORDER_APPROVED.name not in {a.resource for a in acls.service_acls("notify")
                                       if a.operation == "Write"}
    producer = make_producer(notify, client_id="orderflow-notify-relay")
    await producer.start()  # idempotent: Write on its own topics is enough to start
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(ORDER_APPROVED.name, b"{}", key=b"not-mine")
        # notify consumes order.approved: the DLQ of it is its to write
        await producer.send_and_wait(ORDER_APPROVED.dlq, b"{}", key=b"mine")
    finally:
        await producer.stop()
