"""Inventory's HTTP routes: stock and an order's reservations for operators and the console, a
manual release, and the conservation invariant. The release needs a service credential with the
admin role (``orderflow.runtime.service_auth``): operators release through the console."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, Depends, HTTPException
from pydantic import BaseModel, Field

from orderflow.inventory import handlers
from orderflow.inventory.repository import InventoryRepository, check_invariants
from orderflow.inventory.settings import InventoryPolicy
from orderflow.runtime.http import BodyText
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import Actor, require_actor

log = structlog.get_logger(__name__)
# the operator a verified service credential names, an admin
Admin = Annotated[Actor, Depends(require_actor("admin"))]


class ReleaseRequest(BaseModel):
    reason: BodyText = Field(default="released_by_operator", min_length=1, max_length=200)


def inventory_router(ctx: ServiceContext, policy: InventoryPolicy) -> APIRouter:
    router = APIRouter(prefix="/inventory", tags=["inventory"])

    @router.get("/stock/{sku}")
    async def stock_of(sku: str) -> dict[str, Any]:
        async with ctx.units() as uow:
            rows = await InventoryRepository(uow.session).stock_of(sku)
        return {"sku": sku, "warehouses": rows,
                "available": sum(r["available"] for r in rows)}

    @router.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        async with ctx.units() as uow:
            view = await InventoryRepository(uow.session).order_view(order_id)
        if view is None:
            raise HTTPException(404, f"inventory has not seen order {order_id}")
        return view

    @router.post("/orders/{order_id}/release")
    async def release(order_id: str, actor: Admin,
                      request: Annotated[ReleaseRequest, Body()] = ReleaseRequest()) -> dict[str, Any]:
        async with ctx.units() as uow:
            event = await handlers.release(uow, policy, order_id, request.reason)
        if event is None:
            raise HTTPException(409, f"order {order_id} holds no reservation or backorder")
        log.info("stock released by an operator", order_id=order_id, actor=actor.name,
                 role=actor.role, reason=request.reason)
        return event.model_dump(mode="json")

    @router.get("/invariants")
    async def invariants() -> dict[str, Any]:
        async with ctx.units() as uow:
            problems = await check_invariants(uow.session)
        return {"ok": not problems, "problems": problems}

    return router
