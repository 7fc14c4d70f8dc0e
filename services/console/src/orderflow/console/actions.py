"""An order specialist's actions on an order (right ``amend``): the HTTP API the order page's
forms post to. Each is checked (``order_actions``) before anything is published: a refusal is
422 with each refused field's reason (``detail``: ``[{"loc": ["body", field...], "msg"}]``, the
shape of FastAPI's own validation errors) and nothing reaches the bus.

- ``GET /api/orders/{order_id}/actions``: what the forms offer (whether a change is accepted, the
  units that may come back, the refundable amount, the shipments).
- ``POST /api/orders/{order_id}/return``: ``order.return-requested``; the operator's inspection
  (restock or scrap per SKU) is kept and published as ``order.return-received`` once logistics
  approves the return (``handlers``), so inventory restocks and logistics issues the refund.
- ``POST /api/orders/{order_id}/payment``: ``finance.payment-received`` (review applies it: a
  prepaid order's hold is released); its id is made from the order and the reference.
- ``POST /api/orders/{order_id}/scan``: a carrier scan entered by hand, ``shipment.tracking-updated``
  (logistics moves the shipment on; an exception's detail starts with its code).

Cancel is ``POST /api/orders/{order_id}/cancel`` (``api.py``: right ``decide`` or ``amend``); a
change is a new revision entered at the desk (``/desk?from=<order_id>``). Every action is audited
against the order, and so shown on its timeline (``worklists.activity_said``)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from orderflow.console import order_actions as rules
from orderflow.console.actions_repository import ActionsRepository
from orderflow.console.api import Console, requirement
from orderflow.console.auth import Operator
from orderflow.console.domain import OrderView, TimelineEntry
from orderflow.console.repository import ConsoleRepository
from orderflow.console.worklist_repository import WorklistRepository
from orderflow.contracts.events import (
    ItemCondition,
    PaymentReceived,
    ReturnRequested,
    ReturnRequestLine,
    TrackingUpdated,
)
from orderflow.runtime.http import BodyText


class ReturnLineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=0, le=100_000)
    outcome: Literal["restock", "scrap"] = Field(description="The inspection's result")
    condition: ItemCondition = "unopened"


class ReturnIn(BaseModel):
    reason: BodyText = Field(default="", max_length=500)
    resolution: Literal["refund", "exchange"] = "refund"
    lines: list[ReturnLineIn] = Field(default_factory=list, max_length=100)
    refund: Decimal = Field(description="What the customer is to get back")


class PaymentIn(BaseModel):
    amount: Decimal
    currency: str = Field(min_length=1, max_length=8)
    reference: BodyText = Field(default="", max_length=64, description="The bank's or PSP's")


class ScanIn(BaseModel):
    shipment_id: str = Field(min_length=1, max_length=64)
    status: Literal["in_transit", "delivered", "exception"]
    code: str | None = Field(default=None, max_length=40, description="An exception's code")
    at: datetime | None = Field(default=None, description="When; without an offset, company time")
    location: BodyText = Field(default="", max_length=200)
    note: BodyText = Field(default="", max_length=300)


def _refused(refusals: rules.Refusals) -> JSONResponse:
    return JSONResponse({"detail": [
        {"loc": ["body", *(int(p) if p.isdigit() else p for p in field.split("."))],
         "msg": msg, "type": "value_error"} for field, msg in refusals.items()]}, status_code=422)


def actions_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["order actions"])
    viewer = Depends(requirement(console, "view"))
    amender = Depends(requirement(console, "amend"))

    async def order_of(order_id: str) -> tuple[OrderView, list[TimelineEntry]]:
        async with console.sessions() as session:
            repo = ConsoleRepository(session)
            view = await repo.view(order_id)
            entries = (await repo.entries_of([order_id]))[order_id]
        if view is None:
            raise HTTPException(404, f"no order {order_id}")
        return view, entries

    async def refused(op: Operator, action: str, order_id: str,
                      refusals: rules.Refusals) -> JSONResponse:
        await console.audit(op, action, order_id, "refused", fields=", ".join(refusals))
        return _refused(refusals)

    @router.get("/orders/{order_id}/actions")
    async def offered(order_id: str, op: Annotated[Operator, viewer]) -> dict[str, Any]:
        view, entries = await order_of(order_id)
        return {"order_id": order_id, "may_amend": op.may("amend"),
                "may_cancel": op.may("amend") or op.may("decide"),
                "may_change": rules.may_change(view), "currency": view.currency,
                "returnable": rules.returnable(entries),
                "refundable": format(rules.refundable(view, entries), "f"),
                "shipments": [{"shipment_id": s.shipment_id, "tracking_number": s.tracking_number,
                               "carrier": s.carrier, "status": s.status}
                              for s in view.shipments],
                "exception_codes": list(rules.EXCEPTION_CODES)}

    @router.post("/orders/{order_id}/return", status_code=202, response_model=None)
    async def enter_return(order_id: str, op: Annotated[Operator, amender],
                           body: Annotated[ReturnIn, Body()]) -> dict[str, Any] | JSONResponse:
        view, entries = await order_of(order_id)
        chosen = [line for line in body.lines if line.quantity > 0]
        refusals = rules.check_return(body.reason, [(x.sku, x.quantity) for x in chosen],
                                      body.refund, rules.returnable(entries),
                                      rules.refundable(view, entries))
        if refusals:
            return await refused(op, "return", order_id, refusals)
        now = datetime.now(UTC)
        rma_id = rules.new_rma_id(now)
        inspection: dict[str, str] = {x.sku: x.outcome for x in chosen}
        async with console.ctx.units() as uow:
            await ActionsRepository(uow.session).add_inspection(rma_id, order_id, inspection,
                                                                op.name, now)
            uow.emit(ReturnRequested(
                order_id=order_id, rma_id=rma_id, reason=body.reason.strip(),
                resolution=body.resolution, requested_at=now,
                lines=tuple(ReturnRequestLine(sku=x.sku, quantity=x.quantity,
                                              condition=x.condition) for x in chosen)))
        await console.audit(op, "return", order_id, "published", rma_id=rma_id,
                            reason=body.reason.strip(), resolution=body.resolution,
                            refund=format(body.refund, "f"), currency=view.currency or "",
                            units=", ".join(f"{x.sku} x{x.quantity} {x.outcome}" for x in chosen))
        return {"order_id": order_id, "rma_id": rma_id, "status": "requested"}

    @router.post("/orders/{order_id}/payment", status_code=202, response_model=None)
    async def record_payment(order_id: str, op: Annotated[Operator, amender],
                             body: Annotated[PaymentIn, Body()]) -> dict[str, Any] | JSONResponse:
        view, entries = await order_of(order_id)
        async with console.sessions() as session:
            audited = await WorklistRepository(session).actions_on(order_id)
        refusals = rules.check_payment(order_id, body.amount, body.currency, body.reference,
                                       view.currency, rules.payment_ids(entries, audited))
        if view.customer_id is None:
            refusals.setdefault("amount", "the order's customer is not known yet")
        if refusals:
            return await refused(op, "payment", order_id, refusals)
        assert view.customer_id is not None and view.currency is not None
        payment_id = rules.payment_id_for(order_id, body.reference)
        async with console.ctx.units() as uow:
            uow.emit(PaymentReceived(payment_id=payment_id, customer_id=view.customer_id,
                                     order_id=order_id, amount=body.amount,
                                     currency=view.currency), correlation_id=order_id)
        await console.audit(op, "payment", order_id, "published", payment_id=payment_id,
                            amount=format(body.amount, "f"), currency=view.currency,
                            reference=body.reference.strip())
        return {"order_id": order_id, "payment_id": payment_id, "status": "recorded"}

    @router.post("/orders/{order_id}/scan", status_code=202, response_model=None)
    async def record_scan(order_id: str, op: Annotated[Operator, amender],
                          body: Annotated[ScanIn, Body()]) -> dict[str, Any] | JSONResponse:
        view, _entries = await order_of(order_id)
        now = datetime.now(UTC)
        at = body.at or now
        refusals = rules.check_scan(view, body.shipment_id, body.status, body.code, at, now)
        if refusals:
            return await refused(op, "scan", order_id, refusals)
        shipment = next(s for s in view.shipments if s.shipment_id == body.shipment_id)
        said = f"entered by hand by {op.name}" + (f": {body.note.strip()}" if body.note.strip()
                                                   else "")
        detail = f"{body.code}: {said}" if body.status == "exception" else said
        async with console.ctx.units() as uow:
            uow.emit(TrackingUpdated(order_id=order_id, shipment_id=shipment.shipment_id,
                                     tracking_number=shipment.tracking_number or "",
                                     carrier=shipment.carrier or "", status=body.status,
                                     occurred_at=at, location=body.location.strip(),
                                     detail=detail))
        await console.audit(op, "scan", order_id, "published", shipment_id=shipment.shipment_id,
                            status=body.status, code=body.code or "", at=at.isoformat(),
                            location=body.location.strip())
        return {"order_id": order_id, "shipment_id": shipment.shipment_id, "status": body.status}

    return router
