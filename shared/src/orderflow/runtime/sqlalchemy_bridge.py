"""The one module that reaches past SQLAlchemy's public API: the asyncpg connection under a
session or connection (``driver``), the constant statements run on it (``Statement``), and a new
connection's PostgreSQL backend (``backend_pid``). The runtime's fixed statements of every batch
(the inbox claim, the outbox, the relay) and the repositories' hot statements go through it:
asyncpg called directly costs about a third of the CPU of the same statement through SQLAlchemy,
and a batch of one event pays them all.

``driver`` uses private attributes of SQLAlchemy's asyncpg adapter
(``AsyncAdapt_asyncpg_connection._transaction`` and ``._start_transaction``), which any release
may change. Importing this module (every service does at start, through the consumer and the
outbox) checks the installed SQLAlchemy against the range these were verified on,
``SUPPORTED_SQLALCHEMY`` (``shared/pyproject.toml`` requires the same), and that the adapter
still has them: otherwise the process stops at once with ``UnsupportedSQLAlchemy`` naming the
range, not at its first batch. Everything else uses SQLAlchemy's public API, or this module's
functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

# at least, below: as in shared/pyproject.toml
SUPPORTED_SQLALCHEMY = ("2.0.36", "2.2")
# what ``driver`` reads and calls on the adapter
_ADAPTER_PRIVATES = ("_transaction", "_start_transaction", "isolation_level", "driver_connection")


class UnsupportedSQLAlchemy(RuntimeError):
    """The installed SQLAlchemy is outside ``SUPPORTED_SQLALCHEMY``, or its asyncpg adapter
    lacks what ``driver`` uses."""


def _release(version: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if match is None:
        raise UnsupportedSQLAlchemy(f"SQLAlchemy's version {version!r} cannot be read")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def check_sqlalchemy(version: str = sa.__version__,
                     adapter: type = asyncpg_dialect.AsyncAdapt_asyncpg_connection) -> None:
    """Raise ``UnsupportedSQLAlchemy`` unless ``version`` is in ``SUPPORTED_SQLALCHEMY`` and
    ``adapter`` (SQLAlchemy's asyncpg connection adapter) has the attributes ``driver`` uses."""
    low, high = SUPPORTED_SQLALCHEMY
    supported = f"SQLAlchemy >={low},<{high}"
    if not _release(low) <= _release(version) < _release(high):
        raise UnsupportedSQLAlchemy(
            f"SQLAlchemy {version} is installed; OrderFlow's runtime supports {supported} "
            "(orderflow.runtime.sqlalchemy_bridge uses private attributes of its asyncpg adapter): "
            "install the version uv.lock pins")
    missing = [name for name in _ADAPTER_PRIVATES if not hasattr(adapter, name)]
    if missing:
        raise UnsupportedSQLAlchemy(
            f"SQLAlchemy {version}'s asyncpg adapter has no {', '.join(missing)}, which "
            f"orderflow.runtime.sqlalchemy_bridge uses; supported: {supported}")


check_sqlalchemy()


async def driver(db: AsyncSession | AsyncConnection, *, in_transaction: bool = True) -> Any:
    """The asyncpg connection under ``db``.

    With ``in_transaction`` the transaction SQLAlchemy commits or rolls back has begun on it
    first: SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its own first statement, so a
    statement sent here first would otherwise run outside the transaction (a test proves the
    claim rolls back with the session)."""
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    adapted: Any = (await conn.get_raw_connection()).dbapi_connection  # SQLAlchemy's adapter
    if in_transaction and adapted._transaction is None and adapted.isolation_level != "autocommit":
        await adapted._start_transaction()
    return adapted.driver_connection


def backend_pid(dbapi_connection: Any) -> int:
    """The process id of the PostgreSQL backend serving a new connection, from the connection a
    pool's ``connect`` event is given (SQLAlchemy's adapter around asyncpg's)."""
    pid: int = dbapi_connection.driver_connection.get_server_pid()
    return pid


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
