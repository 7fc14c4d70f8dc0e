"""Shipments (``logistics_shipments``), their tracking history (``logistics_tracking_updates``)
and the delays flagged (``logistics_delays``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import TrackingUpdated
from orderflow.contracts.order import Address
from orderflow.logistics.domain import (
    CarrierCatalogue,
    CarrierChoice,
    DelayFinding,
    DispatchRequest,
    NoCarrier,
    OrderShipment,
    PlannedShipment,
    ProductInfo,
    ShipmentMove,
    ShipmentRecord,
    TrackingOutcome,
    WarehouseSite,
    WatchList,
    new_tracking_number,
)
from orderflow.logistics.repository.tables import delays, shipments, tracking_updates
from orderflow.runtime.sqlalchemy_bridge import Statement


class TrackingNumbersExhausted(RuntimeError):
    """Every attempt at a fresh tracking number collided: the format's number space is full."""


_RECORD_COLUMNS = (shipments.c.shipment_id, shipments.c.order_id, shipments.c.external_id,
                   shipments.c.warehouse_id, shipments.c.status, shipments.c.status_at,
                   shipments.c.carrier, shipments.c.service, shipments.c.tracking_number,
                   shipments.c.pickup_date, shipments.c.promised_date)


def _record(row: Any) -> ShipmentRecord:
    return ShipmentRecord(row.shipment_id, row.order_id, row.external_id, row.warehouse_id,
                          row.status, row.status_at, row.carrier, row.service,
                          row.tracking_number, row.pickup_date, row.promised_date)


# the dispatch path's statements, one per table whatever the number of orders, run on asyncpg
# directly (``Statement``): the shipments each order has (kind 'n'), the warehouses (kind 'w')
# and the products ('p'), in one round trip
_DISPATCH_DATA = Statement(
    "SELECT 'n' AS kind, order_id AS id, count(*) AS n, CAST(NULL AS text) AS name, "
    "CAST(NULL AS text) AS province, CAST(NULL AS text) AS city, "
    "CAST(NULL AS numeric) AS weight_kg FROM logistics_shipments "
    "WHERE order_id = ANY(CAST(:ids AS text[])) GROUP BY order_id "
    "UNION ALL SELECT 'w', warehouse_id, NULL, name, province, city, NULL "
    "FROM logistics_warehouses WHERE warehouse_id = ANY(CAST(:warehouse_ids AS text[])) "
    "UNION ALL SELECT 'p', sku, NULL, name, NULL, NULL, weight_kg FROM logistics_products "
    "WHERE sku = ANY(CAST(:skus AS text[]))")
_SHIPMENT_FIELDS = (
    ("shipment_id", "text"), ("order_id", "text"), ("external_id", "text"),
    ("customer_id", "text"), ("warehouse_id", "text"), ("status", "text"),
    ("status_at", "timestamptz"), ("carrier", "text"), ("carrier_name", "text"),
    ("service", "text"), ("service_name", "text"), ("express", "boolean"),
    ("tracking_number", "text"), ("zone", "text"), ("rule", "text"), ("rule_detail", "text"),
    ("priority", "text"), ("lines", "jsonb"), ("weight_kg", "numeric"),
    ("weight_estimated", "boolean"), ("cost", "numeric"), ("currency", "text"),
    ("ship_to", "jsonb"), ("destination_province", "text"), ("destination_city", "text"),
    ("requested_date", "date"), ("pickup_date", "date"), ("promised_date", "date"),
    ("misses_requested_date", "boolean"), ("dispatched_at", "timestamptz"),
    ("exception_code", "text"), ("exception_detail", "text"), ("source_event_id", "text"))
