"""Each service's HTTP side: ``/healthz`` (database and broker reachable: readiness), ``/livez``
(the process answers: liveness) and ``/metrics``
(Prometheus), plus whatever routers the service adds (review's decision API, the console)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]


def create_http_app(service: str, health: HealthCheck, routers: list[APIRouter] | None = None,
                    *, title: str | None = None, public_openapi: bool = True) -> FastAPI:
    """``public_openapi=False``: no unauthenticated ``/openapi.json``, ``/docs`` or ``/redoc``
    (``app.openapi()`` still builds the document for a route that checks who asks)."""
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

    for router in routers or []:
        app.include_router(router)
    return app
