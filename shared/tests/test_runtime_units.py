"""The runtime's pure parts: decoding and dead-letter reasons, settings, masking, retries."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc

from orderflow.contracts import topics
from orderflow.contracts.events import CustomerUpdated, StockReceived
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import Address
from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.devstack.priority import PrioritySettings
from orderflow.devstack.stack import (
    SIDE_CONSUMER_NICE,
    ServiceProcess,
    Stack,
)
from orderflow.runtime import metrics
from orderflow.runtime.consumer import Poison, Subscription, decode
from orderflow.runtime.logging import configure_logging, mask_personal_data, mask_text
from orderflow.runtime.retry import is_transient, retry_transient
from orderflow.runtime.service import ServiceDefinition, build_broker, service_settings, tune_gc
from orderflow.runtime.settings import KafkaSettings, ServiceSettings, load_settings
from orderflow.runtime.sqlalchemy_bridge import Statement
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork, trace_id_of

pytestmark = pytest.mark.unit


@dataclass
class Rec:
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "stock.received"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"SKU-1"


async def _noop(*_: Any) -> None:
    return None


SUB = Subscription(topics.STOCK_RECEIVED, _noop)
GOOD = StockReceived(warehouse_id="WH-1", sku="SKU-1", quantity=3)


def headers(**over: str) -> list[tuple[str, bytes]]:
    h = dict(EventHeaders.new(event_type="StockReceived", schema_version=1, producer="t",
                              correlation_id="SKU-1").to_kafka())
    h.update({k: v.encode() for k, v in over.items()})
    return list(h.items())


def test_a_good_record_decodes() -> None:
    item = decode(Rec(GOOD.model_dump_json().encode(), headers()), SUB, 10_000)
    assert isinstance(item, IncomingEvent)
    assert item.event == GOOD


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (Rec(b"x" * 20_000, headers()), "payload_too_large"),
        (Rec(b"{oops", headers()), "malformed_json"),
        (Rec(b'{"sku": "A"}', headers()), "invalid_payload"),
        (Rec(b'{"warehouse_id": "W", "sku": "A", "quantity": -4}', headers()), "invalid_payload"),
        (Rec(b'{"warehouse_id": "W", "sku": "A", "quantity": "many"}', headers()), "invalid_payload"),
        (Rec(GOOD.model_dump_json().encode(), headers(schema_version="9")), "unknown_schema_version"),
        (Rec(GOOD.model_dump_json().encode(), headers(event_type="Other")), "unexpected_event_type"),
        (Rec(GOOD.model_dump_json().encode(), []), "bad_headers"),
        (Rec(GOOD.model_dump_json().encode(), headers(event_id="not-a-uuid")), "bad_headers"),
        (Rec(None, headers()), "malformed_json"),
    ],
)
def test_poison_gets_a_reason(record: Rec, reason: str) -> None:
    item = decode(record, SUB, 10_000)
    assert isinstance(item, Poison)
    assert item.reason == reason
    assert item.error


def test_headerless_connector_messages_get_a_stable_event_id() -> None:
    sub = Subscription(topics.STOCK_RECEIVED, _noop, headerless=True)
    a = decode(Rec(GOOD.model_dump_json().encode(), [], offset=5), sub, 10_000)
    b = decode(Rec(GOOD.model_dump_json().encode(), [], offset=5), sub, 10_000)
    assert isinstance(a, IncomingEvent) and isinstance(b, IncomingEvent)
    assert a.headers.event_id == b.headers.event_id
    uuid.UUID(a.headers.event_id)


def test_validation_errors_do_not_carry_input_values() -> None:
    item = decode(Rec(b'{"warehouse_id": "W", "sku": "A", "quantity": "tel 13800138000"}', headers()),
                  SUB, 10_000)
    assert isinstance(item, Poison)
    assert "13800138000" not in item.error


def test_a_trace_id_is_read_only_from_a_well_formed_traceparent() -> None:
    assert trace_id_of("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == "a" * 32
    for bad in (None, "", "00-abc-def-01", "garbage" * 8):
        assert trace_id_of(bad) is ...


def test_handling_an_event_binds_its_log_context_and_restores_what_was_there() -> None:
    uow = UnitOfWork(None, "t")  # type: ignore[arg-type]  # no database needed here
    first = decode(Rec(GOOD.model_dump_json().encode(), headers(), offset=7), SUB, 10_000)
    second = decode(Rec(GOOD.model_dump_json().encode(), headers(), offset=8, key=b"SKU-2"),
                    SUB, 10_000)
    assert isinstance(first, IncomingEvent) and isinstance(second, IncomingEvent)
    saved = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(order_id="outer", service="t")
    try:
        with uow.handling(first):
            assert uow.current is first
            assert structlog.contextvars.get_contextvars() == {
                "service": "t", "event_id": first.headers.event_id, "order_id": "SKU-1",
                "topic": "stock.received", "partition": 0, "offset": 7,
                # the event's trace, for log lines written with tracing off (no span current)
                "trace_id": first.headers.traceparent.split("-")[1]}
            structlog.contextvars.bind_contextvars(order_id="bound-inside")
            with uow.handling(second):  # nested: the inner event's context, then the outer's
                assert uow.current is second
                assert structlog.contextvars.get_contextvars()["offset"] == 8
                assert structlog.contextvars.get_contextvars()["order_id"] == "SKU-2"
            assert uow.current is first
            assert structlog.contextvars.get_contextvars()["order_id"] == "bound-inside"
            assert structlog.contextvars.get_contextvars()["offset"] == 7
        # what was bound before comes back; what handling bound, or was bound inside, goes
        assert uow.current is None
        assert structlog.contextvars.get_contextvars() == {"service": "t", "order_id": "outer"}
        with pytest.raises(RuntimeError, match="boom"), uow.handling(first):
            raise RuntimeError("boom")
        assert uow.current is None
        assert structlog.contextvars.get_contextvars() == {"service": "t", "order_id": "outer"}
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**saved)


def test_sasl_without_tls_must_be_asked_for() -> None:
    with pytest.raises(ValueError, match="SASL_PLAINTEXT"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                      sasl_username="u", sasl_password="p")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SASL_SSL"):
        KafkaSettings(sasl_username="u")


def test_sasl_ssl_reaches_aiokafka_and_faststream_with_tls() -> None:
    k = KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                      sasl_username="u", sasl_password="p")  # type: ignore[arg-type]
    kwargs = k.client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["ssl_context"] is not None
    security = k.faststream_security()
    assert type(security).__name__ == "SASLScram512"
    assert security.use_ssl is True


def test_service_prefix_overrides_the_common_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERFLOW_BATCH_MAX_RECORDS", "100")
    monkeypatch.setenv("ORDERFLOW_INTAKE_BATCH_MAX_RECORDS", "7")
    assert load_settings(ServiceSettings, "intake").batch_max_records == 7
    assert load_settings(ServiceSettings, "review").batch_max_records == 100
    monkeypatch.setenv("ORDERFLOW_REVIEW_BATCH_MAX_RECORDS", "0")
    with pytest.raises(ValueError, match="batch_max_records"):
        load_settings(ServiceSettings, "review")


def test_a_service_may_default_to_smaller_batches_and_the_environment_still_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORDERFLOW_BATCH_MAX_RECORDS", "ORDERFLOW_CONSOLE_BATCH_MAX_RECORDS"):
        monkeypatch.delenv(name, raising=False)
    small = ServiceDefinition(name="console", migrations=Path("."), subscriptions=[],
                              batch_max_records=250)
    plain = ServiceDefinition(name="review", migrations=Path("."), subscriptions=[])
    assert service_settings(small).batch_max_records == 250
    assert service_settings(plain).batch_max_records == ServiceSettings().batch_max_records
    monkeypatch.setenv("ORDERFLOW_BATCH_MAX_RECORDS", "300")
    assert service_settings(small).batch_max_records == 300
    monkeypatch.setenv("ORDERFLOW_CONSOLE_BATCH_MAX_RECORDS", "80")
    assert service_settings(small).batch_max_records == 80
    assert service_settings(plain).batch_max_records == 300


def test_the_consumer_prefetches_within_the_fetch_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's defaults (50 MB a fetch, 1 MB a partition) let a lagging service hold tens of
    MB of records it cannot handle yet; the runtime's consumer takes the smaller limits, and the
    environment can change them."""
    for name in ("ORDERFLOW_KAFKA_FETCH_MAX_BYTES", "ORDERFLOW_KAFKA_MAX_PARTITION_FETCH_BYTES",
                 "ORDERFLOW_KAFKA_FETCH_MAX_WAIT_MS"):
        monkeypatch.delenv(name, raising=False)
    definition = ServiceDefinition(name="console", migrations=Path("."), subscriptions=[
        Subscription(topics.ORDER_RECEIVED, batch_handler=lambda uow, run: None)])  # type: ignore[arg-type,return-value]

    def consumer_args(kafka: KafkaSettings) -> dict[str, Any]:
        broker = build_broker(definition, kafka, service_settings(definition), None)  # type: ignore[arg-type]
        [subscriber] = broker.subscribers
        return subscriber._connection_args  # type: ignore[attr-defined,no-any-return]

    args = consumer_args(KafkaSettings())
    assert (args["fetch_max_bytes"], args["max_partition_fetch_bytes"]) == (2_097_152, 131_072)
    assert args["fetch_max_wait_ms"] == 500  # aiokafka's: Apache Kafka answers when records come
    monkeypatch.setenv("ORDERFLOW_KAFKA_MAX_PARTITION_FETCH_BYTES", "65536")
    monkeypatch.setenv("ORDERFLOW_KAFKA_FETCH_MAX_WAIT_MS", "100")
    changed = consumer_args(KafkaSettings())
    assert (changed["max_partition_fetch_bytes"], changed["fetch_max_wait_ms"]) == (65_536, 100)


