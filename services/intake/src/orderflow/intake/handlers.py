"""Intake's handlers: read the pushes, call the domain, store, stage the events."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from orderflow.channels import channel_names
from orderflow.connector import StoreRefused, store_of
from orderflow.contracts.events import (
    OrderChangeRequested,
    OrderReceived,
    OrderRejected,
    OrderRevisionReceived,
    OrderRevisionRejected,
    OrderSubmitted,
    ProductUpdated,
    Reason,
)
from orderflow.contracts.order import Customer
from orderflow.intake import domain
from orderflow.intake.adapters import AdapterError, adapt, adapter_of
from orderflow.intake.domain import Normalised
from orderflow.intake.repository import IntakeRepository
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

_CHANGE_NAMESPACE = uuid.UUID("2d4f8a61-7c3e-4b9a-9e15-0f6b3c8d2a74")


def change_id_for(order_id: str, revision: int) -> str:
    """A revision's change id: the same re-push always names the same change."""
    return str(uuid.uuid5(_CHANGE_NAMESPACE, f"{order_id}:{revision}"))


def normalise(submitted: OrderSubmitted) -> Normalised | domain.Refused:
    """The channel's adapter (the installed channel's, ``orderflow.channels``), then the
    canonical schema."""
    adapter = adapter_of(submitted.channel)
    if adapter is None:
        known = ", ".join(channel_names())
        return domain.Refused((Reason(code="unknown_channel", field="channel",
                                      message=f"no adapter for channel {submitted.channel!r} "
                                              f"(known: {known})"),))
    try:
        adapted = adapt(adapter, submitted.payload)
    except AdapterError as exc:
        return domain.Refused((Reason(code=exc.code, field=exc.field, message=str(exc)),))
    parsed = domain.parse_canonical(adapted.data)
    if isinstance(parsed, domain.Refused):
        return parsed
    if parsed.external_id != submitted.external_id:
        return domain.Refused((Reason(
            code="external_id_mismatch", field="external_id",
            message=f"the envelope says {submitted.external_id!r}, the order {parsed.external_id!r}",
        ),))
    return Normalised(parsed, adapted.prices_include_tax)


def identify(submitted: OrderSubmitted) -> domain.Identity | domain.StoreRefusal:
    """The order a push names: its channel, its store (``orderflow.connector.store_of``: the
    envelope's, or Douyin's ``shop_id`` in the payload) and its external id; or, when its store
    cannot be told, its refusal (no order looked at)."""
    try:
        store = store_of(submitted.channel, submitted.payload, submitted.store)
    except StoreRefused as exc:
        return domain.StoreRefusal(
            domain.refused_id(submitted.channel, submitted.external_id, submitted.store),
            domain.Refused((Reason(code=exc.code, field="store", message=str(exc)),)))
    return domain.Identity.of(submitted.channel, submitted.external_id, store)


def read_push(submitted: OrderSubmitted) -> domain.Push:
    """A push as the domain decides it: the order it names, its fingerprint, its order."""
    return domain.Push(identify(submitted), domain.payload_fingerprint(submitted.payload),
                       normalise(submitted))


async def store_pushes(uow: UnitOfWork, submissions: Sequence[OrderSubmitted]) -> (
        tuple[list[domain.Push], tuple[domain.Outcome, ...]]):
    """A run of pushes (a single push is a run of one) decided and stored, with the outcome of
    pushing them one after another (``domain.decide_pushes``): the orders they name locked with
    one statement, the catalogue read once, then one statement per table. The consumer's
    batches and the channel order API both store pushes through it."""
    repo = IntakeRepository(uow.session)
    pushes = [read_push(submitted) for submitted in submissions]
    ids = {order_id for push in pushes if isinstance(push.identity, domain.Identity)
           for order_id in push.identity.ids}
    known = await repo.lock_known(ids)
    skus = {line.sku for push in pushes if isinstance(push.read, Normalised)
            for line in push.read.order.lines}
    catalogue = await repo.catalogue(skus) if skus else {}
    # a new order a concurrent push recorded first (the insert waits for its commit, then skips
    # it): the run's own inserts are taken back and the run decided again with that order known;
    # each time round one more of the run's orders is known, so this ends
    for _ in range(len(ids) + 1):
        decision = domain.decide_pushes(pushes, known, catalogue)
        inserted = await repo.add_orders(decision.added)
        if len(inserted) == len(decision.added):
            break
        await repo.remove_orders(inserted)
        known = await repo.lock_known(ids)
    else:  # pragma: no cover - every lap knows one more order
        raise RuntimeError("intake's orders kept changing under a run of pushes")
    await repo.update_orders(decision.updated)
    await repo.record_revisions(decision.recorded)
    return pushes, decision.outcomes


