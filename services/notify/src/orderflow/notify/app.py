"""Notify's composition root: the subscriptions (every customer-facing event, customer
preferences, product names), one sender loop per channel and the retention purge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.contracts import topics
from orderflow.notify.channels import ChannelDriver
from orderflow.notify.channels.email import RecordingEmailDriver, SmtpEmailDriver
from orderflow.notify.channels.sms import LoggingSmsProvider, SmsDriver
from orderflow.notify.channels.webhook import WebhookDriver
from orderflow.notify.handlers import Notifier
from orderflow.notify.repository import purge_finished, registered_url
from orderflow.notify.sender import ChannelSender
from orderflow.notify.settings import NotifySettings
from orderflow.notify.templates import Renderer
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.jobs import Job, every
from orderflow.runtime.service import ServiceContext, ServiceDefinition
from orderflow.runtime.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


def make_senders(settings: NotifySettings,
                 engine: AsyncEngine | None = None) -> list[ChannelSender]:
    """One sender per channel; with ``engine``, the webhook sender posts to the URL a channel
    registered (``channel.webhook-set``) before the configured one."""
    registered = (lambda channel: registered_url(engine, channel)) if engine is not None \
        else None
    renderer = Renderer(sender_name=settings.sender_name, timezone=settings.timezone)
    email: ChannelDriver = SmtpEmailDriver(settings) if settings.smtp_host else RecordingEmailDriver()
    drivers: list[tuple[ChannelDriver, float]] = [
        (email, settings.smtp_timeout_s * 3),  # connect, send and quit
        (SmsDriver(LoggingSmsProvider()), 10.0),
        (WebhookDriver(settings.webhook_urls, settings.secret_for,
                       timeout_s=settings.webhook_timeout_s, registered=registered),
         settings.webhook_timeout_s + 1),
    ]
    return [ChannelSender(driver, settings, renderer, send_timeout_s=timeout)
            for driver, timeout in drivers]


async def _send_all(senders: list[ChannelSender], notifier: Notifier, ctx: ServiceContext) -> None:
    by_channel = {sender.channel: sender for sender in senders}

    def committed() -> None:  # after each consumed batch's commit: wake the channels it fed
        for channel in notifier.take_staged_channels():
            if channel in by_channel:
                by_channel[channel].wake()

    ctx.commit_listeners.append(committed)
    await asyncio.gather(*(sender.run(ctx) for sender in senders))


def purge_finished_notifications(settings: NotifySettings) -> Job:
    """Every ``purge_interval_s`` (the first a minute after start, or sooner): delete the
    finished notifications past ``retention_days``."""

    async def purge(ctx: ServiceContext) -> None:
        deleted = await purge_round(ctx.units, settings.retention_days * 86_400.0,
                                    stopping=ctx.stopping.is_set)
        if deleted:
            log.info("finished notifications purged", rows=deleted,
                     older_than_days=settings.retention_days)

    return every(settings.purge_interval_s, "notification purge", purge,
                 first_after_s=min(60.0, settings.purge_interval_s))


async def purge_round(units: UnitOfWorkFactory, older_than_s: float, *, chunk: int = 5_000,
                      stopping: Callable[[], bool] = lambda: False) -> int:
    """Delete the finished notifications created more than ``older_than_s`` ago, a chunk per
    transaction, until one finds none (a row folded into another goes first, that one in the next
    chunk); returns how many."""
    deleted = 0
    while not stopping():
        async with units() as uow:
            n = await purge_finished(uow.session, older_than_s=older_than_s, chunk=chunk)
        deleted += n
        if n == 0:
            break
    return deleted


def create_service() -> ServiceDefinition:
    settings = NotifySettings()
    notifier = Notifier(settings)
    return ServiceDefinition(
        name="notify",
        description="Tells the customer at every step, once, on their own channel",
        migrations=Path(__file__).parent / "migrations" / "versions",
        # a batch of 500 holds 500 decoded events (most carry a whole order) beside the senders'
        # work: its peak RSS under a 4,000-order backlog was 150.5-152.3 MB (target < 150),
        # with 250 134.8-136.5 MB, its CPU per order 4-10 % higher (alternated runs)
        batch_max_records=250,
        subscriptions=[
            Subscription(topics.ORDER_RECEIVED, batch_handler=notifier.on_events,
                         description="Confirms the order; remembers its facts and contact"),
            Subscription(topics.ORDER_REJECTED, batch_handler=notifier.on_events,
                         description="Tells why, in plain words"),
            Subscription(topics.ORDER_HELD, batch_handler=notifier.on_events,
                         description="Asks for a prepayment, or says the order is being reviewed"),
            Subscription(topics.ORDER_APPROVED, batch_handler=notifier.on_events,
                         description="Confirms the order (non-essential)"),
            Subscription(topics.STOCK_BACKORDERED, batch_handler=notifier.on_events,
                         description="Says what is short and when it is expected"),
            Subscription(topics.SHIPMENT_DISPATCHED, batch_handler=notifier.on_events,
                         description="Carrier and tracking; shipments of one order told together"),
            Subscription(topics.SHIPMENT_DELAYED, batch_handler=notifier.on_events,
                         description="Warns of a late delivery with the new date"),
            Subscription(topics.SHIPMENT_DELIVERED, batch_handler=notifier.on_events,
                         description="Confirms delivery (non-essential)"),
            Subscription(topics.SHIPMENT_EXCEPTION, batch_handler=notifier.on_events,
                         description="A carrier's problem in plain words"),
            Subscription(topics.ORDER_CANCELLED, batch_handler=notifier.on_events,
                         description="Confirms the cancellation"),
            Subscription(topics.ORDER_CANCEL_REFUSED, batch_handler=notifier.on_events,
                         description="Says why the order could not be cancelled"),
            Subscription(topics.ORDER_CHANGED, batch_handler=notifier.on_events,
                         description="Confirms a change, with the order's new content"),
            Subscription(topics.ORDER_CHANGE_REJECTED, batch_handler=notifier.on_events,
                         description="Says why the order could not be changed"),
            Subscription(topics.RETURN_APPROVED, batch_handler=notifier.on_events,
                         description="The return's tracking number and what it refunds"),
            Subscription(topics.RETURN_REFUSED, batch_handler=notifier.on_events,
                         description="Why the return was not accepted"),
            Subscription(topics.REFUND_ISSUED, batch_handler=notifier.on_events,
                         description="The refund of a received return (and the exchange order)"),
            Subscription(topics.CHANNEL_WEBHOOK_SET, notifier.on_webhook_set,
                         description="Outcome webhooks channels registered through intake"),
            Subscription(topics.CUSTOMER_UPDATED, notifier.on_customer_updated,
                         description="Preferred channel, language and opt-out"),
            Subscription(topics.PRODUCT_UPDATED, notifier.on_product_updated,
                         description="Product names shown in messages"),
        ],
        background=[lambda ctx: _send_all(make_senders(settings, ctx.engine), notifier, ctx),
                    purge_finished_notifications(settings)],
    )
