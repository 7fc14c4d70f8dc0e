"""Inventory's composition root."""

from __future__ import annotations

from pathlib import Path

from orderflow.contracts import topics
from orderflow.inventory.api import inventory_router
from orderflow.inventory.handlers import InventoryHandlers
from orderflow.inventory.jobs import reservation_expiry
from orderflow.inventory.settings import load_policy
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.service import ServiceDefinition


def create_service() -> ServiceDefinition:
    policy = load_policy()
    on = InventoryHandlers(policy)
    return ServiceDefinition(
        name="inventory",
        description="Reserves approved orders' stock across warehouses without overselling; "
                    "backorders what is missing and fills it, rush first, when stock arrives",
        migrations=Path(__file__).parent / "migrations" / "versions",
        subscriptions=[
            Subscription(topics.ORDER_APPROVED, batch_handler=on.on_orders_approved,
                         description="Approved orders to reserve stock for"),
            Subscription(topics.ORDER_CANCELLED, on.on_order_cancelled,
                         description="Cancelled orders: release reservations, drop backorders"),
            Subscription(topics.ORDER_CHANGE_APPROVED, on.on_change_approved,
                         description="Changes review accepted: the stock difference reserved or "
                                     "released, all or nothing"),
            Subscription(topics.RETURN_RECEIVED, on.on_return_received,
                         description="Inspected returns: restock or scrap each unit"),
            Subscription(topics.STOCK_RECEIVED, on.on_stock_received,
                         description="Receipts: add to on hand, then fill backorders"),
            Subscription(topics.STOCK_ADJUSTED, on.on_stock_adjusted,
                         description="Counts, damage, write-offs: change on hand"),
            Subscription(topics.SHIPMENT_DISPATCHED, batch_handler=on.on_shipments_dispatched,
                         description="Reserved units that left a warehouse"),
            Subscription(topics.PRODUCT_UPDATED, on.on_product_updated,
                         description="Reorder points per SKU"),
            Subscription(topics.WAREHOUSE_UPDATED, on.on_warehouse_updated,
                         description="Warehouse locations for choosing the nearest"),
        ],
        prepare_batch=on.lock_stock,
        routers=lambda ctx: [inventory_router(ctx, policy)],
        background=[reservation_expiry(policy)],
    )
