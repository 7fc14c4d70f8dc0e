"""The composition root every service uses: ``ServiceDefinition`` says what a service is (its
subscriptions, migrations, routers, background tasks); ``run_service`` wires the settings, logging,
database, broker, outbox relay and HTTP side, and shuts it all down gracefully on SIGTERM/SIGINT:
stop taking messages, finish in-flight batches, commit, drain the outbox, close."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.connector.broker_auth import BrokerAuthenticationFailed, check_broker_credentials
from orderflow.connector.broker_profile import profile_of
from orderflow.contracts.topics import topic_config
from orderflow.runtime.consumer import BatchHook, BatchProcessor, Subscription
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.http import create_http_app
from orderflow.runtime.lag import PartitionEnds
from orderflow.runtime.logging import configure_logging
from orderflow.runtime.outbox import OutboxRelay, make_producer, quarantined_rows
from orderflow.runtime.positions import PositionGuard
from orderflow.runtime.retry import Stopping, retry_transient
from orderflow.runtime.settings import (
    DatabaseSettings,
    KafkaSettings,
    ServiceSettings,
    load_settings,
)
from orderflow.runtime.tracing import (
    configure_tracing,
    exporter_configured,
    instrument_database,
    instrument_http_app,
    shutdown_tracing,
)
from orderflow.runtime.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when to stop."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    @contextlib.contextmanager
    def capture_signals(self) -> Any:  # uvicorn >= 0.29
        yield


@dataclass
class ServiceContext:
    """What a running service's routers and background tasks may use."""

    name: str
    settings: ServiceSettings
    kafka: KafkaSettings
    engine: AsyncEngine
    relay: OutboxRelay
    units: UnitOfWorkFactory
    stopping: asyncio.Event
    state: dict[str, Any] = field(default_factory=dict)
    # called after every commit of a consumed batch (background loops wake on it instead of
    # polling; a listener must be quick and must not raise)
    commit_listeners: list[Callable[[], None]] = field(default_factory=list)

    def committed(self) -> None:
        self.relay.wake()
        for listener in self.commit_listeners:
            listener()


@dataclass
class ServiceDefinition:
    name: str
    migrations: Path
    subscriptions: list[Subscription]
    routers: Callable[[ServiceContext], list[APIRouter]] = lambda _ctx: []
    background: list[Callable[[ServiceContext], Coroutine[Any, Any, None]]] = field(default_factory=list)
    description: str = ""
    # False: no /openapi.json or /docs without sign-in; the service's routers serve its own
    public_openapi: bool = True
    # the service's own default for ``batch_max_records`` (the environment still wins): a
    # service whose batches cost memory per record takes smaller ones
    batch_max_records: int | None = None
    # called once per batch transaction before its first handler, with the batch's new events:
    # a service whose runs lock the same rows takes them all here, in one sorted order, so two
    # replicas' batches cannot lock them crosswise (``BatchProcessor``'s ``prepare``)
    prepare_batch: BatchHook | None = None
    # called once at start, once logging is configured and before anything connects: the
    # service's own start-time checks (intake's channels); raising ends the process
    on_start: Callable[[], None] | None = None


def service_settings(definition: ServiceDefinition) -> ServiceSettings:
    """The service's settings from the environment, with the definition's own defaults."""
    settings = load_settings(ServiceSettings, definition.name)
    if definition.batch_max_records and "batch_max_records" not in settings.model_fields_set:
        settings = settings.model_copy(update={"batch_max_records": definition.batch_max_records})
    return settings


