"""Logistics' tables: shipments, their tracking history, the delays flagged, and the master data
logistics needs (warehouse locations, product names and weights)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ProductUpdated, TrackingUpdated, WarehouseUpdated
from orderflow.contracts.order import Address, CanonicalOrder
from orderflow.logistics.carriers import CarrierCatalogue, CarrierChoice, new_tracking_number
from orderflow.logistics.domain import (
    DelayFinding,
    PlannedShipment,
    ProductInfo,
    ShipmentStatus,
    TrackingOutcome,
    TrackingState,
    WarehouseSite,
)
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()

warehouses = sa.Table(
    "logistics_warehouses", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("province", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "logistics_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("weight_kg", sa.Numeric(10, 3), nullable=False),
    sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
shipments = sa.Table(
    "logistics_shipments", metadata,
    sa.Column("shipment_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True)),
    sa.Column("carrier", sa.Text),
    sa.Column("carrier_name", sa.Text),
    sa.Column("service", sa.Text),
    sa.Column("service_name", sa.Text),
    sa.Column("express", sa.Boolean, nullable=False),
    sa.Column("tracking_number", sa.Text, unique=True),
    sa.Column("zone", sa.Text),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("rule_detail", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("weight_kg", sa.Numeric(10, 3), nullable=False),
    sa.Column("weight_estimated", sa.Boolean, nullable=False),
    sa.Column("cost", sa.Numeric(12, 2)),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("ship_to", JSONB, nullable=False),
    sa.Column("destination_province", sa.Text, nullable=False),
    sa.Column("destination_city", sa.Text, nullable=False),
    sa.Column("requested_date", sa.Date),
    sa.Column("pickup_date", sa.Date),
    sa.Column("promised_date", sa.Date),
    sa.Column("misses_requested_date", sa.Boolean, nullable=False),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("on_time", sa.Boolean),
    sa.Column("exception_code", sa.Text),
    sa.Column("exception_detail", sa.Text),
    sa.Column("source_event_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
tracking_updates = sa.Table(
    "logistics_tracking_updates", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("shipment_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
)
delays = sa.Table(
    "logistics_delays", metadata,
    sa.Column("shipment_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("promised_date", sa.Date, nullable=False),
    sa.Column("expected_date", sa.Date),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("flagged_at", sa.DateTime(timezone=True)),
)

orders = sa.Table(
    "logistics_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),  # open | cancelled
    sa.Column("order_json", JSONB),
    sa.Column("customer_id", sa.Text),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("cancelled_by", sa.Text),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("revision", sa.Integer),
    sa.Column("pending_change_id", sa.Text),
    sa.Column("pending_revision", sa.Integer),
    sa.Column("parked_reservation", JSONB),
    sa.Column("parked_event_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
returns = sa.Table(
    "logistics_returns", metadata,
    sa.Column("rma_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # approved | refused | received
    sa.Column("resolution", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("carrier", sa.Text),
    sa.Column("tracking_number", sa.Text, unique=True),
    sa.Column("refund_amount", sa.Numeric(12, 2)),
    sa.Column("currency", sa.Text),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True)),
    sa.Column("inspections", JSONB),
    sa.Column("refund_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)

UNDELIVERED = ("dispatched", "picked_up", "in_transit", "out_for_delivery", "exception")


class TrackingNumbersExhausted(RuntimeError):
    """Every attempt at a fresh tracking number collided: the format's number space is full."""


@dataclass(frozen=True)
class ShipmentRecord:
    """A shipment as stored."""

    shipment_id: str
    order_id: str
    external_id: str
    warehouse_id: str
    status: ShipmentStatus
    status_at: datetime | None
    carrier: str | None
    service: str | None
    tracking_number: str | None
    pickup_date: date | None
    promised_date: date | None

    @property
    def tracking(self) -> TrackingState:
        return TrackingState(self.status, self.status_at)


_RECORD_COLUMNS = (shipments.c.shipment_id, shipments.c.order_id, shipments.c.external_id,
                   shipments.c.warehouse_id, shipments.c.status, shipments.c.status_at,
                   shipments.c.carrier, shipments.c.service, shipments.c.tracking_number,
                   shipments.c.pickup_date, shipments.c.promised_date)


