"""Inventory's handlers: decode, call the stockroom on the batch's unit of work; it stages the
events."""

from __future__ import annotations

from typing import Any

import structlog

from orderflow.contracts.events import (
    OrderApproved,
    OrderCancelled,
    OrderChangeApproved,
    ProductUpdated,
    ReturnReceived,
    ShipmentDispatched,
    StockAdjusted,
    StockReceived,
    WarehouseUpdated,
)
from orderflow.inventory.policy import InventoryPolicy
from orderflow.inventory.repository import InventoryRepository
from orderflow.inventory.reservations import Stockroom
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork


class InventoryHandlers:
    """One handler per subscribed topic, sharing the company's policy."""

    def __init__(self, policy: InventoryPolicy) -> None:
        self.policy = policy

    async def lock_stock(self, uow: UnitOfWork, events: list[IncomingEvent[Any]]) -> None:
        """``prepare_batch``: the stock rows the batch's runs may touch, locked before the first
        (see Stockroom.lock_stock_ahead)."""
        await Stockroom(uow, self.policy).lock_stock_ahead(incoming.event for incoming in events)

    async def on_orders_approved(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[OrderApproved]]) -> None:
        """A batch handler: the run's approvals reserved set-based (see reserve_orders)."""
        await Stockroom(uow, self.policy).reserve_orders(run)

    async def on_order_cancelled(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderCancelled]) -> None:
        cancelled = incoming.event
        structlog.contextvars.bind_contextvars(order_id=cancelled.order_id)
        await Stockroom(uow, self.policy).cancel_order(cancelled.order_id, cancelled.reason)

    async def on_change_approved(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeApproved]) -> None:
        step = incoming.event
        structlog.contextvars.bind_contextvars(order_id=step.order_id)
        await Stockroom(uow, self.policy).apply_change(step)

    async def on_return_received(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ReturnReceived]) -> None:
        r = incoming.event
        structlog.contextvars.bind_contextvars(order_id=r.order_id)
        await Stockroom(uow, self.policy).take_back_return(
            r.rma_id, r.order_id, r.warehouse_id,
            ((u.sku, u.quantity, u.outcome) for u in r.inspections))

    async def on_stock_received(self, uow: UnitOfWork,
                                incoming: IncomingEvent[StockReceived]) -> None:
        r = incoming.event
        await Stockroom(uow, self.policy).receive(r.warehouse_id, r.sku, r.quantity,
                                                  r.reference or incoming.headers.event_id)

    async def on_stock_adjusted(self, uow: UnitOfWork,
                                incoming: IncomingEvent[StockAdjusted]) -> None:
        a = incoming.event
        await Stockroom(uow, self.policy).adjust(a.warehouse_id, a.sku, a.delta, a.reason)

    async def on_shipments_dispatched(self, uow: UnitOfWork,
                                      run: list[IncomingEvent[ShipmentDispatched]]) -> None:
        """A batch handler: the run's shipments set-based (see dispatch_all)."""
        await Stockroom(uow, self.policy).dispatch_all(run)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        p = incoming.event
        await Stockroom(uow, self.policy).product_updated(p.sku, p.reorder_point)

    async def on_warehouse_updated(self, uow: UnitOfWork,
                                   incoming: IncomingEvent[WarehouseUpdated]) -> None:
        await InventoryRepository(uow.session).upsert_warehouse(incoming.event)
