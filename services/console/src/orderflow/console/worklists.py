"""Worklists, customer cases and bulk decisions: the HTTP API and the ``/worklists`` page.

- ``GET /api/worklist`` (``kind``, ``mine``, ``assignee``, ``unassigned``, ``overdue``): the
  exception queue's items and the open cases, each with its key, assignee, age and SLA.
- ``POST /api/worklist/claim|assign|unassign|done`` (body ``key``; ``assignee`` to assign):
  any operator who may act on items (``worklist.may_work``); a claim of an item someone else
  holds answers 409 naming them.
- ``POST /api/worklist/decide`` (right ``decide``): approve or reject several held orders with
  one comment, each through ``Console.decide`` as a single decision; one result per order.
- ``GET/POST /api/cases``, ``POST /api/cases/{id}/status`` (right ``case`` to write).
- ``GET /api/orders/{order_id}/activity``: what operators did on the order and its cases.

Every action is audited (target: the order it concerns, else the item's key) and, where it
concerns an order, shown on the order's timeline (``activity_said``)."""

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from orderflow.console import exception_queue
from orderflow.console.api import Console, requirement
from orderflow.console.auth import Operator
from orderflow.console.dashboard import dead_letters_of, quarantined_of
from orderflow.console.domain import Said, TimelineItem
from orderflow.console.messages_actions import ACTION_SUMMARIES, TOLD_BY_EVENTS
from orderflow.console.repository import ConsoleRepository
from orderflow.console.worklist import (
    OPEN_CASE_STATUSES,
    WORK_RIGHTS,
    Assignment,
    CaseStatus,
    CaseType,
    WorkItem,
    case_key,
    due_at,
    may_work,
    order_of_key,
    worklist,
)
from orderflow.console.worklist_repository import WorklistRepository
from orderflow.runtime.http import BodyText

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class ItemRef(BaseModel):
    key: str = Field(min_length=3, max_length=300, description="The item's key (GET /api/worklist)")


class AssignTo(ItemRef):
    assignee: str = Field(min_length=1, max_length=64, description="One of the console's operators")


class BulkDecision(BaseModel):
    order_ids: list[str] = Field(min_length=1, max_length=200)
    decision: Literal["approve", "reject"]
    comment: BodyText = Field(default="", max_length=2000, description="Why; shown on each timeline")


class NewCase(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64)
    order_id: str | None = Field(default=None, max_length=64)
    type: CaseType
    text: BodyText = Field(min_length=1, max_length=4000)
    due_date: date | None = Field(default=None, description="Due by the end of this day (UTC); "
                                                            "else the case SLA from now")


class CaseStatusChange(BaseModel):
    status: CaseStatus