def test_the_broker_kind_decides_the_clients_defaults_in_one_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On Apache Kafka producers are idempotent with acks=all and the group session suits a real
    cluster; on Tansu idempotence is off (its InitProducerId fails) and the fetch wait is short
    (it answers a waiting fetch only when the wait runs out). A value the environment sets wins."""
    for name in ("ORDERFLOW_KAFKA_FETCH_MAX_WAIT_MS", "ORDERFLOW_KAFKA_SESSION_TIMEOUT_MS",
                 "ORDERFLOW_KAFKA_HEARTBEAT_INTERVAL_MS", "ORDERFLOW_KAFKA_BROKER"):
        monkeypatch.delenv(name, raising=False)
    kafka, tansu = KafkaSettings(), KafkaSettings(broker="tansu")
    assert kafka.broker == "kafka"
    assert kafka.producer_kwargs()["enable_idempotence"] is True
    assert kafka.producer_kwargs()["acks"] == tansu.producer_kwargs()["acks"] == "all"
    assert tansu.producer_kwargs()["enable_idempotence"] is False
    assert (kafka.session_timeout_ms, kafka.heartbeat_interval_ms) == (15_000, 3_000)
    assert (tansu.session_timeout_ms, tansu.heartbeat_interval_ms) == (6_000, 1_500)
    assert (kafka.fetch_max_wait_ms, tansu.fetch_max_wait_ms) == (500, 100)
    monkeypatch.setenv("ORDERFLOW_KAFKA_BROKER", "tansu")
    monkeypatch.setenv("ORDERFLOW_KAFKA_FETCH_MAX_WAIT_MS", "250")
    assert (KafkaSettings().broker, KafkaSettings().fetch_max_wait_ms) == ("tansu", 250)
    with pytest.raises(ValidationError, match="a third"):
        KafkaSettings(session_timeout_ms=3000, heartbeat_interval_ms=2000)


async def test_the_services_producers_are_idempotent_on_kafka() -> None:
    """The outbox relay's producer and the services' FastStream producer, as built from the
    settings: idempotence on for Apache Kafka, off for Tansu, acks=all for both."""
    from orderflow.runtime.outbox import make_producer

    for kind, idempotent in (("kafka", True), ("tansu", False)):
        relay = make_producer(KafkaSettings(broker=kind), client_id="relay")  # type: ignore[arg-type]
        # aiokafka keeps a transaction manager exactly when the producer is idempotent
        assert (relay._txn_manager is not None) is idempotent
        assert relay._sender._acks == -1  # all in-sync replicas
        await relay.stop()
        definition = ServiceDefinition(name="review", migrations=Path("."), subscriptions=[
            Subscription(topics.ORDER_RECEIVED, batch_handler=lambda uow, run: None)])  # type: ignore[arg-type,return-value]
        broker = build_broker(definition, KafkaSettings(broker=kind),  # type: ignore[arg-type]
                              service_settings(definition), None)  # type: ignore[arg-type]
        options = broker._connection_kwargs  # type: ignore[attr-defined]
        assert options["enable_idempotence"] is idempotent
        assert options["acks"] == "all"


def test_the_dev_stack_tells_its_services_which_broker_they_talk_to(tmp_path: Path) -> None:
    process = ServiceProcess("review", 0, 8102)
    for kind in ("kafka", "tansu"):
        stack = Stack(tmp_path, services=["review"], broker_kind=kind)  # type: ignore[arg-type]
        assert stack.service_env(process)["ORDERFLOW_KAFKA_BROKER"] == kind
        assert stack.kafka.broker == kind


def test_the_dev_stack_runs_notify_and_the_console_at_a_lower_priority(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On the dev stack's one machine the order flow's services get the cores first: notify and
    the console (off its path) are started at the lowest priority (niceness 19), the others
    unchanged; the environment still wins, and the setting is read per service (its own prefix
    first). That a service applies it: tests/e2e/test_walking_skeleton.py, on the running
    pipeline's processes."""
    for name in ("ORDERFLOW_NICE", "ORDERFLOW_NOTIFY_NICE", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert PrioritySettings().nice == 0  # elsewhere (one service a machine, containers): unchanged
    stack = Stack(tmp_path, services=["intake", "notify", "console"], broker=EmbeddedBroker(tmp_path))
    nices = {name: stack.service_env(ServiceProcess(name, 0, 8100)).get("ORDERFLOW_NICE")
             for name in ("intake", "review", "inventory", "logistics", "notify", "console")}
    assert nices == {"intake": None, "review": None, "inventory": None, "logistics": None,
                     "notify": str(SIDE_CONSUMER_NICE), "console": str(SIDE_CONSUMER_NICE)}
    # and glibc's mmap threshold fixed for their peak memory; not for the order flow's
    mmap = {name: stack.service_env(ServiceProcess(name, 0, 8100)).get("MALLOC_MMAP_THRESHOLD_")
            for name in ("intake", "review", "notify", "console")}
    assert mmap == {"intake": None, "review": None, "notify": "131072", "console": "131072"}
    monkeypatch.setenv("ORDERFLOW_NICE", "3")
    assert stack.service_env(ServiceProcess("console", 0, 8100))["ORDERFLOW_NICE"] == "3"
    monkeypatch.setenv("ORDERFLOW_NOTIFY_NICE", "0")  # the service's own prefix wins
    assert load_settings(PrioritySettings, "notify").nice == 0
    assert load_settings(PrioritySettings, "console").nice == 3


def test_a_statement_is_compiled_once_to_asyncpgs_positional_parameters() -> None:
    """Named parameters become $1, $2 ... in order of first use (a name used twice is one
    parameter); a "::" cast and a colon inside a string literal are left alone."""
    stmt = Statement("SELECT a FROM t WHERE b = ANY(CAST(:ids AS text[])) AND c = :c "
                     "AND d = :ids AND e::text <> 'x:y'")
    assert stmt.sql == ("SELECT a FROM t WHERE b = ANY(CAST($1 AS text[])) AND c = $2 "
                        "AND d = $1 AND e::text <> 'x:y'")
    assert stmt.names == ("ids", "c")
    assert stmt._args({"c": 3, "ids": ["A"], "unused": 1}) == [["A"], 3]
    with pytest.raises(KeyError, match="'c'"):
        stmt._args({"ids": []})


def test_personal_data_is_masked_in_every_field() -> None:
    event = {"event": "sent to li.lei@example.com", "phone": "13800138000",
             "shipping_address": {"line1": "1 Road"}, "note": "call 138 0013 8000"}
    out = mask_personal_data(None, "info", dict(event))
    assert "li.lei@example.com" not in str(out)
    assert "13800138000" not in str(out)
    assert "1 Road" not in str(out)
    assert "138 0013 8000" not in str(out)
    assert mask_text("a@b.cn") == "a***@b.cn"


def test_a_customers_delivery_address_is_masked_however_it_is_logged() -> None:
    """Master data's delivery address is personal data: its recipient, phone, street and postal
    code never reach a log, whether logged as a mapping, its JSON or its repr; where it is
    (province, city) stays readable."""
    home = Address(name="韩梅梅", phone="13912345678", province="上海", city="上海",
                   district="浦东新区", line1="世纪大道 100 号", postal_code="200120")
    update = CustomerUpdated(customer_id="C0042", name="韩梅梅", credit_limit=Decimal("1000"),
                             currency="CNY", payment_terms="net30", delivery_address=home)
    for logged in ({"customer": update.model_dump(mode="json")},
                   {"event": f"customer updated: {update.model_dump_json()}"},
                   {"event": f"customer updated: {update!r}"},
                   {"delivery_address": "上海 浦东新区 世纪大道 100 号"}):
        out = str(mask_personal_data(None, "info", dict(logged)))
        for personal in ("韩梅梅", "13912345678", "世纪大道", "200120"):
            assert personal not in out, (personal, out)
    assert "浦东新区" in str(mask_personal_data(None, "info", {"customer": home.model_dump()}))


@pytest.mark.usefixtures("process_logging")
def test_stdlib_logs_go_through_the_masking_json_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="json")
    logging.getLogger("some.library").warning("contact bob@example.org now")
    structlog.get_logger("x").info("hello", email="bob@example.org", order_id="o-1")
    out = capsys.readouterr().out
    assert "bob@example.org" not in out
    assert '"order_id": "o-1"' in out and '"service": "t"' in out


