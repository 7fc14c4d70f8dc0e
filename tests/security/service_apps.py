"""Every service's HTTP app, built as the runtime builds it (``run_service``: ``create_http_app``
with the routers of the service's ``ServiceDefinition``), over a context with no broker and a
database that nothing reaches unless a test gives it units of work; and the configuration a
deployment gives them (the service key and the console's Secret)."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from orderflow.console.auth import hash_password
from orderflow.runtime.http import create_http_app
from orderflow.runtime.outbox import OutboxRelay
from orderflow.runtime.service import ServiceContext, ServiceDefinition
from orderflow.runtime.settings import KafkaSettings, ServiceSettings
from orderflow.runtime.unit_of_work import UnitOfWorkFactory

SERVICE_KEY = "k" * 8 + "test-service-key-of-the-deployment-0123456789"
ADMIN_TOKEN = "admin-token-from-the-console-secret-0123456789"
RITA_PASSWORD = "rita-reviews-orders"
# where the console reaches the services in these tests (``Route``)
SERVICE_URLS = {name: f"http://{name}.test" for name in
                ("intake", "review", "inventory", "logistics", "notify")}
UNREACHABLE_DATABASE = "postgresql+asyncpg://nobody@127.0.0.1:9/unreachable"

_RITA_HASH: str | None = None


def deployment_env(monkeypatch: pytest.MonkeyPatch, *, service_key: str | None = SERVICE_KEY,
                   console_users: bool = True) -> None:
    """What a deployment gives the processes: the service key, the console's users and admin
    token (its Secret), the services' URLs, a connector's key of intake's channel order API;
    never the development users."""
    global _RITA_HASH
    _RITA_HASH = _RITA_HASH or hash_password(RITA_PASSWORD)
    for name in ("ORDERFLOW_CONSOLE_DEV_USERS", "ORDERFLOW_SERVICE_KEY_PREVIOUS",
                 "ORDERFLOW_CONSOLE_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    if service_key is None:
        monkeypatch.delenv("ORDERFLOW_SERVICE_KEY", raising=False)
    else:
        monkeypatch.setenv("ORDERFLOW_SERVICE_KEY", service_key)
    if console_users:
        monkeypatch.setenv("ORDERFLOW_CONSOLE_USERS", json.dumps({
            "rita": {"role": "reviewer", "password_hash": _RITA_HASH},
            "vic": {"role": "viewer", "password_hash": _RITA_HASH}}))
    else:
        monkeypatch.delenv("ORDERFLOW_CONSOLE_USERS", raising=False)
    # intake's channel order API: a connector's key (none of the attempts knows it)
    monkeypatch.setenv("ORDERFLOW_INTAKE_CHANNEL_KEYS",
                       json.dumps({"canonical": "a-connector-key-of-the-deployment-0123"}))
    monkeypatch.setenv("ORDERFLOW_CONSOLE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ORDERFLOW_CONSOLE_REVIEW_URL", SERVICE_URLS["review"])
    monkeypatch.setenv("ORDERFLOW_CONSOLE_SERVICE_URLS", json.dumps(SERVICE_URLS))


class NoDatabase:
    """``ctx.units`` for requests that must be refused before any work: touching it fails."""

    def __call__(self) -> Any:
        raise AssertionError("a request reached the database before its credential was checked")


class FakeUnits:
    """``ctx.units`` yielding a unit of work no handler of these tests looks into."""

    def __init__(self) -> None:
        self.opened = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[Any]:
        self.opened += 1
        yield object()


def context(name: str, units: Callable[[], Any] | None = None, *,
            engine: Any = None) -> ServiceContext:
    from sqlalchemy.ext.asyncio import create_async_engine

    return ServiceContext(
        name=name, settings=ServiceSettings(), kafka=KafkaSettings(),
        engine=engine if engine is not None else create_async_engine(UNREACHABLE_DATABASE),
        relay=cast(OutboxRelay, None),
        units=cast(UnitOfWorkFactory, units if units is not None else NoDatabase()),
        stopping=asyncio.Event())


def definition_of(service: str) -> ServiceDefinition:
    module = importlib.import_module(f"orderflow.{service}.app")
    definition: ServiceDefinition = module.create_service()
    return definition


async def _healthy() -> dict[str, bool]:
    return {"database": True, "broker": True}


def build_app(service: str, ctx: ServiceContext | None = None) -> FastAPI:
    """The app ``run_service`` serves for ``service``."""
    definition = definition_of(service)
    ctx = ctx or context(service)
    return create_http_app(definition.name, _healthy, definition.routers(ctx),
                           public_openapi=definition.public_openapi)


class Route(httpx.AsyncBaseTransport):
    """An httpx transport to apps in this process, by host (``SERVICE_URLS``)."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.transports = {f"{name}.test": httpx.ASGITransport(app=app)
                           for name, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


def client(app: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test",
                             **kwargs)


@dataclass
class StandInLedger:
    """The part of review's order ledger its decision route reads."""

    status: str
    reasons: tuple[Any, ...] = ()


@dataclass
class StandInDecision:
    """What review's ``handlers.decide_manually`` answers with, as its routes read it."""

    decision: str
    ledger: StandInLedger


def stand_in_decision(action: str) -> StandInDecision:
    """Review's answer to ``action`` on a held order below the director thresholds."""
    status = {"approve": "approved", "reject": "rejected"}[action]
    return StandInDecision(decision=status, ledger=StandInLedger(status))