def _record(row: Any) -> ShipmentRecord:
    return ShipmentRecord(row.shipment_id, row.order_id, row.external_id, row.warehouse_id,
                          row.status, row.status_at, row.carrier, row.service,
                          row.tracking_number, row.pickup_date, row.promised_date)


# statements of the dispatch path, built once
_LOCK_ORDER_ROW = sa.select(orders).where(orders.c.order_id == sa.bindparam("o_id")).with_for_update()
_SHIPMENT_COUNT = sa.select(sa.func.count()).select_from(shipments).where(
    shipments.c.order_id == sa.bindparam("o_id"))
_ENSURE_ORDER = pg_insert(orders).on_conflict_do_nothing()
_WAREHOUSE_SITES = sa.select(warehouses).where(
    warehouses.c.warehouse_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Text))))
_PRODUCT_INFOS = sa.select(products).where(
    products.c.sku == sa.any_(sa.bindparam("skus", type_=ARRAY(sa.Text))))
_ADD_NO_CARRIER = shipments.insert()
_ADD_DISPATCHED = (pg_insert(shipments)
                   .on_conflict_do_nothing(index_elements=[shipments.c.tracking_number])
                   .returning(shipments.c.shipment_id))


# -- the statements of a run of reservations (the batch handler), built once: one statement per
# table whatever the run's size, run on asyncpg directly (``Statement``); rows locked in sorted
# order (byte order: COLLATE "C" in SQL and Python's sort agree), so replicas dispatching
# overlapping runs cannot deadlock crosswise
_ENSURE_ORDERS = Statement(
    "INSERT INTO logistics_orders (order_id, status, order_json, customer_id) "
    "SELECT order_id, 'open', order_json, customer_id FROM unnest(CAST(:ids AS text[]), "
    "CAST(:orders AS jsonb[]), CAST(:customer_ids AS text[])) WITH ORDINALITY "
    "AS o(order_id, order_json, customer_id, n) ORDER BY n "
    "ON CONFLICT (order_id) DO UPDATE SET order_json = excluded.order_json, "
    "customer_id = excluded.customer_id, updated_at = now() "
    "WHERE logistics_orders.order_json IS NULL")
# what a reservation needs of its order's row (the order's JSON only by ``kept_orders``)
_LOCK_ORDER_ROWS = Statement(
    "SELECT order_id, status, CAST(order_json ->> 'revision' AS integer) AS kept_revision, "
    "pending_change_id FROM logistics_orders WHERE order_id = ANY(CAST(:ids AS text[])) "
    "ORDER BY order_id COLLATE \"C\" FOR UPDATE")
_KEPT_ORDERS = Statement(
    "SELECT order_id, CAST(order_json AS text) AS order_json FROM logistics_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[]))")
# the shipments each order has (kind 'n'), the warehouses (kind 'w') and the products ('p')
_COUNTS_AND_MASTER_DATA = Statement(
    "SELECT 'n' AS kind, order_id AS id, count(*) AS n, CAST(NULL AS text) AS name, "
    "CAST(NULL AS text) AS province, CAST(NULL AS text) AS city, "
    "CAST(NULL AS numeric) AS weight_kg FROM logistics_shipments "
    "WHERE order_id = ANY(CAST(:ids AS text[])) GROUP BY order_id "
    "UNION ALL SELECT 'w', warehouse_id, NULL, name, province, city, NULL "
    "FROM logistics_warehouses WHERE warehouse_id = ANY(CAST(:warehouse_ids AS text[])) "
    "UNION ALL SELECT 'p', sku, NULL, name, NULL, NULL, weight_kg FROM logistics_products "
    "WHERE sku = ANY(CAST(:skus AS text[]))")
_PARK_RESERVATIONS = Statement(
    "UPDATE logistics_orders AS t SET parked_reservation = p.reserved, "
    "parked_event_id = p.event_id, updated_at = now() FROM unnest(CAST(:ids AS text[]), "
    "CAST(:reserved AS jsonb[]), CAST(:event_ids AS text[])) AS p(order_id, reserved, event_id) "
    "WHERE t.order_id = p.order_id")
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
# (a replayed reservation) raises, as ``add_shipment``
_ADD_SHIPMENTS = Statement(
    f"INSERT INTO logistics_shipments ({_NAMES}) SELECT {_NAMES} FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _SHIPMENT_FIELDS)
    + f") WITH ORDINALITY AS s({_NAMES}, n) ORDER BY n "
    "ON CONFLICT (tracking_number) DO NOTHING RETURNING shipment_id")


