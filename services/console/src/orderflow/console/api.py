"""The console's HTTP API (JSON; OpenAPI at ``/openapi.json``). Every route needs a signed-in
session or a bearer token; roles are checked per action and every action is audited.

Actions another service carries out (approve, reject or send back a held order in review, or give
the director's approval; release an order's stock in inventory; a delay-watch round in logistics)
are forwarded to it with a service credential naming the operator and their role
(``orderflow.runtime.service_auth``, signed with ``ORDERFLOW_SERVICE_KEY``): the service records
the operator the console verified."""


from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from orderflow.console import exception_queue, reports
from orderflow.console.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Accounts,
    Operator,
    same_secret,
    token_digest,
)
from orderflow.console.dashboard import dead_letters_of, quarantined_of
from orderflow.console.domain import OrderView
from orderflow.console.repository import ConsoleRepository, OrderFilter
from orderflow.console.settings import ConsoleSettings
from orderflow.contracts.events import OrderCancelRequested
from orderflow.contracts.order import OrderState
from orderflow.runtime.http import BodyText
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import AUTH_MARK, KEY_VARIABLE, ServiceCredentials

log = structlog.get_logger(__name__)
# the last page a search may ask for: its offset, (page - 1) x the page size (at most 500), stays
# far inside PostgreSQL's bigint; past it, 422 instead of the database refusing the OFFSET
MAX_PAGE = 1_000_000


