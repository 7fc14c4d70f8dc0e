"""Transient faults (a broker or a connection unavailable for a while) are retried with backoff;
anything else is permanent and raised at once.

``is_transient`` knows the faults of the network and of the broker's client; a caller that talks
to more (the services' runtime: the database) passes what else is transient to it (``also``) and
its predicate to ``retry_transient`` (``transient``). Retries are logged on the stdlib logger
``orderflow.connector.retry``, with the fields of ``LOG_FIELDS`` as the record's extras."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

#: the extras of the retry's log record (a structured log handler may render them as fields)
LOG_FIELDS: tuple[str, ...] = ("what", "attempt", "delay_s", "error")

# aiokafka's faults of a broker out of reach or slow to answer (matched by name: raised from
# several modules, some without a common base class)
_TRANSIENT_NAMES = frozenset({"KafkaConnectionError", "NodeNotReadyError", "RequestTimedOutError",
                              "KafkaTimeoutError"})


class Stopping(Exception):
    """The process is shutting down: give up retrying and leave the work for redelivery."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps (a driver's fault under a library's: ``orig``), or its cause
    or context, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nxt = getattr(current, "orig", None)
        current = nxt if isinstance(nxt, BaseException) else (current.__cause__ or current.__context__)


def _transient_fault(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return True
    return type(exc).__name__ in _TRANSIENT_NAMES


def is_transient(exc: BaseException, *, also: Callable[[BaseException], bool] | None = None) -> bool:
    """Whether ``exc``, or anything in its chain, is a transient fault: one of the network or the
    broker's client, or one ``also`` says is."""
    return any(_transient_fault(link) or (also is not None and also(link)) for link in _chain(exc))


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
    transient: Callable[[BaseException], bool] = is_transient,
) -> T:
    """Run ``operation`` until it succeeds, retrying faults ``transient`` says are transient with
    exponential backoff and jitter. Permanent faults propagate at once; so does ``Stopping`` when
    ``stopping()``."""
    delays = backoff_delays(initial, maximum)
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not transient(exc):
                raise
            attempt += 1
            if max_attempts is not None and attempt >= max_attempts:
                raise
            if stopping():
                raise Stopping(what) from exc
            delay = delays[min(attempt - 1, len(delays) - 1)] * (0.5 + random.random())
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("transient fault, retrying %s (attempt %d, again in %.2f s): %s",
                        what, attempt, delay, error,
                        extra={"what": what, "attempt": attempt, "delay_s": round(delay, 2),
                               "error": error})
            await asyncio.sleep(delay)


__all__ = ["LOG_FIELDS", "Stopping", "backoff_delays", "is_transient", "retry_transient"]
