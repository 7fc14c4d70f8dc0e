"""Read topics from the beginning without a consumer group, as the demo, the benchmark and the
tests watch the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import BY_NAME, CATALOGUE
from orderflow.runtime.settings import KafkaSettings


@dataclass(frozen=True)
class SeenEvent:
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes
    event: Any  # the decoded model, or None for a DLQ message or one that does not decode

    @property
    def event_id(self) -> str:
        return self.headers.get("event_id", "")


def _decode(topic: str, value: bytes, headers: dict[str, str]) -> Any:
    spec = BY_NAME.get(topic)
    if spec is None:
        return None
    try:
        EventHeaders.from_kafka({k: v.encode() for k, v in headers.items()})
        return spec.model.model_validate_json(value)
    except Exception:  # noqa: BLE001 - a watcher records, it does not judge
        return None


class EventLog:
    """A background reader of topics (no consumer group: it commits nothing)."""

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str] | None = None) -> None:
        names = list(topics) if topics is not None else (
            [t.name for t in CATALOGUE] + [t.dlq for t in CATALOGUE])
        self.kafka = kafka
        self.topics = names
        self.events: list[SeenEvent] = []
        self.by_topic: dict[str, list[SeenEvent]] = defaultdict(list)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> EventLog:
        self._consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False,
                                          auto_offset_reset="earliest", group_id=None)
        await self._consumer.start()
        tps = []
        for name in self.topics:
            spec = BY_NAME.get(name)
            count = spec.partitions if spec else 1  # DLQs have one partition
            tps += [TopicPartition(name, p) for p in range(count)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for r in records:
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers}
                    seen = SeenEvent(r.topic, r.partition, r.offset,
                                     r.key.decode("utf-8", "replace") if r.key else None,
                                     headers, r.value or b"", _decode(r.topic, r.value or b"", headers))
                    self.events.append(seen)
                    self.by_topic[r.topic].append(seen)
            if batches:
                self._changed.set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            # a reader stopping at teardown: a fetch cut short by the stop is not an error
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._consumer.stop(), 15)

    async def __aenter__(self) -> EventLog:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def of(self, topic: str, key: str | None = None) -> list[SeenEvent]:
        return [e for e in self.by_topic.get(topic, []) if key is None or e.key == key]

    async def wait_for(self, condition: Callable[[], Any], *, timeout: float = 30.0,
                       what: str = "a condition") -> Any:
        """Wait until ``condition()`` is truthy (re-checked as events arrive); return its value."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))

    async def wait_for_event(self, topic: str, key: str | None = None, *, timeout: float = 30.0,
                             where: Callable[[SeenEvent], bool] = lambda _e: True) -> SeenEvent:
        found = await self.wait_for(
            lambda: next((e for e in self.of(topic, key) if where(e)), None),
            timeout=timeout, what=f"an event on {topic}" + (f" for {key}" if key else ""))
        assert isinstance(found, SeenEvent)
        return found
