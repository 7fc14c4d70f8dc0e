"""Intake's handlers: decode, open the unit of work, call the domain, stage the events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog

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
from orderflow.contracts.order import CanonicalOrder, Customer
from orderflow.intake import domain
from orderflow.intake.adapters import ADAPTERS, AdapterError, adapt
from orderflow.intake.repository import IntakeRepository, OrderRow, RevisionRow
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

_CHANGE_NAMESPACE = uuid.UUID("2d4f8a61-7c3e-4b9a-9e15-0f6b3c8d2a74")


def change_id_for(order_id: str, revision: int) -> str:
    """A revision's change id: the same re-push always names the same change."""
    return str(uuid.uuid5(_CHANGE_NAMESPACE, f"{order_id}:{revision}"))


@dataclass(frozen=True)
class Normalised:
    order: CanonicalOrder
    prices_include_tax: bool


def normalise(submitted: OrderSubmitted) -> Normalised | domain.Refused:
    """The channel's adapter, then the canonical schema."""
    adapter = ADAPTERS.get(submitted.channel)
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
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


def _store_refused(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted],
                   refusal: domain.StoreRefusal) -> None:
    """The event and log line of a push refused for its store: nothing is recorded (a corrected
    push is checked afresh), no order is touched, and nobody is notified (no customer)."""
    submitted = incoming.event
    reasons = refusal.refused.reasons
    log.warning("push refused for its store", store=submitted.store,
                reasons=[r.code for r in reasons])
    uow.emit(OrderRejected(order_id=refusal.order_id, channel=submitted.channel,
                           external_id=submitted.external_id, stage="intake", reasons=reasons),
             cause=incoming)


async def on_order_submitted(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted]) -> None:
    """One push, one statement at a time: the slow path of ``on_orders_submitted`` (and what it
    does set-based)."""
    submitted = incoming.event
    identity = identify(submitted)
    if isinstance(identity, domain.StoreRefusal):
        structlog.contextvars.bind_contextvars(order_id=identity.order_id,
                                               channel=submitted.channel)
        _store_refused(uow, incoming, identity)
        return
    repo = IntakeRepository(uow.session)
    fingerprint = domain.payload_fingerprint(submitted.payload)
    normalised = normalise(submitted)
    revision = normalised.order.revision if isinstance(normalised, Normalised) else 1

    found = domain.find_order(identity, await repo.lock_known(identity.order_id,
                                                              identity.legacy_id))
    if isinstance(found, domain.StoreRefusal):
        structlog.contextvars.bind_contextvars(order_id=found.order_id, channel=submitted.channel)
        _store_refused(uow, incoming, found)
        return
    order_id, known = found
    structlog.contextvars.bind_contextvars(order_id=order_id, channel=submitted.channel)
    kind = domain.classify_repush(known, revision, fingerprint)
    if kind == "duplicate":
        log.info("duplicate push ignored", revision=revision)
        return

    result: domain.Accepted | domain.Refused
    if isinstance(normalised, domain.Refused):
        result = normalised
    else:
        catalogue = await repo.catalogue(line.sku for line in normalised.order.lines)
        result = domain.check_order(normalised.order, catalogue,
                                    prices_include_tax=normalised.prices_include_tax)

    if kind == "revision":
        assert known is not None
        if isinstance(result, domain.Refused):
            await repo.record_revision(order_id, revision, fingerprint, status="refused",
                                       reasons=result.reasons)
        else:
            await repo.record_revision(order_id, revision, fingerprint, status="change")
        _revision_outcome(uow, incoming, order_id, revision, known, result)
        return

    status = "received" if isinstance(result, domain.Accepted) else "rejected"
    reasons = result.reasons if isinstance(result, domain.Refused) else ()
    if kind == "retry":
        await repo.retry(order_id=order_id, revision=revision, status=status,
                         fingerprint=fingerprint, reasons=reasons)
    elif not await repo.add(order_id=order_id, channel=submitted.channel,
                            external_id=submitted.external_id, store=identity.store,
                            revision=revision, status=status, fingerprint=fingerprint,
                            reasons=reasons):
        return
    _order_outcome(uow, incoming, order_id, revision, kind, normalised, result)


