"""Worklists, pure: the exception queue's items and the open customer cases, each under a stable
key, with who works on it and its age against its kind's SLA (a case's against its due date).

An item's key names what it is about, so a claim outlives the queue being read again:
``held:<order>``, ``rejected:<order>``, ``change_refused:<order>:<change>``,
``cancel_refused:<order>:<when>``, ``return_open:<order>:<rma>``, ``dlq:<topic>:<offset>``,
``outbox:<service>:<id>``, ``delayed:<order>:<shipment>``, ``case:<id>``. Who may work items:
an operator holding any right to act on them (``case``, ``amend`` or ``decide``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from orderflow.console.auth import Operator
from orderflow.console.exception_queue import ExceptionItem

CASE_TYPES = ("inquiry", "complaint")
CASE_STATUSES = ("open", "answered", "closed")
# a case leaves the worklists once closed
OPEN_CASE_STATUSES = ("open", "answered")
WORK_RIGHTS = ("case", "amend", "decide")

CaseType = Literal["inquiry", "complaint"]
CaseStatus = Literal["open", "answered", "closed"]


def may_work(op: Operator) -> bool:
    """Whether ``op`` may claim, assign and close worklist items."""
    return any(op.may(right) for right in WORK_RIGHTS)


class Assignment(BaseModel):
    """Who works on an item (none: unassigned) and whether it was closed as handled."""

    key: str
    assignee: str | None = None
    assigned_by: str | None = None
    assigned_at: datetime | None = None
    done_by: str | None = None
    done_at: datetime | None = None


class Case(BaseModel):
    """A customer's inquiry or complaint, optionally about one order."""

    id: int
    customer_id: str
    order_id: str | None = None
    type: CaseType
    text: str
    status: CaseStatus
    due_at: datetime
    created_by: str
    created_at: datetime
    updated_by: str | None = None
    updated_at: datetime | None = None


class WorkItem(ExceptionItem):
    """An exception queue's item (or an open case, as one) under its key, with who works on it."""

    key: str
    assignee: str | None = None
    assigned_by: str | None = None
    assigned_at: datetime | None = None


def key_of(item: ExceptionItem) -> str:
    d = item.details
    tail: tuple[Any, ...]
    if item.kind in {"change_refused", "cancel_refused"}:
        tail = (item.order_id, d.get("ref"))
    elif item.kind == "return_open":
        tail = (item.order_id, d.get("rma_id"))
    elif item.kind in {"delayed", "carrier_exception"}:
        tail = (item.order_id, d.get("shipment_id"))
    elif item.kind == "dlq":
        tail = (d.get("topic"), d.get("offset"))
    elif item.kind == "outbox":
        tail = (d.get("service"), d.get("outbox_id"))
    else:
        tail = (item.order_id,)
    return ":".join([item.kind, *(str(x) for x in tail)])


def case_key(case_id: int) -> str:
    return f"case:{case_id}"


def due_at(due: date | datetime | None, created_at: datetime,
           sla_minutes: Mapping[str, float]) -> datetime:
    """A case's due time: the date given (its end, UTC), else its kind's SLA from its creation."""
    if isinstance(due, datetime):
        return due if due.tzinfo else due.replace(tzinfo=UTC)
    if isinstance(due, date):
        return datetime.combine(due, time(23, 59, 59), UTC)
    return created_at + timedelta(minutes=float(sla_minutes["case"]))


def case_item(case: Case, now: datetime) -> WorkItem:
    age = max(0.0, (now - case.created_at).total_seconds())
    return WorkItem(
        key=case_key(case.id), kind="case", order_id=case.order_id,
        customer_id=case.customer_id, reason=case.text, reason_codes=[case.type],
        since=case.created_at, age_s=age,
        sla_s=max(0.0, (case.due_at - case.created_at).total_seconds()),
        breached=now > case.due_at, actions=["status"],
        details={"case_id": case.id, "type": case.type, "status": case.status,
                 "due_at": case.due_at.isoformat(), "created_by": case.created_by})


def worklist(items: Iterable[ExceptionItem], cases: Iterable[Case],
             assignments: Mapping[str, Assignment], now: datetime, *,
             kind: str | None = None, assignee: str | None = None,
             unassigned: bool = False, overdue: bool = False) -> list[WorkItem]:
    """The queue's items and the open cases with their assignments, the oldest first; closed
    items (done) left out; optionally of one kind, one assignee's, the unassigned or overdue."""
    out: list[WorkItem] = []
    for i in items:
        out.append(WorkItem(key=key_of(i), **i.model_dump()))
    out += [case_item(c, now) for c in cases if c.status in OPEN_CASE_STATUSES]
    kept = []
    for w in out:
        a = assignments.get(w.key)
        if a is not None and a.done_at is not None:
            continue
        if a is not None:
            w.assignee, w.assigned_by, w.assigned_at = a.assignee, a.assigned_by, a.assigned_at
        elif w.kind == "rework" and w.details.get("entered_by"):
            # sent back to whoever entered it, until someone assigns it otherwise
            w.assignee, w.assigned_by = w.details["entered_by"], w.details.get("sent_back_by")
            w.assigned_at = w.since
        kept.append(w)
    if kind:
        kept = [w for w in kept if w.kind == kind]
    if assignee:
        kept = [w for w in kept if w.assignee == assignee]
    if unassigned:
        kept = [w for w in kept if w.assignee is None]
    if overdue:
        kept = [w for w in kept if w.breached]
    return sorted(kept, key=lambda w: (w.since, w.kind, w.key))


def order_of_key(key: str) -> str | None:
    """The order an item's key names (None for a dead letter, an outbox row or a case)."""
    kind, _, rest = key.partition(":")
    if kind in {"dlq", "outbox", "case"} or not rest:
        return None
    return rest.split(":", 1)[0]
