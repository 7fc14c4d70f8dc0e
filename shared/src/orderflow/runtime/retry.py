"""Transient faults (database or broker unavailable) are retried with backoff; anything else is
a permanent fault for the message at hand and goes to the DLQ."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy import exc as sa_exc

T = TypeVar("T")
log = structlog.get_logger(__name__)

# serialization failure, deadlock, admin shutdown, crash shutdown, cannot connect now,
# query cancelled by statement timeout, lock not available, read-only transaction (a standby
# after a failover); and whole classes: 08 connection exception, 53 insufficient resources (too
# many connections, disk full, out of memory), 58 system error (I/O). None of these says anything
# about the message at hand: retried, never dead-lettered.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "57014", "55P03", "25006"}
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "58")


class Stopping(Exception):
    """The process is shutting down: give up retrying and leave the work for redelivery."""


def is_transient(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError
                      | sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return True
        if isinstance(current, ConnectionError | TimeoutError | asyncio.TimeoutError):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and (sqlstate in _TRANSIENT_SQLSTATES
                                          or sqlstate.startswith(_TRANSIENT_SQLSTATE_CLASSES)):
            return True
        name = type(current).__name__
        # asyncpg's InternalClientError: the connection's protocol was left mid-operation
        # (the server ended the session under it); the connection is unusable, a new one works
        if name in {"ConnectionDoesNotExistError", "CannotConnectNowError", "InternalClientError",
                    "InterfaceError", "ConnectionFailureError", "KafkaConnectionError",
                    "NodeNotReadyError", "RequestTimedOutError", "KafkaTimeoutError"}:
            return True
        nxt = getattr(current, "orig", None)
        current = nxt if isinstance(nxt, BaseException) else (current.__cause__ or current.__context__)
    return False


def backoff_delays(initial: float = 0.1, maximum: float = 5.0) -> list[float]:
    """The first delays of an exponential backoff with jitter (the last one repeats)."""
    delays, d = [], initial
    while d < maximum:
        delays.append(d)
        d *= 2
    delays.append(maximum)
    return delays


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    stopping: Callable[[], bool] = lambda: False,
    max_attempts: int | None = None,
    initial: float = 0.1,
    maximum: float = 5.0,
) -> T:
    """Run ``operation`` until it succeeds, retrying transient faults with exponential backoff
    and jitter. Permanent faults propagate at once; so does ``Stopping`` when ``stopping()``."""
    delays = backoff_delays(initial, maximum)
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            if stopping():
                raise Stopping(what) from exc
            delay = delays[min(attempt - 1, len(delays) - 1)] * (0.5 + random.random())
            log.warning("transient fault, retrying", what=what, attempt=attempt,
                        delay_s=round(delay, 2), error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(delay)