_NAMES = ", ".join(name for name, _ in _SHIPMENT_FIELDS)
# a shipment no carrier can take has no tracking number (never a conflict); one whose number
# collided is left out (RETURNING names those stored) and drawn again; an existing shipment id
# (a replayed reservation) raises
_ADD_SHIPMENTS = Statement(
    f"INSERT INTO logistics_shipments ({_NAMES}) SELECT {_NAMES} FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _SHIPMENT_FIELDS)
    + f") WITH ORDINALITY AS s({_NAMES}, n) ORDER BY n "
    "ON CONFLICT (tracking_number) DO NOTHING RETURNING shipment_id")


@dataclass(frozen=True)
class NewShipment:
    """A planned shipment with what its row needs, and (carrier chosen) its number."""

    plan: PlannedShipment
    external_id: str
    customer_id: str
    priority: str
    ship_to: Address
    source_event_id: str
    tracking_number: str | None

    @classmethod
    def planned(cls, plan: PlannedShipment, request: DispatchRequest,
                tracking_number: str | None) -> NewShipment:
        """A shipment ``request`` planned, with the order's fields its row keeps."""
        order = request.order
        return cls(plan, external_id=order.external_id, customer_id=order.customer.id,
                   priority=order.priority, ship_to=order.shipping_address,
                   source_event_id=request.source_event_id, tracking_number=tracking_number)


def _shipment_arrays(new: Sequence[NewShipment],
                     catalogue: CarrierCatalogue) -> dict[str, list[Any]]:
    """``_ADD_SHIPMENTS``' parameters: one array per column (NULL for a column a shipment leaves
    empty)."""
    arrays: dict[str, list[Any]] = {name: [] for name, _ in _SHIPMENT_FIELDS}
    for s in new:
        plan, choice = s.plan, s.plan.choice
        row: dict[str, Any] = {
            "shipment_id": plan.shipment_id, "order_id": plan.order_id,
            "external_id": s.external_id, "customer_id": s.customer_id,
            "warehouse_id": plan.warehouse_id, "priority": s.priority,
            "lines": json.dumps(_shipment_lines(plan)),
            "weight_kg": plan.weight_kg, "weight_estimated": plan.weight_estimated,
            "currency": catalogue.currency, "ship_to": s.ship_to.model_dump_json(),
            "destination_province": s.ship_to.province, "destination_city": s.ship_to.city,
            "requested_date": plan.requested_date, "dispatched_at": plan.dispatched_at,
            "misses_requested_date": plan.misses_requested_date,
            "source_event_id": s.source_event_id,
        }
        if isinstance(choice, CarrierChoice):
            option = choice.option
            row.update(
                status="dispatched", status_at=plan.dispatched_at, carrier=option.carrier.code,
                carrier_name=option.carrier.name, service=option.service.code,
                service_name=option.service.name, express=option.service.express,
                zone=option.zone, rule=choice.rule, rule_detail=choice.detail, cost=option.cost,
                pickup_date=option.pickup_date, promised_date=option.promised_date,
                tracking_number=s.tracking_number)
        else:
            row.update(status="no_carrier", express=False, rule="no_carrier",
                       rule_detail=choice.reason, exception_code="no_carrier",
                       exception_detail=choice.reason)
        for name, values in arrays.items():
            values.append(row.get(name))
    return arrays


def _shipment_lines(plan: PlannedShipment) -> list[dict[str, Any]]:
    return [{"sku": line.sku, "quantity": line.quantity, "name": line.name,
             "unit_weight_kg": None if line.unit_weight_kg is None
             else str(line.unit_weight_kg)} for line in plan.lines]




_OF_ORDER = Statement(
    "SELECT shipment_id, warehouse_id, status, tracking_number, CAST(lines AS text), "
    "dispatched_at, delivered_at FROM logistics_shipments WHERE order_id = :order_id")


