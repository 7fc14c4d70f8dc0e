"""Traces cross services through the events' ``traceparent`` header (orderflow.runtime.tracing);
log lines carry the current span's ids; statements outside a trace make no span; with tracing
off nothing is instrumented."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
import wrapt
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)

from orderflow.contracts.headers import EventHeaders, new_traceparent
from orderflow.runtime import tracing
from orderflow.runtime.logging import configure_logging, get_logger

pytestmark = pytest.mark.unit


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[Tracer]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test")
    provider.shutdown()


def consumer_span(topic: str, traceparent: str | None,
                  **kwargs: Any) -> AbstractContextManager[Span]:
    """What the consumer puts around one event's handler: its span, current in the block."""
    return tracing.current(tracing.start_consumer_span(topic, traceparent, **kwargs))


def _ids(traceparent: str) -> tuple[int, int]:
    _version, trace_id, span_id, _flags = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def _wire(headers: EventHeaders) -> EventHeaders:
    """What the next service reads: the headers through Kafka's byte form."""
    return EventHeaders.from_kafka(headers.to_kafka())


def test_consumer_span_is_a_child_of_the_incoming_traceparent(
        tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    incoming = new_traceparent()
    trace_id, parent_span_id = _ids(incoming)

    with consumer_span("order.received", incoming, service="review", event_id="e-1",
                               event_type="OrderReceived", order_id="o-1", partition=2, offset=7,
                               tracer=tracer):
        pass

    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert span.context is not None
    assert span.parent is not None
    assert span.parent.is_remote
    assert span.context.trace_id == trace_id
    assert span.parent.span_id == parent_span_id
    assert span.context.span_id != parent_span_id
    assert span.attributes is not None
    assert span.attributes["messaging.destination.name"] == "order.received"
    assert span.attributes["messaging.consumer.group.name"] == "orderflow.review"
    assert span.attributes["messaging.message.id"] == "e-1"
    assert span.attributes["messaging.kafka.offset"] == 7


def test_a_trace_follows_an_order_across_two_services(
        tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    """Connector → intake (process A) → header → review (process B): one trace, parent links."""
    submitted = EventHeaders.new(event_type="OrderSubmitted", schema_version=1,
                                 producer="connector", correlation_id="shop:1")

    def intake(incoming: EventHeaders) -> EventHeaders:
        with consumer_span("order.inbound", incoming.traceparent, service="intake",
                                   event_id=incoming.event_id, tracer=tracer):
            out = EventHeaders.new(event_type="OrderReceived", schema_version=1,
                                   producer="intake", correlation_id="o-1", causation=incoming)
            return replace(out, traceparent=tracing.outgoing_traceparent())

    def review(incoming: EventHeaders) -> EventHeaders:
        with consumer_span("order.received", incoming.traceparent, service="review",
                                   event_id=incoming.event_id, tracer=tracer):
            out = EventHeaders.new(event_type="OrderApproved", schema_version=1,
                                   producer="review", correlation_id="o-1", causation=incoming)
            return replace(out, traceparent=tracing.outgoing_traceparent())

    received = _wire(intake(_wire(submitted)))
    approved = review(received)

    spans: dict[str, ReadableSpan] = {s.name: s for s in exporter.get_finished_spans()}
    a, b = spans["process order.inbound"], spans["process order.received"]
    assert a.context is not None and b.context is not None
    assert a.parent is not None and b.parent is not None
    root_trace, root_span = _ids(submitted.traceparent)
    assert {a.context.trace_id, b.context.trace_id, _ids(approved.traceparent)[0]} == {root_trace}
    assert a.parent.span_id == root_span
    assert _ids(received.traceparent)[1] == a.context.span_id
    assert b.parent.span_id == a.context.span_id
    assert _ids(approved.traceparent)[1] == b.context.span_id


def test_an_exception_is_recorded_on_the_span(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    with (pytest.raises(RuntimeError),
          consumer_span("order.approved", new_traceparent(), service="inventory",
                                tracer=tracer)):
        raise RuntimeError("boom")
    (span,) = exporter.get_finished_spans()
    assert not span.status.is_ok
    assert any(e.name == "exception" for e in span.events)


def test_a_malformed_traceparent_starts_a_new_trace(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    with consumer_span("order.inbound", "not-a-traceparent", service="intake", tracer=tracer):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_without_a_recording_span_the_trace_still_continues() -> None:
    """No SDK (or OTEL_SDK_DISABLED): the outgoing traceparent keeps the incoming trace id."""
    incoming = new_traceparent()
    noop = trace.NoOpTracerProvider().get_tracer("test")
    with consumer_span("order.received", incoming, service="review", tracer=noop):
        out = tracing.outgoing_traceparent()
    assert _ids(out)[0] == _ids(incoming)[0]
    assert _ids(out)[1] != _ids(incoming)[1]
    # no current trace at all: continue the default, or start one
    assert _ids(tracing.outgoing_traceparent(incoming))[0] == _ids(incoming)[0]
    assert _ids(tracing.outgoing_traceparent())[0] != _ids(incoming)[0]


def test_exporter_only_when_an_otlp_endpoint_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    provider = tracing.configure_tracing("review", set_global=False)
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "orderflow-review"
    assert not any(isinstance(p, BatchSpanProcessor)
                   for p in provider._active_span_processor._span_processors)

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "review-eu")
    provider = tracing.configure_tracing("review", set_global=False)
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "review-eu"
    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    provider.shutdown()

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.exporter_configured()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_tracing("review", set_global=False) is None


@pytest.mark.usefixtures("process_logging")
def test_a_log_line_carries_the_current_spans_ids_and_none_without_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("t", fmt="json")
    # a span id of decimal digits only: not taken for a phone number by the masking
    digits = SpanContext(trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0x1234567890123456,
                         is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(digits)):
        get_logger("orderflow.test").info("inside")
        logging.getLogger("aiokafka").warning("a library's line inside")
    get_logger("orderflow.test").info("outside")
    logging.getLogger("uvicorn.error").info("Uvicorn running")
    with trace.use_span(NonRecordingSpan(INVALID_SPAN_CONTEXT)):
        get_logger("orderflow.test").info("an invalid context")

    captured = capsys.readouterr()
    assert captured.err == ""
    lines = {line["event"]: line for line in map(json.loads, captured.out.splitlines())}
    for event in ("inside", "a library's line inside"):
        assert lines[event]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert lines[event]["span_id"] == "1234567890123456"
    for event in ("outside", "Uvicorn running", "an invalid context"):
        assert "trace_id" not in lines[event] and "span_id" not in lines[event]


def test_with_tracing_off_no_database_call_is_wrapped() -> None:
    tracing.instrument_database(None)
    assert not isinstance(vars(asyncpg.Connection)["fetch"], wrapt.FunctionWrapper)
    provider = TracerProvider()
    tracing.instrument_database(provider)
    try:
        assert isinstance(vars(asyncpg.Connection)["fetch"], wrapt.FunctionWrapper)
    finally:
        tracing.uninstrument_database()
        provider.shutdown()
    assert not isinstance(vars(asyncpg.Connection)["fetch"], wrapt.FunctionWrapper)


def test_a_statement_outside_any_trace_is_dropped_one_inside_follows_its_parent() -> None:
    sampler = tracing.StatementsInTraces(ALWAYS_ON)
    statement = {"db.system": "postgresql", "db.statement": "SELECT 1"}
    root = sampler.should_sample(None, 1, "SELECT", SpanKind.CLIENT, statement)
    assert root.decision is Decision.DROP
    parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=1, span_id=2, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    assert sampler.should_sample(parent, 1, "SELECT", SpanKind.CLIENT,
                                 statement).decision is Decision.RECORD_AND_SAMPLE
    # anything else: as the delegate decides
    assert sampler.should_sample(None, 1, "process x", SpanKind.CONSUMER,
                                 {}).decision is Decision.RECORD_AND_SAMPLE
    assert tracing.StatementsInTraces(ALWAYS_OFF).should_sample(
        parent, 1, "SELECT", SpanKind.CLIENT, statement).decision is Decision.DROP


def test_the_provider_samples_with_the_environments_sampler_inside_statements_in_traces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = tracing.configure_tracing("review", set_global=False)
    assert provider is not None
    assert isinstance(provider.sampler, tracing.StatementsInTraces)
    assert "0.25" in provider.sampler.get_description()
    provider.shutdown()
