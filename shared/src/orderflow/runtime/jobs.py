"""A service's background jobs: a round every interval until the service stops, a failed round
logged (a warning when the fault is transient, else an error) and the next one tried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from orderflow.runtime.retry import is_transient

if TYPE_CHECKING:
    from orderflow.runtime.service import ServiceContext

log = structlog.get_logger(__name__)

Job = Callable[["ServiceContext"], Coroutine[Any, Any, None]]


def every(interval_s: float, what: str, round_: Callable[[ServiceContext], Awaitable[None]], *,
          first_after_s: float = 0.0) -> Job:
    """A background job (``ServiceDefinition.background``) that runs ``round_`` ``first_after_s``
    after the service started, then every ``interval_s``, until it stops; ``what`` names it in
    the logs."""

    async def job(ctx: ServiceContext) -> None:
        log.info(f"{what} started", interval_s=interval_s)
        await _wait(ctx.stopping, first_after_s)
        while not ctx.stopping.is_set():
            try:
                await round_(ctx)
            except Exception as exc:  # noqa: BLE001 - the job outlives a bad round: the next retries
                level = log.warning if is_transient(exc) else log.error
                level(f"{what} round failed; the next round retries",
                      error=f"{type(exc).__name__}: {exc}"[:300])
            await _wait(ctx.stopping, interval_s)

    job.__name__ = what.replace(" ", "_")
    return job


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)
