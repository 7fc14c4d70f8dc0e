"""Async SQLAlchemy: one engine per process, one PostgreSQL schema per service, migrations with
Alembic (each service keeps its revisions in ``orderflow/<service>/migrations``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from alembic import command, op
from alembic.config import Config
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from orderflow.runtime.priority import lower_priority
from orderflow.runtime.settings import DatabaseSettings

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger(__name__)


def make_engine(settings: DatabaseSettings, schema: str, *, application_name: str = "") -> AsyncEngine:
    """An engine whose connections use ``schema`` as their search path."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    engine = create_async_engine(
        settings.url,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        # no "SELECT 1" round trip before every transaction: a dead connection fails the
        # transaction, which retry_transient retries (is_transient covers invalidated connections)
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "search_path": schema,
                "application_name": application_name or schema,
            },
            "command_timeout": 60,
        },
    )
    if settings.backend_nice:
        nice = settings.backend_nice

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _renice(dbapi_connection: Any, _record: Any) -> None:
            pid = dbapi_connection.driver_connection.get_server_pid()
            if not renice_backend(pid, nice):
                log.warning("the database backend could not be reniced (not a PostgreSQL process "
                            "on this machine, or not permitted); it keeps its priority",
                            backend_pid=pid, backend_nice=nice)
    return engine


def renice_backend(pid: int, nice: int) -> bool:
    """Give the PostgreSQL backend ``pid`` on this machine at least niceness ``nice`` (a lower
    priority; never a higher one), and its session's autogroup the same (without it the niceness
    does nothing against the other sessions: ``orderflow.runtime.priority``). False, and nothing
    changed, when ``pid`` is not a PostgreSQL process here (the database on another host: its pid
    means nothing here) or when this process may not renice it."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return False
    except OSError:
        return False
    # a backend starts a session of its own: its autogroup is lowered too (runtime.priority)
    return lower_priority(pid, nice)


def _alembic_config(connection: sa.Connection, schema: str, versions: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(RUNTIME_MIGRATIONS))
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


async def migrate(engine: AsyncEngine, schema: str, versions: Path) -> None:
    """Create the service's schema if needed and upgrade it to the newest revision; then the
    runtime's own tables (outbox, inbox) get what a newer runtime added to them (every statement
    of ``runtime_tables_ddl`` is idempotent; each service's first revision ran them first).

    Safe with several replicas starting at once: a transaction-scoped advisory lock serialises
    them, and the second finds nothing left to do."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
        await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.execute(sa.text(f'SET LOCAL search_path TO "{schema}"'))
        await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync, schema, versions),
                                                         "head"))
        for ddl in runtime_tables_ddl():  # idempotent: what a newer runtime adds to its tables
            await conn.execute(sa.text(ddl))


async def driver(db: AsyncSession | AsyncConnection, *, in_transaction: bool = True) -> Any:
    """The asyncpg connection under ``db``, for the runtime's fixed statements of every batch
    (the inbox claim, the outbox, the relay): asyncpg called directly costs about a third of the
    CPU of the same statement through SQLAlchemy, and a batch of one event pays them all.

    With ``in_transaction`` the transaction SQLAlchemy commits or rolls back has begun on it
    first: SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its own first statement, so a
    statement sent here first would otherwise run outside the transaction. (Private attributes of
    the adapter; the version is pinned in uv.lock and a test proves the claim rolls back.)"""
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    adapted: Any = (await conn.get_raw_connection()).dbapi_connection  # SQLAlchemy's adapter
    if in_transaction and adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    return adapted._connection


_ASYNCPG_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]


