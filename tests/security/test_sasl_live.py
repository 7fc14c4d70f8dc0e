"""Against a broker that requires authentication: every client OrderFlow builds (the services'
FastStream broker, the outbox relay producer, the connector kit, the lag reader) connects with the
right credentials, and a client with wrong credentials is refused.

The broker comes from, in this order:

1. the environment: ``ORDERFLOW_TEST_SASL_BOOTSTRAP``, ``ORDERFLOW_TEST_SASL_USERNAME``,
   ``ORDERFLOW_TEST_SASL_PASSWORD``, optionally ``ORDERFLOW_TEST_SASL_MECHANISM`` (default
   SCRAM-SHA-512), ``ORDERFLOW_TEST_SASL_PROTOCOL`` (default SASL_SSL) and
   ``ORDERFLOW_TEST_SASL_CAFILE``; the topic ``ORDERFLOW_TEST_SASL_TOPIC`` (default
   ``order.inbound``) must exist and the user may write and read it;
2. a Docker engine: Apache Kafka (KRaft) in a container with a SASL/PLAIN listener;
3. otherwise the test is skipped, saying so. The embedded Tansu broker cannot be used: its
   authentication mode could not be set up (DESIGN.md)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from orderflow.connector import OrderPusher
from orderflow.contracts.topics import ORDER_INBOUND
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.processes import free_port
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.lag import end_offsets
from orderflow.runtime.outbox import make_producer
from orderflow.runtime.retry import retry_transient
from orderflow.runtime.service import ServiceDefinition, build_broker, create_topics
from orderflow.runtime.settings import KafkaSettings, ServiceSettings
from orderflow.testing.infra import docker_available

pytestmark = pytest.mark.service

CONTAINER_USER, CONTAINER_PASSWORD = "orderflow", "orderflow-" + uuid.uuid4().hex[:12]


def _from_environment() -> tuple[KafkaSettings, str] | None:
    bootstrap = os.environ.get("ORDERFLOW_TEST_SASL_BOOTSTRAP")
    if not bootstrap:
        return None
    protocol = os.environ.get("ORDERFLOW_TEST_SASL_PROTOCOL", "SASL_SSL")
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=os.environ.get("ORDERFLOW_TEST_SASL_MECHANISM", "SCRAM-SHA-512"),  # type: ignore[arg-type]
        sasl_username=os.environ["ORDERFLOW_TEST_SASL_USERNAME"],
        sasl_password=os.environ["ORDERFLOW_TEST_SASL_PASSWORD"],  # type: ignore[arg-type]
        ssl_cafile=os.environ.get("ORDERFLOW_TEST_SASL_CAFILE"),
        allow_sasl_plaintext=protocol == "SASL_PLAINTEXT")
    return kafka, os.environ.get("ORDERFLOW_TEST_SASL_TOPIC", ORDER_INBOUND.name)


@pytest.fixture(scope="module")
def authenticated_broker() -> Iterator[tuple[KafkaSettings, str]]:
    configured = _from_environment()
    if configured is not None:
        yield configured
        return
    if not docker_available():
        pytest.skip("no broker requiring authentication: set ORDERFLOW_TEST_SASL_BOOTSTRAP (and "
                    "_USERNAME, _PASSWORD) or provide a Docker engine; the embedded Tansu broker's "
                    "authentication mode cannot be set up")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="{CONTAINER_USER}" password="{CONTAINER_PASSWORD}" '
            f'user_{CONTAINER_USER}="{CONTAINER_PASSWORD}";')
    container = (DockerContainer("apache/kafka:3.8.0").with_bind_ports(9092, port)
                 .with_env("KAFKA_NODE_ID", "1").with_env("KAFKA_PROCESS_ROLES", "broker,controller")
                 .with_env("KAFKA_LISTENERS", "SASL://0.0.0.0:9092,CONTROLLER://localhost:9093")
                 .with_env("KAFKA_ADVERTISED_LISTENERS", f"SASL://127.0.0.1:{port}")
                 .with_env("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "SASL:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT")
                 .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "SASL")
                 .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
                 .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
                 .with_env("KAFKA_SASL_ENABLED_MECHANISMS", "PLAIN")
                 .with_env("KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL", "PLAIN")
                 .with_env("KAFKA_LISTENER_NAME_SASL_PLAIN_SASL_JAAS_CONFIG", jaas)
                 .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"))
    try:
        container.start()
        wait_for_logs(container, "Kafka Server started", timeout=120)
    except Exception as exc:
        container.stop()
        pytest.skip(f"the SASL Kafka container did not start: {type(exc).__name__}: {exc}")
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="PLAIN", sasl_username=CONTAINER_USER,
                          sasl_password=CONTAINER_PASSWORD, allow_sasl_plaintext=True)  # type: ignore[arg-type]
    try:
        yield kafka, ORDER_INBOUND.name
    finally:
        container.stop()


def _wrong(kafka: KafkaSettings) -> KafkaSettings:
    return kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})


async def _nothing(*_args: object) -> None:
    return None


async def test_every_client_connects_with_the_right_credentials_and_is_refused_with_wrong_ones(
        authenticated_broker: tuple[KafkaSettings, str]) -> None:
    kafka, topic = authenticated_broker
    if os.environ.get("ORDERFLOW_TEST_SASL_BOOTSTRAP") is None:
        await retry_transient(lambda: create_topics(kafka, [(topic, 6)]), what="create topics",
                              max_attempts=20)
    eid = f"SASL-{uuid.uuid4().hex[:8]}"
    async with OrderPusher(kafka) as pusher:  # the connector kit
        pushed = await pusher.push("canonical", canonical_order(eid), external_id=eid)
    tp = TopicPartition(topic, pushed.partition)
    assert (await end_offsets(kafka, [tp]))[tp] > pushed.offset  # the lag reader
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, pushed.offset)
        got = await consumer.getmany(tp, timeout_ms=10_000)
        assert any(r.key == f"canonical:{eid}".encode() for r in got.get(tp, []))
    finally:
        await consumer.stop()
    relay = make_producer(kafka, client_id="orderflow-sasl-relay")
    await relay.start()
    await relay.send_and_wait(topic, b"{}", key=b"sasl-relay-check")
    await relay.stop()
    subscriptions = [Subscription(ORDER_INBOUND, _nothing)]
    broker = build_broker(ServiceDefinition("intake", Path("."), subscriptions), kafka,
                          ServiceSettings(), BatchProcessor(service="intake", subscriptions=subscriptions,
                                                            engine=None, max_bytes=1000))  # type: ignore[arg-type]
    await broker.connect()
    try:
        assert await broker.ping(timeout=10)
    finally:
        await broker.stop()

    wrong = _wrong(kafka)
    refused = make_producer(wrong, client_id="orderflow-wrong-credentials")
    with pytest.raises(KafkaError):
        await refused.start()
    await refused.stop()
    with pytest.raises(KafkaError):
        async with OrderPusher(wrong) as pusher:
            await pusher.push("canonical", canonical_order(f"{eid}-X"), external_id=f"{eid}-X")
