"""Notify's handlers: read what a run of events needs, ask the domain what each event changes and
who is told what on which channel (``domain.decide_run``), and stage the notifications (and the
suppressed ones' records) in the consumer's transaction, beside the inbox row. Nothing is sent
here: the sender does that.

The customer-facing events are handled set-based, a run of consecutive events at a time: one
read per table for the whole run, each event decided in batch order on the state the events
before it left, one write per table. Customer and product updates stay one event at a time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from orderflow.contracts.events import (
    ChannelWebhookSet,
    CustomerUpdated,
    NotificationRecorded,
    ProductUpdated,
)
from orderflow.notify import domain
from orderflow.notify.domain.webhooks import registration
from orderflow.notify.repository import NewNotification, NotifyRepository
from orderflow.notify.settings import NotifySettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)


class Notifier:
    """The handlers, with the settings they need (webhook channels, window, links)."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.window = timedelta(seconds=settings.coalesce_window_s)
        self.run_settings = domain.RunSettings(
            default_language=settings.default_language,
            webhook_channels=frozenset(settings.webhook_urls),
            tracking=domain.Tracking(settings.tracking_url_template, settings.tracking_urls))
        # channels with a pending notification staged since the last commit: their senders are
        # woken once the batch is committed (a rolled-back batch only gives a needless wake)
        self.staged_channels: set[str] = set()

    def take_staged_channels(self) -> set[str]:
        staged, self.staged_channels = self.staged_channels, set()
        return staged

    # -- master data ---------------------------------------------------------------------------
    async def on_customer_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[CustomerUpdated]) -> None:
        await NotifyRepository(uow.session).upsert_customer(incoming.event)

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await NotifyRepository(uow.session).upsert_product(incoming.event.sku, incoming.event.name)

    async def on_webhook_set(self, uow: UnitOfWork,
                             incoming: IncomingEvent[ChannelWebhookSet]) -> None:
        """A channel's outcome webhook registered or removed through intake: recorded, used
        only when notify has a signing secret for the channel (else recorded with the reason)."""
        event = incoming.event
        try:
            self.settings.secret_for(event.channel)
            has_secret = True
        except KeyError:
            has_secret = False
        kept = registration(event, has_secret)
        await NotifyRepository(uow.session).set_channel_webhook(event.channel, kept,
                                                                event.set_by, event.set_at)
        if kept is None:
            log.info("channel webhook removed", channel=event.channel, set_by=event.set_by)
        elif kept.usable:
            log.info("channel webhook registered", channel=event.channel, set_by=event.set_by)
        else:
            log.warning("channel webhook recorded, not used", channel=event.channel,
                        set_by=event.set_by, reason=kept.reason)

    # -- customer-facing events, set-based -------------------------------------------------------
    async def on_events(self, uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        """Every customer-facing event of a run (consecutive events of a batch, of any of these
        topics, in batch order): the orders' state, the customers and the product names the run
        needs are read with one statement each (the orders locked in their sorted order), each
        event is decided in batch order on what the events before it left (as if one after
        another), and the notifications, the orders' new state and the released coalescing
        waits are written with one statement each."""
        repo = NotifyRepository(uow.session)
        events = [incoming.event for incoming in run]
        needs = domain.run_needs(events)
        # orders the run saves are created first if missing (as the upsert would), then every
        # order of the run is locked, in the order of its id
        created = await repo.create_orders(needs.saved)
        found = await repo.lock_orders(needs.order_ids)
        profiles = await repo.customers(needs.customers_of(found.values()),
                                        self.settings.default_language)
        state = domain.RunState.loaded(needs.order_ids, created=created, found=found,
                                       profiles=profiles,
                                       names=await repo.product_names(needs.skus))

        registered = await repo.registered_webhook_channels()
        run_settings = self.run_settings if registered <= self.run_settings.webhook_channels \
            else dataclasses.replace(self.run_settings, webhook_channels=(
                self.run_settings.webhook_channels | registered))
        decided = domain.decide_run(state, events, run_settings, datetime.now(UTC))
        staged = await self._stage(repo, run, decided)
        await repo.save_orders(state.changed())
        for incoming, d in zip(run, decided, strict=True):
            self._report(uow, incoming, d, staged)

    async def _stage(self, repo: NotifyRepository, run: list[IncomingEvent[Any]],
                     decided: list[domain.Decided]) -> set[tuple[str, str]]:
        """Stage every planned notification of the run (one statement), with the coalescing
        waits of the dispatches decided in batch order; the (event id, channel) pairs staged
        (a pair staged before is skipped)."""
        pairs = domain.waiting_pairs(decided)
        waiting: dict[tuple[str, domain.Channel], list[int]] = {}
        existing: set[tuple[str, str]] = set()
        if pairs:  # the waiting dispatches (locked) and the pairs already staged, in one read
            waiting, existing = await repo.waiting_and_staged(
                pairs, sorted({incoming.headers.event_id for incoming in run}))
        waits = domain.run_waits(
            decided, window=self.window, waiting=waiting,
            stored=[{c for c in domain.CHANNELS if (incoming.headers.event_id, c) in existing}
                    for incoming in run])
        if waits.released:
            await repo.release(waits.released)
        return await repo.stage_all([
            NewNotification(
                source_event_id=incoming.headers.event_id, source_topic=incoming.topic,
                source_event_type=incoming.headers.event_type, kind=d.occurrence.kind,
                order_id=d.occurrence.order_id, channel=plan.channel, recipient=plan.recipient,
                language=d.language, context=d.context, status=plan.status, detail=plan.detail,
                next_attempt_at=due, finished=plan.finished, coalesce_key=key,
                raw_value=incoming.raw_value, raw_headers=incoming.raw_headers)
            for incoming, d, dues in zip(run, decided, waits.due_at, strict=True)
            for plan, key, due in zip(d.plans, d.keys, dues, strict=True)])

    def _report(self, uow: UnitOfWork, incoming: IncomingEvent[Any], d: domain.Decided,
                staged: set[tuple[str, str]]) -> None:
        """Wake the channels, record the suppressed ones and log, for one event, with its
        context bound as the runtime binds it for an event handled alone."""
        o = d.occurrence
        with uow.handling(incoming):
            for plan in d.plans:
                if (incoming.headers.event_id, plan.channel) not in staged:
                    log.debug("notification already staged for this event and channel",
                              channel=plan.channel)
                    continue
                if plan.status == "pending":
                    self.staged_channels.add(plan.channel)
                if plan.status == "suppressed":
                    uow.emit(NotificationRecorded(
                        order_id=o.order_id, source_event_id=incoming.headers.event_id,
                        source_event_type=incoming.headers.event_type, channel=plan.channel,
                        status="suppressed", detail=plan.detail), cause=incoming)
                log.debug("notification staged", kind=o.kind, channel=plan.channel,
                          status=plan.status, detail=plan.detail or None)
