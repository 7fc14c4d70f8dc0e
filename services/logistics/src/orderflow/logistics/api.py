"""Logistics' HTTP API: shipments as JSON, the printable packing slip, the carrier catalogue, and a
delay-watch round on demand (with a service credential of the admin role,
``orderflow.runtime.service_auth``: operators run it through the console)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import async_sessionmaker

from orderflow.logistics.delay_watcher import DelayWatcher
from orderflow.logistics.domain import CarrierCatalogue
from orderflow.logistics.repository import MasterData, Shipments
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import Actor, require_actor

log = structlog.get_logger(__name__)
# the operator a verified service credential names, an admin
Admin = Annotated[Actor, Depends(require_actor("admin"))]

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True, lstrip_blocks=True,
)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class LineView(_View):
    sku: str
    name: str
    quantity: int
    unit_weight_kg: str | None


class TrackingView(_View):
    status: str
    occurred_at: datetime
    location: str
    detail: str
    outcome: str = Field(description="advanced, resumed, exception, delivered, stale, repeated, "
                                     "after_delivery")


class DelayView(_View):
    reason: str
    expected_date: date | None
    source: str
    flagged_at: datetime


class ShipmentView(_View):
    """A shipment without the recipient's personal data (the packing slip has the address)."""

    shipment_id: str
    order_id: str
    external_id: str
    warehouse_id: str
    status: str
    status_at: datetime | None
    carrier: str | None
    carrier_name: str | None
    service: str | None
    service_name: str | None
    express: bool
    tracking_number: str | None
    zone: str | None
    rule: str
    rule_detail: str
    priority: str
    lines: list[LineView]
    weight_kg: Decimal
    weight_estimated: bool
    cost: Decimal | None
    currency: str
    destination_province: str
    destination_city: str
    requested_date: date | None
    pickup_date: date | None
    promised_date: date | None
    misses_requested_date: bool
    dispatched_at: datetime
    delivered_at: datetime | None
    on_time: bool | None
    exception_code: str | None
    exception_detail: str | None
    tracking: list[TrackingView] = []
    delays: list[DelayView] = []


class DelayWatchRun(BaseModel):
    as_of: datetime | None = Field(default=None, description="Run as of this time instead of now "
                                   "(only with ORDERFLOW_LOGISTICS_ALLOW_CLOCK_OVERRIDE=true)")
    order_ids: list[str] | None = Field(default=None, max_length=1000,
                                        description="Only these orders' shipments")


class FlaggedDelayView(_View):
    order_id: str
    shipment_id: str
    reason: str
    promised_date: date
    expected_date: date | None


class DelayWatchResult(_View):
    as_of: datetime
    flagged: list[FlaggedDelayView]


def _view(row: Any, history: list[Any], delays: list[Any]) -> ShipmentView:
    data = dict(row._mapping)
    data.pop("ship_to", None)
    data["tracking"] = [TrackingView(status=h.status, occurred_at=h.occurred_at,
                                     location=h.location, detail=h.detail, outcome=h.outcome)
                        for h in history]
    data["delays"] = [DelayView(reason=d.reason, expected_date=d.expected_date, source=d.source,
                                flagged_at=d.flagged_at) for d in delays]
    return ShipmentView.model_validate(data)


def _weight(value: Decimal) -> str:
    return f"{value:.3f}"


