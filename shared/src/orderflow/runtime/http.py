"""Each service's HTTP side: ``/healthz`` (database and broker reachable: readiness), ``/livez``
(the process answers: liveness) and ``/metrics``
(Prometheus), plus whatever routers the service adds (review's decision API, the console)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthCheck = Callable[[], Awaitable[dict[str, bool]]]


def create_http_app(service: str, health: HealthCheck, routers: list[APIRouter] | None = None,
                    *, title: str | None = None) -> FastAPI:
    app = FastAPI(title=title or f"OrderFlow {service}", version="0.1.0")

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
