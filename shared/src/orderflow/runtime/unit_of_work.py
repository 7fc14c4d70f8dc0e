"""The unit of work: owns one database transaction, collects the events a handler emits and
writes them to the outbox in that same transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from orderflow.contracts.events import Event
from orderflow.contracts.headers import (
    DLQ_ERROR,
    DLQ_REASON,
    DLQ_SERVICE,
    DLQ_SOURCE,
    EventHeaders,
)
from orderflow.contracts.topics import TOPIC_OF_EVENT, Topic
from orderflow.runtime import outbox
from orderflow.runtime.tracing import outgoing_traceparent, traceparent_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class IncomingEvent(Generic[E]):
    """A consumed, decoded and validated event with where it came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    headers: EventHeaders
    event: E
    raw_value: bytes
    raw_headers: tuple[tuple[str, bytes], ...] = ()


class UnitOfWork:
    def __init__(self, session: AsyncSession, service: str) -> None:
        self.session = session
        self.service = service
        self.current: IncomingEvent[Event] | None = None
        self.outgoing: list[outbox.OutgoingMessage] = []
        self.emitted: list[tuple[EventHeaders, Event]] = []
        # a batch handler's run: the consumer span of each of its events, by event id
        self.spans: dict[str, Span] = {}

    def emit(self, event: Event, *, topic: Topic | None = None,
             correlation_id: str | None = None,
             cause: IncomingEvent[Any] | None = None) -> EventHeaders:
        """Stage ``event`` for publication; its headers answer ``cause`` (a batch handler names
        the event it answers), else the event being handled."""
        answering = cause or self.current
        target = topic or TOPIC_OF_EVENT[type(event)]
        key = event.key()
        headers = EventHeaders.new(
            event_type=event.EVENT_TYPE,
            schema_version=event.SCHEMA_VERSION,
            producer=self.service,
            correlation_id=correlation_id or key,
            causation=answering.headers if answering else None,
        )
        # name the cause's consumer span (a batch run's), else continue the current span's trace
        # (an exporter configured) or the incoming event's
        span = self.spans.get(cause.headers.event_id) if cause is not None and self.spans else None
        headers = replace(headers, traceparent=(
            traceparent_of(span, headers.traceparent) if span is not None
            else outgoing_traceparent(default=headers.traceparent)))
        self.outgoing.append(
            outbox.OutgoingMessage(
                topic=target.name,
                key=key.encode(),
                value=event.model_dump_json().encode(),
                headers=headers.to_kafka(),
            )
        )
        self.emitted.append((headers, event))
        return headers

    @contextmanager
    def handling(self, incoming: IncomingEvent[Any]) -> Iterator[None]:
        """Inside a batch handler, what the consumer sets up around a handler of one event: the
        event answered by what is emitted, its log context (``event_id``, ``order_id``,
        ``topic``, ``partition``, ``offset``) and its consumer span made current."""
        previous, self.current = self.current, incoming
        span = self.spans.get(incoming.headers.event_id)
        try:
            with structlog.contextvars.bound_contextvars(
                    event_id=incoming.headers.event_id, order_id=incoming.key,
                    topic=incoming.topic, partition=incoming.partition, offset=incoming.offset):
                if span is None:
                    yield
                else:
                    with trace.use_span(span, end_on_exit=False):
                        yield
        finally:
            self.current = previous

    def dead_letter(self, *, topic: str, key: bytes | None, value: bytes,
                    headers: tuple[tuple[str, bytes], ...], reason: str, error: str) -> None:
        """Stage the original message for ``<topic>.dlq`` with the reason in its headers."""
        kept = [(k, v) for k, v in headers
                if k not in {DLQ_REASON, DLQ_ERROR, DLQ_SOURCE, DLQ_SERVICE}]
        kept += [
            (DLQ_REASON, reason.encode()),
            (DLQ_ERROR, error[:2000].encode("utf-8", "replace")),
            (DLQ_SOURCE, topic.encode()),
            (DLQ_SERVICE, self.service.encode()),
        ]
        # the outbox keeps header values as text (``OutgoingMessage.headers_text`` replaces what
        # is not UTF-8, and NUL)
        self.outgoing.append(outbox.OutgoingMessage(f"{topic}.dlq", key, value, kept))

    def mark(self) -> tuple[int, int]:
        return len(self.outgoing), len(self.emitted)

    def rollback_to(self, mark: tuple[int, int]) -> None:
        del self.outgoing[mark[0]:]
        del self.emitted[mark[1]:]

    async def flush(self) -> None:
        await outbox.stage(self.session, self.outgoing)
        self.outgoing.clear()


class UnitOfWorkFactory:
    """Opens units of work outside a consumer (HTTP API, command line) and wakes the relay."""

    def __init__(self, engine: AsyncEngine, service: str,
                 on_commit: Callable[[], None] | None = None) -> None:
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.service = service
        self.on_commit = on_commit

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[UnitOfWork]:
        async with self.sessions() as session, session.begin():
            uow = UnitOfWork(session, self.service)
            yield uow
            await uow.flush()
        if self.on_commit:
            self.on_commit()
