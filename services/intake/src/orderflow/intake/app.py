"""Intake's composition root."""

from __future__ import annotations

from pathlib import Path

from orderflow.contracts import topics
from orderflow.intake import handlers
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.service import ServiceDefinition


def create_service() -> ServiceDefinition:
    return ServiceDefinition(
        name="intake",
        description="Normalises every channel's orders, checks them, and deduplicates re-pushes",
        migrations=Path(__file__).parent / "migrations" / "versions",
        subscriptions=[
            Subscription(topics.ORDER_INBOUND, handlers.on_order_submitted, headerless=True,
                         description="Raw orders from connectors, one adapter per channel"),
            Subscription(topics.PRODUCT_UPDATED, handlers.on_product_updated,
                         description="The product catalogue intake checks SKUs and tax against"),
        ],
    )