class Statement:
    """A constant statement of a handler's hot path, written with named parameters
    (``:name``, as ``sa.text``) and run on asyncpg directly (``driver``) inside the session's
    transaction: compiled once to asyncpg's positional form, so each call costs asyncpg's work
    and not SQLAlchemy's (about a third of the client CPU; a batch of one event pays every
    statement of its handler). Values go to asyncpg as they are, exactly as SQLAlchemy passes
    them for an untyped ``sa.text`` parameter; rows come back as asyncpg records (by position
    or by column name, ``record["name"]``)."""

    __slots__ = ("names", "sql", "text")

    def __init__(self, text: str) -> None:
        compiled = sa.text(text).compile(dialect=_ASYNCPG_DIALECT)
        self.text = text
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def _args(self, params: Mapping[str, Any]) -> list[Any]:
        try:
            return [params[n] for n in self.names]
        except KeyError as exc:
            raise KeyError(f"missing parameter {exc.args[0]!r} for {self.text[:60]!r}") from None

    async def fetch(self, db: AsyncSession | AsyncConnection,
                    params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row the statement returns (asyncpg's list of records)."""
        rows: list[Any] = await (await driver(db)).fetch(self.sql, *self._args(params or {}))
        return rows

    async def run(self, db: AsyncSession | AsyncConnection,
                  params: Mapping[str, Any] | None = None) -> None:
        """Run it for its effect (what it returns, if anything, is read and dropped)."""
        await self.fetch(db, params)

    def __repr__(self) -> str:
        return f"Statement({self.text!r})"


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(sa.text("SELECT 1"))


# PostgreSQL compresses a row's long values (pglz, the only codec of the embedded build) once the
# row passes ~2 kB, and decompresses them on every read. ``toast_tuple_target`` at a whole page
# keeps rows up to 8 kB as they are; longer ones are still compressed and moved out of line.
WHOLE_PAGE_ROW_TARGET = 8160


def rows_uncompressed_ddl(*tables: str) -> list[str]:
    """Keep these tables' rows uncompressed up to a page (see ``WHOLE_PAGE_ROW_TARGET``)."""
    return [f"ALTER TABLE {table} SET (toast_tuple_target = {WHOLE_PAGE_ROW_TARGET})"
            for table in tables]


def rows_compressed_again_ddl(*tables: str) -> list[str]:
    """The downgrade of ``rows_uncompressed_ddl``: PostgreSQL's default again."""
    return [f"ALTER TABLE {table} RESET (toast_tuple_target)" for table in tables]


def keep_outbox_rows_uncompressed() -> None:
    """A migration's upgrade (every service has one): the outbox's rows are read back by the
    relay at once and purged within days, so compressing them is CPU spent for nothing
    (``pglz_compress`` was PostgreSQL's busiest function in the benchmark, review's approvals
    being 3.4 kB). Only rows written from then on. The long-lived tables keep the compression:
    uncompressed, they grew enough that autovacuum's passes over them after a burst cost more
    than it saved (docs/decisions/0008-outbox-rows-uncompressed.md)."""
    for ddl in rows_uncompressed_ddl("outbox"):
        op.execute(ddl)


def compress_outbox_rows_again() -> None:
    """The downgrade of ``keep_outbox_rows_uncompressed``."""
    for ddl in rows_compressed_again_ddl("outbox"):
        op.execute(ddl)


def runtime_tables_ddl() -> list[str]:
    """The outbox and inbox every service has; its first migration runs these."""
    return [
        """
        CREATE TABLE IF NOT EXISTS outbox (
            id BIGSERIAL PRIMARY KEY,
            topic TEXT NOT NULL,
            key BYTEA,
            value BYTEA NOT NULL,
            headers JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            published_at TIMESTAMPTZ
        )
        """,
        "CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
        # a row the broker refused for good: kept, skipped by the relay (orderflow.runtime.outbox)
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS quarantined_at TIMESTAMPTZ",
        "ALTER TABLE outbox ADD COLUMN IF NOT EXISTS quarantine_reason TEXT",
        "CREATE INDEX IF NOT EXISTS outbox_quarantined ON outbox (id) "
        "WHERE quarantined_at IS NOT NULL AND published_at IS NULL",
        """
        CREATE TABLE IF NOT EXISTS inbox (
            event_id UUID PRIMARY KEY,
            topic TEXT NOT NULL,
            event_type TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """,
        # the retention purge's (OutboxRelay): rows come in applied_at order, so a block range
        # index finds the old ones at almost no cost to the claim's inserts
        "CREATE INDEX IF NOT EXISTS inbox_applied_at ON inbox USING brin (applied_at)",
    ]
