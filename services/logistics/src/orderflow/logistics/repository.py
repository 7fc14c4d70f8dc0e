"""Logistics' tables: shipments, their tracking history, the delays flagged, and the master data
logistics needs (warehouse locations, product names and weights)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
_ORDER_INSERT = pg_insert(orders)
# the order's JSON is kept the first time a reservation brings it
_ENSURE_ORDER_WITH_JSON = _ORDER_INSERT.on_conflict_do_update(
    index_elements=[orders.c.order_id], where=orders.c.order_json.is_(None),
    set_={"order_json": _ORDER_INSERT.excluded.order_json,
          "customer_id": _ORDER_INSERT.excluded.customer_id, "updated_at": sa.func.now()})
_ENSURE_ORDER = _ORDER_INSERT.on_conflict_do_nothing()
_WAREHOUSE_SITES = sa.select(warehouses).where(
    warehouses.c.warehouse_id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Text))))
_PRODUCT_INFOS = sa.select(products).where(
    products.c.sku == sa.any_(sa.bindparam("skus", type_=ARRAY(sa.Text))))
_ADD_NO_CARRIER = shipments.insert()
_ADD_DISPATCHED = (pg_insert(shipments)
                   .on_conflict_do_nothing(index_elements=[shipments.c.tracking_number])
                   .returning(shipments.c.shipment_id))


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
            "lines": [{"sku": line.sku, "quantity": line.quantity, "name": line.name,
                       "unit_weight_kg": None if line.unit_weight_kg is None
                       else str(line.unit_weight_kg)} for line in plan.lines],
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
    async def lock_order(self, order_id: str, order: CanonicalOrder | None = None) -> OrderRow:
        """The order's record, created if new, locked FOR UPDATE until the transaction ends: a
        cancel request and a reservation of one order are decided one after the other, whichever
        replica handles them. The order's JSON is kept the first time a reservation brings it."""
        values: dict[str, Any] = {"order_id": order_id, "status": "open"}
        if order is not None:
            values.update(order_json=order.model_dump(mode="json"), customer_id=order.customer.id)
        await self.session.execute(
            _ENSURE_ORDER if order is None else _ENSURE_ORDER_WITH_JSON, values)
        row = (await self.session.execute(_LOCK_ORDER_ROW, {"o_id": order_id})).one()
        kept: CanonicalOrder | None = None
        if row.order_json:
            # the order this call brought, when the row keeps that very revision: not parsed again
            same = order is not None and row.order_json.get("revision") == order.revision
            kept = order if same else CanonicalOrder.model_validate(row.order_json)
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
