"""The web page: sign-in, dashboard, orders (with an order's timeline), exception queue,
reports and the events the services exchange (``events_page``). Server-rendered shells; the
browser fills them from the JSON API and polls it every two seconds. No front-end build and no
CDN: one CSS and one JS file, charts drawn as SVG/CSS bars.

Every page is in the reader's language (``orderflow.console.i18n``): the one chosen with the
switch on every page (a cookie), else the browser's ``Accept-Language``. The page embeds that
language's catalogue for ``console.js``; an order's timeline comes as HTML in that language from
``/orders/{order_id}/timeline`` (the API's timeline summaries are English)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import async_sessionmaker

from orderflow.console import i18n
from orderflow.console.actions import actions_router
from orderflow.console.api import Console, api_router, openapi_router
from orderflow.console.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Accounts,
    Operator,
    new_secret,
    same_secret,
    token_digest,
)
from orderflow.console.dead_letters import dlq_router
from orderflow.console.desk import desk_routers
from orderflow.console.domain import timeline_said
from orderflow.console.events_page import events_router
from orderflow.console.repository import ConsoleRepository, SessionRow
from orderflow.console.settings import ConsoleSettings
from orderflow.console.worklist_repository import WorklistRepository
from orderflow.console.worklists import activity_said, worklists_page_router, worklists_router
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import authenticates_itself, load_service_auth

HERE = Path(__file__).parent
STATIC = HERE / "static"
_templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                autoescape=jinja2.select_autoescape(["html"]))
PAGES = {"dashboard": "/", "orders": "/orders", "exceptions": "/exceptions",
         "worklists": "/worklists", "reports": "/reports", "events": "/events"}


def lang_of(request: Request) -> str:
    return i18n.choose(request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))


def render(template: str, lang: str, status_code: int = 200, here: str = "/",
           **values: Any) -> HTMLResponse:
    """``template`` in ``lang``: ``t("id")`` in it translates, ``here`` is where the language
    switch comes back to."""
    def t(key: str, **named: Any) -> str:
        return i18n.translate(key, lang, **named)

    html = _templates.get_template(template).render(
        pages=PAGES, lang=lang, langs=i18n.LANG_NAMES, t=t, here=here,
        catalogue=i18n.catalogue_json(lang), **values)
    return HTMLResponse(html, status_code=status_code,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; "
                                 "style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:"})


def safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


async def page_for(console: Console, request: Request, name: str, **extra: Any) -> Response:
    """The page ``name`` for the signed-in operator; the sign-in form without a session."""
    op = await console.operator(request)
    if op is None or op.via != "session":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return render(f"{name}.html", lang_of(request), here=request.url.path, page=name,
                  operator=op, csrf=op.csrf_token, **extra)


def pages_router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    settings = console.settings

    async def page(request: Request, name: str, **extra: Any) -> Response:
        return await page_for(console, request, name, **extra)

    @router.get("/")
    async def dashboard(request: Request) -> Response:
        return await page(request, "dashboard")

    @router.get("/orders")
    async def orders(request: Request) -> Response:
        return await page(request, "orders")

    @router.get("/orders/{order_id}")
    async def order(request: Request, order_id: str) -> Response:
        return await page(request, "order", order_id=order_id)

    @router.get("/orders/{order_id}/timeline")
    async def order_timeline(request: Request, order_id: str) -> Response:
        """The order's timeline as HTML items in the reader's language (the order page polls
        it); 401 without a session."""
        op = await console.operator(request)
        if op is None or op.via != "session":
            return Response(status_code=401)
        async with console.sessions() as session:
            entries = (await ConsoleRepository(session).entries_of([order_id])).get(order_id, [])
            actions = await WorklistRepository(session).actions_on(order_id)
        lang = lang_of(request)
        said = timeline_said(order_id, entries) + activity_said(actions)
        return render("timeline.html", lang, items=[
            (item, s.text(lang)) for item, s in sorted(said, key=lambda p: p[0].at)])

    @router.get("/lang/{lang}")
    async def choose_language(lang: str, next: str | None = None) -> Response:
        """Remember the reader's language (a cookie for a year) and go back to ``next``."""
        response = RedirectResponse(safe_next(next), status_code=303)
        if lang in i18n.LANGS:
            response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                                secure=settings.cookie_secure)
        return response

    @router.get("/exceptions")
    async def exceptions(request: Request) -> Response:
        return await page(request, "exceptions")

    @router.get("/dead-letters/{topic}/{partition}/{offset}")
    async def dead_letter(request: Request, topic: str, partition: int, offset: int) -> Response:
        """One dead letter (filled from ``GET /api/dlq/{topic}/{partition}/{offset}``)."""
        return await page(request, "dead_letter", dlq_topic=topic, dlq_partition=partition,
                          dlq_offset=offset)

    @router.get("/reports")
    async def reports_page(request: Request) -> Response:
        return await page(request, "reports")

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        allowed = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in allowed:
            return Response(status_code=404)
        return FileResponse(allowed[name], headers={"Cache-Control": "no-cache"})

    def login_form(request: Request, next_url: str, error: str | None = None,
                   status_code: int = 200) -> Response:
        """The sign-in form; ``error`` is a message id."""
        csrf = new_secret()
        lang = lang_of(request)
        response = render("login.html", lang, status_code=status_code,
                          here=f"/login?next={quote(next_url)}", page="login", operator=None,
                          csrf=csrf, next_url=next_url,
                          error=i18n.translate(error, lang) if error else None)
        response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                            secure=settings.cookie_secure, path="/login", max_age=3600)
        return response

    @router.get("/login")
    async def login_page(request: Request, next: str | None = None) -> Response:
        return login_form(request, safe_next(next))

    # the form's fields may be missing: a post without the form's CSRF cookie and token is
    # refused (403) before anything else, a wrong password with 401
    @router.post("/login", dependencies=[Depends(authenticates_itself(
        "the sign-in form: its CSRF cookie and token, then the password"))])
    async def login(request: Request, username: Annotated[str, Form()] = "",
                    password: Annotated[str, Form()] = "",
                    csrf_token: Annotated[str, Form()] = "",
                    next_url: Annotated[str, Form()] = "/") -> Response:
        target = safe_next(next_url)
        if not same_secret(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            return login_form(request, target, "login.expired", 403)
        user = console.accounts.authenticate(username, password)
        if user is None:
            await console.audit(Operator(name=username[:64], role="none", via="session"),
                                "login", None, "failed")
            return login_form(request, target, "login.wrong", 401)
        token, csrf = new_secret(), new_secret()
        expires = datetime.now(UTC) + timedelta(minutes=settings.session_ttl_minutes)
        async with console.sessions() as session, session.begin():
            await ConsoleRepository(session).add_session(
                token_digest(token), SessionRow(username, user.role, csrf, expires))
        await console.audit(Operator(name=username, role=user.role, via="session"), "login", None,
                            "signed_in")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                            secure=settings.cookie_secure, max_age=settings.session_ttl_minutes * 60)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return response

    @router.post("/logout", dependencies=[Depends(authenticates_itself(
        "the session cookie and its CSRF token"))])
    async def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
        """End the session (its CSRF token echoed); without a session, or with a wrong token,
        the sign-in form with 401 or 403 (and the cookie dropped either way)."""
        op = await console.operator(request)
        if op is None or op.via != "session":
            response = login_form(request, "/", "login.not_signed_in", 401)
        elif not same_secret(csrf_token, op.csrf_token):
            response = login_form(request, "/", "login.expired", 403)
        else:
            async with console.sessions() as session, session.begin():
                await ConsoleRepository(session).drop_session(op.session_digest or "")
            await console.audit(op, "logout", None, "signed_out")
            response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    return router


def build_console(ctx: ServiceContext) -> Console:
    """The console's shared state from the environment; refuses (``ConsoleConfigurationError``,
    naming the variable) without operators outside the dev stack."""
    settings = ConsoleSettings()
    return Console(ctx=ctx, settings=settings, accounts=Accounts.from_settings(settings),
                   sessions=async_sessionmaker(ctx.engine, expire_on_commit=False),
                   service_key=load_service_auth("console").signing_key())


def routers_of(console: Console) -> list[APIRouter]:
    return [api_router(console), dlq_router(console), openapi_router(console),
            pages_router(console), worklists_router(console),
            worklists_page_router(lambda request, name: page_for(console, request, name)),
            actions_router(console), *desk_routers(console),
            events_router(lambda request, name, **values: page_for(console, request, name,
                                                                   **values))]


def build_routers(ctx: ServiceContext) -> list[APIRouter]:
    return routers_of(build_console(ctx))