async def on_orders_submitted(uow: UnitOfWork, run: list[IncomingEvent[OrderSubmitted]]) -> None:
    """A run of pushes stored (``store_pushes``), then each push's events in its log context."""
    pushes, outcomes = await store_pushes(uow, [incoming.event for incoming in run])
    _announce(uow, run, pushes, outcomes)


async def submit_order(uow: UnitOfWork,
                       submitted: OrderSubmitted) -> tuple[domain.Push, domain.Outcome]:
    """One push made over HTTP (the channel order API), stored and announced as the consumer
    would a push of ``order.inbound`` (its events answer no consumed event). The caller rolls
    the transaction back unless the push is accepted (``accepted``)."""
    pushes, outcomes = await store_pushes(uow, [submitted])
    outcome = outcomes[0]
    with structlog.contextvars.bound_contextvars(order_id=outcome.order_id,
                                                 channel=submitted.channel):
        _announce_one(uow, submitted, None, pushes[0], outcome)
    return pushes[0], outcome


def accepted(outcome: domain.Outcome) -> bool:
    """Whether a push came to an order received, or to a change of one."""
    return isinstance(outcome.result, domain.Accepted)


_RUNTIME_CONTEXT = ("event_id", "order_id", "topic", "partition", "offset")


def _announce(uow: UnitOfWork, run: list[IncomingEvent[OrderSubmitted]],
              pushes: list[domain.Push], outcomes: tuple[domain.Outcome, ...]) -> None:
    """Each push's events and log line, in the run's order, in its log context (its event and
    the order it came to) and its consumer span (``uow.in_span``); the consumer's context is
    restored afterwards (``channel`` stays bound); after a failure it stays as the failing push
    bound it."""
    previous = structlog.contextvars.get_contextvars()
    for incoming, push, outcome in zip(run, pushes, outcomes, strict=True):
        structlog.contextvars.bind_contextvars(
            event_id=incoming.headers.event_id, order_id=outcome.order_id, topic=incoming.topic,
            partition=incoming.partition, offset=incoming.offset, channel=incoming.event.channel)
        with uow.in_span(incoming) or contextlib.nullcontext():
            _announce_one(uow, incoming.event, incoming, push, outcome)
    for key in _RUNTIME_CONTEXT:
        if key in previous:
            structlog.contextvars.bind_contextvars(**{key: previous[key]})
        else:
            structlog.contextvars.unbind_contextvars(key)


def _announce_one(uow: UnitOfWork, submitted: OrderSubmitted,
                  cause: IncomingEvent[OrderSubmitted] | None, push: domain.Push,
                  outcome: domain.Outcome) -> None:
    """One push's events (answering ``cause``, the consumed push; None over HTTP) and log line."""
    if outcome.store_refused is not None:
        _store_refused(uow, submitted, cause, outcome.store_refused)
    elif outcome.result is None:
        log.info("duplicate push ignored", revision=outcome.revision)
    elif outcome.kind == "revision":
        _revision_outcome(uow, submitted, cause, outcome, outcome.result)
    else:
        _order_outcome(uow, submitted, cause, push, outcome, outcome.result)


def _store_refused(uow: UnitOfWork, submitted: OrderSubmitted,
                   cause: IncomingEvent[OrderSubmitted] | None,
                   refusal: domain.StoreRefusal) -> None:
    """A push refused for its store: nothing is recorded (a corrected push is checked afresh),
    no order is touched, and nobody is notified (no customer)."""
    reasons = refusal.refused.reasons
    log.warning("push refused for its store", store=submitted.store,
                reasons=[r.code for r in reasons])
    uow.emit(OrderRejected(order_id=refusal.order_id, channel=submitted.channel,
                           external_id=submitted.external_id, stage="intake", reasons=reasons),
             cause=cause)