def worklists_router(console: Console, clock: Clock = _now) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["worklists"])
    signed_in = requirement(console, "view")
    viewer = Depends(signed_in)
    decider = Depends(requirement(console, "decide"))
    case_writer = Depends(requirement(console, "case"))
    settings = console.settings

    working = Depends(requirement(console, *WORK_RIGHTS))  # who may claim, assign and close

    async def _target(key: str) -> str:
        """What an action on an item is audited against: its order (a case's, when tied to
        one), else the key itself."""
        kind, _, rest = key.partition(":")
        if kind == "case" and rest.isdigit():
            async with console.sessions() as session:
                case = await WorklistRepository(session).case(int(rest))
            return (case.order_id if case else None) or key
        return order_of_key(key) or key

    def operators() -> dict[str, str]:
        return {name: user.role for name, user in sorted(console.accounts.users.items())
                if may_work(Operator(name=name, role=user.role, via="session"))}

    async def items_now(now: datetime, **only: Any) -> tuple[list[WorkItem], list[WorkItem]]:
        """Every open item, and those ``only`` (``worklist``'s filters) keeps."""
        async with console.sessions() as session:
            views = await ConsoleRepository(session).views_with_exceptions()
            repo = WorklistRepository(session)
            cases = await repo.cases(statuses=OPEN_CASE_STATUSES)
            assigned = await repo.assignments()
        snap = console.snapshot()
        queue = exception_queue.queue(views, dead_letters_of(snap), now, settings.sla_minutes,
                                      quarantined=quarantined_of(snap))
        return (worklist(queue, cases, assigned, now),
                worklist(queue, cases, assigned, now, **only))

    @router.get("/worklist")
    async def list_items(
        op: Annotated[Operator, viewer], kind: str | None = None,
        mine: Annotated[bool, Query(description="only the items assigned to me")] = False,
        assignee: str | None = None, unassigned: bool = False, overdue: bool = False,
    ) -> dict[str, Any]:
        now = clock()
        everything, items = await items_now(now, kind=kind,
                                            assignee=op.name if mine else assignee,
                                            unassigned=unassigned, overdue=overdue)
        return {"at": now.isoformat(), "me": op.name, "may_work": may_work(op),
                "may_decide": op.may("decide"), "may_case": op.may("case"),
                "may_enter": op.may("enter"),
                "items": [w.model_dump(mode="json") for w in items],
                "counts": {"open": len(everything),
                           "mine": sum(w.assignee == op.name for w in everything),
                           "unassigned": sum(w.assignee is None for w in everything),
                           "overdue": sum(w.breached for w in everything)},
                "operators": operators(), "sla_minutes": settings.sla_minutes}

    @router.get("/worklist/operators")
    async def list_operators(_op: Annotated[Operator, viewer]) -> dict[str, Any]:
        return {"operators": operators()}

    def answer(a: Assignment) -> dict[str, Any]:
        return a.model_dump(mode="json")

    @router.post("/worklist/claim")
    async def claim(op: Annotated[Operator, working],
                    body: Annotated[ItemRef, Body()]) -> dict[str, Any]:
        """Take the item; 409 naming who holds it when someone else does."""
        async with console.sessions() as session, session.begin():
            got = await WorklistRepository(session).claim(body.key, op.name, clock())
        if got.assignee != op.name:
            await console.audit(op, "claim", await _target(body.key), "refused_409", item=body.key,
                                held_by=got.assignee)
            raise HTTPException(409, f"{body.key} is assigned to {got.assignee}")
        await console.audit(op, "claim", await _target(body.key), "done", item=body.key)
        return answer(got)

    @router.post("/worklist/assign")
    async def assign(op: Annotated[Operator, working],
                     body: Annotated[AssignTo, Body()]) -> dict[str, Any]:
        if body.assignee not in operators():
            raise HTTPException(422, f"{body.assignee!r} is not an operator who works items")
        async with console.sessions() as session, session.begin():
            got = await WorklistRepository(session).assign(body.key, body.assignee, op.name,
                                                           clock())
        await console.audit(op, "assign", await _target(body.key), "done", item=body.key,
                            assignee=body.assignee)
        return answer(got)

    @router.post("/worklist/unassign")
    async def unassign(op: Annotated[Operator, working],
                       body: Annotated[ItemRef, Body()]) -> dict[str, Any]:
        async with console.sessions() as session, session.begin():
            got = await WorklistRepository(session).assign(body.key, None, op.name, clock())
        await console.audit(op, "unassign", await _target(body.key), "done", item=body.key)
        return answer(got)

    @router.post("/worklist/done")
    async def done(op: Annotated[Operator, working],
                   body: Annotated[ItemRef, Body()]) -> dict[str, Any]:
        """Close the item as handled: it leaves the worklists (a case closes by its status)."""
        if body.key.startswith("case:"):
            raise HTTPException(422, "close a case by its status (POST /api/cases/{id}/status)")
        async with console.sessions() as session, session.begin():
            await WorklistRepository(session).mark_done(body.key, op.name, clock())
        await console.audit(op, "done", await _target(body.key), "done", item=body.key)
        return {"key": body.key, "status": "done"}

    @router.post("/worklist/decide")
    async def decide_many(op: Annotated[Operator, decider],
                          body: Annotated[BulkDecision, Body()]) -> dict[str, Any]:
        """Each order decided as one decision (``Console.decide``); a refusal of one (409: not
        held) does not stop the others."""
        results = []
        for order_id in dict.fromkeys(body.order_ids):
            r = await console.decide(op, order_id, body.decision, body.comment)
            reply = json.loads(bytes(r.body))
            results.append({"order_id": order_id, "status": r.status_code,
                            "message": reply.get("message", "")})
        ok = sum(200 <= r["status"] < 300 for r in results)
        return {"decision": body.decision, "accepted": ok, "refused": len(results) - ok,
                "results": results}

    # -- customer cases -----------------------------------------------------------------------
    @router.get("/cases")
    async def list_cases(_op: Annotated[Operator, viewer], status: CaseStatus | None = None,
                         order_id: str | None = None,
                         customer_id: str | None = None) -> dict[str, Any]:
        async with console.sessions() as session:
            found = await WorklistRepository(session).cases(
                statuses=(status,) if status else None, order_id=order_id,
                customer_id=customer_id)
        return {"cases": [c.model_dump(mode="json") for c in found]}

    @router.post("/cases", status_code=201)
    async def open_case(op: Annotated[Operator, case_writer],
                        body: Annotated[NewCase, Body()]) -> dict[str, Any]:
        now = clock()
        if body.order_id is not None:
            async with console.sessions() as session:
                known = await ConsoleRepository(session).view(body.order_id)
            if known is None:
                raise HTTPException(422, f"no order {body.order_id}")
        async with console.sessions() as session, session.begin():
            case = await WorklistRepository(session).add_case(
                customer_id=body.customer_id, order_id=body.order_id, type=body.type,
                text=body.text, due_at=due_at(body.due_date, now, settings.sla_minutes),
                created_by=op.name, created_at=now)
        await console.audit(op, "case_open", case.order_id or case_key(case.id), "done",
                            case_id=case.id, type=case.type, text=case.text[:500],
                            customer_id=case.customer_id, due_at=case.due_at.isoformat())
        return case.model_dump(mode="json")

    @router.post("/cases/{case_id}/status")
    async def case_status(case_id: int, op: Annotated[Operator, case_writer],
                          body: Annotated[CaseStatusChange, Body()]) -> dict[str, Any]:
        async with console.sessions() as session, session.begin():
            case = await WorklistRepository(session).set_case_status(case_id, body.status,
                                                                     op.name, clock())
        if case is None:
            raise HTTPException(404, f"no case {case_id}")
        await console.audit(op, "case_status", case.order_id or case_key(case.id), "done",
                            case_id=case.id, status=case.status)
        return case.model_dump(mode="json")

    @router.get("/orders/{order_id}/activity")
    async def activity(order_id: str, _op: Annotated[Operator, viewer]) -> dict[str, Any]:
        """What operators did on the order (the audit log's entries for it) and its cases."""
        async with console.sessions() as session:
            repo = WorklistRepository(session)
            actions = await repo.actions_on(order_id)
            cases = await repo.cases(order_id=order_id)
        return {"actions": [{**a, "at": a["at"].isoformat() if a.get("at") else None}
                            for a in actions],
                "cases": [c.model_dump(mode="json") for c in cases]}

    return router


