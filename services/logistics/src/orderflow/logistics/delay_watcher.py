"""The delay watcher: a background task that, every ``ORDERFLOW_LOGISTICS_DELAY_WATCH_INTERVAL_S``
seconds, checks undelivered shipments against the delay rules (``domain.assess_delays``) and
publishes ``shipment.delayed`` once per shipment and reason. "Now" comes from an injectable
clock, and one round can be run on demand (``POST /api/delay-watch/run``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import structlog

from orderflow.logistics import domain
from orderflow.logistics.handlers import Clock, flag_delays, utc_now
from orderflow.logistics.repository import Shipments
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.jobs import Job, every
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class FlaggedDelay:
    order_id: str
    shipment_id: str
    reason: str
    promised_date: date
    expected_date: date | None


class DelayWatcher:
    def __init__(self, settings: LogisticsSettings, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.clock = clock

    async def run_once(self, units: UnitOfWorkFactory, *, now: datetime | None = None,
                       order_ids: Sequence[str] | None = None) -> list[FlaggedDelay]:
        """One round as of ``now`` (the clock by default), optionally limited to some orders.
        Each page of shipments is its own transaction; the delays table keeps it once per
        shipment and reason even with several replicas watching."""
        moment = now or self.clock()
        policy = self.settings.delay_policy
        watch = domain.watch_list(moment.astimezone(policy.tz).date())
        flagged: list[FlaggedDelay] = []
        after = ""
        while True:
            async with units() as uow:
                shipments = Shipments(uow.session)
                page = await shipments.watched(watch, after=after,
                                               limit=self.settings.delay_watch_page,
                                               order_ids=order_ids)
                for shipment in page:
                    findings = domain.assess_delays(
                        status=shipment.status, pickup_date=shipment.pickup_date,
                        promised_date=shipment.promised_date, status_at=shipment.status_at,
                        now=moment, policy=policy)
                    if not findings:
                        continue
                    new = await flag_delays(uow, shipments, shipment, findings,
                                            observed_at=moment, source="watcher")
                    assert shipment.promised_date is not None
                    flagged += [FlaggedDelay(shipment.order_id, shipment.shipment_id, f.reason,
                                             shipment.promised_date, f.expected_date) for f in new]
            if len(page) < self.settings.delay_watch_page:
                break
            after = page[-1].shipment_id
        return flagged

    async def run_round(self, ctx: ServiceContext) -> None:
        """One round of the background job (``job``)."""
        flagged = await self.run_once(ctx.units)
        if flagged:
            log.info("delay watch round", flagged=len(flagged))

    def job(self) -> Job:
        """The background job: a round every ``delay_watch_interval_s`` until the service stops."""
        return every(self.settings.delay_watch_interval_s, "delay watch", self.run_round)