def _revision_outcome(uow: UnitOfWork, submitted: OrderSubmitted,
                      cause: IncomingEvent[OrderSubmitted] | None, outcome: domain.Outcome,
                      result: domain.Accepted | domain.Refused) -> None:
    """A newer revision of a received order: refused, or a change of the order."""
    order_id, revision = outcome.order_id, outcome.revision
    if isinstance(result, domain.Refused):
        log.warning("newer revision refused; the order stands as received",
                    revision=revision, reasons=[r.code for r in result.reasons])
        uow.emit(OrderRevisionRejected(order_id=order_id, channel=submitted.channel,
                                       external_id=submitted.external_id, revision=revision,
                                       reasons=result.reasons), cause=cause)
        return
    assert outcome.known is not None
    previous = outcome.known.revision
    uow.emit(OrderRevisionReceived(order_id=order_id, channel=submitted.channel,
                                   external_id=submitted.external_id,
                                   previous_revision=previous, revision=revision,
                                   order=result.order, author=_author(submitted)), cause=cause)
    # the revision becomes a change of the order: logistics admits it first (the order must
    # not be dispatched yet), then review, inventory, and logistics settles it
    uow.emit(OrderChangeRequested(
        order_id=order_id, change_id=change_id_for(order_id, revision),
        channel=submitted.channel, external_id=submitted.external_id,
        previous_revision=previous, order=result.order, totals=result.totals,
        requested_by=f"connector:{submitted.channel}",
        reason=f"revision {revision} pushed by the channel"), cause=cause)
    log.info("newer revision recorded as a change", revision=revision,
             previous_revision=previous)


def _order_outcome(uow: UnitOfWork, submitted: OrderSubmitted,
                   cause: IncomingEvent[OrderSubmitted] | None, push: domain.Push,
                   outcome: domain.Outcome, result: domain.Accepted | domain.Refused) -> None:
    """A new order (or a retried rejected one): received or rejected."""
    order_id, revision = outcome.order_id, outcome.revision
    if isinstance(result, domain.Accepted):
        uow.emit(OrderReceived(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, order=result.order,
                               totals=result.totals, author=_author(submitted)), cause=cause)
        log.debug("order received", lines=len(result.order.lines), revision=revision,
                  grand_total=str(result.totals.grand_total),
                  after_rejection=outcome.kind == "retry")
        return
    customer = push.read.order.customer if isinstance(push.read, Normalised) \
        else _customer_of(submitted.payload)
    uow.emit(OrderRejected(order_id=order_id, channel=submitted.channel,
                           external_id=submitted.external_id, stage="intake",
                           reasons=result.reasons, customer=customer), cause=cause)
    log.info("order rejected", reasons=[r.code for r in result.reasons], revision=revision)


def _author(submitted: OrderSubmitted) -> str | None:
    """Who entered a push, as its events name them: its claim for channel desk only (a push
    consumed from ``order.inbound`` names its own channel)."""
    return domain.author_of(submitted.channel, submitted.author)


def _customer_of(payload: Any) -> Customer | None:
    """The customer of a canonical payload that failed validation, if it can still be read (for
    notify); platform payloads keep their buyers elsewhere, and get none."""
    try:
        return Customer.model_validate(payload["customer"])
    except Exception:  # noqa: BLE001 - best effort only
        return None


async def on_product_updated(uow: UnitOfWork, incoming: IncomingEvent[ProductUpdated]) -> None:
    await IntakeRepository(uow.session).upsert_product(incoming.event)


async def on_outcomes(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
    """A run of outcome events (``domain.OUTCOME_EVENTS``, any of their topics, in batch order)
    folded into their orders' statuses (``domain.apply_outcome``): the statuses read and locked
    with one statement, written with one."""
    repo = IntakeRepository(uow.session)
    statuses = await repo.lock_statuses(incoming.event.order_id for incoming in run)
    changed: dict[str, domain.OrderStatus] = {}
    for incoming in run:
        order_id = incoming.event.order_id
        changed[order_id] = statuses[order_id] = domain.apply_outcome(
            statuses.get(order_id), incoming.event, incoming.headers.event_id,
            incoming.headers.occurred_at)
    await repo.save_statuses(changed)
