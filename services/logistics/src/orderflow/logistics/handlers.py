"""Logistics' handlers: decode, call the rules, store, stage the events. Outcomes (a shipment no
carrier can take, a carrier exception, a delay) are events; only an impossible event (tracking for
a shipment logistics never made) raises, and is dead-lettered with the reason."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from orderflow.contracts.events import (
    ProductUpdated,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockReserved,
    TrackingUpdated,
    WarehouseUpdated,
)
from orderflow.logistics import domain
from orderflow.logistics.carriers import CarrierChoice
from orderflow.logistics.repository import LogisticsRepository, ShipmentRecord
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class UnknownShipment(LookupError):
    """A tracking update names a shipment logistics does not have."""


class TrackingMismatch(ValueError):
    """A tracking update's order, carrier or tracking number disagrees with the shipment's."""


async def flag_delays(uow: UnitOfWork, repo: LogisticsRepository, shipment: ShipmentRecord,
                      findings: list[domain.DelayFinding], *, observed_at: datetime,
                      source: str) -> list[domain.DelayFinding]:
    """Record each finding once per shipment and reason, and publish the new ones."""
    flagged = []
    for finding in findings:
        if await repo.flag_delay(shipment, finding, observed_at=observed_at, source=source):
            assert shipment.promised_date is not None
            uow.emit(ShipmentDelayed(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                                     reason=finding.reason, promised_date=shipment.promised_date,
                                     expected_date=finding.expected_date))
            flagged.append(finding)
    if flagged:
        log.info("shipment delayed", shipment_id=shipment.shipment_id, source=source,
                 reasons=[f.reason for f in flagged])
    return flagged


class LogisticsHandlers:
    """The subscriptions' handlers, with the settings, clock and randomness they use."""

    def __init__(self, settings: LogisticsSettings, clock: Clock = utc_now,
                 randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.settings = settings
        self.clock = clock
        self.randbelow = randbelow

    async def on_stock_reserved(self, uow: UnitOfWork, incoming: IncomingEvent[StockReserved]) -> None:
        reserved = incoming.event
        order = reserved.order
        repo = LogisticsRepository(uow.session, self.randbelow)
        catalogue = self.settings.catalogue
        sites = await repo.warehouse_sites(r.warehouse_id for r in reserved.reservations)
        infos = await repo.product_infos(r.sku for r in reserved.reservations)
        plans = domain.plan_shipments(
            order_id=reserved.order_id, source_event_id=incoming.headers.event_id, order=order,
            reservations=reserved.reservations, warehouses=sites, products=infos,
            catalogue=catalogue, dispatched_at=self.clock(), tz=self.settings.tz)
        count = await repo.shipment_count(reserved.order_id) + len(plans)
        for plan in plans:
            if plan.warehouse is None:
                log.warning("warehouse location unknown; zone taken as national",
                            warehouse_id=plan.warehouse_id)
            number = await repo.add_shipment(
                plan, external_id=order.external_id, customer_id=order.customer.id,
                priority=order.priority, ship_to=order.shipping_address, catalogue=catalogue,
                source_event_id=incoming.headers.event_id)
            choice = plan.choice
            if number is None or not isinstance(choice, CarrierChoice):
                reason = choice.reason if not isinstance(choice, CarrierChoice) else ""
                uow.emit(ShipmentException(order_id=reserved.order_id,
                                           shipment_id=plan.shipment_id, tracking_number="",
                                           carrier="", code="no_carrier", detail=reason))
                log.warning("no carrier can take the shipment", shipment_id=plan.shipment_id,
                            warehouse_id=plan.warehouse_id, reason=reason)
                continue
            option = choice.option
            uow.emit(ShipmentDispatched(
                order_id=reserved.order_id, shipment_id=plan.shipment_id,
                warehouse_id=plan.warehouse_id, carrier=option.carrier.code,
                service=option.service.code, tracking_number=number, lines=plan.reserved_lines,
                weight_kg=plan.weight_kg, dispatched_at=plan.dispatched_at,
                promised_date=option.promised_date, requested_date=plan.requested_date,
                misses_requested_date=choice.misses_requested_date, rule=choice.rule,
                shipment_count=count))
        log.info("order dispatched", shipments=len(plans), shipment_count=count,
                 carriers=[p.choice.option.label if isinstance(p.choice, CarrierChoice)
                           else "none" for p in plans],
                 rules=sorted({p.choice.rule for p in plans if isinstance(p.choice, CarrierChoice)}))

    async def on_tracking_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[TrackingUpdated]) -> None:
        update = incoming.event
        repo = LogisticsRepository(uow.session)
        shipment = await repo.lock_shipment(update.shipment_id)
        if shipment is None:
            raise UnknownShipment(f"no shipment {update.shipment_id} (tracking {update.tracking_number})")
        if (shipment.order_id, shipment.carrier, shipment.tracking_number) != (
                update.order_id, update.carrier, update.tracking_number):
            raise TrackingMismatch(
                f"update for shipment {update.shipment_id} says order {update.order_id}, "
                f"{update.carrier} {update.tracking_number}; the shipment is order "
                f"{shipment.order_id}, {shipment.carrier} {shipment.tracking_number}")
        tz = self.settings.tz
        occurred_at = domain.as_aware(update.occurred_at, tz)
        update_id = await repo.record_tracking(shipment.shipment_id, update, occurred_at)
        if update_id is None:
            log.info("duplicate tracking update ignored", shipment_id=shipment.shipment_id,
                     status=update.status)
            return
        decision = domain.apply_tracking(shipment.tracking, update.status, occurred_at)
        await repo.set_tracking_outcome(update_id, decision.outcome)
        if not decision.changed:
            log.info("tracking update kept in the history only", shipment_id=shipment.shipment_id,
                     status=update.status, outcome=decision.outcome, current=shipment.status)
            if decision.outcome != "repeated":
                return  # stale, or after delivery: says nothing about the shipment now
        if decision.outcome == "delivered":
            assert shipment.promised_date is not None
            on_time = domain.delivered_on_time(occurred_at, shipment.promised_date, tz)
            await repo.move(shipment.shipment_id, decision.state, delivered_at=occurred_at,
                            on_time=on_time)
            all_delivered = domain.order_delivered(await repo.statuses_of_order(shipment.order_id))
            uow.emit(ShipmentDelivered(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                                       delivered_at=occurred_at, on_time=on_time,
                                       order_delivered=all_delivered))
            log.info("shipment delivered", shipment_id=shipment.shipment_id, on_time=on_time,
                     order_delivered=all_delivered)
            return
        if decision.outcome == "exception":
            code = domain.exception_code(update.detail)
            await repo.move(shipment.shipment_id, decision.state, exception_code=code,
                            exception_detail=update.detail[:500])
            uow.emit(ShipmentException(order_id=shipment.order_id,
                                       shipment_id=shipment.shipment_id,
                                       tracking_number=update.tracking_number,
                                       carrier=update.carrier, code=code,
                                       detail=update.detail[:500]))
            log.info("carrier exception", shipment_id=shipment.shipment_id, code=code)
        elif decision.changed:
            await repo.move(shipment.shipment_id, decision.state)
            log.info("shipment moved on", shipment_id=shipment.shipment_id,
                     status=decision.state.status, outcome=decision.outcome)
        # the carrier's own clock is evidence too: a scan on the promised afternoon that is not
        # "out for delivery" (a repeated "in transit" included) says the shipment will be late,
        # before the watcher's next round
        findings = domain.assess_delays(
            status=decision.state.status, pickup_date=shipment.pickup_date,
            promised_date=shipment.promised_date, status_at=decision.state.status_at,
            now=occurred_at, policy=self.settings.delay_policy)
        await flag_delays(uow, repo, shipment, findings, observed_at=occurred_at, source="tracking")

    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await LogisticsRepository(uow.session).upsert_warehouse(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await LogisticsRepository(uow.session).upsert_product(incoming.event)
