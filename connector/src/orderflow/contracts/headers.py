"""The message headers every OrderFlow event carries: its identity, type and version, when and by
whom it was produced, the order it belongs to, the event it answers, and its trace context."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

EVENT_ID = "event_id"
EVENT_TYPE = "event_type"
SCHEMA_VERSION = "schema_version"
OCCURRED_AT = "occurred_at"
PRODUCER = "producer"
CORRELATION_ID = "correlation_id"
CAUSATION_ID = "causation_id"
TRACEPARENT = "traceparent"
# on dead-lettered messages
DLQ_REASON = "dlq_reason"
DLQ_ERROR = "dlq_error"
DLQ_SOURCE = "dlq_source"
DLQ_SERVICE = "dlq_service"


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent: version 00, a trace id, a new span id, sampled."""
    tid = trace_id or os.urandom(16).hex()
    return f"00-{tid}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None) -> str:
    """A traceparent continuing ``parent``'s trace with a new span."""
    if parent:
        parts = parent.split("-")
        if len(parts) == 4 and len(parts[1]) == 32:
            return new_traceparent(parts[1])
    return new_traceparent()


@dataclass(frozen=True)
class EventHeaders:
    event_id: str
    event_type: str
    schema_version: int
    occurred_at: datetime
    producer: str
    correlation_id: str
    causation_id: str | None = None
    traceparent: str = field(default_factory=new_traceparent)

    @classmethod
    def new(
        cls,
        *,
        event_type: str,
        schema_version: int,
        producer: str,
        correlation_id: str,
        causation: EventHeaders | None = None,
    ) -> EventHeaders:
        return cls(
            event_id=str(uuid.uuid4()),
            event_type=event_type,
            schema_version=schema_version,
            occurred_at=datetime.now(UTC),
            producer=producer,
            correlation_id=correlation_id,
            causation_id=causation.event_id if causation else None,
            traceparent=child_traceparent(causation.traceparent if causation else None),
        )

    def to_kafka(self) -> list[tuple[str, bytes]]:
        items = [
            (EVENT_ID, self.event_id),
            (EVENT_TYPE, self.event_type),
            (SCHEMA_VERSION, str(self.schema_version)),
            (OCCURRED_AT, self.occurred_at.isoformat()),
            (PRODUCER, self.producer),
            (CORRELATION_ID, self.correlation_id),
            (TRACEPARENT, self.traceparent),
        ]
        if self.causation_id:
            items.append((CAUSATION_ID, self.causation_id))
        return [(k, v.encode()) for k, v in items]

    @classmethod
    def from_kafka(cls, raw: Iterable[tuple[str, bytes]] | Mapping[str, bytes]) -> EventHeaders:
        """Parse headers; raises ``ValueError`` naming what is missing or malformed."""
        items = raw.items() if isinstance(raw, Mapping) else raw
        h = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in items}
        missing = [k for k in (EVENT_ID, EVENT_TYPE, SCHEMA_VERSION) if not h.get(k)]
        if missing:
            raise ValueError(f"missing headers: {', '.join(missing)}")
        try:  # kept in its canonical spelling, the one the inbox and every table hand back
            event_id = str(uuid.UUID(h[EVENT_ID]))
        except ValueError as exc:
            raise ValueError("header event_id is not a UUID") from exc
        try:
            version = int(h[SCHEMA_VERSION])
        except ValueError as exc:
            raise ValueError("header schema_version is not an integer") from exc
        try:
            occurred = datetime.fromisoformat(h[OCCURRED_AT]) if h.get(OCCURRED_AT) else None
        except ValueError as exc:
            raise ValueError("header occurred_at is not an ISO timestamp") from exc
        return cls(
            event_id=event_id,
            event_type=h[EVENT_TYPE],
            schema_version=version,
            occurred_at=occurred or datetime.now(UTC),
            producer=h.get(PRODUCER, ""),
            correlation_id=h.get(CORRELATION_ID, ""),
            causation_id=h.get(CAUSATION_ID) or None,
            traceparent=h.get(TRACEPARENT) or new_traceparent(),
        )