def create_router(ctx: ServiceContext, settings: LogisticsSettings,
                  watcher: DelayWatcher) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["logistics"])
    sessions = async_sessionmaker(ctx.engine, expire_on_commit=False)

    @router.get("/shipments", response_model=list[ShipmentView])
    async def list_shipments(order_id: str | None = Query(default=None, max_length=64),
                             status: str | None = Query(default=None, max_length=32),
                             limit: int = Query(default=100, ge=1, le=1000)) -> list[ShipmentView]:
        """An order's shipments (or the latest ones), with their tracking history and delays."""
        async with sessions() as session:
            repo = Shipments(session)
            rows = await repo.rows(order_id=order_id, status=status, limit=limit)
            ids = [r.shipment_id for r in rows]
            history = await repo.tracking_history(ids)
            delays = await repo.delays_of(ids)
        return [_view(r, history.get(r.shipment_id, []), delays.get(r.shipment_id, []))
                for r in rows]

    @router.get("/shipments/{shipment_id}", response_model=ShipmentView)
    async def get_shipment(shipment_id: str) -> ShipmentView:
        async with sessions() as session:
            repo = Shipments(session)
            rows = await repo.rows(shipment_id=shipment_id, limit=1)
            if not rows:
                raise HTTPException(404, f"no shipment {shipment_id}")
            history = await repo.tracking_history([shipment_id])
            delays = await repo.delays_of([shipment_id])
        return _view(rows[0], history.get(shipment_id, []), delays.get(shipment_id, []))

    @router.get("/shipments/{shipment_id}/packing-slip", response_class=HTMLResponse)
    async def packing_slip(shipment_id: str) -> HTMLResponse:
        """The printable packing slip and pick list a warehouse packs the shipment by."""
        async with sessions() as session:
            repo = Shipments(session)
            rows = await repo.rows(shipment_id=shipment_id, limit=1)
            if not rows:
                raise HTTPException(404, f"no shipment {shipment_id}")
            s = rows[0]
            siblings = await repo.rows(order_id=s.order_id, limit=1000)
            warehouse = await MasterData(session).warehouse_row(s.warehouse_id)
        ordered = sorted(siblings, key=lambda r: (r.dispatched_at, r.shipment_id))
        position = next(i for i, r in enumerate(ordered, 1) if r.shipment_id == shipment_id)
        lines = []
        for line in sorted(s.lines, key=lambda item: item["sku"]):
            unit = Decimal(line["unit_weight_kg"]) if line["unit_weight_kg"] is not None else None
            lines.append({"sku": line["sku"], "name": line["name"], "quantity": line["quantity"],
                          "unit_weight": _weight(unit) if unit is not None else "?",
                          "line_weight": _weight(unit * line["quantity"]) if unit is not None
                          else "?"})
        html = _TEMPLATES.get_template("packing_slip.html").render(
            s=s, ship_to=s.ship_to, lines=lines, position=position, shipment_count=len(ordered),
            total_quantity=sum(line["quantity"] for line in s.lines),
            dispatched_local=s.dispatched_at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M"),
            warehouse_name=warehouse.name if warehouse else s.warehouse_id,
            warehouse_place=f"{warehouse.province} {warehouse.city}" if warehouse else "")
        return HTMLResponse(html)

    @router.get("/carriers", response_model=CarrierCatalogue)
    async def carriers() -> CarrierCatalogue:
        """The carrier catalogue in force (zones, rates, transit days, limits)."""
        return settings.catalogue

    @router.post("/delay-watch/run", response_model=DelayWatchResult)
    async def run_delay_watch(
            actor: Admin,
            body: Annotated[DelayWatchRun, Body()] = DelayWatchRun()) -> DelayWatchResult:
        """Run one delay-watch round now; ``as_of`` only when the clock override is allowed."""
        log.info("delay-watch round asked for", actor=actor.name, role=actor.role,
                 as_of=body.as_of.isoformat() if body.as_of else None)
        if body.as_of is not None and not settings.allow_clock_override:
            raise HTTPException(403, "as_of needs ORDERFLOW_LOGISTICS_ALLOW_CLOCK_OVERRIDE=true")
        as_of = body.as_of or watcher.clock()
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=settings.tz)
        flagged = await watcher.run_once(ctx.units, now=as_of, order_ids=body.order_ids)
        return DelayWatchResult(as_of=as_of, flagged=[
            FlaggedDelayView(order_id=f.order_id, shipment_id=f.shipment_id, reason=f.reason,
                             promised_date=f.promised_date, expected_date=f.expected_date)
            for f in flagged])

    return router