def build_broker(definition: ServiceDefinition, kafka: KafkaSettings, settings: ServiceSettings,
                 processor: BatchProcessor) -> KafkaBroker:
    """A FastStream broker with one batch subscriber per subscription, manual acknowledgement
    and explicit per-partition offset commits after the database transaction."""
    broker = KafkaBroker(
        # a list: FastStream takes a string as one address, "host1:9092,host2:9092" included
        [server.strip() for server in kafka.bootstrap_servers.split(",") if server.strip()],
        security=kafka.faststream_security(),
        client_id=f"orderflow-{definition.name}",
        graceful_timeout=settings.graceful_timeout_s,
        enable_idempotence=kafka.idempotent_producer,
        acks="all",
        description=definition.description,
        logger=None,
        # the handler below takes the batch's records and nothing else: without FastStream's
        # dependency injection (fast_depends), which resolved its ``message`` argument in a worker
        # thread for every batch (a thread hop: 8–10 % of a service's busy time at 100 orders/s)
        apply_types=False,
    )
    async def parse(records: Any) -> KafkaMessage:
        # never decode here: a poison message must reach our handler to be dead-lettered
        return KafkaMessage(raw_message=records, body=b"", headers={}, consumer=None)  # type: ignore[arg-type]

    async def records_of(message: Any) -> Any:
        return message.raw_message  # the batch's records as aiokafka gave them

    # positions beyond a partition's end (its broker lost the data) read again from the start
    guard = PositionGuard(lambda: getattr(subscriber, "consumer", None), service=definition.name,
                          exact_end_offsets=profile_of(kafka.broker).exact_end_offsets)
    # one consumer (one group join, one group to watch for lag) for all the service's topics
    subscriber = broker.subscriber(
        *[sub.topic.name for sub in definition.subscriptions],
        group_id=f"{settings.consumer_group_prefix}.{definition.name}",
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
        fetch_max_bytes=kafka.fetch_max_bytes,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
        parser=parse,
        decoder=records_of,
        listener=guard,
        description="; ".join(f"{s.topic.name}: {s.description or s.topic.description}"
                              for s in definition.subscriptions),
        title=f"{definition.name}",
    )

    if processor is not None:  # a test may build the broker alone
        processor.positions = guard

    @subscriber
    async def on_batch(records: Any) -> None:
        await processor.consume(records, subscriber.consumer)  # type: ignore[attr-defined]

    return broker


