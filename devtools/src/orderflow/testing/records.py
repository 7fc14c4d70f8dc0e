"""Driving a ``BatchProcessor`` without a broker: consumed records as the broker would hand them
(``Rec``, ``record``, ``Records``), schemas of a test's own, migrated, dropped afterwards
(``Schemas``, ``migrated_schema``), and what the handlers staged in a schema's ``outbox``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts.events import Event
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import TOPIC_OF_EVENT
from orderflow.runtime.db import make_engine, migrate, runtime_tables_ddl
from orderflow.runtime.settings import DatabaseSettings

if TYPE_CHECKING:
    from orderflow.runtime.consumer import Record


@dataclass
class Rec:
    """A consumed record (an ``orderflow.runtime.consumer.Record``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


if TYPE_CHECKING:
    _is_a_record: type[Record] = Rec


def event_id(rec: Rec) -> str:
    """The ``event_id`` header of ``rec``."""
    return dict(rec.headers)["event_id"].decode()


def record(event: Event, *, offset: int, producer: str = "tests", topic: str | None = None,
           key: str | None = None, correlation_id: str | None = None,
           partition: int = 0) -> Rec:
    """``event`` as a record at ``offset`` with fresh headers (a new event id): on its topic
    (``TOPIC_OF_EVENT``) and keyed by ``event.key()`` unless given, correlated by the key unless
    given."""
    key = event.key() if key is None else key
    headers = EventHeaders.new(event_type=event.EVENT_TYPE, schema_version=1, producer=producer,
                               correlation_id=key if correlation_id is None else correlation_id)
    return Rec(topic or TOPIC_OF_EVENT[type(event)].name, partition, offset, key.encode(),
               event.model_dump_json().encode(), list(headers.to_kafka()))


class Records:
    """Records as the broker would hand them: offsets counted per topic from 0 (partition 0),
    each with fresh headers from ``producer``. ``records(*events)`` gives a list of them."""

    def __init__(self, producer: str = "tests") -> None:
        self.producer = producer
        self.offsets: dict[str, int] = {}

    def _next(self, topic: str) -> int:
        self.offsets[topic] = self.offsets.get(topic, -1) + 1
        return self.offsets[topic]

    def record(self, event: Event, *, topic: str | None = None, key: str | None = None) -> Rec:
        """The next record of ``event``'s topic (or ``topic``), keyed by ``event.key()`` unless
        ``key`` is given (the key is its correlation id)."""
        topic = topic or TOPIC_OF_EVENT[type(event)].name
        return record(event, offset=self._next(topic), producer=self.producer, topic=topic,
                      key=key)

    def __call__(self, *events: Event) -> list[Rec]:
        return [self.record(e) for e in events]

    def again(self, rec: Rec) -> Rec:
        """The same event under a new event id at the topic's next offset (a producer that sent
        it twice): the same key and value, its event type and correlation id kept."""
        was = EventHeaders.from_kafka(rec.headers)
        headers = EventHeaders.new(event_type=was.event_type, schema_version=was.schema_version,
                                   producer=self.producer, correlation_id=was.correlation_id)
        return Rec(rec.topic, rec.partition, self._next(rec.topic), rec.key, rec.value,
                   list(headers.to_kafka()))


class Schemas:
    """Schemas of a test's own (``<prefix>_<random>``) in the database at ``database_url``:
    ``make()`` creates one, migrated with ``migrations`` (a service's Alembic versions) or with
    the runtime's tables only (outbox, inbox) when none are given, and returns its engine.
    ``async with`` drops them all (and disposes of their engines) on the way out."""

    def __init__(self, database_url: str, prefix: str, migrations: Path | str | None = None) -> None:
        self.settings = DatabaseSettings(url=database_url)
        self.prefix = prefix
        self.migrations = Path(migrations) if migrations is not None else None
        self.made: list[tuple[str, AsyncEngine]] = []

    async def make(self) -> AsyncEngine:
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        engine = make_engine(self.settings, name)
        self.made.append((name, engine))
        if self.migrations is not None:
            await migrate(engine, name, self.migrations)
        else:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
                await conn.execute(sa.text(f'SET LOCAL search_path TO "{name}"'))
                for ddl in runtime_tables_ddl():
                    await conn.execute(sa.text(ddl))
        return engine

    async def drop(self) -> None:
        """Dispose of every engine made and drop its schema."""
        made, self.made = self.made, []
        for _, engine in made:
            await engine.dispose()
        admin = make_engine(self.settings, "public")
        try:
            async with admin.begin() as conn:
                for name, _ in made:
                    await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        finally:
            await admin.dispose()

    async def __aenter__(self) -> Schemas:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.drop()


@asynccontextmanager
async def migrated_schema(database_url: str, prefix: str,
                          migrations: Path | str | None = None) -> AsyncIterator[AsyncEngine]:
    """One schema of ``Schemas`` for the ``async with`` block: its engine."""
    async with Schemas(database_url, prefix, migrations) as schemas:
        yield await schemas.make()


async def outbox(engine: AsyncEngine) -> list[tuple[str, str, dict[str, Any], str]]:
    """The outbox's events (no relay reads a test's schema): (topic, key, the event, the event id
    it answers) in staging order."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT topic, key, value, headers FROM outbox ORDER BY id"))).all()
    staged = []
    for r in rows:
        headers = dict(json.loads(r.headers) if isinstance(r.headers, str) else r.headers)
        staged.append((r.topic, bytes(r.key).decode(), json.loads(bytes(r.value)),
                       headers["causation_id"]))
    return staged
