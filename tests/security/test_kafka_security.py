"""SASL and TLS settings reach every Kafka client OrderFlow builds: the services' FastStream broker,
the outbox relay's producer, the connector kit and CLI (``OrderPusher``), the lag reader, the DLQ
tools and the topic admin. Shown by building each client from the environment and inspecting
what it will connect with; SASL over plaintext is impossible unless asked for by name.

A live test against a broker that requires authentication runs when one is available (named in
the environment, see ``live_sasl_broker``); otherwise it is skipped, saying why."""

from __future__ import annotations

import json
import os
import ssl
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from orderflow.connector import OrderPusher
from orderflow.contracts.topics import ORDER_RECEIVED
from orderflow.runtime import lag
from orderflow.runtime.consumer import BatchProcessor, Subscription
from orderflow.runtime.outbox import make_producer
from orderflow.runtime.service import ServiceDefinition, build_broker
from orderflow.runtime.settings import KafkaSettings, ServiceSettings, load_settings

pytestmark = pytest.mark.unit

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture
def sasl_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """The environment a deployment sets: SASL_SSL with one mechanism, no bootstrap override."""
    mechanism: str = request.param
    for name in list(os.environ):
        if name.startswith(("ORDERFLOW_KAFKA_", "ORDERFLOW_INTAKE_KAFKA")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1.example:9093")
    monkeypatch.setenv("ORDERFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ORDERFLOW_KAFKA_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("ORDERFLOW_KAFKA_SASL_USERNAME", "orderflow")
    monkeypatch.setenv("ORDERFLOW_KAFKA_SASL_PASSWORD", SECRET)
    return mechanism


async def _nothing(*_args: Any) -> None:
    return None


def client_security(client: AIOKafkaProducer | AIOKafkaConsumer) -> dict[str, Any]:
    """What an aiokafka client will connect with (its network client's settings)."""
    c = client.client if isinstance(client, AIOKafkaProducer) else client._client
    return {"security_protocol": c._security_protocol, "sasl_mechanism": c._sasl_mechanism,
            "username": c._sasl_plain_username, "password": c._sasl_plain_password,
            "ssl_context": c._ssl_context, "bootstrap": c._bootstrap_servers}


def assert_sasl_ssl(security: dict[str, Any], mechanism: str) -> None:
    assert security["security_protocol"] == "SASL_SSL"
    assert security["sasl_mechanism"] == mechanism
    assert security["username"] == "orderflow"
    assert security["password"] == SECRET
    assert isinstance(security["ssl_context"], ssl.SSLContext)
    assert security["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert security["ssl_context"].check_hostname


@pytest.mark.parametrize("sasl_env", MECHANISMS, indirect=True)
async def test_the_services_faststream_broker_uses_sasl_over_tls(sasl_env: str) -> None:
    kafka = load_settings(KafkaSettings, "review")  # what run_service reads
    settings = load_settings(ServiceSettings, "review")
    subscriptions = [Subscription(ORDER_RECEIVED, _nothing)]
    definition = ServiceDefinition(name="review", migrations=Path("."), subscriptions=subscriptions)
    processor = BatchProcessor(service="review", subscriptions=subscriptions,
                               engine=None, max_bytes=1000)  # type: ignore[arg-type]
    broker = build_broker(definition, kafka, settings, processor)
    # FastStream hands these to every aiokafka producer and consumer it builds
    sent = broker._connection_kwargs
    assert sent["bootstrap_servers"] == ["kafka-1.example:9093"]
    assert_sasl_ssl({"security_protocol": sent["security_protocol"],
                     "sasl_mechanism": sent["sasl_mechanism"],
                     "username": sent["sasl_plain_username"], "password": sent["sasl_plain_password"],
                     "ssl_context": sent["ssl_context"]}, sasl_env)


@pytest.mark.parametrize("sasl_env", MECHANISMS, indirect=True)
async def test_the_outbox_relay_producer_uses_sasl_over_tls(sasl_env: str) -> None:
    kafka = load_settings(KafkaSettings, "inventory")
    producer = make_producer(kafka, client_id="orderflow-inventory-relay")
    assert_sasl_ssl(client_security(producer), sasl_env)


@pytest.mark.parametrize("sasl_env", MECHANISMS, indirect=True)
async def test_the_connector_kit_uses_sasl_over_tls(sasl_env: str) -> None:
    pusher = OrderPusher()  # a connector configured only by its environment
    assert_sasl_ssl(client_security(pusher._producer), sasl_env)


@pytest.mark.parametrize("sasl_env", MECHANISMS, indirect=True)
async def test_the_cli_uses_sasl_over_tls_even_with_a_dev_stack_state_file(
        sasl_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orderflow.devstack import cli

    monkeypatch.setenv("ORDERFLOW_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "stack.json").write_text(json.dumps(
        {"kafka_bootstrap_servers": "127.0.0.1:19092"}))
    kafka = cli._kafka_from_state()
    assert kafka.bootstrap_servers == "127.0.0.1:19092"
    assert_sasl_ssl(client_security(OrderPusher(kafka)._producer), sasl_env)


class _Captured(Exception):
    pass


@pytest.mark.parametrize("sasl_env", MECHANISMS, indirect=True)
async def test_the_lag_reader_dlq_tools_and_topic_admin_use_sasl_over_tls(
        sasl_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """These build their clients inside the call: record each real client as it is built, stop
    before it connects."""
    from aiokafka.admin import AIOKafkaAdminClient

    from orderflow.runtime import dlq, service

    built: list[AIOKafkaConsumer | AIOKafkaProducer] = []
    admin_kwargs: list[dict[str, Any]] = []

    class RecordingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

        async def start(self) -> None:
            raise _Captured

    class RecordingProducer(AIOKafkaProducer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

        async def start(self) -> None:
            raise _Captured

    class RecordingAdmin(AIOKafkaAdminClient):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            admin_kwargs.append(kwargs)

        async def start(self) -> None:
            raise _Captured

    monkeypatch.setattr(lag, "AIOKafkaConsumer", RecordingConsumer)
    monkeypatch.setattr(dlq, "AIOKafkaConsumer", RecordingConsumer)
    monkeypatch.setattr(dlq, "AIOKafkaProducer", RecordingProducer)
    monkeypatch.setattr(service, "AIOKafkaAdminClient", RecordingAdmin)
    monkeypatch.setattr(lag, "AIOKafkaAdminClient", RecordingAdmin)  # group state on Kafka
    kafka = KafkaSettings()
    for call in (lambda: lag.committed_offsets(kafka, "orderflow.review", []),
                 lambda: lag.end_offsets(kafka, []),
                 lambda: dlq.list_dlq(kafka, "order.received"),
                 lambda: dlq.replay_dlq(kafka, "order.received"),
                 lambda: service.create_topics(kafka, [("t", 1)])):
        with pytest.raises(_Captured):
            await call()
    assert len(built) >= 3 and len(admin_kwargs) == 2
    for client in built:
        assert_sasl_ssl(client_security(client), sasl_env)
    for kwargs in admin_kwargs:
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == sasl_env
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_sasl_without_tls_is_refused_unless_asked_for_by_name() -> None:
    with pytest.raises(ValidationError, match="ORDERFLOW_KAFKA_ALLOW_SASL_PLAINTEXT"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                      sasl_username="u", sasl_password="p")
    with pytest.raises(ValidationError, match="SASL_SSL"):  # credentials but no SASL protocol
        KafkaSettings(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")
    with pytest.raises(ValidationError, match="SASL_MECHANISM"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="u")
    local = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                          sasl_username="u", sasl_password="p", allow_sasl_plaintext=True)
    assert local.client_kwargs()["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in local.client_kwargs()


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_faststream_security_is_told_to_use_tls(mechanism: str) -> None:
    """FastStream's SASL classes fall back to SASL_PLAINTEXT unless given ``use_ssl``: the
    settings always pass it from the protocol."""
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism=mechanism,
                          sasl_username="u", sasl_password="p")
    security = kafka.faststream_security()
    assert security.use_ssl is True
    assert isinstance(security.ssl_context, ssl.SSLContext)


async def test_tls_without_sasl_and_client_certificates_reach_the_clients(tmp_path: Path) -> None:
    kafka = KafkaSettings(security_protocol="SSL")
    assert kafka.faststream_security().use_ssl is True
    producer = make_producer(kafka, client_id="x")
    assert client_security(producer)["security_protocol"] == "SSL"
    assert isinstance(client_security(producer)["ssl_context"], ssl.SSLContext)
    with pytest.raises(FileNotFoundError):  # a named certificate that is missing fails at once
        KafkaSettings(security_protocol="SSL", ssl_certfile=str(tmp_path / "missing.pem")).ssl_context()


def test_the_password_never_shows_in_the_settings_repr() -> None:
    kafka = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                          sasl_username="u", sasl_password=SECRET)
    assert SECRET not in repr(kafka) and SECRET not in str(kafka.model_dump())
