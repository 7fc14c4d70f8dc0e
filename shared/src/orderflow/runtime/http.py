"""Each service's HTTP side: ``/healthz`` (database and broker reachable: readiness), ``/livez``
(the process answers: liveness) and ``/metrics``
(Prometheus), plus whatever routers the service adds (review's decision API, the console).

Every state-changing route a service adds requires a service credential
(``orderflow.runtime.service_auth``): the app carries the service's verifier, loaded here from
``ORDERFLOW_SERVICE_KEY`` (a key too short fails the start, naming the variable)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from orderflow.runtime import service_auth
from orderflow.runtime.retry import is_transient

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]
# the outbox rows the relay quarantined (``orderflow.runtime.outbox.quarantined_rows``)
QuarantineList = Callable[[], Awaitable[list[dict[str, Any]]]]

# PostgreSQL cannot store these in text or JSONB: "character not in repertoire" (a NUL byte in
# text), "untranslatable character" (\u0000 in JSONB)
_UNSTORABLE_TEXT_SQLSTATES = {"22021", "22P05"}


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


#: Free text in a request body (a comment, a reason): a NUL character is refused with a 422.
BodyText = Annotated[str, AfterValidator(_no_nul)]


def _nul_error(loc: list[str]) -> dict[str, object]:
    return {"loc": loc, "msg": "must not contain NUL characters", "type": "nul_character"}


class RejectNulCharacters:
    """422 for a request whose path or query parameters carry a NUL character, before any route
    runs: PostgreSQL cannot store or compare it, and it is never part of an honest value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            errors = []
            if "\x00" in scope.get("path", ""):
                errors.append(_nul_error(["path"]))
            query = scope.get("query_string", b"").decode("latin-1")
            for name, value in parse_qsl(query, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    errors.append(_nul_error(["query", name.replace("\x00", "")]))
            if errors:
                await JSONResponse({"detail": errors[:20]}, status_code=422)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_http_app(service: str, health: HealthCheck, routers: list[APIRouter] | None = None,
                    *, title: str | None = None, public_openapi: bool = True,
                    quarantine: QuarantineList | None = None) -> FastAPI:
    """``public_openapi=False``: no unauthenticated ``/openapi.json``, ``/docs`` or ``/redoc``
    (``app.openapi()`` still builds the document for a route that checks who asks).

    ``quarantine``: ``GET /outbox/quarantine`` lists the outbox rows the broker refused for good
    (id, topic, key, reason, when, size: never the event itself), for the console's exception
    queue."""
    public = {} if public_openapi else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title=title or f"OrderFlow {service}", version="0.1.0", **public)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> Response:
        """422 with what is wrong where, never the input: it may hold personal data, and values
        JSON cannot carry (NaN, infinities) would otherwise turn the answer into a 500."""
        errors = [{"loc": [str(part) for part in err.get("loc", ())],
                   "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", ""))}
                  for err in exc.errors()[:20]]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(DBAPIError)
    async def unstorable_text(request: Request, exc: DBAPIError) -> Response:
        """A body value the database cannot store (a NUL character in a comment): 422, the
        transaction rolled back; any other database error stays a 500."""
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate in _UNSTORABLE_TEXT_SQLSTATES:
            return JSONResponse({"detail": [_nul_error(["body"])]}, status_code=422)
        raise exc

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        checks = await health()
        ok = all(checks.values())
        return JSONResponse({"service": service, "ok": ok, "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/livez", tags=["operations"])
    async def livez() -> dict[str, object]:
        """The process answers (for liveness probes; dependencies are /healthz's business)."""
        return {"service": service, "ok": True}

    @app.get("/metrics", tags=["operations"])
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if quarantine is not None:
        listing = quarantine

        @app.get("/outbox/quarantine", tags=["operations"])
        async def outbox_quarantine() -> Response:
            try:
                rows = await listing()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return JSONResponse({"service": service, "error": "database unavailable"},
                                    status_code=503)
            return JSONResponse(jsonable_encoder({"service": service, "rows": rows}))

    for router in routers or []:
        app.include_router(router)
    service_auth.install(app, service)
    app.add_middleware(RejectNulCharacters)
    return app