@dataclass
class Console:
    """What the console's routes share in one process."""

    ctx: ServiceContext
    settings: ConsoleSettings
    accounts: Accounts
    sessions: async_sessionmaker[AsyncSession]
    # the key the console signs its calls to the services with (None: it cannot act through them)
    service_key: str | None = None
    # how the console reaches the services (a test gives a transport to an app in the process)
    transport: httpx.AsyncBaseTransport | None = None

    async def audit(self, op: Operator, action: str, target: str | None, outcome: str,
                    **detail: Any) -> None:
        async with self.sessions() as session, session.begin():
            await ConsoleRepository(session).record_audit(
                user=op.name, role=op.role, via=op.via, action=action, target=target,
                outcome=outcome, detail=detail)
        log.info("operator action", user=op.name, role=op.role, action=action, target=target,
                 outcome=outcome)

    async def operator(self, request: Request) -> Operator | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.accounts.bearer(header[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        digest = token_digest(cookie)
        async with self.sessions() as session:
            row = await ConsoleRepository(session).find_session(digest)
        if row is None:
            return None
        return Operator(name=row.user_name, role=row.role, via="session",
                        csrf_token=row.csrf_token, session_digest=digest)

    def snapshot(self) -> dict[str, Any] | None:
        snap: dict[str, Any] | None = self.ctx.state.get("dashboard")
        return snap

    def service_url(self, service: str) -> str:
        if service == "review":
            return self.settings.review_url.rstrip("/")
        return self.settings.service_urls.get(service, "").rstrip("/")

    def client(self, service: str, op: Operator) -> httpx.AsyncClient:
        """A client for ``service`` whose every write carries ``op``'s signed identity."""
        assert self.service_key is not None
        return httpx.AsyncClient(
            base_url=self.service_url(service), transport=self.transport,
            timeout=self.settings.review_timeout_s,
            auth=ServiceCredentials(self.service_key, actor=op.name, role=op.role,
                                    audience=service))

    async def forward(self, op: Operator, action: str, target: str | None, service: str, path: str,
                      body: dict[str, Any], *, reply: dict[str, Any], **audited: Any) -> Response:
        """POST ``body`` to ``service`` as ``op``; its answer is relayed (``reply``'s fields,
        the status, a message, and the service's answer under its name), the outcome audited."""
        if self.service_key is None or not self.service_url(service):
            missing = KEY_VARIABLE if self.service_key is None else f"{service}'s URL"
            await self.audit(op, action, target, "not_configured", **audited)
            return JSONResponse({**reply, "status": 503, "message":
                                 f"the console cannot act through {service}: {missing} is not "
                                 "configured"}, status_code=503)
        try:
            async with self.client(service, op) as client:
                r = await client.post(path, json=body)
        except httpx.HTTPError as exc:
            await self.audit(op, action, target, f"{service}_unreachable", **audited,
                             error=type(exc).__name__)
            return JSONResponse({**reply, "status": 502, "message":
                                 f"the {service} service is unreachable ({type(exc).__name__})"},
                                status_code=502)
        try:
            answer = r.json()
        except ValueError:
            answer = {"detail": r.text[:500]}
        message = (answer.get("detail") or answer.get("message") or "") \
            if isinstance(answer, dict) else str(answer)
        if not isinstance(message, str):
            message = str(message)
        outcome = "accepted" if r.is_success else f"refused_{r.status_code}"
        await self.audit(op, action, target, outcome, **audited,
                         **{f"{service}_status": r.status_code}, message=message[:500])
        return JSONResponse({**reply, "status": r.status_code,
                             "message": message or ("done" if r.is_success else "refused"),
                             service: answer}, status_code=r.status_code)

    async def decide(self, op: Operator, order_id: str, decision: str,
                     comment: str | None) -> Response:
        """Forward a decision on a held order (``approve``, ``reject``, ``send-back``,
        ``director-approve``) to review, which records it in the name of ``op`` (the signed
        credential's actor); its answer is relayed. The one path of every decision, one order's
        or a bulk's."""
        return await self.forward(
            op, decision, order_id, "review", f"/api/orders/{quote(order_id, safe='')}/{decision}",
            {"comment": comment}, reply={"order_id": order_id, "decision": decision},
            comment=comment)


def requirement(console: Console, action: str,
                *alternatives: str) -> Callable[[Request], Awaitable[Operator]]:
    """A dependency: the signed-in operator, allowed to do ``action`` (or one of
    ``alternatives``); a state-changing call made with the session cookie must carry the
    session's CSRF token (header or form field). A refusal is audited under the rights the route
    takes, joined (``case|amend|decide``)."""
    rights = (action, *alternatives)
    refused_as = "|".join(rights)
    refusal = (f"may not {action}" if not alternatives
               else f"holds none of the rights {', '.join(rights)}")

    async def dependency(request: Request) -> Operator:
        op = await console.operator(request)
        if op is None:
            raise HTTPException(401, "sign in or send a bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        if request.method not in {"GET", "HEAD", "OPTIONS"} and op.via == "session":
            sent = request.headers.get(CSRF_HEADER)
            if sent is None and request.headers.get("content-type", "").startswith(
                    ("application/x-www-form-urlencoded", "multipart/form-data")):
                sent = str((await request.form()).get("csrf_token", ""))
            if not same_secret(sent, op.csrf_token):
                raise HTTPException(403, "missing or wrong CSRF token")
        if not any(op.may(a) for a in rights):
            await console.audit(op, refused_as, request.url.path, "forbidden")
            raise HTTPException(403, f"role {op.role} {refusal}")
        return op
    setattr(dependency, AUTH_MARK, "console session or bearer token")
    return dependency


class Decision(BaseModel):
    comment: BodyText = Field(default="", max_length=2000, description="Why; shown on the timeline")


class ReleaseStock(BaseModel):
    reason: BodyText = Field(default="released_by_operator", min_length=1, max_length=200,
                             description="Why; the stock.released event carries it")


class DelayWatch(BaseModel):
    as_of: datetime | None = Field(default=None, description="Run as of this time (only where "
                                   "logistics allows the clock override)")
    order_ids: list[str] | None = Field(default=None, max_length=1000,
                                        description="Only these orders' shipments")


class OrderPage(BaseModel):
    total: int
    page: int
    page_size: int
    orders: list[dict[str, Any]]


def _row(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    out["state"] = r["state"] or "submitted"
    if r.get("grand_total") is not None:
        out["grand_total"] = format(r["grand_total"], "f")
    for k in ("first_seen_at", "received_at", "state_since", "last_event_at"):
        if out.get(k) is not None:
            out[k] = out[k].isoformat()
    return out


def _period(frm: str | None, to: str | None) -> tuple[datetime, datetime]:
    def parse(text: str | None) -> date | datetime | None:
        if not text:
            return None
        try:
            return datetime.fromisoformat(text) if "T" in text else date.fromisoformat(text)
        except ValueError as exc:
            raise HTTPException(422, f"not an ISO date or datetime: {text!r}") from exc
    try:
        return reports.period(parse(frm), parse(to), now=datetime.now(UTC))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def openapi_router(console: Console) -> APIRouter:
    """``/openapi.json``, for signed-in operators and token holders only (the runtime's public one
    is switched off for the console)."""
    router = APIRouter()
    viewer = Depends(requirement(console, "view"))

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, _op: Annotated[Operator, viewer]) -> dict[str, Any]:
        return request.app.openapi()  # type: ignore[no-any-return]

    return router


def api_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["console"])
    viewer = Depends(requirement(console, "view"))
    decider = Depends(requirement(console, "decide"))
    director = Depends(requirement(console, "direct"))
    canceller = Depends(requirement(console, "decide", "amend"))
    releaser = Depends(requirement(console, "release"))
    watcher = Depends(requirement(console, "delay_watch"))
    exporter = Depends(requirement(console, "export"))
    admin_audit = Depends(requirement(console, "audit"))
    settings = console.settings

    @router.get("/me")
    async def me(op: Annotated[Operator, viewer]) -> dict[str, Any]:
        return {"name": op.name, "role": op.role, "via": op.via,
                "may": {a: op.may(a) for a in ("view", "decide", "direct", "replay", "audit",
                                               "release", "delay_watch")}}

    @router.get("/orders", response_model=OrderPage)
    async def list_orders(
        _op: Annotated[Operator, viewer],
        state: Annotated[str | None, Query(description="an OrderState, or 'submitted'")] = None,
        channel: str | None = None, customer: str | None = None,
        external_id: str | None = None,
        q: Annotated[str | None, Query(description="id, external id, customer, tracking no.")] = None,
        page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    ) -> OrderPage:
        if state and state != "submitted" and state not in {s.value for s in OrderState}:
            raise HTTPException(422, f"unknown state {state!r}")
        async with console.sessions() as session:
            total, rows = await ConsoleRepository(session).search(
                OrderFilter(state=state, channel=channel, customer=customer,
                            external_id=external_id, q=q),
                page=page, page_size=settings.page_size)
        return OrderPage(total=total, page=page, page_size=settings.page_size,
                         orders=[_row(r) for r in rows])

    @router.get("/orders/{order_id}", response_model=OrderView)
    async def get_order(order_id: str, _op: Annotated[Operator, viewer]) -> OrderView:
        async with console.sessions() as session:
            view = await ConsoleRepository(session).view(order_id)
        if view is None:
            raise HTTPException(404, f"no order {order_id}")
        return view

    @router.get("/review-queue")
    async def review_queue(_op: Annotated[Operator, viewer],
                           reason: str | None = None) -> dict[str, Any]:
        async with console.sessions() as session:
            views = await ConsoleRepository(session).held_views(reason)
        now = datetime.now(UTC)
        items = [i for v in views for i in exception_queue.order_exceptions(
            v, now, settings.sla_minutes) if i.kind == "held"]
        return {"orders": [i.model_dump(mode="json") for i in items], "count": len(items)}

    @router.post("/orders/{order_id}/approve")
    async def approve(order_id: str, op: Annotated[Operator, decider],
                      body: Annotated[Decision, Body()] = Decision()) -> Response:
        """Forward the approval of a held order to review; its answer (e.g. 409 when the order is
        not held) is relayed."""
        return await console.decide(op, order_id, "approve", body.comment)

    @router.post("/orders/{order_id}/reject")
    async def reject(order_id: str, op: Annotated[Operator, decider],
                     body: Annotated[Decision, Body()] = Decision()) -> Response:
        return await console.decide(op, order_id, "reject", body.comment)

    @router.post("/orders/{order_id}/send-back")
    async def send_back(order_id: str, op: Annotated[Operator, decider],
                        body: Annotated[Decision, Body()] = Decision()) -> Response:
        """Forward a send-back for rework (the comment says what to rework) to review."""
        return await console.decide(op, order_id, "send-back", body.comment)

    @router.post("/orders/{order_id}/director-approve")
    async def director_approve(order_id: str, op: Annotated[Operator, director],
                               body: Annotated[Decision, Body()] = Decision()) -> Response:
        """Forward a director's approval (the second, after a reviewer's, above review's
        director thresholds) to review, which refuses the person who gave the first."""
        return await console.decide(op, order_id, "director-approve", body.comment)

    @router.post("/orders/{order_id}/release-stock")
    async def release_stock(order_id: str, op: Annotated[Operator, releaser],
                            body: Annotated[ReleaseStock, Body()] = ReleaseStock()) -> Response:
        """Forward a manual release of the order's reservations and backorders to inventory;
        its answer (e.g. 409 when the order holds nothing) is relayed."""
        return await console.forward(
            op, "release", order_id, "inventory",
            f"/inventory/orders/{quote(order_id, safe='')}/release", {"reason": body.reason},
            reply={"order_id": order_id, "action": "release"}, reason=body.reason)

    @router.post("/delay-watch/run")
    async def delay_watch(op: Annotated[Operator, watcher],
                          body: Annotated[DelayWatch, Body()] = DelayWatch()) -> Response:
        """Forward a delay-watch round (of these orders' shipments, or all) to logistics."""
        request = body.model_dump(mode="json", exclude_none=True)
        return await console.forward(op, "delay_watch", None, "logistics",
                                     "/api/delay-watch/run", request,
                                     reply={"action": "delay_watch"}, **request)

    class CancelRequest(BaseModel):
        reason: BodyText = Field(min_length=1, max_length=500, description="Why, in plain words")

    @router.post("/orders/{order_id}/cancel", status_code=202)
    async def cancel(order_id: str, op: Annotated[Operator, canceller],
                     body: Annotated[CancelRequest, Body()]) -> dict[str, Any]:
        """Ask for the order to be cancelled (``order.cancel-requested``; right ``decide`` or
        ``amend``); logistics decides:
        honoured until dispatch, refused after. The outcome appears on the order's timeline."""
        async with console.sessions() as session:
            known = await ConsoleRepository(session).view(order_id)
        if known is None:
            raise HTTPException(404, f"no order {order_id}")
        async with console.ctx.units() as uow:
            uow.emit(OrderCancelRequested(order_id=order_id, reason=body.reason,
                                          requested_by=op.name, requested_at=datetime.now(UTC)))
        await console.audit(op, "cancel", order_id, "requested", reason=body.reason)
        return {"order_id": order_id, "status": "requested"}

    @router.get("/topics")
    async def topics(_op: Annotated[Operator, viewer]) -> dict[str, Any]:
        snap = console.snapshot()
        if snap is None:
            return {"at": None, "topics": [], "groups": [], "dlq": [], "services": [],
                    "message": "the first sample is being taken"}
        return snap

    @router.get("/exceptions")
    async def exceptions(_op: Annotated[Operator, viewer], kind: str | None = None,
                         reason: str | None = None) -> dict[str, Any]:
        async with console.sessions() as session:
            views = await ConsoleRepository(session).views_with_exceptions()
        snap = console.snapshot()
        items = exception_queue.queue(views, dead_letters_of(snap),
                                      datetime.now(UTC), settings.sla_minutes, kind=kind,
                                      reason=reason, quarantined=quarantined_of(snap))
        everything = items if not (kind or reason) else exception_queue.queue(
            views, dead_letters_of(snap), datetime.now(UTC), settings.sla_minutes,
            quarantined=quarantined_of(snap))
        return {"items": [i.model_dump(mode="json") for i in items],
                "counts": exception_queue.counts(everything), "sla_minutes": settings.sla_minutes}

    @router.get("/dashboard")
    async def dashboard(_op: Annotated[Operator, viewer]) -> dict[str, Any]:
        now = datetime.now(UTC)
        async with console.sessions() as session:
            repo = ConsoleRepository(session)
            states = await repo.state_counts()
            per_minute = await repo.received_per_minute(now - timedelta(hours=1))
            views = await repo.views_with_exceptions()
        items = exception_queue.queue(views, dead_letters_of(console.snapshot()), now,
                                      settings.sla_minutes,
                                      quarantined=quarantined_of(console.snapshot()))
        snap = console.snapshot() or {}
        return {
            "at": now.isoformat(),
            "funnel": {s: states.get(s, 0) for s in
                       ["submitted", *[x.value for x in OrderState]]},
            "orders": sum(states.values()),
            "throughput": [{"minute": m.isoformat(), "orders": n} for m, n in per_minute],
            "exceptions": exception_queue.counts(items),
            "topics": snap.get("topics", []), "groups": snap.get("groups", []),
            "dlq": [{"topic": d["topic"], "depth": d["depth"]} for d in snap.get("dlq", [])],
            "services": snap.get("services", []),
        }

    async def summary_of(frm: str | None, to: str | None) -> reports.Summary:
        start, end = _period(frm, to)
        async with console.sessions() as session:
            repo = ConsoleRepository(session)
            views = await repo.views_between(start, end)
            summary = reports.summarize(views, start, end)
            names = await repo.product_names([s.key for s in summary.top_skus])
        for row in summary.top_skus:
            row.name = names.get(row.key, "")
        return summary

    @router.get("/reports/summary", response_model=reports.Summary)
    async def report_summary(
        _op: Annotated[Operator, viewer],
        frm: Annotated[str | None, Query(alias="from", description="ISO date or datetime")] = None,
        to: Annotated[str | None, Query(description="ISO date (inclusive) or datetime")] = None,
    ) -> reports.Summary:
        return await summary_of(frm, to)

    @router.get("/reports/summary.{fmt}")
    async def report_export(
        fmt: str, op: Annotated[Operator, exporter],
        frm: Annotated[str | None, Query(alias="from")] = None,
        to: Annotated[str | None, Query()] = None,
    ) -> Response:
        if fmt not in {"csv", "xlsx"}:
            raise HTTPException(404, "export as .csv or .xlsx")
        summary = await summary_of(frm, to)
        await console.audit(op, "export", f"reports/summary.{fmt}", "done",
                            period_from=summary.period_from.isoformat(),
                            period_to=summary.period_to.isoformat())
        name = f"orderflow-report-{summary.period_from.date()}-{summary.period_to.date()}.{fmt}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        if fmt == "csv":
            return Response(reports.to_csv(summary), media_type="text/csv; charset=utf-8",
                            headers=disposition)
        return Response(reports.to_xlsx(summary), headers=disposition, media_type=(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))

    @router.get("/audit")
    async def audit_log(_op: Annotated[Operator, admin_audit], action: str | None = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
        async with console.sessions() as session:
            rows = await ConsoleRepository(session).audit_log(limit, action)
        for r in rows:
            r["at"] = r["at"].isoformat() if r.get("at") else None
        return {"entries": rows}

    return router
