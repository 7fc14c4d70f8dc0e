"""OpenTelemetry traces across services, carried by the events' W3C ``traceparent`` header.

Set-up follows the standard ``OTEL_*`` variables (the SDK and the OTLP exporter read them
themselves):

- ``OTEL_SDK_DISABLED=true``: no SDK; the API's no-op tracer is used and traceparents still
  continue the incoming trace (a new span id per hop, as ``headers.child_traceparent`` does).
- ``OTEL_SERVICE_NAME`` (default ``orderflow-<service>``) and ``OTEL_RESOURCE_ATTRIBUTES``.
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (the SDK default: parent-based, always on).
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: spans are exported
  over OTLP/HTTP (protobuf) with a batch processor; ``OTEL_EXPORTER_OTLP_HEADERS``,
  ``_TIMEOUT``, ``_CERTIFICATE``, ``_COMPRESSION`` apply. Without an endpoint, spans are made (so
  outgoing events get real span ids) but nothing is exported. ``OTEL_TRACES_EXPORTER=none``
  turns the exporter off even with an endpoint.

The runtime makes a CONSUMER span per incoming event (:func:`start_consumer_span`, its parent the
event's ``traceparent``), current around the event's handler (:func:`current`); each event staged
meanwhile gets :func:`outgoing_traceparent` (in a batch handler's run, :func:`traceparent_of` the
span of the event it answers).

With tracing on (a provider installed), OpenTelemetry's own instrumentations add the rest:
:func:`instrument_http_app` a SERVER span per HTTP request (FastAPI), :func:`instrument_database`
a CLIENT span per PostgreSQL statement (asyncpg: SQLAlchemy's statements and the runtime's own,
which go to asyncpg directly). A statement's span carries its text, whose values are bind
parameters (``$1``): the parameters themselves are never recorded (``capture_parameters`` off),
nor a failed statement's error message (the instrumentation sets no description). A statement
outside any trace (the outbox relay's polls, health checks) makes no span
(:class:`StatementsInTraces`); so do the statements of a batch handler's run of several events
(they serve them all: the consumer makes no event's span current around the run, only a run of
one's). With tracing off, nothing is instrumented: not a wrapper is installed.

What an exception leaves on a span (its message and stack trace, the status's description) is
masked before export (:class:`MaskingExporter`) with the logs' own masking: personal data in an
error's text never leaves the process in a trace either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Span, SpanKind, Status, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from fastapi import FastAPI

from orderflow.contracts.headers import TRACEPARENT, child_traceparent, new_traceparent
from orderflow.runtime.logging import mask_text

INSTRUMENTATION_NAME = "orderflow"
_propagator = TraceContextTextMapPropagator()
_configured: TracerProvider | None = None


#: what ``Span.record_exception`` writes of an exception: its text, which may name a person
_EXCEPTION_TEXT = ("exception.message", "exception.stacktrace")


def masked_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` with personal data masked in its exceptions' text and its status's description
    (the same span when it has neither)."""
    events = tuple(_masked_event(event) for event in span.events)
    status = span.status
    if status.description:
        status = Status(status.status_code, mask_text(status.description))
    if status is span.status and all(a is b for a, b in zip(events, span.events, strict=True)):
        return span
    return ReadableSpan(name=span.name, context=span.context, parent=span.parent,
                        resource=span.resource, attributes=span.attributes, events=events,
                        links=span.links, kind=span.kind, status=status,
                        start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


def _masked_event(event: Event) -> Event:
    attributes = event.attributes or {}
    if not any(isinstance(attributes.get(key), str) for key in _EXCEPTION_TEXT):
        return event
    masked = {key: mask_text(value) if key in _EXCEPTION_TEXT and isinstance(value, str) else value
              for key, value in attributes.items()}
    return Event(event.name, masked, timestamp=event.timestamp)


class MaskingExporter(SpanExporter):
    """Exports through ``delegate`` the spans as :func:`masked_span` leaves them."""

    def __init__(self, delegate: SpanExporter) -> None:
        self._delegate = delegate

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._delegate.export([masked_span(span) for span in spans])

    def shutdown(self) -> None:
        self._delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._delegate.force_flush(timeout_millis)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def exporter_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for spans to be exported over OTLP."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_tracing(service: str, *, set_global: bool = True,
                      processors: tuple[SpanProcessor, ...] = ()) -> TracerProvider | None:
    """Install an SDK tracer provider for ``service`` from the ``OTEL_*`` variables.

    Returns the provider (call :func:`shutdown_tracing` at stop to flush it), or ``None`` when
    ``OTEL_SDK_DISABLED`` is true. Calling it again in the same process returns the first
    provider: OpenTelemetry allows one global provider per process. ``processors`` are added
    before the OTLP one (tests pass an in-memory exporter's processor)."""
    global _configured
    if _env_true("OTEL_SDK_DISABLED"):
        return None
    if set_global and _configured is not None:
        return _configured
    attributes = {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or f"orderflow-{service}",
                  "service.namespace": "orderflow"}
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; explicit attributes win
    provider = TracerProvider(resource=Resource.create(attributes),
                              sampler=StatementsInTraces(sampling._get_from_env_or_default()))
    for processor in processors:
        provider.add_span_processor(processor)
    if exporter_configured():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(MaskingExporter(OTLPSpanExporter())))
    if set_global:
        trace.set_tracer_provider(provider)
        _configured = provider
    return provider


