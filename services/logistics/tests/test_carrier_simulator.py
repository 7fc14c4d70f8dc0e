"""The carrier simulator: deterministic by seed, and its journeys are ones the tracking rules
follow to delivery (or to an unresolved exception), late where it says late."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orderflow.logistics import domain
from orderflow.logistics.carrier_simulator import (
    CarrierBehaviour,
    SimulatedShipment,
    simulate,
    simulate_journey,
)

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
DISPATCHED = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
POLICY = domain.DelayPolicy(tz=TZ)


def shipments(n: int) -> list[SimulatedShipment]:
    return [SimulatedShipment(order_id=f"order-{i // 2}", shipment_id=f"ship-{i}",
                              tracking_number=f"SF{i:012d}", carrier="SF",
                              promised_date=date(2026, 11, 21 + i % 3), dispatched_at=DISPATCHED)
            for i in range(n)]


def test_the_same_seed_gives_the_same_updates() -> None:
    assert simulate(shipments(50), seed=3) == simulate(shipments(50), seed=3)
    assert simulate(shipments(50), seed=3) != simulate(shipments(50), seed=4)
    # a shipment's journey does not depend on which other shipments are simulated with it
    alone = [u for u in simulate(shipments(50)[7:8]) if u.shipment_id == "ship-7"]
    together = [u for u in simulate(shipments(50)) if u.shipment_id == "ship-7"]
    assert alone == together


def test_journeys_end_as_their_fate_says_and_late_ones_are_flagged_by_the_carriers_scans() -> None:
    fates: Counter[str] = Counter()
    for shipment in shipments(400):
        journey = simulate_journey(shipment, seed=11)
        fates[journey.fate] += 1
        state = domain.TrackingState("dispatched", DISPATCHED)
        delay_reasons: set[str] = set()
        delivered_at = None
        for update in journey.updates:
            assert update.occurred_at > DISPATCHED
            decision = domain.apply_tracking(state, update.status, update.occurred_at)
            state = decision.state
            if decision.outcome == "delivered":
                delivered_at = update.occurred_at
            if decision.changed or decision.outcome == "repeated":  # as the handler does
                delay_reasons |= {f.reason for f in domain.assess_delays(
                    status=state.status, pickup_date=DISPATCHED.date(),
                    promised_date=shipment.promised_date, status_at=state.status_at,
                    now=update.occurred_at, policy=POLICY)}
        if journey.fate == "exception":
            assert state.status == "exception"
            continue
        assert state.status == "delivered"
        assert delivered_at is not None
        on_time = domain.delivered_on_time(delivered_at, shipment.promised_date, TZ)
        if journey.fate == "late":
            assert not on_time
            assert "not_out_for_delivery_on_promised_day" in delay_reasons
        if journey.fate == "on_time":
            assert on_time
            assert not delay_reasons
    assert fates["on_time"] > 250
    assert 30 < fates["late"] < 100
    assert fates["exception"] > 3 and fates["exception_resolved"] > 3


def test_some_updates_are_repeated_or_arrive_out_of_order() -> None:
    behaviour = CarrierBehaviour(duplicate=0.5, out_of_order=0.5)
    journeys = [simulate_journey(s, behaviour=behaviour) for s in shipments(40)]
    assert any(len(set(j.updates)) < len(j.updates) for j in journeys)
    assert any(any(b.occurred_at < a.occurred_at for a, b in zip(j.updates, j.updates[1:],
                                                                 strict=False))
               for j in journeys)


def test_updates_are_interleaved_by_time_and_keep_each_shipments_order() -> None:
    updates = simulate(shipments(30), seed=5)
    journeys = {s.shipment_id: simulate_journey(s, seed=5) for s in shipments(30)}
    for shipment_id, journey in journeys.items():
        assert [u for u in updates if u.shipment_id == shipment_id] == list(journey.updates)
    first, last = updates[0].occurred_at, updates[-1].occurred_at
    assert first < last < DISPATCHED + timedelta(days=10)
