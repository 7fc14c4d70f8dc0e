"""Logistics' composition root."""

from __future__ import annotations

from pathlib import Path

from orderflow.contracts import topics
from orderflow.logistics.api import create_router
from orderflow.logistics.delay_watcher import DelayWatcher
from orderflow.logistics.handlers import Clock, LogisticsHandlers, utc_now
from orderflow.logistics.settings import LogisticsSettings
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.service import ServiceDefinition


def create_service(settings: LogisticsSettings | None = None,
                   clock: Clock = utc_now) -> ServiceDefinition:
    """The service; ``clock`` is "now" for dispatch times and the delay watcher."""
    settings = settings or LogisticsSettings()
    handlers = LogisticsHandlers(settings, clock)
    watcher = DelayWatcher(settings, clock)
    return ServiceDefinition(
        name="logistics",
        description="Ships reserved orders: one shipment per warehouse, the carrier chosen by "
                    "rule, tracking to delivery, and delays caught before the customer calls",
        migrations=Path(__file__).parent / "migrations" / "versions",
        subscriptions=[
            Subscription(topics.STOCK_RESERVED, batch_handler=handlers.on_stocks_reserved,
                         description="Reserved orders: one shipment per warehouse, dispatched"),
            # decided before the reservations fetched with them: a request waiting in the
            # broker when the batch was fetched comes before the dispatch it would stop
            Subscription(topics.ORDER_CANCEL_REQUESTED, handlers.on_cancel_requested, ahead=True,
                         description="Cancel requests: honoured until dispatch, else refused"),
            Subscription(topics.ORDER_CHANGE_REQUESTED, handlers.on_change_requested, ahead=True,
                         description="Change requests: admitted until dispatch (dispatch waits "
                                     "for them), else refused"),
            Subscription(topics.ORDER_CHANGE_RESERVED, handlers.on_change_reserved,
                         description="Changes every service applied: order.changed, then "
                                     "dispatch if the order is reserved"),
            Subscription(topics.ORDER_CHANGE_REJECTED, handlers.on_change_rejected,
                         description="Changes refused downstream: the pending mark cleared, a "
                                     "parked reservation dispatched"),
            Subscription(topics.RETURN_REQUESTED, handlers.on_return_requested,
                         description="Return requests: approved or refused by the return policy"),
            Subscription(topics.RETURN_RECEIVED, handlers.on_return_received,
                         description="Inspected returns: the refund, or the exchange order"),
            Subscription(topics.TRACKING_UPDATED, handlers.on_tracking_updated,
                         description="Carrier tracking updates that move shipments to delivery"),
            Subscription(topics.WAREHOUSE_UPDATED, handlers.on_warehouse_updated,
                         description="Warehouse locations, for zones and packing slips"),
            Subscription(topics.PRODUCT_UPDATED, handlers.on_product_updated,
                         description="Product names and weights, for shipment weights"),
        ],
        routers=lambda ctx: [create_router(ctx, settings, watcher)],
        background=[watcher.job()],
    )