def activity_said(actions: list[dict[str, Any]]) -> list[tuple[TimelineItem, Said]]:
    """Operators' actions on an order as timeline items (service ``console``), each with its
    summary in no language yet; those the order's events tell (``TOLD_BY_EVENTS``) left out."""
    out = []
    for a in actions:
        if (a["action"], a["outcome"]) in TOLD_BY_EVENTS:
            continue
        detail = a.get("detail") or {}
        key = ACTION_SUMMARIES.get((a["action"], a["outcome"])) or {
            "case_open": "wl.tl_case_open", "case_status": "wl.tl_case_status",
            "assign": "wl.tl_assign"}.get(a["action"], "wl.tl_action")
        said = Said(key, {"user": a["user_name"], "action": a["action"],
                          "outcome": a["outcome"], **{k: v for k, v in detail.items()
                                                      if isinstance(v, str | int)}})
        out.append((TimelineItem(at=a["at"], service="console", event_type=f"console.{a['action']}",
                                 topic="console", summary=said.text(), details=detail), said))
    return out


Page = Callable[[Request, str], Awaitable[Response]]


def worklists_page_router(page: Page) -> APIRouter:
    """``/worklists``: ``page`` renders it for a signed-in operator (``pages.page_for``)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/worklists")
    async def worklists_page(request: Request) -> Response:
        return await page(request, "worklists")

    return router
