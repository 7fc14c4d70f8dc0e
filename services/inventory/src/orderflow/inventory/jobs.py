"""Inventory's background jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from orderflow.inventory.policy import InventoryPolicy
from orderflow.inventory.reservations import Stockroom
from orderflow.runtime.retry import is_transient
from orderflow.runtime.service import ServiceContext

log = structlog.get_logger(__name__)


def reservation_expiry(policy: InventoryPolicy) -> Callable[[ServiceContext], Coroutine[Any, Any, None]]:
    """Every ``expiry_scan_interval_s``: release the reservations of orders that stalled (not
    dispatched within ``reservation_ttl_s``), a batch per transaction, until none is due."""

    async def expire_stalled_reservations(ctx: ServiceContext) -> None:
        while not ctx.stopping.is_set():
            try:
                while not ctx.stopping.is_set():
                    async with ctx.units() as uow:
                        expired = await Stockroom(uow, policy).expire_stalled()
                    if expired:
                        log.info("stalled reservations expired", orders=len(expired))
                    if len(expired) < policy.expiry_batch_size:
                        break
            except Exception as exc:  # noqa: BLE001 - the job must outlive one bad round
                log.warning("reservation expiry round failed", transient=is_transient(exc),
                            error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ctx.stopping.wait(), policy.expiry_scan_interval_s)

    return expire_stalled_reservations
