"""Dead-letter topics from the command line: list the newest entries with their reasons, and
replay entries not replayed before onto the topic they came from (the consumer group
``orderflow.dlq-replay.<topic>`` remembers how far replays went)."""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.contracts.headers import DLQ_ERROR, DLQ_REASON, DLQ_SERVICE, DLQ_SOURCE
from orderflow.runtime.logging import mask_text
from orderflow.runtime.settings import KafkaSettings

_DLQ_HEADERS = {DLQ_REASON, DLQ_ERROR, DLQ_SOURCE, DLQ_SERVICE}


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


async def replay_dlq(kafka: KafkaSettings, topic: str) -> int:
    """Republish not-yet-replayed DLQ entries to ``topic`` with their original headers; the
    consumers' inboxes make a replay of something already applied change nothing."""
    tp = TopicPartition(f"{topic}.dlq", 0)
    group = f"orderflow.dlq-replay.{topic}"
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    # a dead letter may be an oversized poison message: as large as the connectors may send
    producer = AIOKafkaProducer(**kafka.producer_kwargs(),
                                max_request_size=4 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.committed(tp)) or 0
        records = await _read_all(consumer, tp, start)
        futures = [
            await producer.send(topic, value=r.value, key=r.key,
                                headers=[(k, v) for k, v in r.headers if k not in _DLQ_HEADERS])
            for r in records
        ]
        for fut in futures:
            await fut
        if records:
            await consumer.commit({tp: records[-1].offset + 1})
        return len(records)
    finally:
        await producer.stop()
        await consumer.stop()
