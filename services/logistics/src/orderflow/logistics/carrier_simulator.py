"""The carrier simulator, for the demo and the benchmark: given dispatched shipments, the tracking
updates their carriers would send (picked up, in transit, out for delivery, delivered), some late,
some with exceptions (some resolved, some not), a few repeated or arriving out of order, all
deterministic by seed.

The updates carry the carrier's times (the days after dispatch) and are meant to be published at
once with ``OrderPusher.publish``: simulated time runs ahead of the wall clock.

    updates = simulate([SimulatedShipment.from_dispatched(e) for e in dispatched], seed=7)
    async with OrderPusher(kafka) as pusher:
        await pusher.publish(updates)

Command line: ``python -m orderflow.logistics.carrier_simulator`` follows ``shipment.dispatched``
(consumer group ``orderflow.carrier-simulator``) and publishes each shipment's updates; see
``--help``."""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from orderflow.contracts.events import ShipmentDispatched, TrackingStatus, TrackingUpdated

Fate = Literal["on_time", "late", "exception", "exception_resolved"]
SHANGHAI = ZoneInfo("Asia/Shanghai")

EXCEPTIONS: tuple[str, ...] = (
    "damaged: 外包装破损, 待核实",
    "lost: 快件遗失, 已登记查找",
    "refused: 收件人拒收",
    "address_unknown: 收件地址不详",
)
RESOLVABLE: tuple[str, ...] = (
    "recipient_unavailable: 联系不上收件人, 次日再派",
    "weather: 暴雨天气, 派送延误",
)


@dataclass(frozen=True)
class SimulatedShipment:
    order_id: str
    shipment_id: str
    tracking_number: str
    carrier: str
    promised_date: date
    dispatched_at: datetime | None = None
    origin: str = ""
    destination: str = ""

    @classmethod
    def from_dispatched(cls, event: ShipmentDispatched) -> SimulatedShipment:
        return cls(event.order_id, event.shipment_id, event.tracking_number, event.carrier,
                   event.promised_date, event.dispatched_at, origin=event.warehouse_id)


@dataclass(frozen=True)
class CarrierBehaviour:
    """Shares of shipments (the rest arrive on time), and of updates repeated or swapped."""

    late: float = 0.15
    exception: float = 0.04
    exception_resolved: float = 0.04
    duplicate: float = 0.03
    out_of_order: float = 0.03


@dataclass(frozen=True)
class SimulatedJourney:
    shipment: SimulatedShipment
    fate: Fate
    updates: tuple[TrackingUpdated, ...] = field(default=())


def _fate(rng: random.Random, behaviour: CarrierBehaviour) -> Fate:
    roll = rng.random()
    if roll < behaviour.exception:
        return "exception"
    if roll < behaviour.exception + behaviour.exception_resolved:
        return "exception_resolved"
    if roll < behaviour.exception + behaviour.exception_resolved + behaviour.late:
        return "late"
    return "on_time"


def _at(day: date, hour: float, tz: ZoneInfo) -> datetime:
    minutes = int(hour * 60)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)