@dataclass(frozen=True)
class OrderLock:
    """What a reservation needs of its order's locked row."""

    order_id: str
    status: str
    kept_revision: int | None
    pending_change_id: str | None


@dataclass(frozen=True)
class NewShipment:
    """A planned shipment of a run with what its row needs, and (carrier chosen) its number."""

    plan: PlannedShipment
    external_id: str
    customer_id: str
    priority: str
    ship_to: Address
    source_event_id: str
    tracking_number: str | None


def _shipment_arrays(new: Sequence[NewShipment],
                     catalogue: CarrierCatalogue) -> dict[str, list[Any]]:
    """``_ADD_SHIPMENTS``' parameters: the values ``add_shipment`` stores, one array per column
    (NULL where ``add_shipment`` leaves a column to its default: none but NULL)."""
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


class LogisticsRepository:
    def __init__(self, session: AsyncSession,
                 randbelow: Callable[[int], int] = secrets.randbelow) -> None:
        self.session = session
        self.randbelow = randbelow

    # -- master data --------------------------------------------------------------------------
    async def upsert_warehouse(self, w: WarehouseUpdated) -> None:
        values = {"warehouse_id": w.warehouse_id, "name": w.name, "province": w.province,
                  "city": w.city}
        stmt = pg_insert(warehouses).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[warehouses.c.warehouse_id],
            set_={**{k: stmt.excluded[k] for k in values if k != "warehouse_id"},
                  "updated_at": sa.func.now()}))

    async def upsert_product(self, p: ProductUpdated) -> None:
        values = {"sku": p.sku, "name": p.name, "weight_kg": p.weight_kg, "tax_rate": p.tax_rate}
        stmt = pg_insert(products).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"name": stmt.excluded.name, "weight_kg": stmt.excluded.weight_kg,
                  "tax_rate": stmt.excluded.tax_rate, "updated_at": sa.func.now()}))

    async def warehouse_sites(self, ids: Iterable[str]) -> dict[str, WarehouseSite]:
        rows = (await self.session.execute(_WAREHOUSE_SITES, {"ids": sorted(set(ids))})).all()
        return {r.warehouse_id: WarehouseSite(r.warehouse_id, r.name, r.province, r.city)
                for r in rows}

    async def product_infos(self, skus: Iterable[str]) -> dict[str, ProductInfo]:
        rows = (await self.session.execute(_PRODUCT_INFOS, {"skus": sorted(set(skus))})).all()
        return {r.sku: ProductInfo(r.sku, r.name, r.weight_kg) for r in rows}

    # -- shipments ----------------------------------------------------------------------------
    async def shipment_count(self, order_id: str) -> int:
        return int((await self.session.execute(_SHIPMENT_COUNT, {"o_id": order_id})).scalar_one())

    async def add_shipment(self, plan: PlannedShipment, *, external_id: str, customer_id: str,
                           priority: str, ship_to: Address, catalogue: CarrierCatalogue,
                           source_event_id: str, attempts: int = 12) -> str | None:
        """Store a planned shipment with a fresh tracking number in its carrier's format (the
        unique constraint decides; a collision draws again). Returns the tracking number, None
        when no carrier can take it; raises if the shipment id exists (a replayed reservation)."""
        choice = plan.choice
        values: dict[str, Any] = {
            "shipment_id": plan.shipment_id, "order_id": plan.order_id,
            "external_id": external_id, "customer_id": customer_id,
            "warehouse_id": plan.warehouse_id, "priority": priority,
            "lines": _shipment_lines(plan),
            "weight_kg": plan.weight_kg, "weight_estimated": plan.weight_estimated,
            "currency": catalogue.currency, "ship_to": ship_to.model_dump(mode="json"),
            "destination_province": ship_to.province, "destination_city": ship_to.city,
            "requested_date": plan.requested_date, "dispatched_at": plan.dispatched_at,
            "misses_requested_date": plan.misses_requested_date,
            "source_event_id": source_event_id,
        }
        if not isinstance(choice, CarrierChoice):
            await self.session.execute(_ADD_NO_CARRIER, {
                **values, "status": "no_carrier", "express": False, "rule": "no_carrier",
                "rule_detail": choice.reason, "exception_code": "no_carrier",
                "exception_detail": choice.reason})
            return None
        option = choice.option
        values.update(
            status="dispatched", status_at=plan.dispatched_at, carrier=option.carrier.code,
            carrier_name=option.carrier.name, service=option.service.code,
            service_name=option.service.name, express=option.service.express, zone=option.zone,
            rule=choice.rule, rule_detail=choice.detail, cost=option.cost,
            pickup_date=option.pickup_date, promised_date=option.promised_date)
        for _ in range(attempts):
            number = new_tracking_number(option.carrier.tracking, self.randbelow)
            inserted = (await self.session.execute(
                _ADD_DISPATCHED, {**values, "tracking_number": number})).first()
            if inserted is not None:
                return number
        raise TrackingNumbersExhausted(
            f"{attempts} tracking numbers in a row collided for carrier {option.carrier.code}")

    # -- a run of reservations (the batch handler) ---------------------------------------------
    async def lock_orders(self, reserved: Sequence[tuple[str, CanonicalOrder]],
                          ) -> dict[str, OrderLock]:
        """``lock_order`` for every order of a run (order id, the order its first reservation
        brings): the records created if new, each order's JSON kept the first time a reservation
        brings it, locked in sorted order until the transaction ends: two round trips."""
        first: dict[str, CanonicalOrder] = {}
        for order_id, order in reserved:
            first.setdefault(order_id, order)
        ids = sorted(first)
        await _ENSURE_ORDERS.run(self.session, {
            "ids": ids, "orders": [first[i].model_dump_json() for i in ids],
            "customer_ids": [first[i].customer.id for i in ids]})
        rows = await _LOCK_ORDER_ROWS.fetch(self.session, {"ids": ids})
        return {r[0]: OrderLock(r[0], r[1], r[2], r[3]) for r in rows}

    async def kept_orders(self, order_ids: Iterable[str]) -> dict[str, CanonicalOrder]:
        """The orders' JSON as their records keep it (the caller holds their locks)."""
        rows = await _KEPT_ORDERS.fetch(self.session, {"ids": sorted(set(order_ids))})
        return {order_id: CanonicalOrder.model_validate(json.loads(order_json))
                for order_id, order_json in rows}

    async def counts_and_master_data(
            self, order_ids: Iterable[str], warehouse_ids: Iterable[str], skus: Iterable[str],
    ) -> tuple[dict[str, int], dict[str, WarehouseSite], dict[str, ProductInfo]]:
        """``shipment_count`` of each order (only those with any), ``warehouse_sites`` and
        ``product_infos``: one round trip."""
        rows = await _COUNTS_AND_MASTER_DATA.fetch(self.session, {
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

    async def park_reservations(self, parked: Sequence[tuple[str, str, str]]) -> None:
        """``park_reservation`` for several orders, each once: (order id, the reservation's
        JSON, its event id)."""
        await _PARK_RESERVATIONS.run(self.session, {
            "ids": [p[0] for p in parked], "reserved": [p[1] for p in parked],
            "event_ids": [p[2] for p in parked]})

    async def add_shipments(self, shipments_: Sequence[NewShipment], *,
                            catalogue: CarrierCatalogue, attempts: int = 12) -> list[NewShipment]:
        """``add_shipment`` for a run's planned shipments (their tracking numbers drawn by the
        caller, in order): one statement; a number that collided is drawn again for its shipment
        alone, up to ``attempts`` times. Returns the shipments with the numbers stored."""
        stored = list(shipments_)
        pending = list(range(len(stored)))
        for attempt in range(attempts):
            if attempt:  # the collided ones again, with fresh numbers
                for i in pending:
                    choice = stored[i].plan.choice
                    assert isinstance(choice, CarrierChoice)
                    stored[i] = replace(stored[i], tracking_number=new_tracking_number(
                        choice.option.carrier.tracking, self.randbelow))
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

    def tracking_number(self, choice: CarrierChoice) -> str:
        """A fresh tracking number in the carrier's format (the unique constraint decides)."""
        return new_tracking_number(choice.option.carrier.tracking, self.randbelow)

    async def lock_shipment(self, shipment_id: str) -> ShipmentRecord | None:
        row = (await self.session.execute(
            sa.select(*_RECORD_COLUMNS).where(shipments.c.shipment_id == shipment_id)
            .with_for_update())).first()
        return _record(row) if row else None

    async def record_tracking(self, shipment_id: str, update: TrackingUpdated, occurred_at: datetime,
                              ) -> int | None:
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

    async def move(self, shipment_id: str, state: TrackingState, **extra: Any) -> None:
        await self.session.execute(shipments.update().where(shipments.c.shipment_id == shipment_id)
                                   .values(status=state.status, status_at=state.status_at,
                                           updated_at=sa.func.now(), **extra))

    async def statuses_of_order(self, order_id: str) -> list[str]:
        return list((await self.session.execute(
            sa.select(shipments.c.status).where(shipments.c.order_id == order_id))).scalars())

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

    async def watch_candidates(self, *, today: date, after: str, limit: int,
                               order_ids: Sequence[str] | None = None) -> list[ShipmentRecord]:
        """Undelivered shipments the delay rules might flag as of ``today`` (a coarse filter; the
        domain decides), not yet flagged as having missed their date, by shipment id after
        ``after`` (keyset paging)."""
        missed = sa.exists().where(delays.c.shipment_id == shipments.c.shipment_id,
                                   delays.c.reason == "promised_date_missed")
        query = (
            sa.select(*_RECORD_COLUMNS)
            .where(shipments.c.status.in_(UNDELIVERED), shipments.c.shipment_id > after,
                   sa.or_(shipments.c.promised_date <= today, shipments.c.pickup_date < today,
                          shipments.c.status == "exception"),
                   ~missed)
            .order_by(shipments.c.shipment_id).limit(limit))
        if order_ids is not None:
            query = query.where(shipments.c.order_id.in_(list(order_ids)))
        return [_record(r) for r in (await self.session.execute(query)).all()]

    # -- reading ------------------------------------------------------------------------------
    async def shipment_rows(self, *, order_id: str | None = None, shipment_id: str | None = None,
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

    async def warehouse_row(self, warehouse_id: str) -> Any:
        return (await self.session.execute(
            sa.select(warehouses).where(warehouses.c.warehouse_id == warehouse_id))).first()


    # -- the order record: cancel vs dispatch -----------------------------------------------------
    async def lock_order(self, order_id: str) -> OrderRow:
        """The order's record, created if new, locked FOR UPDATE until the transaction ends: a
        cancel request and a reservation of one order are decided one after the other, whichever
        replica handles them (a reservation's records: ``lock_orders``)."""
        await self.session.execute(_ENSURE_ORDER, {"order_id": order_id, "status": "open"})
        row = (await self.session.execute(_LOCK_ORDER_ROW, {"o_id": order_id})).one()
        kept = CanonicalOrder.model_validate(row.order_json) if row.order_json else None
        return OrderRow(row.order_id, row.status, kept,
                        row.cancel_reason, row.revision, row.pending_change_id,
                        row.pending_revision, row.parked_reservation, row.parked_event_id)

    # -- changes ------------------------------------------------------------------------------
    async def mark_change_pending(self, order_id: str, change_id: str, revision: int) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            pending_change_id=change_id, pending_revision=revision, updated_at=sa.func.now()))

    async def park_reservation(self, order_id: str, reserved: dict[str, Any],
                               event_id: str) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            parked_reservation=reserved, parked_event_id=event_id, updated_at=sa.func.now()))

    async def settle_change(self, order_id: str, order: CanonicalOrder | None) -> None:
        """The pending change is settled: applied (``order``, its new content and revision) or
        refused (None); the parked reservation is cleared (the caller dispatched it or not)."""
        values: dict[str, Any] = {"pending_change_id": None, "pending_revision": None,
                                  "parked_reservation": None, "parked_event_id": None,
                                  "updated_at": sa.func.now()}
        if order is not None:
            values.update(order_json=order.model_dump(mode="json"), customer_id=order.customer.id,
                          revision=order.revision)
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(**values))

    async def mark_cancelled(self, order_id: str, reason: str, requested_by: str) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            status="cancelled", cancel_reason=reason, cancelled_by=requested_by,
            cancelled_at=sa.func.now(), updated_at=sa.func.now()))

    async def dispatched_shipment_ids(self, order_id: str) -> list[str]:
        return list((await self.session.execute(
            sa.select(shipments.c.shipment_id)
            .where(shipments.c.order_id == order_id, shipments.c.tracking_number.is_not(None))
            .order_by(shipments.c.shipment_id))).scalars())

    # -- returns ------------------------------------------------------------------------------
    async def shipped_units(self, order_id: str) -> tuple[dict[str, dict[str, int]], datetime | None]:
        """{sku: {warehouse: units}} of the order's dispatched shipments, and the moment the
        return window starts: the last delivery, else the last dispatch."""
        rows = (await self.session.execute(
            sa.select(shipments.c.warehouse_id, shipments.c.lines, shipments.c.dispatched_at,
                      shipments.c.delivered_at)
            .where(shipments.c.order_id == order_id, shipments.c.tracking_number.is_not(None))
        )).all()
        units: dict[str, dict[str, int]] = {}
        starts: list[datetime] = []
        for r in rows:
            for line in r.lines:
                per = units.setdefault(line["sku"], {})
                per[r.warehouse_id] = per.get(r.warehouse_id, 0) + int(line["quantity"])
            starts.append(r.delivered_at or r.dispatched_at)
        return units, (max(starts) if starts else None)

    async def returned_units(self, order_id: str) -> dict[str, int]:
        rows = (await self.session.execute(
            sa.select(returns.c.lines).where(returns.c.order_id == order_id,
                                             returns.c.status.in_(("approved", "received"))))).all()
        total: dict[str, int] = {}
        for r in rows:
            for line in r.lines:
                total[line["sku"]] = total.get(line["sku"], 0) + int(line["quantity"])
        return total

    async def tax_rates(self, skus: Iterable[str]) -> dict[str, Decimal]:
        rows = (await self.session.execute(
            sa.select(products.c.sku, products.c.tax_rate)
            .where(products.c.sku.in_(sorted(set(skus)))))).all()
        return {r.sku: Decimal(r.tax_rate) for r in rows}

    async def add_return(self, *, rma_id: str, order_id: str, status: str, resolution: str,
                         reasons: list[dict[str, Any]], lines: list[dict[str, Any]],
                         carrier: str | None, tracking_number: str | None,
                         refund_amount: Decimal | None, currency: str | None,
                         requested_at: datetime) -> bool:
        """Record an RMA's decision; False when the RMA id is already known."""
        row = (await self.session.execute(pg_insert(returns).values(
            rma_id=rma_id, order_id=order_id, status=status, resolution=resolution,
            reasons=reasons, lines=lines, carrier=carrier, tracking_number=tracking_number,
            refund_amount=refund_amount, currency=currency, requested_at=requested_at,
        ).on_conflict_do_nothing().returning(returns.c.rma_id))).first()
        return row is not None

    async def lock_return(self, rma_id: str) -> Any:
        return (await self.session.execute(
            sa.select(returns).where(returns.c.rma_id == rma_id).with_for_update())).first()

    async def mark_return_received(self, rma_id: str, *, received_at: datetime,
                                   inspections: list[dict[str, Any]], refund_id: str) -> None:
        await self.session.execute(returns.update().where(returns.c.rma_id == rma_id).values(
            status="received", received_at=received_at, inspections=inspections,
            refund_id=refund_id, updated_at=sa.func.now()))

    async def return_rows(self, order_id: str) -> list[Any]:
        return list((await self.session.execute(
            sa.select(returns).where(returns.c.order_id == order_id)
            .order_by(returns.c.requested_at))).all())


@dataclass(frozen=True)
class OrderRow:
    order_id: str
    status: str
    order: CanonicalOrder | None
    cancel_reason: str | None
    revision: int | None = None
    pending_change_id: str | None = None
    pending_revision: int | None = None
    parked_reservation: dict[str, Any] | None = None
    parked_event_id: str | None = None
