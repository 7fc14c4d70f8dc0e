"""Inventory's background jobs."""

from __future__ import annotations

import structlog

from orderflow.inventory import handlers
from orderflow.inventory.settings import InventoryPolicy
from orderflow.runtime.jobs import Job, every
from orderflow.runtime.service import ServiceContext

log = structlog.get_logger(__name__)


def reservation_expiry(policy: InventoryPolicy) -> Job:
    """Every ``expiry_scan_interval_s``: release the reservations of orders that stalled (not
    dispatched within ``reservation_ttl_s``), a batch per transaction, until none is due."""

    async def expire_stalled_reservations(ctx: ServiceContext) -> None:
        while not ctx.stopping.is_set():
            async with ctx.units() as uow:
                expired = await handlers.expire_stalled(uow, policy)
            if expired:
                log.info("stalled reservations expired", orders=len(expired))
            if len(expired) < policy.expiry_batch_size:
                break

    return every(policy.expiry_scan_interval_s, "reservation expiry", expire_stalled_reservations)
