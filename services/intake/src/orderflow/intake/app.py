"""Intake's composition root."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import APIRouter

from orderflow.channels import ENTRY_POINT_GROUP, registry
from orderflow.contracts import topics
from orderflow.intake import domain, handlers
from orderflow.intake.api import create_channel_router, create_router
from orderflow.intake.settings import IntakeSettings
from orderflow.intake.webhooks import WebhookPublisher
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.service import ServiceContext, ServiceDefinition

# the topics of the events an order's status is made of (``domain.OUTCOME_EVENTS``)
OUTCOME_TOPICS = tuple(topics.TOPIC_OF_EVENT[event] for event in domain.OUTCOME_EVENTS)

log = structlog.get_logger(__name__)


def load_channels() -> None:
    """The installed channels, read once at start (``orderflow.channels``): a plugin that cannot
    be loaded is logged and skipped; two claiming one channel, or none at all, end the start
    with why."""
    found = registry()
    if not found.channels:
        raise RuntimeError(f"no channel is installed (entry point group {ENTRY_POINT_GROUP}): "
                           "intake's own are registered by installing orderflow-intake "
                           "(uv sync, or pip install services/intake)")
    log.info("channels", channels=sorted(found.channels), skipped=sorted(found.skipped))


def create_service() -> ServiceDefinition:
    def routers(ctx: ServiceContext) -> list[APIRouter]:
        settings = IntakeSettings()  # fails fast, naming the variable, on a bad value
        publisher = WebhookPublisher(ctx)
        ctx.state["webhook_publisher"] = publisher
        return [create_router(settings, publisher), create_channel_router(settings, ctx)]

    async def close_webhook_publisher(ctx: ServiceContext) -> None:
        publisher = ctx.state.get("webhook_publisher")
        if isinstance(publisher, WebhookPublisher):
            await publisher.run_until_stopped()

    return ServiceDefinition(
        name="intake",
        description="Normalises every channel's orders, checks them, and deduplicates re-pushes",
        migrations=Path(__file__).parent / "migrations" / "versions",
        subscriptions=[
            Subscription(topics.ORDER_INBOUND, batch_handler=handlers.on_orders_submitted,
                         headerless=True,
                         description="Raw orders from connectors, one adapter per channel"),
            Subscription(topics.PRODUCT_UPDATED, handlers.on_product_updated,
                         description="The product catalogue intake checks SKUs and tax against"),
            *[Subscription(topic, batch_handler=handlers.on_outcomes,
                           description="Each order's status, answered to its channel "
                                       "(GET /api/v1/channels/{channel}/orders/{external_id})")
              for topic in OUTCOME_TOPICS],
        ],
        routers=routers,
        background=[close_webhook_publisher],
        on_start=load_channels,
    )