def _revision_outcome(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted], order_id: str,
                      revision: int, known: domain.KnownOrder,
                      result: domain.Accepted | domain.Refused) -> None:
    """The events and log line of a newer revision of a received order, once recorded."""
    submitted = incoming.event
    if isinstance(result, domain.Refused):
        log.warning("newer revision refused; the order stands as received",
                    revision=revision, reasons=[r.code for r in result.reasons])
        uow.emit(OrderRevisionRejected(order_id=order_id, channel=submitted.channel,
                                       external_id=submitted.external_id, revision=revision,
                                       reasons=result.reasons), cause=incoming)
        return
    uow.emit(OrderRevisionReceived(order_id=order_id, channel=submitted.channel,
                                   external_id=submitted.external_id,
                                   previous_revision=known.revision, revision=revision,
                                   order=result.order), cause=incoming)
    # the revision becomes a change of the order: logistics admits it first (the order must
    # not be dispatched yet), then review, inventory, and logistics settles it
    uow.emit(OrderChangeRequested(
        order_id=order_id, change_id=change_id_for(order_id, revision),
        channel=submitted.channel, external_id=submitted.external_id,
        previous_revision=known.revision, order=result.order, totals=result.totals,
        requested_by=f"connector:{submitted.channel}",
        reason=f"revision {revision} pushed by the channel"), cause=incoming)
    log.info("newer revision recorded as a change", revision=revision,
             previous_revision=known.revision)


def _order_outcome(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted], order_id: str,
                   revision: int, kind: domain.Repush, normalised: Normalised | domain.Refused,
                   result: domain.Accepted | domain.Refused) -> None:
    """The event and log line of a new order (or a retried rejected one), once recorded."""
    submitted = incoming.event
    if isinstance(result, domain.Accepted):
        uow.emit(OrderReceived(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, order=result.order,
                               totals=result.totals), cause=incoming)
        log.debug("order received", lines=len(result.order.lines), revision=revision,
                  grand_total=str(result.totals.grand_total), after_rejection=kind == "retry")
    else:
        customer = normalised.order.customer if isinstance(normalised, Normalised) \
            else _customer_of(submitted.payload)
        uow.emit(OrderRejected(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, stage="intake",
                               reasons=result.reasons, customer=customer), cause=incoming)
        log.info("order rejected", reasons=[r.code for r in result.reasons], revision=revision)


@dataclass(frozen=True)
class _Decided:
    """What one push of a run comes to, decided against the orders as the pushes before it in
    the run left them."""

    incoming: IncomingEvent[OrderSubmitted]
    order_id: str
    revision: int
    kind: domain.Repush
    known: domain.KnownOrder | None
    normalised: Normalised | domain.Refused
    result: domain.Accepted | domain.Refused | None  # None: a duplicate
    store_refused: domain.StoreRefusal | None = None  # refused for its store


_RUNTIME_CONTEXT = ("event_id", "order_id", "topic", "partition", "offset")


def _bind(incoming: IncomingEvent[OrderSubmitted], order_id: str) -> None:
    """The log context of one push, as the consumer and ``on_order_submitted`` bind it."""
    structlog.contextvars.bind_contextvars(
        event_id=incoming.headers.event_id, order_id=order_id, topic=incoming.topic,
        partition=incoming.partition, offset=incoming.offset, channel=incoming.event.channel)


