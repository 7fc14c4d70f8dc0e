"""The exception queue, pure: every order (or dead-lettered message) that needs a person, with
its age and whether it breached its kind's SLA.

Kinds: ``held`` (review holds, by reason; one awaiting a director offers the director's
approval), ``rework`` (orders a reviewer sent back, with the channel whose worklist they are on,
until their next revision is reviewed), ``backordered`` (waiting for stock), ``delayed``
(shipments that will miss or missed their promised date), ``carrier_exception`` (damaged, lost,
refused...), ``dlq`` (messages a service could never apply), ``outbox`` (events a service could
never publish: the broker refused them for good and the service's relay quarantined them,
``orderflow.runtime.outbox``; read from each service's ``GET /outbox/quarantine``),
``rejected`` (refused orders, with the customer's contact a rejection named, to fix and
resubmit), ``change_refused`` and ``cancel_refused`` (a change or cancel refused and not asked
again since), ``return_open`` (a return requested without an outcome yet)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from orderflow.console.domain import DIRECTOR_APPROVAL, OrderView
from orderflow.contracts.order import OrderState

KINDS = ("held", "rework", "backordered", "delayed", "carrier_exception", "dlq", "outbox",
         "rejected", "change_refused", "cancel_refused", "return_open")


class ExceptionItem(BaseModel):
    kind: str
    order_id: str | None
    external_id: str | None = None
    customer_id: str | None = None
    reason: str
    reason_codes: list[str] = Field(default_factory=list)
    since: datetime
    age_s: float
    sla_s: float
    breached: bool
    actions: list[str] = Field(default_factory=list, description="approve, reject, replay")
    details: dict[str, Any] = Field(default_factory=dict)


def _item(kind: str, view: OrderView | None, reason: str, codes: list[str], since: datetime,
          now: datetime, sla_minutes: Mapping[str, float], actions: list[str],
          details: dict[str, Any] | None = None, order_id: str | None = None) -> ExceptionItem:
    age = max(0.0, (now - since).total_seconds())
    sla = float(sla_minutes[kind]) * 60
    return ExceptionItem(
        kind=kind, order_id=view.order_id if view else order_id,
        external_id=view.external_id if view else None,
        customer_id=view.customer_id if view else None, reason=reason, reason_codes=codes,
        since=since, age_s=age, sla_s=sla, breached=age > sla, actions=actions,
        details=details or {},
    )


def _resubmit(view: OrderView) -> list[str]:
    """"Fix and resubmit" at the desk, for the desk's own orders: another channel's order is
    revised by its channel (the desk's revision of it would be another order)."""
    return ["resubmit"] if view.channel == "desk" else []


def order_exceptions(view: OrderView, now: datetime,
                     sla_minutes: Mapping[str, float]) -> list[ExceptionItem]:
    out: list[ExceptionItem] = []
    since = view.state_since or view.last_event_at or now
    if view.state == OrderState.HELD:
        latest = view.holds[-len(view.hold_codes):] if view.hold_codes else []
        reason = "; ".join(f"{h.code}: {h.message}" for h in latest) or "held"
        # an order a reviewer approved that awaits a director: the director's approval instead
        approval = "director_approve" if DIRECTOR_APPROVAL in view.hold_codes else "approve"
        out.append(_item("held", view, reason, list(view.hold_codes), since, now, sla_minutes,
                         [approval, "reject", "send_back", "cancel"]))
    if view.state == OrderState.REJECTED and view.rework is not None:
        back = view.rework
        contact = view.contact.model_dump() if view.contact else None
        out.append(_item("rework", view, back.message, [back.code], back.at, now, sla_minutes,
                         _resubmit(view), {"channel": view.channel, "sent_back_by": back.decided_by,
                                        "comment": back.comment, "contact": contact,
                                        "entered_by": view.entered_by}))
    if view.state == OrderState.BACKORDERED:
        shorts = ", ".join(f"{s.sku} short {s.short}" for s in view.first_attempt_short)
        out.append(_item("backordered", view, shorts or "waiting for stock",
                         [s.sku for s in view.first_attempt_short], since, now, sla_minutes, ["cancel"],
                         {"expected_date": view.backorder_expected_date}))
    if view.state == OrderState.REJECTED and view.rework is None:  # a send-back is rework
        refused = [r for r in view.rejections if r.at == view.rejections[-1].at] \
            if view.rejections else []
        contact = view.contact.model_dump() if view.contact else None
        out.append(_item("rejected", view, "; ".join(f"{r.code}: {r.message}" for r in refused)
                         or "rejected", [r.code for r in refused], since, now, sla_minutes,
                         _resubmit(view), {"stage": refused[0].stage if refused else None,
                                        "contact": contact}))
    for refusal in view.open_refusals:
        out.append(_item(f"{refusal.kind}_refused", view, ", ".join(refusal.codes) or "refused",
                         list(refusal.codes), refusal.at, now, sla_minutes, [],
                         {"ref": refusal.ref, "requested_by": refusal.requested_by}))
    for rma, requested_at in sorted(view.open_returns.items()):
        out.append(_item("return_open", view, f"return {rma} requested", [], requested_at, now,
                         sla_minutes, [], {"rma_id": rma}))
    if view.state in {OrderState.REJECTED, OrderState.CANCELLED, OrderState.RETURNED}:
        return out
    for s in view.shipments:
        if s.status == "delayed" and s.delayed_since is not None:
            out.append(_item("delayed", view, s.delay_reason or "delayed", [s.delay_reason or ""],
                             s.delayed_since, now, sla_minutes, [],
                             {"shipment_id": s.shipment_id, "carrier": s.carrier,
                              "tracking_number": s.tracking_number,
                              "promised_date": s.promised_date, "expected_date": s.expected_date}))
        if s.status == "exception" and s.exception_since is not None:
            out.append(_item("carrier_exception", view,
                             f"{s.exception_code}: {s.exception_detail or ''}".strip(" :"),
                             [s.exception_code or ""], s.exception_since, now, sla_minutes, [],
                             {"shipment_id": s.shipment_id, "carrier": s.carrier,
                              "tracking_number": s.tracking_number}))
    return out


class DeadLetter(BaseModel):
    """One message in a ``<topic>.dlq`` (read by the dashboard's sampler)."""

    topic: str
    offset: int
    key: str | None
    reason: str | None
    error: str | None
    service: str | None
    event_type: str | None
    at: datetime


def dlq_exceptions(entries: Iterable[DeadLetter], now: datetime,
                   sla_minutes: Mapping[str, float]) -> list[ExceptionItem]:
    return [_item("dlq", None, f"{e.reason}: {e.error or ''}".strip(" :"), [e.reason or ""], e.at,
                  now, sla_minutes, ["replay"],
                  {"topic": e.topic, "offset": e.offset, "key": e.key, "service": e.service,
                   "event_type": e.event_type})
            for e in entries]


class QuarantinedEvent(BaseModel):
    """One outbox row a service's relay quarantined (its ``GET /outbox/quarantine``): no event
    body, only where it was going and why the broker refused it."""

    service: str
    id: int
    topic: str
    key: str | None
    reason: str | None
    staged_at: datetime
    quarantined_at: datetime | None = None
    size: int | None = None


def outbox_exceptions(entries: Iterable[QuarantinedEvent], now: datetime,
                      sla_minutes: Mapping[str, float]) -> list[ExceptionItem]:
    items = []
    for e in entries:
        error = (e.reason or "refused").split(":", 1)[0]
        items.append(_item(
            "outbox", None, f"{e.service} could not publish to {e.topic}: {e.reason or 'refused'}",
            [error], e.quarantined_at or e.staged_at, now, sla_minutes, [],
            {"service": e.service, "outbox_id": e.id, "topic": e.topic, "key": e.key,
             "size": e.size, "staged_at": e.staged_at.isoformat()}))
    return items


def queue(views: Iterable[OrderView], dead: Iterable[DeadLetter], now: datetime,
          sla_minutes: Mapping[str, float], *, kind: str | None = None,
          reason: str | None = None,
          quarantined: Iterable[QuarantinedEvent] = ()) -> list[ExceptionItem]:
    """Every open exception, the oldest first, optionally of one kind or with one reason code."""
    items: list[ExceptionItem] = []
    for view in views:
        items += order_exceptions(view, now, sla_minutes)
    items += dlq_exceptions(dead, now, sla_minutes)
    items += outbox_exceptions(quarantined, now, sla_minutes)
    if kind:
        items = [i for i in items if i.kind == kind]
    if reason:
        items = [i for i in items if reason in i.reason_codes]
    return sorted(items, key=lambda i: (i.since, i.kind, i.order_id or ""))


def counts(items: Sequence[ExceptionItem]) -> dict[str, dict[str, int]]:
    """Per kind: how many are open and how many breached their SLA."""
    total: Counter[str] = Counter(i.kind for i in items)
    breached: Counter[str] = Counter(i.kind for i in items if i.breached)
    return {k: {"open": total[k], "breached": breached[k]} for k in KINDS}
