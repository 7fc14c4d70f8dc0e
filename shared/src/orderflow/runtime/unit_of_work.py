"""The unit of work: owns one database transaction, collects the events a handler emits and
writes them to the outbox in that same transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from contextvars import ContextVar
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


# the structlog context variables of an event's log context, set directly by ``handling``
# (``bound_contextvars`` copies the whole context to save what it replaces: 4.2 µs; ``handling``
# now 1.9 µs in all, and batch handlers enter it once or twice for every event); found through
# the tokens of one binding, undone at once. ``trace_id`` is the event's trace (its traceparent's)
# for log lines written with tracing off; with a span current, the span's ids are logged instead
_EVENT_LOG_KEYS = ("event_id", "order_id", "topic", "partition", "offset", "trace_id")
_tokens = structlog.contextvars.bind_contextvars(**dict.fromkeys(_EVENT_LOG_KEYS, ...))
_EVENT_LOG_VARS: tuple[ContextVar[Any], ...] = tuple(token.var for token in _tokens.values())
structlog.contextvars.reset_contextvars(**_tokens)
del _tokens


def trace_id_of(traceparent: str | None) -> Any:
    """The trace id of a W3C traceparent (``00-<32 hex>-<16 hex>-<2 hex>``); ``...`` (no log
    field) for a missing or malformed one."""
    if traceparent and len(traceparent) == 55 and traceparent[2] == "-" and traceparent[35] == "-":
        return traceparent[3:35]
    return ...


class _Handling:
    """``UnitOfWork.handling``'s context manager (a class: no generator per event)."""

    __slots__ = ("incoming", "previous", "span_cm", "tokens", "uow")

    def __init__(self, uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
        self.uow = uow
        self.incoming = incoming
        self.span_cm: AbstractContextManager[Any] | None = None

    def __enter__(self) -> None:
        incoming, uow = self.incoming, self.uow
        self.previous, uow.current = uow.current, incoming
        self.tokens = [var.set(value) for var, value in zip(
            _EVENT_LOG_VARS, (incoming.headers.event_id, incoming.key, incoming.topic,
                              incoming.partition, incoming.offset,
                              trace_id_of(incoming.headers.traceparent)), strict=True)]
        self.span_cm = uow.in_span(incoming)
        if self.span_cm is not None:
            try:
                self.span_cm.__enter__()
            except BaseException:
                self._restore()
                raise

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.span_cm is not None:
                self.span_cm.__exit__(*exc)
        finally:
            self._restore()

    def _restore(self) -> None:
        for var, token in zip(_EVENT_LOG_VARS, self.tokens, strict=True):
            var.reset(token)
        self.uow.current = self.previous


class UnitOfWork:
    def __init__(self, session: AsyncSession, service: str) -> None:
        self.session = session
        self.service = service
        self.current: IncomingEvent[Event] | None = None
        self.outgoing: list[outbox.OutgoingMessage] = []
        self.emitted: list[tuple[EventHeaders, Event]] = []
        # a batch handler's run: the consumer span of each of its events, by event id
        self.spans: dict[str, Span] = {}
        self.committed: list[Callable[[], None]] = []

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

    def handling(self, incoming: IncomingEvent[Any]) -> _Handling:
        """Inside a batch handler, what the consumer sets up around a handler of one event: the
        event answered by what is emitted, its log context (``event_id``, ``order_id``,
        ``topic``, ``partition``, ``offset``) and its consumer span made current. Leaving it
        restores what was there before (the log context as ``bound_contextvars`` would)."""
        return _Handling(self, incoming)

    def in_span(self, incoming: IncomingEvent[Any], *,
                record_exception: bool = True) -> AbstractContextManager[Any] | None:
        """Inside a batch handler, ``incoming``'s consumer span made current for a ``with`` block
        (log lines written and statements run there name it; an exception leaving it is recorded
        on it unless ``record_exception`` is false), or ``None`` when the run has no spans
        (tracing off). ``handling`` does this with the rest; a handler that binds its own log
        context uses this alone."""
        span = self.spans.get(incoming.headers.event_id) if self.spans else None
        if span is None:
            return None
        return trace.use_span(span, end_on_exit=False, record_exception=record_exception,
                              set_status_on_exception=record_exception)

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

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once this unit of work has committed (what a handler counts in a
        metric: never for a transaction rolled back, once for one retried)."""
        self.committed.append(action)

    def run_committed(self) -> None:
        """The ``on_commit`` actions, after the commit (by whoever committed)."""
        actions, self.committed = self.committed, []
        for action in actions:
            action()

    def mark(self) -> tuple[int, int, int]:
        return len(self.outgoing), len(self.emitted), len(self.committed)

    def rollback_to(self, mark: tuple[int, int, int]) -> None:
        del self.outgoing[mark[0]:]
        del self.emitted[mark[1]:]
        del self.committed[mark[2]:]

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
        uow.run_committed()
        if self.on_commit:
            self.on_commit()
