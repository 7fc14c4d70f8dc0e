"""Dead-letter topics: list the newest entries with their reasons, read one entry, and replay
entries onto the topic they came from. A whole-DLQ replay republishes the entries not replayed
before (the consumer group ``orderflow.dlq-replay.<topic>`` remembers how far replays went);
the console adds its own record of single replays on top (``orderflow.console``). Used by the
``orderflow dlq`` command and by the console, so it lives in the runtime, not the devstack."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.contracts.headers import (
    CAUSATION_ID,
    CORRELATION_ID,
    DLQ_ERROR,
    DLQ_REASON,
    DLQ_SERVICE,
    DLQ_SOURCE,
    EVENT_ID,
    EVENT_TYPE,
    OCCURRED_AT,
    PRODUCER,
    SCHEMA_VERSION,
    TRACEPARENT,
)
from orderflow.runtime.logging import mask_personal_data, mask_text
from orderflow.runtime.settings import KafkaSettings

DLQ_HEADERS = frozenset({DLQ_REASON, DLQ_ERROR, DLQ_SOURCE, DLQ_SERVICE})
# headers that carry identities, codes and times, never personal data: shown as they are (any
# other header, the error among them, is masked as text)
PLAIN_HEADERS = frozenset({EVENT_ID, EVENT_TYPE, SCHEMA_VERSION, OCCURRED_AT, PRODUCER,
                           CORRELATION_ID, CAUSATION_ID, TRACEPARENT, DLQ_REASON, DLQ_SERVICE,
                           DLQ_SOURCE})
# a dead letter may be an oversized poison message: as large as the connectors may send
MAX_REQUEST_SIZE = 4 * 1024 * 1024


def replay_group(topic: str) -> str:
    return f"orderflow.dlq-replay.{topic}"


async def _read_all(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int,
                    *, patience_s: float = 30.0) -> list[Any]:
    end = (await consumer.end_offsets([tp]))[tp]
    consumer.seek(tp, start)
    records: list[Any] = []
    deadline = time.monotonic() + patience_s
    # the embedded broker's high watermark may lag: keep reading until a poll returns nothing
    # once the end is reached; before it, an empty poll is a slow first fetch (a loaded machine,
    # a TLS handshake), waited for up to ``patience_s``
    while True:
        batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
        got = batch.get(tp, [])
        records += got
        reached = records[-1].offset + 1 if records else start
        if not got and (reached >= end or time.monotonic() > deadline):
            return records


async def list_dlq(kafka: KafkaSettings, topic: str, *, limit: int = 50) -> list[dict[str, Any]]:
    tp = TopicPartition(f"{topic}.dlq", 0)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        records = await _read_all(consumer, tp, 0)
    finally:
        await consumer.stop()
    out = []
    for r in records[-limit:]:
        headers = {k: v.decode("utf-8", "replace") for k, v in r.headers}
        out.append({
            "offset": r.offset,
            "key": r.key.decode("utf-8", "replace") if r.key else None,
            "reason": headers.get(DLQ_REASON),
            "error": mask_text(headers.get(DLQ_ERROR, "")),
            "service": headers.get(DLQ_SERVICE),
            "event_type": headers.get("event_type"),
            "event_id": headers.get("event_id"),
            "bytes": len(r.value or b""),
        })
    return out


@dataclass(frozen=True)
class DeadLetterRecord:
    """One message of ``<topic>.dlq`` as stored (not masked: see ``masked``)."""

    topic: str  # the topic it came from (and is replayed onto)
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    @property
    def replay_headers(self) -> list[tuple[str, bytes]]:
        """Its original headers, without the ones the dead-lettering added."""
        return [(k, v) for k, v in self.headers if k not in DLQ_HEADERS]

    def masked(self, *, max_payload: int = 256 * 1024) -> dict[str, Any]:
        """For an operator: headers, key and payload as text with personal data masked (JSON by
        its keys, any text by its e-mails, phones and key/value pairs), and its size."""
        raw = self.value or b""
        text = raw[:max_payload].decode("utf-8", "replace")
        try:
            parsed = json.loads(raw) if len(raw) <= max_payload else None
        except ValueError:
            parsed = None
        if parsed is not None:
            payload = json.dumps(mask_personal_data(None, "", {"payload": parsed})["payload"],
                                 indent=2, ensure_ascii=False, default=str)
        else:
            payload = mask_text(text)
        return {
            "topic": self.topic, "dlq": f"{self.topic}.dlq", "partition": self.partition,
            "offset": self.offset,
            "key": mask_text(self.key.decode("utf-8", "replace")) if self.key else None,
            "at": datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).isoformat(),
            "headers": {k: _shown(k, v) for k, v in self.headers},
            "reason": _header(self.headers, DLQ_REASON),
            "error": mask_text(_header(self.headers, DLQ_ERROR) or "") or None,
            "service": _header(self.headers, DLQ_SERVICE),
            "event_id": _header(self.headers, "event_id"),
            "event_type": _header(self.headers, "event_type"),
            "size": len(raw), "payload": payload, "payload_truncated": len(raw) > max_payload,
            "payload_json": parsed is not None,
        }


def _shown(name: str, value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return text if name in PLAIN_HEADERS else mask_text(text)


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None


def _record(topic: str, r: Any) -> DeadLetterRecord:
    return DeadLetterRecord(topic=topic, partition=r.partition, offset=r.offset, key=r.key,
                            value=r.value, headers=tuple(r.headers), timestamp_ms=r.timestamp)


async def read_dead_letter(kafka: KafkaSettings, topic: str, partition: int,
                           offset: int) -> DeadLetterRecord | None:
    """The entry at ``offset`` of ``<topic>.dlq``'s ``partition``; None when there is none (past
    the end, deleted by retention, no such partition)."""
    tp = TopicPartition(f"{topic}.dlq", partition)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        if tp.topic not in await consumer.topics():
            return None
        # partition 0 exists: asking its end loads the topic's metadata, every partition's
        consumer.assign([TopicPartition(tp.topic, 0)])
        await consumer.end_offsets([TopicPartition(tp.topic, 0)])
        if partition not in (consumer.partitions_for_topic(tp.topic) or set()):
            return None
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if offset < first or offset >= end:
            return None
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            for r in batch.get(tp, []):
                return _record(topic, r) if r.offset == offset else None
        return None
    finally:
        await consumer.stop()


class DlqReplay:
    """A replay of ``<topic>.dlq`` (partition 0) onto ``topic``: ``pending`` reads the entries
    after the replay group's committed offset, ``republish`` sends entries onto ``topic`` with
    their original headers, ``done`` moves the group's offset past them."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self.tp = TopicPartition(f"{topic}.dlq", 0)
        self.consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=replay_group(topic),
                                         enable_auto_commit=False)
        self.producer = AIOKafkaProducer(**kafka.producer_kwargs(),
                                         max_request_size=MAX_REQUEST_SIZE)

    async def __aenter__(self) -> DlqReplay:
        await self.consumer.start()
        try:
            await self.producer.start()
        except BaseException:
            await self.consumer.stop()
            raise
        self.consumer.assign([self.tp])
        return self

    async def __aexit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                        _tb: TracebackType | None) -> None:
        try:
            await self.producer.stop()
        finally:
            await self.consumer.stop()

    async def pending(self) -> list[DeadLetterRecord]:
        start = (await self.consumer.committed(self.tp)) or 0
        return [_record(self.topic, r) for r in await _read_all(self.consumer, self.tp, start)]

    async def republish(self, records: Sequence[DeadLetterRecord]) -> None:
        futures = [await self.producer.send(self.topic, value=r.value, key=r.key,
                                            headers=r.replay_headers) for r in records]
        for fut in futures:
            await fut

    async def done(self, records: Sequence[DeadLetterRecord]) -> None:
        if records:
            await self.consumer.commit({self.tp: max(r.offset for r in records) + 1})


async def republish_one(kafka: KafkaSettings, record: DeadLetterRecord) -> None:
    """Send one dead letter back onto the topic it came from, with its original headers."""
    producer = AIOKafkaProducer(**kafka.producer_kwargs(), max_request_size=MAX_REQUEST_SIZE)
    await producer.start()
    try:
        await producer.send_and_wait(record.topic, value=record.value, key=record.key,
                                     headers=record.replay_headers)
    finally:
        await producer.stop()


async def replay_dlq(kafka: KafkaSettings, topic: str) -> int:
    """Republish not-yet-replayed DLQ entries to ``topic`` with their original headers; the
    consumers' inboxes make a replay of something already applied change nothing."""
    async with DlqReplay(kafka, topic) as replay:
        records = await replay.pending()
        await replay.republish(records)
        await replay.done(records)
        return len(records)
