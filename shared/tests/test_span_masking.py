"""What an exception leaves on a span (message, stack trace, status) is masked before export, as
in the logs: personal data in an error's text does not leave the process in a trace either."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orderflow.runtime.tracing import MaskingExporter

pytestmark = pytest.mark.unit

EMAIL = "li.lei@example.com"
PHONE = "13812345678"


def _spans(exporter: InMemorySpanExporter, *, fail: bool) -> list[dict[str, object]]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(MaskingExporter(exporter)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("handle", record_exception=False,
                                      set_status_on_exception=False) as span:
        span.set_attribute("messaging.destination.name", "order.received")
        if fail:
            try:
                raise ValueError(f"customer {EMAIL} (phone {PHONE}) has no address")
            except ValueError as exc:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, f"failed for {EMAIL}")
    provider.shutdown()
    return [{"events": [dict(e.attributes or {}) for e in s.events],
             "status": s.status.description, "attributes": dict(s.attributes or {})}
            for s in exporter.get_finished_spans()]


def test_an_exceptions_text_and_the_status_are_masked_in_the_exported_span() -> None:
    (span,) = _spans(InMemorySpanExporter(), fail=True)
    (event,) = span["events"]  # type: ignore[misc]
    text = repr(span)
    assert EMAIL not in text and PHONE not in text
    assert event["exception.type"] == "ValueError"
    assert "has no address" in event["exception.message"]
    assert "Traceback" in event["exception.stacktrace"] and "has no address" in event["exception.stacktrace"]
    assert "@example.com" in str(span["status"])  # masked, not dropped: b***@example.com
    assert span["attributes"] == {"messaging.destination.name": "order.received"}


def test_a_span_without_an_exception_is_exported_as_it_is() -> None:
    (span,) = _spans(InMemorySpanExporter(), fail=False)
    assert span == {"events": [], "status": None,
                    "attributes": {"messaging.destination.name": "order.received"}}