class StatementsInTraces(sampling.Sampler):
    """The sampler of ``OTEL_TRACES_SAMPLER`` (``delegate``), but a database statement with no
    parent span is dropped: the outbox relay polls twice a second and health checks run
    ``SELECT 1``, each of which would otherwise be a trace of its own. A statement inside a
    trace (an event's handling, an HTTP request) is sampled as its parent is."""

    def __init__(self, delegate: sampling.Sampler) -> None:
        self.delegate = delegate

    def should_sample(self, parent_context: otel_context.Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> sampling.SamplingResult:
        if (kind is SpanKind.CLIENT and attributes
                and ("db.system" in attributes or "db.system.name" in attributes)
                and not trace.get_current_span(parent_context).get_span_context().is_valid):
            return sampling.SamplingResult(sampling.Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes,
                                           links, trace_state)

    def get_description(self) -> str:
        return f"StatementsInTraces{{{self.delegate.get_description()}}}"


# what a request's span never records: health probes and Prometheus' scrapes
UNTRACED_PATHS = ("/healthz", "/livez", "/metrics")


_QUERY_NAME = re.compile(r"[A-Za-z0-9_.\[\]-]{1,64}")


def _query_values_masked(value: str, *, query_only: bool = False) -> str:
    """A URL or a target (path and query), or a query alone, with each query value replaced by
    ``***``: a search by e-mail or name must not reach the trace backend. A parameter's name is
    kept when it looks like one (the instrumentation records the query decoded, so a value's
    ``&`` may begin a "name")."""
    head, sep, query = ("", "", value) if query_only else value.partition("?")
    if not query_only and not sep:
        return value
    masked = "&".join(f"{name}=***" if _QUERY_NAME.fullmatch(name) else "***"
                      for name in (pair.partition("=")[0] for pair in query.split("&") if pair))
    return masked if query_only else f"{head}?{masked}"


_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")


def _mask_request_url(span: Span, _scope: dict[str, Any]) -> None:
    """The instrumentation's ``server_request_hook``: the request's URL attributes again, their
    query values masked."""
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            span.set_attribute(key, _query_values_masked(value, query_only=key == "url.query"))


def instrument_http_app(app: FastAPI, provider: TracerProvider | None) -> None:
    """A SERVER span per HTTP request to ``app`` (OpenTelemetry's FastAPI instrumentation),
    named by its route (``GET /orders/{order_id}``), when tracing is on (``provider`` is what
    :func:`configure_tracing` returned); with ``None``, the app is left as it is. Probes and
    scrapes (``UNTRACED_PATHS``) make no span, nor do the ASGI messages of a request; query
    values are masked (:func:`_query_values_masked`)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, server_request_hook=_mask_request_url,
        excluded_urls=",".join(f"{path}$" for path in UNTRACED_PATHS),
        exclude_spans=["receive", "send"])


def instrument_database(provider: TracerProvider | None) -> None:
    """A CLIENT span per PostgreSQL statement of this process (OpenTelemetry's asyncpg
    instrumentation), when tracing is on; with ``None``, nothing is wrapped. The statement's text
    is recorded, its parameters never (``capture_parameters=False``)."""
    if provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor(capture_parameters=False).instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider)


def uninstrument_database() -> None:
    """Undo :func:`instrument_database` (a test's; a service keeps it for its life)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]


def shutdown_tracing() -> None:
    """Flush and close the provider :func:`configure_tracing` installed (no-op otherwise)."""
    global _configured
    if _configured is not None:
        _configured.shutdown()
        _configured = None


def _tracer(tracer: Tracer | None) -> Tracer:
    return tracer or trace.get_tracer(INSTRUMENTATION_NAME)


def spans_recorded() -> bool:
    """Whether a consumer span would be recorded: an SDK provider is installed (or a test's
    tracer). With the API's no-op tracer a span records nothing and changes no traceparent (an
    emitted event continues its cause's trace either way, ``headers.child_traceparent``), so the
    consumer does not make one: 24 us an event, timed alone."""
    tracer = _tracer(None)
    if isinstance(tracer, trace.ProxyTracer):  # no provider of our own: the global one decides
        return not isinstance(trace.get_tracer_provider(),
                              trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return not isinstance(tracer, trace.NoOpTracer)


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """The OpenTelemetry context whose remote parent is ``traceparent`` (an empty context when
    the value is missing or malformed: the span then starts a new trace)."""
    if not traceparent:
        return otel_context.Context()
    return _propagator.extract({TRACEPARENT: traceparent}, context=otel_context.Context())


def start_consumer_span(
    topic: str,
    traceparent: str | None,
    *,
    service: str,
    event_type: str | None = None,
    event_id: str | None = None,
    order_id: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    tracer: Tracer | None = None,
) -> Span:
    """A started CONSUMER span for applying one incoming event, child of the event's
    ``traceparent``, not made current (the caller ends it). A batch handler's run has one per
    event: the events it emits name their cause's span (``UnitOfWork.emit(..., cause=...)``).

    Attributes follow the OpenTelemetry messaging conventions; the order id is the Kafka key."""
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.consumer.group.name": f"orderflow.{service}",
    }
    if event_id:
        attributes["messaging.message.id"] = event_id
    if event_type:
        attributes["orderflow.event_type"] = event_type
    if order_id:
        attributes["messaging.kafka.message.key"] = order_id
        attributes["orderflow.order_id"] = order_id
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    return _tracer(tracer).start_span(
        f"process {topic}",
        context=context_from_traceparent(traceparent),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )


@contextmanager
def current(span: Span) -> Iterator[Span]:
    """``span`` current inside the ``with`` block (so :func:`outgoing_traceparent` continues it)
    and ended after it; an exception raised inside is recorded on it and re-raised."""
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def traceparent_of(span: Span | None, default: str | None) -> str:
    """The ``traceparent`` for an event emitted in answer to what ``span`` processes: naming
    ``span`` when it records, else continuing ``default``'s trace (as :func:`outgoing_traceparent`
    does without a current span)."""
    if span is not None and span.is_recording():
        named = format_traceparent(span)
        if named is not None:
            return named
    return child_traceparent(default) if default else new_traceparent()


def format_traceparent(span: Span) -> str | None:
    """The W3C traceparent naming ``span``, or ``None`` when its context is not valid."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def outgoing_traceparent(default: str | None = None) -> str:
    """The ``traceparent`` to put on an event emitted now.

    Inside a recording span (an SDK provider is installed), it names that span, so the next
    service's consumer span is its child. Without the SDK (a no-op span carrying the incoming
    context), it continues that trace with a new span id. With no current trace at all, it
    continues ``default``'s trace if given, else starts a new trace."""
    span = trace.get_current_span()
    current = format_traceparent(span)
    if current is None:
        return child_traceparent(default) if default else new_traceparent()
    if span.is_recording():
        return current
    return child_traceparent(current)