class Shipments:
    def __init__(self, session: AsyncSession,
                 randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.session = session
        self.randbelow = randbelow

    # -- dispatch -----------------------------------------------------------------------------
    async def dispatch_data(
            self, order_ids: Iterable[str], warehouse_ids: Iterable[str], skus: Iterable[str],
    ) -> tuple[dict[str, int], dict[str, WarehouseSite], dict[str, ProductInfo]]:
        """How many shipments each order has (only those with any), the warehouses' sites and
        the products' names and weights: one round trip."""
        rows = await _DISPATCH_DATA.fetch(self.session, {
            "ids": sorted(set(order_ids)), "warehouse_ids": sorted(set(warehouse_ids)),
            "skus": sorted(set(skus))})
        counts: dict[str, int] = {}
        sites: dict[str, WarehouseSite] = {}
        infos: dict[str, ProductInfo] = {}
        for kind, key, n, name, province, city, weight_kg in rows:
            if kind == "n":
                counts[key] = int(n)
            elif kind == "w":
                sites[key] = WarehouseSite(key, name, province, city)
            else:
                infos[key] = ProductInfo(key, name, weight_kg)
        return counts, sites, infos

    def tracking_number(self, choice: CarrierChoice | NoCarrier) -> str | None:
        """A fresh tracking number in the chosen carrier's format (the unique constraint
        decides); None when no carrier took the shipment."""
        if not isinstance(choice, CarrierChoice):
            return None
        return new_tracking_number(choice.option.carrier.tracking, self.randbelow)

    async def add(self, new: Sequence[NewShipment], *, catalogue: CarrierCatalogue,
                  attempts: int = 12) -> list[NewShipment]:
        """Store planned shipments (their tracking numbers drawn by the caller, in order) with
        one statement; a number that collided is drawn again for its shipment alone, up to
        ``attempts`` times. Returns the shipments with the numbers stored; raises if a shipment
        id exists (a replayed reservation)."""
        stored = list(new)
        pending = list(range(len(stored)))
        for attempt in range(attempts):
            if not pending:
                break
            if attempt:  # the collided ones again, with fresh numbers
                for i in pending:
                    choice = stored[i].plan.choice
                    assert isinstance(choice, CarrierChoice)
                    stored[i] = replace(stored[i], tracking_number=self.tracking_number(choice))
            inserted = {r[0] for r in await _ADD_SHIPMENTS.fetch(
                self.session, _shipment_arrays([stored[i] for i in pending], catalogue))}
            pending = [i for i in pending if stored[i].plan.shipment_id not in inserted]
        if not pending:
            return stored
        choice = stored[pending[0]].plan.choice
        assert isinstance(choice, CarrierChoice)
        raise TrackingNumbersExhausted(
            f"{attempts} tracking numbers in a row collided for carrier "
            f"{choice.option.carrier.code}")

    async def of_order(self, order_id: str) -> list[OrderShipment]:
        """The order's shipments, whatever became of them."""
        rows = await _OF_ORDER.fetch(self.session, {"order_id": order_id})
        return [OrderShipment(shipment_id, warehouse_id, status, tracking_number,
                              tuple((line["sku"], int(line["quantity"]))
                                    for line in json.loads(lines)),
                              dispatched_at, delivered_at)
                for shipment_id, warehouse_id, status, tracking_number, lines, dispatched_at,
                delivered_at in rows]

    # -- tracking -----------------------------------------------------------------------------
    async def lock(self, shipment_id: str) -> ShipmentRecord | None:
        row = (await self.session.execute(
            sa.select(*_RECORD_COLUMNS).where(shipments.c.shipment_id == shipment_id)
            .with_for_update())).first()
        return _record(row) if row else None

    async def record_tracking(self, shipment_id: str, update: TrackingUpdated,
                              occurred_at: datetime) -> int | None:
        """Keep the update in the shipment's history; None when exactly this update (same status
        at the same moment) is already there."""
        row = (await self.session.execute(
            pg_insert(tracking_updates).values(
                shipment_id=shipment_id, status=update.status, occurred_at=occurred_at,
                location=update.location, detail=update.detail, outcome="pending")
            .on_conflict_do_nothing(index_elements=[tracking_updates.c.shipment_id,
                                                    tracking_updates.c.status,
                                                    tracking_updates.c.occurred_at])
            .returning(tracking_updates.c.id))).first()
        return int(row.id) if row else None

    async def set_tracking_outcome(self, update_id: int, outcome: TrackingOutcome) -> None:
        await self.session.execute(tracking_updates.update()
                                   .where(tracking_updates.c.id == update_id).values(outcome=outcome))

    async def move(self, shipment_id: str, move: ShipmentMove) -> None:
        state = move.state
        await self.session.execute(shipments.update().where(shipments.c.shipment_id == shipment_id)
                                   .values(status=state.status, status_at=state.status_at,
                                           updated_at=sa.func.now(), **move.columns()))

    # -- delays -------------------------------------------------------------------------------
    async def flag_delay(self, shipment: ShipmentRecord, finding: DelayFinding, *,
                         observed_at: datetime, source: str) -> bool:
        """Record a delay once per shipment and reason; True when it is new."""
        assert shipment.promised_date is not None
        row = (await self.session.execute(
            pg_insert(delays).values(
                shipment_id=shipment.shipment_id, reason=finding.reason,
                order_id=shipment.order_id, promised_date=shipment.promised_date,
                expected_date=finding.expected_date, observed_at=observed_at, source=source)
            .on_conflict_do_nothing().returning(delays.c.shipment_id))).first()
        return row is not None

    async def watched(self, watch: WatchList, *, after: str, limit: int,
                      order_ids: Sequence[str] | None = None) -> list[ShipmentRecord]:
        """The shipments on ``watch`` (``domain.watch_list``), by shipment id after ``after``
        (keyset paging)."""
        final = sa.exists().where(delays.c.shipment_id == shipments.c.shipment_id,
                                  delays.c.reason == watch.final_reason)
        query = (
            sa.select(*_RECORD_COLUMNS)
            .where(shipments.c.status.in_(watch.statuses), shipments.c.shipment_id > after,
                   sa.or_(shipments.c.promised_date <= watch.promised_by,
                          shipments.c.pickup_date < watch.collection_before,
                          shipments.c.status.in_(watch.any_date)),
                   ~final)
            .order_by(shipments.c.shipment_id).limit(limit))
        if order_ids is not None:
            query = query.where(shipments.c.order_id.in_(list(order_ids)))
        return [_record(r) for r in (await self.session.execute(query)).all()]

    # -- reading ------------------------------------------------------------------------------
    async def rows(self, *, order_id: str | None = None, shipment_id: str | None = None,
                   status: str | None = None, limit: int = 100) -> list[Any]:
        query = sa.select(shipments)
        if order_id is not None:
            query = query.where(shipments.c.order_id == order_id)
        if shipment_id is not None:
            query = query.where(shipments.c.shipment_id == shipment_id)
        if status is not None:
            query = query.where(shipments.c.status == status)
        query = query.order_by(shipments.c.dispatched_at.desc(), shipments.c.shipment_id).limit(limit)
        return list((await self.session.execute(query)).all())

    async def tracking_history(self, shipment_ids: Sequence[str]) -> dict[str, list[Any]]:
        rows = (await self.session.execute(
            sa.select(tracking_updates).where(tracking_updates.c.shipment_id.in_(list(shipment_ids)))
            .order_by(tracking_updates.c.occurred_at, tracking_updates.c.id))).all()
        history: dict[str, list[Any]] = {}
        for r in rows:
            history.setdefault(r.shipment_id, []).append(r)
        return history

    async def delays_of(self, shipment_ids: Sequence[str]) -> dict[str, list[Any]]:
        rows = (await self.session.execute(
            sa.select(delays).where(delays.c.shipment_id.in_(list(shipment_ids)))
            .order_by(delays.c.flagged_at))).all()
        found: dict[str, list[Any]] = {}
        for r in rows:
            found.setdefault(r.shipment_id, []).append(r)
        return found
