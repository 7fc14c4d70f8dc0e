"""Transient faults (database or broker unavailable) are retried with backoff; anything else is
a permanent fault for the message at hand and goes to the DLQ.

The backoff loop and the faults of the network and the broker are the connector kit's
(``orderflow.connector.retry``); this module adds the database's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

from orderflow.connector import retry as _retry
from orderflow.connector.retry import Stopping, backoff_delays

T = TypeVar("T")

# serialization failure, deadlock, admin shutdown, crash shutdown, cannot connect now,
# query cancelled by statement timeout, lock not available, read-only transaction (a standby
# after a failover); and whole classes: 08 connection exception, 53 insufficient resources (too
# many connections, disk full, out of memory), 58 system error (I/O). None of these says anything
# about the message at hand: retried, never dead-lettered.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "57014", "55P03", "25006"}
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "58")
# asyncpg's InternalClientError: the connection's protocol was left mid-operation (the server
# ended the session under it); the connection is unusable, a new one works
_TRANSIENT_DRIVER_NAMES = frozenset({"ConnectionDoesNotExistError", "CannotConnectNowError",
                                     "InternalClientError", "InterfaceError",
                                     "ConnectionFailureError"})


def _database_fault(current: BaseException) -> bool:
    if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
        return True
    if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError
                  | sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
    if isinstance(sqlstate, str) and (sqlstate in _TRANSIENT_SQLSTATES
                                      or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)):
        return True
    return type(current).__name__ in _TRANSIENT_DRIVER_NAMES


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its chain) is transient: the network's, the broker's or
    the database's fault, not the message's."""
    return _retry.is_transient(exc, also=_database_fault)


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    stopping: Callable[[], bool] = lambda: False,
    max_attempts: int | None = None,
    initial: float = 0.1,
    maximum: float = 5.0,
) -> T:
    """``orderflow.connector.retry.retry_transient`` with the database's faults transient too."""
    return await _retry.retry_transient(operation, what=what, stopping=stopping,
                                        max_attempts=max_attempts, initial=initial,
                                        maximum=maximum, transient=is_transient)


__all__ = ["Stopping", "backoff_delays", "is_transient", "retry_transient"]