async def run_service(definition: ServiceDefinition) -> None:
    settings = service_settings(definition)
    kafka = load_settings(KafkaSettings, definition.name)
    database = load_settings(DatabaseSettings, definition.name)
    configure_logging(definition.name, fmt=settings.log_format, level=settings.log_level)
    if definition.on_start is not None:
        try:
            definition.on_start()
        except Exception as exc:
            log.error("start refused", reason=str(exc), error=type(exc).__name__)
            raise
    # otherwise the no-op tracer (traceparents still propagate) and nothing instrumented
    provider = configure_tracing(definition.name) if exporter_configured() else None
    instrument_database(provider)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    engine = make_engine(database, definition.name, application_name=f"orderflow-{definition.name}")
    await retry_transient(lambda: migrate(engine, definition.name, definition.migrations),
                          what="migrate", stopping=stopping.is_set)
    try:  # a refused password ends the process; a broker out of reach is waited for
        await retry_transient(
            lambda: check_broker_credentials(kafka, client_id=f"orderflow-{definition.name}"),
            what="authenticate to the broker", stopping=stopping.is_set)
    except BrokerAuthenticationFailed as exc:
        log.error(str(exc), user=exc.user, mechanism=kafka.sasl_mechanism)
        await engine.dispose()
        raise
    def relay_producer() -> AIOKafkaProducer:
        return make_producer(kafka, client_id=f"orderflow-{definition.name}-relay")

    producer = relay_producer()
    await retry_transient(producer.start, what="connect producer", stopping=stopping.is_set)
    ends = PartitionEnds(kafka, client_id=f"orderflow-{definition.name}-relay-ends")
    relay = OutboxRelay(engine, producer, service=definition.name, producer_factory=relay_producer,
                        end_offsets=ends.read,
                        batch_size=settings.relay_batch_size,
                        poll_interval_s=settings.relay_poll_interval_s,
                        inbox_retention_s=settings.inbox_retention_days * 86400.0)
    units = UnitOfWorkFactory(engine, definition.name, on_commit=relay.wake)
    ctx = ServiceContext(definition.name, settings, kafka, engine, relay, units, stopping)

    processor = BatchProcessor(
        service=definition.name, subscriptions=definition.subscriptions, engine=engine,
        max_bytes=settings.max_message_bytes, after_commit=ctx.committed, stopping=stopping.is_set,
        prepare=definition.prepare_batch,
    )
    broker = build_broker(definition, kafka, settings, processor)

    async def health() -> dict[str, bool]:
        checks = {"database": False, "broker": False, "consuming": "consuming" in ctx.state}
        with contextlib.suppress(Exception):  # health reports, it does not raise
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            checks["database"] = True
        with contextlib.suppress(Exception):
            checks["broker"] = bool(await asyncio.wait_for(broker.ping(timeout=2), 3))
        return checks

    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(relay.run(), name="outbox-relay")]
    if processor.positions is not None:
        tasks.append(asyncio.create_task(processor.positions.run(stopping.is_set),
                                         name="position-guard"))
    server: _QuietServer | None = None
    if settings.http_port:
        async def quarantine() -> list[dict[str, Any]]:
            async with engine.connect() as conn:
                return await quarantined_rows(conn)

        app = create_http_app(definition.name, health, definition.routers(ctx),
                              public_openapi=definition.public_openapi, quarantine=quarantine)
        instrument_http_app(app, provider)
        server = _QuietServer(uvicorn.Config(app, host=settings.http_host,
                                               port=settings.http_port, log_config=None,
                                               access_log=False, lifespan="off"))
        tasks.append(asyncio.create_task(server.serve(), name="http"))
    await retry_transient(broker.start, what="connect broker", stopping=stopping.is_set)
    ctx.state["consuming"] = True
    for job in definition.background:
        tasks.append(asyncio.create_task(job(ctx), name=getattr(job, "__name__", "background")))
    tune_gc(settings)
    log.info("service started", topics=[s.topic.name for s in definition.subscriptions],
             http_port=settings.http_port, nice=os.nice(0))
    await stopping.wait()

    log.info("stopping: no new messages, finishing in-flight batches")
    await broker.stop()  # waits for in-flight handlers (graceful_timeout), offsets committed
    relay.stop()
    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(tasks[0]), settings.graceful_timeout_s)
    if server is not None:
        server.should_exit = True
    for task in tasks:
        if task.get_name() != "http":
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await relay.producer.stop()  # the relay may have replaced it
    await ends.stop()
    await engine.dispose()
    shutdown_tracing()
    log.info("service stopped")


def tune_gc(settings: ServiceSettings) -> None:
    """Once the service has started: its modules, pydantic schemas, SQLAlchemy and aiokafka state
    (about 150,000 objects that live as long as the process) are frozen out of the cyclic garbage
    collector, and the young generation is made longer. With CPython's defaults the collector
    took a quarter to a half of every service's CPU under load: a batch keeps thousands of
    objects alive for its duration, so collections came every few hundred allocations and every
    full one walked the whole heap again (docs/decisions/0003-gc-freeze.md). Reference counting still
    frees almost everything at once; only cycles wait for a collection."""
    gc.collect()
    if settings.gc_freeze:
        gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, old)


# the exit status of a service the broker refused to authenticate (a restart cannot help)
EXIT_AUTHENTICATION_FAILED = 3


def main(definition: ServiceDefinition) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run_service(definition))
        except BrokerAuthenticationFailed:  # logged in one line by run_service
            sys.exit(EXIT_AUTHENTICATION_FAILED)
        except Stopping as stopped:  # asked to stop while still waiting for the database or broker
            log.info("service stopped before it started", waiting_for=str(stopped))


async def create_topics(kafka: KafkaSettings, topics: list[tuple[str, int]],
                        replication: int = 1) -> list[str]:
    """Create missing topics (neither broker auto-creates them); returns those created."""
    from aiokafka.admin import NewTopic

    admin = AIOKafkaAdminClient(**kafka.client_kwargs())  # type: ignore[arg-type]
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, parts, replication, topic_configs=topic_config(name))
                   for name, parts in topics if name not in existing]
        if missing:
            await admin.create_topics(missing)
        return [t.name for t in missing]
    finally:
        await admin.close()
