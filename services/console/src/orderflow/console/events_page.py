"""``/events``: the events the services exchange, for any signed-in operator (read-only).

The content is ``asyncapi/events.html``, a fragment generated from the AsyncAPI documents by
``orderflow.devstack.asyncapi_html`` (``make docs``) and shipped with the console as package data:
the console never imports devtools. The fragment is English (the contracts' field names and
descriptions); the frame around it (title, navigation, language switch) is in the reader's
language. It holds no script; the console's page headers apply, plus ``nosniff``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from markupsafe import Markup


class Page(Protocol):
    """``pages.page_for`` bound to the console: the page ``name`` with ``values``."""

    async def __call__(self, request: Request, name: str, **values: Any) -> Response: ...

EVENTS_FRAGMENT = Path(__file__).parent / "asyncapi" / "events.html"


@cache
def events_fragment() -> Markup:
    """The generated fragment, trusted as HTML: it is written by ``make docs`` from the
    committed documents and escaped there."""
    return Markup(EVENTS_FRAGMENT.read_text(encoding="utf-8"))  # noqa: S704


def events_router(page: Page) -> APIRouter:
    """``page`` renders it for a signed-in operator (``pages.page_for``), else the sign-in
    form."""
    router = APIRouter(include_in_schema=False)

    @router.get("/events")
    async def events(request: Request) -> Response:
        response = await page(request, "events", contract=events_fragment())
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return router