@pytest.mark.usefixtures("process_logging")
async def test_a_retry_of_the_connector_kit_is_logged_with_its_fields_and_masked(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The kit logs its retries on a stdlib logger (it has no structlog); a service renders them
    as its own events, with the retry's fields and personal data masked."""
    configure_logging("t", fmt="json")
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError("refused for bob@example.org")
        return "done"

    assert await retry_transient(flaky, what="push", initial=0.01, maximum=0.01) == "done"
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "retrying" in x]
    assert line["logger"] == "orderflow.connector.retry" and line["level"] == "warning"
    assert (line["what"], line["attempt"], line["service"]) == ("push", 1, "t")
    assert line["error"].startswith("ConnectionRefusedError: refused for b***@example.org")
    assert "bob@example.org" not in json.dumps(line)


def test_transient_faults_are_told_from_permanent_ones() -> None:
    assert is_transient(ConnectionRefusedError())
    assert is_transient(sa_exc.OperationalError("x", {}, Exception("down")))
    assert not is_transient(ValueError("bad"))
    assert not is_transient(KeyError("k"))


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("sqlstate", "transient"), [
    ("40001", True), ("40P01", True), ("57P01", True), ("08006", True),  # the usual ones
    ("53100", True), ("53200", True), ("53300", True),  # disk full, out of memory, connections
    ("58030", True), ("25006", True), ("55P03", True),  # I/O, read-only standby, lock timeout
    ("22021", False), ("22P05", False), ("23505", False), ("42P01", False), ("P0001", False),
])
def test_the_databases_own_faults_are_retried_and_the_messages_are_not(sqlstate: str,
                                                                       transient: bool) -> None:
    """Retried: what says nothing about the message (the server is short of something, a standby,
    a lock). Not retried: bad data, a constraint, a missing table, an exception a trigger raised:
    those are dead-lettered with their reason."""
    assert is_transient(sa_exc.DBAPIError("INSERT ...", {}, _DriverError(sqlstate))) is transient
    assert is_transient(_DriverError(sqlstate)) is transient  # asyncpg's own, straight from a Statement