async def on_orders_submitted(uow: UnitOfWork, run: list[IncomingEvent[OrderSubmitted]]) -> None:
    """A run of pushes, set-based, with the outcome of pushing them one after another: the known
    orders locked with one statement, the catalogue read once, each push decided in turn against
    the orders as the pushes before it left them (the same order pushed twice in the run is a
    duplicate the second time), then one statement per table. A new order a concurrent push
    recorded first sends the whole run down the one-at-a-time path."""
    repo = IntakeRepository(uow.session)
    prepared = []
    for incoming in run:
        submitted = incoming.event
        normalised = normalise(submitted)
        prepared.append((incoming, identify(submitted),
                         domain.payload_fingerprint(submitted.payload), normalised,
                         normalised.order.revision if isinstance(normalised, Normalised) else 1))
    # every push's order under its store's id and under its number's id from before stores
    # counted, in one statement
    state: dict[str, domain.KnownOrder | None] = dict(await repo.lock_known_many(
        order_id for _, identity, _, _, _ in prepared if isinstance(identity, domain.Identity)
        for order_id in identity.ids))
    skus = {line.sku for *_, normalised, _ in prepared if isinstance(normalised, Normalised)
            for line in normalised.order.lines}
    catalogue = await repo.catalogue(skus) if skus else {}

    decided: list[_Decided] = []
    added: dict[str, OrderRow] = {}
    updated: dict[str, OrderRow] = {}
    recorded: dict[tuple[str, int], RevisionRow] = {}  # the first record of a revision stays
    for incoming, identity, fingerprint, normalised, revision in prepared:
        submitted = incoming.event
        if isinstance(identity, domain.StoreRefusal):
            decided.append(_Decided(incoming, identity.order_id, revision, "new", None,
                                    normalised, None, identity))
            continue
        found = domain.find_order(identity, state)
        if isinstance(found, domain.StoreRefusal):
            decided.append(_Decided(incoming, found.order_id, revision, "new", None,
                                    normalised, None, found))
            continue
        order_id, known = found
        kind = domain.classify_repush(known, revision, fingerprint)
        if kind == "duplicate":
            decided.append(_Decided(incoming, order_id, revision, kind, known, normalised, None))
            continue
        result: domain.Accepted | domain.Refused = normalised \
            if isinstance(normalised, domain.Refused) else domain.check_order(
                normalised.order, catalogue, prices_include_tax=normalised.prices_include_tax)
        decided.append(_Decided(incoming, order_id, revision, kind, known, normalised, result))
        reasons = result.reasons if isinstance(result, domain.Refused) else ()
        if kind == "revision":
            assert known is not None
            status = "refused" if isinstance(result, domain.Refused) else "change"
            recorded.setdefault((order_id, revision),
                                RevisionRow(order_id, revision, fingerprint, status, reasons))
            if status == "change":
                state[order_id] = domain.KnownOrder(order_id, revision, known.status, fingerprint,
                                                    known.store)
                updated[order_id] = OrderRow(order_id, submitted.channel, submitted.external_id,
                                             known.store, revision, known.status, fingerprint)
            continue
        status = "received" if isinstance(result, domain.Accepted) else "rejected"
        row = OrderRow(order_id, submitted.channel, submitted.external_id, identity.store,
                       revision, status, fingerprint)
        if kind == "retry":
            updated[order_id] = row
        else:
            added[order_id] = row
        state[order_id] = domain.KnownOrder(order_id, revision, status, fingerprint,
                                            identity.store)
        recorded.setdefault((order_id, revision),
                            RevisionRow(order_id, revision, fingerprint, status, reasons))

    inserted = await repo.add_many(list(added.values()))
    if len(inserted) < len(added):  # a concurrent push recorded one first: as one by one
        await repo.unadd_many(inserted)
        await _one_at_a_time(uow, run)
        return
    await repo.update_many(list(updated.values()))
    await repo.record_many(list(recorded.values()))

    previous = structlog.contextvars.get_contextvars()
    for d in decided:
        _bind(d.incoming, d.order_id)
        if d.store_refused is not None:
            _store_refused(uow, d.incoming, d.store_refused)
        elif d.result is None:
            log.info("duplicate push ignored", revision=d.revision)
        elif d.kind == "revision":
            assert d.known is not None
            _revision_outcome(uow, d.incoming, d.order_id, d.revision, d.known, d.result)
        else:
            _order_outcome(uow, d.incoming, d.order_id, d.revision, d.kind, d.normalised, d.result)
    _restore(previous)


def _restore(previous: dict[str, Any]) -> None:
    """The consumer's log context as it was before the run (``channel`` stays bound, as
    ``on_order_submitted`` leaves it); after a failure it stays as the failing push bound it,
    as it would one push at a time."""
    for key in _RUNTIME_CONTEXT:
        if key in previous:
            structlog.contextvars.bind_contextvars(**{key: previous[key]})
        else:
            structlog.contextvars.unbind_contextvars(key)


async def _one_at_a_time(uow: UnitOfWork, run: list[IncomingEvent[OrderSubmitted]]) -> None:
    """The slow path: each push of the run by ``on_order_submitted``, in its log context."""
    for incoming in run:
        with uow.handling(incoming):
            await on_order_submitted(uow, incoming)


def _customer_of(payload: Any) -> Customer | None:
    """The customer of a canonical payload that failed validation, if it can still be read (for
    notify); platform payloads keep their buyers elsewhere, and get none."""
    try:
        return Customer.model_validate(payload["customer"])
    except Exception:  # noqa: BLE001 - best effort only
        return None


async def on_product_updated(uow: UnitOfWork, incoming: IncomingEvent[ProductUpdated]) -> None:
    await IntakeRepository(uow.session).upsert_product(incoming.event)
