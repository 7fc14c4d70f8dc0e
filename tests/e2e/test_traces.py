"""Traces from running services, exported over OTLP/HTTP as a collector receives them: intake
and review as their own processes with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a receiver of
the test's own. An order is one trace across both services; each handler's statements are
database spans under its consumer span, and no span carries the order's personal data; an HTTP
request is a server span (a health probe none); a log line written in a handler names its span."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from orderflow.connector import OrderPusher
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.devstack.processes import free_port
from orderflow.runtime.logging import is_personal_key
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline

pytestmark = pytest.mark.e2e

T = TypeVar("T")


async def until(check: Callable[[], T | None], *, timeout: float,
                what: str | Callable[[], str]) -> T:
    """``check()`` once it is truthy (the spans come in batches, the logs as written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.2)
    said = what if isinstance(what, str) else what()
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {said}")


@dataclass(frozen=True)
class Exported:
    service: str
    span: SpanProto

    @property
    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in self.span.attributes:
            value = kv.value
            out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
        return out


class Receiver:
    """OTLP/HTTP's traces endpoint (``/v1/traces``, protobuf), as a collector's receiver."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.spans: list[Exported] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/v1/traces":
                    receiver.add(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.bodies.append(body)
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope in resource_spans.scope_spans:
                    self.spans += [Exported(service, s) for s in scope.spans]

    def snapshot(self) -> list[Exported]:
        with self.lock:
            return list(self.spans)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(10)


@pytest.fixture(scope="module")
async def traced(infra: Infra, receiver: Receiver) -> AsyncIterator[tuple[Pipeline, EventLog]]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    async with private_pipeline(infra, "traced", ["intake", "review"], env) as running:
        yield running


def _personal_values(value: Any, key: str = "") -> set[str]:
    if isinstance(value, dict):
        return {v for k, item in value.items() for v in _personal_values(item, str(k))}
    if isinstance(value, list):
        return {v for item in value for v in _personal_values(item, key)}
    return {value} if isinstance(value, str) and len(value) > 3 and is_personal_key(key) else set()


def _consumer(spans: list[Exported], service: str, topic: str, order_id: str) -> Exported | None:
    return next((s for s in spans if s.service == f"orderflow-{service}"
                 and s.span.kind == SpanProto.SPAN_KIND_CONSUMER
                 and s.span.name == f"process {topic}"
                 and s.attributes.get("orderflow.order_id") == order_id), None)


def _summary(receiver: Receiver) -> str:
    """What came in, for a failure's message."""
    spans = receiver.snapshot()
    kinds = sorted({(s.service, s.span.kind, s.span.name) for s in spans})
    return f"{len(receiver.bodies)} exports, {len(spans)} spans: {kinds[:40]}"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_an_order_is_one_trace_across_services_with_its_statements_and_no_personal_data(
        traced: tuple[Pipeline, EventLog], receiver: Receiver) -> None:
    pipeline, _events = traced
    eid = f"TRACE-{uuid.uuid4().hex[:10]}"
    order = canonical_order(eid, customer_id="C0070", lines=[("TEA-002", 1)])
    oid = order_id_for("canonical", eid)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", order)

    def both() -> tuple[Exported, Exported] | None:
        spans = receiver.snapshot()
        review = _consumer(spans, "review", "order.received", oid)
        # what intake emitted names its span: review's consumer span is its child
        intake = review and next((s for s in spans if s.span.span_id == review.span.parent_span_id),
                                 None)
        return (intake, review) if intake and review else None

    intake, review = await until(both, timeout=120,
                                 what=lambda: f"both services' consumer spans: {_summary(receiver)}")
    assert intake.service == "orderflow-intake" and intake.span.name == "process order.inbound"
    assert intake.span.kind == SpanProto.SPAN_KIND_CONSUMER
    assert review.span.trace_id == intake.span.trace_id

    def statements() -> list[Exported]:
        return [s for s in receiver.snapshot() if s.span.kind == SpanProto.SPAN_KIND_CLIENT
                and s.span.parent_span_id in {intake.span.span_id, review.span.span_id}]

    await until(lambda: {s.span.parent_span_id for s in statements()}
                == {intake.span.span_id, review.span.span_id} or None,
                timeout=60, what="each handler's statements")
    for statement in statements():
        attributes = statement.attributes
        assert attributes["db.system"] == "postgresql"
        assert statement.span.trace_id == intake.span.trace_id
        assert "db.statement.parameters" not in attributes
        assert "$1" in attributes["db.statement"] or "$" not in attributes["db.statement"]
    personal = _personal_values(order)
    assert personal, "the order has no personal data to look for"
    with receiver.lock:
        exported = b"".join(receiver.bodies)
    for value in personal:
        assert value.encode() not in exported, value


async def test_an_http_request_is_a_server_span_and_a_probe_none(
        traced: tuple[Pipeline, EventLog], receiver: Receiver) -> None:
    pipeline, _events = traced
    port = pipeline.stack.find("intake").port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/openapi.json", params={"who": "li.lei@example.com"})).status_code == 200

    def served() -> Exported | None:
        return next((s for s in receiver.snapshot() if s.service == "orderflow-intake"
                     and s.span.kind == SpanProto.SPAN_KIND_SERVER
                     and s.span.name == "GET /openapi.json"), None)

    span = await until(served, timeout=60, what="the request's server span")
    assert span.attributes["http.status_code"] == 200
    assert "li.lei" not in json.dumps(span.attributes)
    server_spans = [s.span.name for s in receiver.snapshot()
                    if s.span.kind == SpanProto.SPAN_KIND_SERVER]
    assert not [name for name in server_spans if "healthz" in name], server_spans


async def test_a_log_line_written_in_a_handler_names_its_span(
        traced: tuple[Pipeline, EventLog], receiver: Receiver) -> None:
    pipeline, _events = traced
    eid = f"TRACE-{uuid.uuid4().hex[:10]}"
    order = canonical_order(eid, customer_id="C0033", lines=[("TEA-002", 1)])
    oid = order_id_for("canonical", eid)
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", order)
        await until(lambda: _consumer(receiver.snapshot(), "review", "order.received", oid),
                    timeout=120, what="the first push handled")
        await pusher.push("canonical", order)  # the same again: intake logs it as a duplicate

    log = pipeline.stack.root / "logs" / "intake.log"

    def duplicate_logged() -> dict[str, Any] | None:
        return next((line for line in _json_lines(log)
                     if line.get("event") == "duplicate push ignored"
                     and line.get("order_id") == oid), None)

    line = await until(duplicate_logged, timeout=120, what="intake's duplicate line")

    def its_span() -> Exported | None:
        return next((s for s in receiver.snapshot() if s.service == "orderflow-intake"
                     and s.span.span_id.hex() == line["span_id"]), None)

    span = await until(its_span, timeout=60, what="the span the line names")
    assert span.span.kind == SpanProto.SPAN_KIND_CONSUMER
    assert span.span.name == "process order.inbound"
    assert span.span.trace_id.hex() == line["trace_id"]