# --- the dependency audit (make lint) ------------------------------------------------------------

def _report(*deps: dict[str, object]) -> str:
    return json.dumps({"dependencies": list(deps), "fixes": []})


@pytest.mark.unit
@pytest.mark.parametrize(("stdout", "required", "code", "says"), [
    (_report({"name": "a", "version": "1", "vulns": []}), False, 0, "1 packages audited"),
    (_report({"name": "a", "version": "1", "vulns": [{"id": "GHSA-x"}]},
             {"name": "b", "version": "2", "vulns": []}), False, 1, "GHSA-x"),
    (_report({"name": "a", "version": "1", "skip_reason": "not found"}), False, 0, "none of 1"),
    (_report({"name": "a", "version": "1", "skip_reason": "not found"}), True, 2, "none of 1"),
    ("", False, 0, "no vulnerability database answered"),
    ("", True, 2, "no vulnerability database answered"),
])
def test_the_dependency_audit_fails_on_a_vulnerability_and_says_when_it_could_not_audit(
        stdout: str, required: bool, code: int, says: str) -> None:
    from orderflow.devstack.audit import judge
    got, lines = judge(stdout, "ConnectionError: api.osv.dev", required=required)
    assert got == code
    assert says in " ".join(lines)


def test_a_started_service_freezes_its_heap_and_lengthens_the_young_generation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    before = gc.get_threshold()
    try:
        monkeypatch.setenv("ORDERFLOW_GC_YOUNG_THRESHOLD", "12345")
        tune_gc(load_settings(ServiceSettings, "intake"))
        assert gc.get_threshold() == (12345, before[1], before[2])
        assert gc.get_freeze_count() > 1000  # what the process held is out of the collector
        gc.unfreeze()
        monkeypatch.setenv("ORDERFLOW_GC_FREEZE", "false")
        tune_gc(load_settings(ServiceSettings, "intake"))
        assert gc.get_freeze_count() == 0
        monkeypatch.setenv("ORDERFLOW_GC_YOUNG_THRESHOLD", "5")
        with pytest.raises(ValueError, match="gc_young_threshold"):
            load_settings(ServiceSettings, "intake")
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_a_background_job_outlives_a_failed_round_and_stops_with_the_service() -> None:
    import asyncio
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from orderflow.runtime.jobs import every

    stopping = asyncio.Event()
    rounds: list[int] = []

    async def round_(_ctx: Any) -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ValueError("a bad round")
        if len(rounds) == 2:
            raise ConnectionError("the database went away")
        stopping.set()

    job = every(0.01, "test job", round_)
    with capture_logs() as logs:
        await asyncio.wait_for(job(SimpleNamespace(stopping=stopping)), 10)  # type: ignore[arg-type]
    assert rounds == [0, 1, 2]  # it went on after both failures, and returned once stopping
    failed = [(e["log_level"], e["error"]) for e in logs
              if e["event"] == "test job round failed; the next round retries"]
    assert failed == [("error", "ValueError: a bad round"),
                      ("warning", "ConnectionError: the database went away")]