def simulate_journey(shipment: SimulatedShipment, *, seed: int = 7,
                     behaviour: CarrierBehaviour = CarrierBehaviour(), tz: ZoneInfo = SHANGHAI,
                     start: datetime | None = None) -> SimulatedJourney:
    """One shipment's updates, in the order the carrier sends them."""
    rng = random.Random(f"{seed}:{shipment.shipment_id}")
    fate = _fate(rng, behaviour)
    dispatched = (shipment.dispatched_at or start or datetime.now(UTC)).astimezone(tz)
    origin_hub = f"{shipment.origin or '始发'} 转运中心"
    destination_hub = f"{shipment.destination or '目的地'} 分拨中心"
    steps: list[tuple[TrackingStatus, datetime, str, str]] = []

    pickup = dispatched + timedelta(hours=rng.uniform(1, 5))
    if pickup.hour >= 21 or pickup.date() > dispatched.date():
        pickup = _at(dispatched.date() + timedelta(days=1), rng.uniform(8, 11), tz)
    steps.append(("picked_up", pickup, shipment.origin or "仓库", "快递员已揽收"))
    departed = pickup + timedelta(hours=rng.uniform(1, 3))
    steps.append(("in_transit", departed, origin_hub, "已发往目的地"))

    promised = shipment.promised_date
    first_possible = max(departed.date() + timedelta(days=1), pickup.date() + timedelta(days=1))
    if fate == "on_time":
        early = rng.random() < 0.3
        delivery_day = max(first_possible, promised - timedelta(days=1) if early else promised)
        delivery_day = min(delivery_day, max(promised, first_possible))
    elif fate == "late":
        delivery_day = max(first_possible, promised) + timedelta(days=rng.choice((1, 1, 2)))
        # the carrier's scan on the promised afternoon shows it is not out for delivery
        steps.append(("in_transit", _at(promised, rng.uniform(13, 17), tz), destination_hub,
                      "中转延误"))
    else:
        delivery_day = max(first_possible, promised)

    arrival = _at(delivery_day, rng.uniform(4, 6.5), tz)
    if arrival > steps[-1][1] + timedelta(hours=1):
        steps.append(("in_transit", arrival, destination_hub, "已到达目的地分拨中心"))
    out = max(_at(delivery_day, rng.uniform(7.5, 10.5), tz), steps[-1][1] + timedelta(minutes=30))

    if fate == "exception":
        failure = out - timedelta(hours=rng.uniform(1, 3)) if rng.random() < 0.5 else out
        failure = max(failure, steps[-1][1] + timedelta(minutes=20))
        steps.append(("exception", failure, destination_hub, rng.choice(EXCEPTIONS)))
    else:
        steps.append(("out_for_delivery", out, "派送网点", "派件员正在派送"))
        if fate == "exception_resolved":
            failed = out + timedelta(hours=rng.uniform(2, 6))
            steps.append(("exception", failed, "派送网点", rng.choice(RESOLVABLE)))
            next_day = out.date() + timedelta(days=1)
            out = _at(next_day, rng.uniform(7.5, 10.5), tz)
            steps.append(("out_for_delivery", out, "派送网点", "再次派送"))
        delivered = out + timedelta(hours=rng.uniform(1, 6))
        steps.append(("delivered", delivered, shipment.destination or "收件地址", "已签收"))

    updates = [TrackingUpdated(order_id=shipment.order_id, shipment_id=shipment.shipment_id,
                               tracking_number=shipment.tracking_number, carrier=shipment.carrier,
                               status=status, occurred_at=moment, location=location, detail=detail)
               for status, moment, location, detail in steps]
    if rng.random() < behaviour.out_of_order and len(updates) >= 3:
        updates[1], updates[2] = updates[2], updates[1]  # a late-arriving scan
    if rng.random() < behaviour.duplicate:  # a carrier re-sending an update
        repeated = rng.randrange(len(updates))
        updates.insert(repeated + 1, updates[repeated])
    return SimulatedJourney(shipment, fate, tuple(updates))


def simulate(shipments: Iterable[SimulatedShipment], *, seed: int = 7,
             behaviour: CarrierBehaviour = CarrierBehaviour(), tz: ZoneInfo = SHANGHAI,
             start: datetime | None = None) -> list[TrackingUpdated]:
    """Every shipment's updates, interleaved by the carriers' times as they would arrive (each
    shipment's own updates stay in the order its carrier sent them)."""
    journeys = [simulate_journey(s, seed=seed, behaviour=behaviour, tz=tz, start=start)
                for s in shipments]
    keyed = []
    for j, journey in enumerate(journeys):
        times = sorted(u.occurred_at for u in journey.updates)
        keyed += [(moment, j, i, update)
                  for i, (moment, update) in enumerate(zip(times, journey.updates, strict=True))]
    keyed.sort(key=lambda item: (item[0], item[1], item[2]))
    return [update for *_, update in keyed]


# --- command line ---------------------------------------------------------------------------------


async def _follow(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer

    from orderflow.connector import OrderPusher
    from orderflow.contracts.topics import SHIPMENT_DISPATCHED
    from orderflow.runtime.settings import KafkaSettings

    kafka = KafkaSettings()
    behaviour = CarrierBehaviour(late=args.late, exception=args.exception,
                                 exception_resolved=args.exception_resolved)
    consumer = AIOKafkaConsumer(SHIPMENT_DISPATCHED.name, **kafka.client_kwargs(),
                                group_id="orderflow.carrier-simulator", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    published = idle = 0
    try:
        async with OrderPusher(kafka, producer_name="carrier-simulator") as pusher:
            while args.idle_exit <= 0 or idle < args.idle_exit:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                shipments = [SimulatedShipment.from_dispatched(
                    ShipmentDispatched.model_validate_json(r.value or b"{}"))
                    for records in batches.values() for r in records]
                if not shipments:
                    idle += 1
                    continue
                idle = 0
                updates = simulate(shipments, seed=args.seed, behaviour=behaviour)
                await pusher.publish(updates)
                await consumer.commit()
                published += len(updates)
                print(f"{len(shipments)} shipments, {len(updates)} tracking updates published",
                      flush=True)
    finally:
        await consumer.stop()
    print(f"done: {published} tracking updates", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orderflow.logistics.carrier_simulator",
        description="Follow shipment.dispatched and publish simulated carrier tracking updates "
                    "(KAFKA_BOOTSTRAP_SERVERS names the broker).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--late", type=float, default=CarrierBehaviour.late)
    parser.add_argument("--exception", type=float, default=CarrierBehaviour.exception)
    parser.add_argument("--exception-resolved", type=float,
                        default=CarrierBehaviour.exception_resolved)
    parser.add_argument("--idle-exit", type=int, default=0,
                        help="stop after this many idle seconds (0: follow forever)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_follow(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
