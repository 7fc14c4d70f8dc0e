"""Intake's handlers: decode, open the unit of work, call the domain, stage the events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import structlog

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
from orderflow.contracts.order import CanonicalOrder, Customer, order_id_for
from orderflow.intake import domain
from orderflow.intake.adapters import ADAPTERS, AdapterError, adapt
from orderflow.intake.repository import IntakeRepository
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


async def on_order_submitted(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted]) -> None:
    submitted = incoming.event
    order_id = order_id_for(submitted.channel, submitted.external_id)
    structlog.contextvars.bind_contextvars(order_id=order_id, channel=submitted.channel)
    repo = IntakeRepository(uow.session)
    fingerprint = domain.payload_fingerprint(submitted.payload)
    normalised = normalise(submitted)
    revision = normalised.order.revision if isinstance(normalised, Normalised) else 1

    known = await repo.lock_known(order_id)
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
            log.warning("newer revision refused; the order stands as received",
                        revision=revision, reasons=[r.code for r in result.reasons])
            uow.emit(OrderRevisionRejected(order_id=order_id, channel=submitted.channel,
                                           external_id=submitted.external_id, revision=revision,
                                           reasons=result.reasons))
            return
        await repo.record_revision(order_id, revision, fingerprint, status="change")
        uow.emit(OrderRevisionReceived(order_id=order_id, channel=submitted.channel,
                                       external_id=submitted.external_id,
                                       previous_revision=known.revision, revision=revision,
                                       order=result.order))
        # the revision becomes a change of the order: logistics admits it first (the order must
        # not be dispatched yet), then review, inventory, and logistics settles it
        uow.emit(OrderChangeRequested(
            order_id=order_id, change_id=change_id_for(order_id, revision),
            channel=submitted.channel, external_id=submitted.external_id,
            previous_revision=known.revision, order=result.order, totals=result.totals,
            requested_by=f"connector:{submitted.channel}",
            reason=f"revision {revision} pushed by the channel"))
        log.info("newer revision recorded as a change", revision=revision,
                 previous_revision=known.revision)
        return

    status = "received" if isinstance(result, domain.Accepted) else "rejected"
    reasons = result.reasons if isinstance(result, domain.Refused) else ()
    if kind == "retry":
        await repo.retry(order_id=order_id, revision=revision, status=status,
                         fingerprint=fingerprint, reasons=reasons)
    elif not await repo.add(order_id=order_id, channel=submitted.channel,
                            external_id=submitted.external_id, revision=revision, status=status,
                            fingerprint=fingerprint, reasons=reasons):
        return
    if isinstance(result, domain.Accepted):
        uow.emit(OrderReceived(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, order=result.order,
                               totals=result.totals))
        log.debug("order received", lines=len(result.order.lines), revision=revision,
                  grand_total=str(result.totals.grand_total), after_rejection=kind == "retry")
    else:
        customer = normalised.order.customer if isinstance(normalised, Normalised) \
            else _customer_of(submitted.payload)
        uow.emit(OrderRejected(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, stage="intake",
                               reasons=result.reasons, customer=customer))
        log.info("order rejected", reasons=[r.code for r in result.reasons], revision=revision)


def _customer_of(payload: Any) -> Customer | None:
    """The customer of a canonical payload that failed validation, if it can still be read (for
    notify); platform payloads keep their buyers elsewhere, and get none."""
    try:
        return Customer.model_validate(payload["customer"])
    except Exception:  # noqa: BLE001 - best effort only
        return None


async def on_product_updated(uow: UnitOfWork, incoming: IncomingEvent[ProductUpdated]) -> None:
    await IntakeRepository(uow.session).upsert_product(incoming.event)
