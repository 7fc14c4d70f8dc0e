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
        """Before a batch's first run (``prepare_batch``): the stock rows its events reserve,
        ship, receive, adjust, take back or release, in every warehouse of their SKUs (where an
        approval's units come from is decided later), locked at once in one sorted order. Each
        run locks its own rows sorted too, but a batch holds several runs (approvals, shipments,
        approvals...): without this, two replicas' batches took them crosswise and deadlocked.
        Not covered (their runs still lock sorted; a deadlock there is retried as transient):
        the other SKUs of backordered orders a receipt or a release fills, and the lines of a
        change that arrived before its order's approval (reserved instead of the approved ones)."""
        skus: set[str] = set()
        holders: set[str] = set()
        for incoming in events:
            event = incoming.event
            if isinstance(event, OrderApproved):
                skus.update(line.sku for line in event.order.lines)
            elif isinstance(event, ShipmentDispatched):
                skus.update(line.sku for line in event.lines)
            elif isinstance(event, StockReceived | StockAdjusted):
                skus.add(event.sku)
            elif isinstance(event, ReturnReceived):
                skus.update(u.sku for u in event.inspections)
            elif isinstance(event, OrderChangeApproved):
                skus.update(line.sku for line in event.order.lines)
                holders.add(event.order_id)
            elif isinstance(event, OrderCancelled):
                holders.add(event.order_id)
        await InventoryRepository(uow.session).lock_stock_ahead(skus, holders)

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
