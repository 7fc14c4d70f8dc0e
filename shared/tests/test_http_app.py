"""The HTTP side every service shares: NUL characters (which PostgreSQL can neither store nor
compare) are refused with a 422 that says so, wherever they come in; with tracing on, each
request is a server span (OpenTelemetry's FastAPI instrumentation), its query values masked."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
from fastapi import APIRouter, Body, FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import BaseModel
from sqlalchemy.exc import DataError, IntegrityError

from orderflow.runtime import tracing
from orderflow.runtime.http import BodyText, create_http_app

pytestmark = pytest.mark.unit


class Note(BaseModel):
    text: BodyText


class FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def app() -> FastAPI:
    router = APIRouter()

    @router.get("/echo/{word}")
    async def echo(word: str, q: str = "") -> dict[str, str]:
        return {"word": word, "q": q}

    @router.post("/notes")
    async def notes(note: Annotated[Note, Body()]) -> dict[str, str]:
        return {"text": note.text}

    @router.post("/store/{sqlstate}")
    async def store(sqlstate: str) -> None:
        error = DataError if sqlstate.startswith("22") else IntegrityError
        raise error("INSERT ...", {}, FakeDriverError(sqlstate))

    async def healthy() -> dict[str, bool]:
        return {"ok": True}

    return create_http_app("test", healthy, [router])


@pytest.fixture
def client() -> TestClient:
    return TestClient(app(), raise_server_exceptions=False)


def test_honest_requests_pass(client: TestClient) -> None:
    assert client.get("/echo/tea", params={"q": "龙井 50g"}).json() == {"word": "tea", "q": "龙井 50g"}
    assert client.post("/notes", json={"text": "fine"}).json() == {"text": "fine"}


@pytest.mark.parametrize("url", ["/echo/tea?q=%00", "/echo/tea?q=a%00b&x=1", "/echo/te%00a",
                                 "/echo/tea?%00=1"])
def test_a_nul_in_the_path_or_query_is_refused_before_any_route(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "must not contain NUL characters"


def test_a_nul_in_body_text_is_refused_by_validation(client: TestClient) -> None:
    r = client.post("/notes", json={"text": "a\u0000b"})
    assert r.status_code == 422
    assert "NUL" in r.text and "a\\u0000b" not in r.text  # the input is not echoed


@pytest.mark.parametrize(("sqlstate", "status"), [("22021", 422), ("22P05", 422), ("23505", 500)])
def test_text_the_database_cannot_store_is_a_422_other_database_errors_stay_500(
        client: TestClient, sqlstate: str, status: int) -> None:
    assert client.post(f"/store/{sqlstate}").status_code == status


def _traced(provider: TracerProvider | None) -> TestClient:
    traced = app()
    tracing.instrument_http_app(traced, provider)
    return TestClient(traced)


def test_with_tracing_on_a_request_is_a_server_span_named_by_its_route_its_query_masked() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    client = _traced(provider)
    assert client.get("/echo/tea", params={"q": "li.lei@example.com"}).json()["word"] == "tea"
    assert client.get("/healthz").status_code == 200  # probes and scrapes: no span
    assert client.get("/metrics").status_code == 200
    provider.shutdown()

    (span,) = spans.get_finished_spans()
    assert span.kind is SpanKind.SERVER and span.name == "GET /echo/{word}"
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/echo/{word}" and attributes["http.status_code"] == 200
    assert attributes["http.url"] == "http://testserver/echo/tea?q=***"
    assert "li.lei" not in json.dumps(attributes)


def test_with_tracing_off_the_app_is_not_instrumented() -> None:
    plain, traced = app(), app()
    tracing.instrument_http_app(plain, None)
    provider = TracerProvider()
    tracing.instrument_http_app(traced, provider)
    provider.shutdown()
    assert not getattr(plain, "_is_instrumented_by_opentelemetry", False)
    assert getattr(traced, "_is_instrumented_by_opentelemetry", False)


@pytest.mark.parametrize(("value", "query_only", "masked"), [
    ("/orders/o-1", False, "/orders/o-1"),
    ("/search?q=li.lei@example.com&page=2", False, "/search?q=***&page=***"),
    ("http://h:8080/s?name=Li Lei&x", False, "http://h:8080/s?name=***&x=***"),
    ("q=a&b@example.com", True, "q=***&***"),  # a decoded "&" in a value: no name kept
])
def test_query_values_are_masked(value: str, query_only: bool, masked: str) -> None:
    assert tracing._query_values_masked(value, query_only=query_only) == masked
