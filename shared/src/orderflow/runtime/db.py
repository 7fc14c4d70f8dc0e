"""Async SQLAlchemy: one engine per process, one PostgreSQL schema per service, migrations with
Alembic (each service keeps its revisions in ``orderflow/<service>/migrations``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, op
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from orderflow.runtime.settings import DatabaseSettings
from orderflow.runtime.sqlalchemy_bridge import backend_pid

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"
# What a launcher adds to the engines this process makes: each is called with the process id of
# every new connection's PostgreSQL backend. The dev stack's (``orderflow.devstack.priority``)
# renices the backends of the services it runs at a lower priority; a service alone adds none.
BACKEND_HOOKS: list[Callable[[int], None]] = []


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
    if BACKEND_HOOKS:
        hooks = tuple(BACKEND_HOOKS)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _backend_started(dbapi_connection: Any, _record: Any) -> None:
            pid = backend_pid(dbapi_connection)
            for hook in hooks:
                hook(pid)
    return engine


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