async def test_the_batch_subscriber_hands_over_the_raw_records_without_a_worker_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler takes the batch's records as aiokafka gave them (undecoded: a poison message
    must reach the processor), with no dependency injection: FastStream's injection resolved the
    handler's ``message`` argument in a worker thread for every batch."""
    import anyio.to_thread
    from faststream.kafka import TestKafkaBroker

    async def no_worker_threads(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("a batch went through a worker thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_worker_threads)
    batches: list[list[tuple[str, bytes]]] = []

    class Processor:
        async def consume(self, records: Any, consumer: Any) -> None:
            batches.append([(r.topic, r.value) for r in records])

    definition = ServiceDefinition(name="console", migrations=Path("."), subscriptions=[
        Subscription(topics.ORDER_RECEIVED, batch_handler=lambda uow, run: None)])  # type: ignore[arg-type,return-value]
    broker = build_broker(definition, KafkaSettings(), service_settings(definition), Processor())  # type: ignore[arg-type]
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish_batch(b"{not json", b'{"a": 1}', topic=topics.ORDER_RECEIVED.name)
    assert batches == [[(topics.ORDER_RECEIVED.name, b"{not json"),
                        (topics.ORDER_RECEIVED.name, b'{"a": 1}')]]


def test_on_commit_actions_run_once_after_the_commit_and_not_for_a_handler_rolled_back() -> None:
    uow = UnitOfWork(cast(Any, None), "units")
    ran: list[str] = []
    uow.on_commit(lambda: ran.append("kept"))
    mark = uow.mark()
    uow.on_commit(lambda: ran.append("rolled back"))  # a handler the careful run rolls back
    uow.rollback_to(mark)
    assert ran == []  # nothing before the commit
    uow.run_committed()
    uow.run_committed()
    assert ran == ["kept"]


def test_event_ages_are_observed_from_the_events_occurred_at() -> None:
    headers = EventHeaders.new(event_type="StockReceived", schema_version=1, producer="units",
                               correlation_id="k")
    old = IncomingEvent("units.age", 0, 0, "k", replace(
        headers, occurred_at=headers.occurred_at - timedelta(seconds=40)), cast(Any, None), b"")
    labels = {"service": "units", "topic": "units.age"}

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(f"orderflow_event_age_seconds_{name}", labels) or 0.0

    count, total = sample("count"), sample("sum")
    metrics.observe_event_ages("units", [old])
    assert sample("count") == count + 1
    assert 40 <= sample("sum") - total < 60
