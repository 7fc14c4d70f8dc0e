"""The sender: one background loop per channel delivers the notifications the handlers staged.

Each loop is the only one sending on its channel (a PostgreSQL advisory lock elects it among
replicas) and keeps up to ``concurrency`` sends in flight (``record_only_concurrency`` for a driver
that only records: no SMTP host, the logging SMS provider), each with a timeout, so a slow or
failing channel never holds up the others. For one notification:

1. **claim** (one transaction): the row goes ``pending -> sending`` with ``attempts + 1`` and a
   lease; waiting dispatches of the same order are folded into it (``coalesced``) and recorded;
2. **send** outside any transaction (SMTP, HTTP, SMS provider);
3. **mark** (immediately, in a group commit): ``sent``/``recorded`` with ``notification.recorded``
   staged in the outbox; or back to ``pending`` with a backoff delay; or, at the limit,
   ``failed`` with ``notification.recorded`` and the source event staged for
   ``<source topic>.dlq``. The first finished send is marked at once; the sends that finish
   while that transaction runs are marked together in the next one (one commit for many).

The mark is fenced by ``attempts``: an attempt whose lease ran out and was taken over cannot
mark the row. A row stays the process's own from its claim until its mark commits, however long
the database is away: its claims skip the rows it holds, so an outage after a send (the mark
waiting for the database to come back, the lease running out meanwhile) never sends it again.

Delivery is at least once: a message is sent again when the process dies after the server
accepted it and before its mark committed, when the server took it but answered after the send's
timeout (a failure, retried), or when another replica takes over the sending while the mark waits
for the database (the row's lease ran out). A copy carries the same Message-ID /
``X-OrderFlow-Delivery`` id as the first, so the receiver can drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from typing import Any

import sqlalchemy as sa
import structlog
from prometheus_client import Counter

from orderflow.contracts.events import NotificationRecorded
from orderflow.contracts.headers import EventHeaders
from orderflow.notify import domain
from orderflow.notify.channels import ChannelDriver, Delivered, DeliveryFailed, OutgoingNotification
from orderflow.notify.repository import NotificationRow, SenderRepository
from orderflow.notify.settings import NotifySettings
from orderflow.notify.templates import Renderer
from orderflow.runtime.retry import Stopping, is_transient, retry_transient
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

DLQ_REASON = "notification_failed"
NOTIFICATIONS = Counter("orderflow_notifications_total",
                        "Notifications finished by the sender, by channel and status",
                        ["service", "channel", "status"])


def incoming_of(row: NotificationRow) -> IncomingEvent[Any]:
    """The source event's headers again, so what the sender emits answers it (causation,
    trace); the event itself is not parsed again (emitting needs only its headers)."""
    headers = EventHeaders.from_kafka(row.raw_headers)
    return IncomingEvent(row.source_topic, -1, -1, row.order_id, headers, None, row.raw_value,
                         row.raw_headers)


def record(uow: UnitOfWork, row: NotificationRow, status: str, detail: str) -> None:
    NOTIFICATIONS.labels("notify", row.channel, status).inc()
    uow.current = incoming_of(row)
    try:
        uow.emit(NotificationRecorded(order_id=row.order_id, source_event_id=row.source_event_id,
                                      source_event_type=row.source_event_type, channel=row.channel,
                                      status=status, detail=detail[:500]))  # type: ignore[arg-type]
    finally:
        uow.current = None


class ChannelSender:
    def __init__(self, driver: ChannelDriver, settings: NotifySettings, renderer: Renderer,
                 *, send_timeout_s: float) -> None:
        self.driver = driver
        self.channel = driver.channel
        self.settings = settings
        self.renderer = renderer
        self.send_timeout_s = send_timeout_s
        # a claim takes no more rows than can be in flight at once: a claimed row starts sending
        # at once, so its lease never runs out while it waits its turn in this process
        self.in_flight_limit = (settings.record_only_concurrency if driver.records_only
                                else settings.concurrency)
        # a claimed row is taken over only well after its send must have ended
        self.lease_s = send_timeout_s * 2 + 10
        self._wake = asyncio.Event()
        self._leading = False
        # finished sends waiting for their mark, and the task that marks them (group commits)
        self._to_mark: list[tuple[NotificationRow, Delivered | DeliveryFailed,
                                  asyncio.Future[None]]] = []
        self._marker: asyncio.Task[None] | None = None
        # the rows this process claimed and has not marked yet: its claims leave them alone
        self._held: set[int] = set()

    def wake(self) -> None:
        """Something was staged for this channel and committed in this process: claim now
        instead of at the next due time (only the leading loop cares)."""
        if self._leading:
            self._wake.set()

    async def run(self, ctx: ServiceContext) -> None:
        """Lead this channel's sending while the service runs; stand by while another leads."""
        lock_key = f"orderflow-notify-sender:{self.channel}"
        try:
            while not ctx.stopping.is_set():
                try:
                    async with ctx.engine.connect() as conn:
                        got = (await conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                                                  {"k": lock_key})).scalar()
                        await conn.commit()
                        if not got:
                            await self._pause(ctx, self.settings.poll_interval_s * 8)
                            continue
                        log.info("sender is the leader", channel=self.channel)
                        self._leading = True
                        try:
                            await self._lead(ctx)
                        finally:
                            self._leading = False
                            with contextlib.suppress(Exception):
                                await conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"),
                                                   {"k": lock_key})
                                await conn.commit()
                except (asyncio.CancelledError, Stopping):
                    raise
                except Exception as exc:
                    if is_transient(exc):
                        log.warning("sender lost the database; retrying", channel=self.channel,
                                    error=f"{type(exc).__name__}: {exc}"[:300])
                    else:
                        log.exception("sender failed; restarting it", channel=self.channel)
                    await self._pause(ctx, 1.0)
        except Stopping:
            pass
        finally:
            await self.driver.close()

    async def _pause(self, ctx: ServiceContext, seconds: float) -> None:
        stop = asyncio.ensure_future(ctx.stopping.wait())
        wake = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({stop, wake}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()
        self._wake.clear()

    async def _lead(self, ctx: ServiceContext) -> None:
        in_flight: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            self._wake.set()

        try:
            while not ctx.stopping.is_set():
                free = self.in_flight_limit - len(in_flight)
                claimed: list[NotificationRow] = []
                next_due_s: float | None = None
                if free > 0:
                    claimed, next_due_s = await self._claim(ctx, free)
                    for row in claimed:
                        self._held.add(row.id)
                        task = asyncio.create_task(self._deliver(ctx, row),
                                                   name=f"notify-{self.channel}-{row.id}")
                        in_flight.add(task)
                        task.add_done_callback(done)
                if free > 0 and len(claimed) == free:
                    continue  # more may be due: claim again as soon as a slot frees
                # no polling: woken by a commit that staged something for this channel (in this
                # process) or by a send finishing; otherwise until the next known due time (a
                # coalescing window, a retry, a lease), at most ``idle_interval_s`` (rows staged
                # by another replica, whose commits do not wake this one)
                wait = self.settings.idle_interval_s
                if next_due_s is not None:
                    wait = min(wait, max(next_due_s, self.settings.poll_interval_s))
                await self._pause(ctx, wait)
        finally:
            if in_flight:  # let sends under way finish and be marked (bounded by their timeout)
                await asyncio.wait(in_flight, timeout=self.send_timeout_s + 5)

    async def _claim(self, ctx: ServiceContext, limit: int) -> tuple[list[NotificationRow], float | None]:
        """The claimed rows and, when fewer than ``limit`` were due, the seconds until the next
        row of this channel is (``None``: nothing pending or sending)."""
        async def claim() -> tuple[list[NotificationRow], float | None]:
            async with ctx.units() as uow:
                repo = SenderRepository(uow.session)
                rows = await repo.claim_due(self.channel, limit, self.lease_s, self._held)
                folded = await self._folds(repo, rows)
                folded_ids = {f.id for group in folded.values() for f in group}
                ready: list[NotificationRow] = []
                for row in rows:
                    if row.id in folded_ids:
                        continue
                    if row.id in folded:
                        row = await self._fold(uow, repo, row, folded[row.id])
                    ready.append(row)
                next_due_s = None if len(rows) >= limit else await repo.next_due_s(self.channel)
                return ready, next_due_s

        return await retry_transient(claim, what=f"claim {self.channel} notifications",
                                     stopping=ctx.stopping.is_set)

    async def _folds(self, repo: SenderRepository, claimed: list[NotificationRow],
                     ) -> dict[int, list[NotificationRow]]:
        """The rows folded into each carrying row among ``claimed`` (in id order), marked
        ``coalesced``: the domain chooses the carriers and what folds into them, from the claimed
        rows and the ones waiting under their keys."""
        carrying = domain.carriers(claimed)
        if not carrying:
            return {}
        waiting = await repo.waiting_of(carrying.keys(), self.channel)
        folds = domain.folds(carrying, [*claimed, *waiting])
        await repo.coalesce(folds)
        by_id = {r.id: r for r in (*claimed, *waiting)}
        folded: dict[int, list[NotificationRow]] = {}
        for fold in folds:
            folded.setdefault(fold.carrier_id, []).append(by_id[fold.row_id])
        return folded

    async def _fold(self, uow: UnitOfWork, repo: SenderRepository, row: NotificationRow,
                    folded: list[NotificationRow]) -> NotificationRow:
        """Tell the waiting dispatches of one order in ``row``'s single message."""
        shipments = domain.merge_shipments([row.context, *(f.context for f in folded)])
        context = {**row.context, "event": {**row.context.get("event", {}), "shipments": shipments}}
        await repo.set_context(row.id, context)
        for other in folded:
            record(uow, other, "suppressed",
                   domain.folded_record_detail(len(shipments), row.notification_id))
        log.info("dispatches coalesced into one message", order_id=row.order_id,
                 channel=self.channel, shipments=len(shipments))
        return dataclasses.replace(row, context=context)

    async def _deliver(self, ctx: ServiceContext, row: NotificationRow) -> None:
        structlog.contextvars.bind_contextvars(order_id=row.order_id, channel=self.channel,
                                               notification_id=row.notification_id)
        outcome: Delivered | DeliveryFailed
        try:
            message = self.renderer.render(row.kind, row.language, row.context)
            notification = OutgoingNotification(
                notification_id=row.notification_id, order_id=row.order_id, kind=row.kind,
                source_event_id=row.source_event_id, source_event_type=row.source_event_type,
                channel=row.channel, recipient=row.recipient, language=row.language,
                message=message, context=row.context)
            outcome = await asyncio.wait_for(self.driver.deliver(notification), self.send_timeout_s)
        except DeliveryFailed as exc:
            outcome = exc
        except TimeoutError:
            outcome = DeliveryFailed(f"no answer within {self.send_timeout_s:g}s")
        except Exception as exc:
            if is_transient(exc):  # the database or the network away (a driver's own lookup)
                outcome = DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300])
            else:  # a template or driver bug: retrying will not help
                log.exception("notification could not be rendered or sent")
                outcome = DeliveryFailed(f"{type(exc).__name__}: {exc}"[:300], permanent=True)
        try:
            await self._marked(ctx, row, outcome)
        except Stopping:
            log.warning("stopping before the notification was marked; it will be retried after "
                        "its lease", attempts=row.attempts)
        finally:
            self._held.discard(row.id)
            structlog.contextvars.unbind_contextvars("order_id", "channel", "notification_id")

    async def _marked(self, ctx: ServiceContext, row: NotificationRow,
                      outcome: Delivered | DeliveryFailed) -> None:
        """Returns when the outcome is marked (committed); raises what marking it raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_mark.append((row, outcome, done))
        if self._marker is None or self._marker.done():
            # a context of its own: not the log bindings of the send that happened to start it
            self._marker = asyncio.create_task(self._mark_loop(ctx),
                                               name=f"notify-{self.channel}-marker",
                                               context=contextvars.Context())
        await asyncio.shield(done)

    async def _mark_loop(self, ctx: ServiceContext) -> None:
        """Mark what finished, in one transaction per round, until nothing waits. A round that
        fails for good (not a transient fault) is marked again one notification at a time, so
        one bad row cannot hold back the others' marks."""
        def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

        async def mark(items: list[tuple[NotificationRow, Delivered | DeliveryFailed]]) -> None:
            await retry_transient(lambda: self._mark(ctx, items),
                                  what=f"mark {self.channel} notifications",
                                  stopping=ctx.stopping.is_set)

        while self._to_mark:
            batch, self._to_mark = self._to_mark, []
            try:
                await mark([(row, outcome) for row, outcome, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting send
                if isinstance(exc, Stopping) or len(batch) == 1:
                    for *_, future in batch:
                        settle(future, exc)
                    continue
                for row, outcome, future in batch:
                    try:
                        await mark([(row, outcome)])
                    except Exception as one:  # noqa: BLE001 - handed to its send
                        settle(future, one)
                    else:
                        settle(future, None)
                continue
            for *_, future in batch:
                settle(future, None)

    async def _mark(self, ctx: ServiceContext,
                    items: list[tuple[NotificationRow, Delivered | DeliveryFailed]]) -> None:
        async with ctx.units() as uow:
            repo = SenderRepository(uow.session)
            delivered: list[tuple[NotificationRow, Delivered]] = []
            failed: list[tuple[NotificationRow, DeliveryFailed]] = []
            for row, outcome in items:
                if isinstance(outcome, Delivered):
                    delivered.append((row, outcome))
                else:
                    failed.append((row, outcome))
            # the deliveries in one statement; a row another sender took over is not ours
            finished = await repo.finish_delivered(
                [(row, done.status, done.detail) for row, done in delivered])
            for row, done in delivered:
                if row.id in finished:
                    with self._bound(row):
                        record(uow, row, done.status, done.detail)
                        log.debug("notification delivered", kind=row.kind, status=done.status,
                                  attempts=row.attempts)
            for row, failure in failed:
                with self._bound(row):
                    await self._mark_failure(uow, repo, row, failure)

    def _bound(self, row: NotificationRow) -> contextlib.AbstractContextManager[Any]:
        """The log context of one notification while its outcome is marked."""
        return structlog.contextvars.bound_contextvars(
            order_id=row.order_id, channel=self.channel, notification_id=row.notification_id)

    async def _mark_failure(self, uow: UnitOfWork, repo: SenderRepository, row: NotificationRow,
                            outcome: DeliveryFailed) -> None:
        error = str(outcome)
        decision = domain.after_failure(
            row.attempts, max_attempts=self.settings.max_attempts, permanent=outcome.permanent,
            error=error, initial_s=self.settings.retry_initial_s,
            maximum_s=self.settings.retry_max_s)
        if isinstance(decision, domain.RetryLater):
            await repo.retry_later(row, delay_s=decision.delay_s, error=error)
            log.warning("notification failed; will retry", kind=row.kind, attempts=row.attempts,
                        retry_in_s=round(decision.delay_s, 2), error=error[:300])
            return
        if await repo.finish(row, status="failed", detail=decision.reason, error=error):
            record(uow, row, "failed", decision.reason)
            uow.dead_letter(topic=row.source_topic, key=row.order_id.encode(),
                            value=row.raw_value, headers=row.raw_headers, reason=DLQ_REASON,
                            error=f"{self.channel} notification {row.notification_id}: "
                                  f"{decision.reason}")
            log.error("notification failed; source event dead-lettered", kind=row.kind,
                      attempts=row.attempts, error=error[:300])
