"""Intake's handlers: decode, open the unit of work, call the domain, stage the events."""

from __future__ import annotations

from typing import Any

import structlog

from orderflow.contracts.events import (
    OrderReceived,
    OrderRejected,
    OrderRevisionReceived,
    OrderSubmitted,
    ProductUpdated,
    Reason,
)
from orderflow.contracts.order import CanonicalOrder, Customer, order_id_for
from orderflow.intake import domain
from orderflow.intake.adapters import ADAPTERS, AdapterError
from orderflow.intake.repository import IntakeRepository
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)


def normalise(submitted: OrderSubmitted) -> CanonicalOrder | domain.Refused:
    """The channel's adapter, then the canonical schema."""
    adapter = ADAPTERS.get(submitted.channel)
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
        return domain.Refused((Reason(code="unknown_channel", field="channel",
                                      message=f"no adapter for channel {submitted.channel!r} "
                                              f"(known: {known})"),))
    try:
        data = adapter(submitted.payload)
    except AdapterError as exc:
        return domain.Refused((Reason(code="unreadable_payload", field=exc.field,
                                      message=str(exc)),))
    parsed = domain.parse_canonical(data)
    if isinstance(parsed, CanonicalOrder) and parsed.external_id != submitted.external_id:
        return domain.Refused((Reason(
            code="external_id_mismatch", field="external_id",
            message=f"the envelope says {submitted.external_id!r}, the order {parsed.external_id!r}",
        ),))
    return parsed


async def on_order_submitted(uow: UnitOfWork, incoming: IncomingEvent[OrderSubmitted]) -> None:
    submitted = incoming.event
    order_id = order_id_for(submitted.channel, submitted.external_id)
    structlog.contextvars.bind_contextvars(order_id=order_id)
    repo = IntakeRepository(uow.session)
    fingerprint = domain.payload_fingerprint(submitted.payload)
    parsed = normalise(submitted)
    revision = parsed.revision if isinstance(parsed, CanonicalOrder) else 1

    known = await repo.lock_known(order_id)
    kind = domain.classify_repush(known, revision, fingerprint)
    if kind == "duplicate":
        log.info("duplicate push ignored", channel=submitted.channel, revision=revision)
        return
    if kind == "revision":
        assert known is not None and isinstance(parsed, CanonicalOrder)
        await repo.record_revision(order_id, revision, fingerprint)
        uow.emit(OrderRevisionReceived(order_id=order_id, channel=submitted.channel,
                                       external_id=submitted.external_id,
                                       previous_revision=known.revision, revision=revision,
                                       order=parsed))
        log.info("newer revision recorded as a change", revision=revision)
        return

    result: domain.Accepted | domain.Refused
    if isinstance(parsed, domain.Refused):
        result = parsed
    else:
        catalogue = await repo.catalogue(line.sku for line in parsed.lines)
        result = domain.check_order(parsed, catalogue)

    status = "received" if isinstance(result, domain.Accepted) else "rejected"
    if not await repo.add(order_id=order_id, channel=submitted.channel,
                          external_id=submitted.external_id, revision=revision, status=status,
                          fingerprint=fingerprint):
        return
    if isinstance(result, domain.Accepted):
        uow.emit(OrderReceived(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, order=result.order,
                               totals=result.totals))
        log.info("order received", lines=len(result.order.lines),
                 grand_total=str(result.totals.grand_total))
    else:
        customer = _customer_of(submitted.payload) if not isinstance(parsed, CanonicalOrder) \
            else parsed.customer
        uow.emit(OrderRejected(order_id=order_id, channel=submitted.channel,
                               external_id=submitted.external_id, stage="intake",
                               reasons=result.reasons, customer=customer))
        log.info("order rejected", reasons=[r.code for r in result.reasons])


def _customer_of(payload: Any) -> Customer | None:
    """The customer of a payload that failed validation, if it can still be read (for notify)."""
    try:
        return Customer.model_validate(payload["customer"])
    except Exception:  # noqa: BLE001 - best effort only
        return None


async def on_product_updated(uow: UnitOfWork, incoming: IncomingEvent[ProductUpdated]) -> None:
    await IntakeRepository(uow.session).upsert_product(incoming.event)
