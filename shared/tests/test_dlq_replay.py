"""``orderflow dlq replay`` republishes what it finds, however large: a dead letter may be an
oversized poison message, as large as a topic takes (over the consumers' own limit, so it was
dead-lettered with reason ``payload_too_large``)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.runtime.dlq import replay_dlq
from orderflow.runtime.service import create_topics
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


async def test_a_dead_letter_as_large_as_a_topic_takes_is_replayed(pipeline: Pipeline) -> None:
    topic = f"test.replay-{uuid.uuid4().hex[:8]}"  # nobody consumes it: only the replay writes
    await create_topics(pipeline.kafka, [(topic, 1), (f"{topic}.dlq", 1)])
    big = b"\x00" * 1_040_000  # over the consumers' 1,000,000 bytes, under the topics' 1 MiB
    producer = AIOKafkaProducer(**pipeline.kafka.client_kwargs(), acks="all",
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(f"{topic}.dlq", big, key=b"k",
                                     headers=[("dlq_reason", b"payload_too_large"),
                                              ("event_id", b"e-1")])
    finally:
        await producer.stop()

    assert await replay_dlq(pipeline.kafka, topic) == 1
    assert await replay_dlq(pipeline.kafka, topic) == 0  # replayed once, not again

    reader = AIOKafkaConsumer(**pipeline.kafka.client_kwargs(), enable_auto_commit=False,
                              fetch_max_bytes=8 * 1024 * 1024,
                              max_partition_fetch_bytes=8 * 1024 * 1024)
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        reader.seek(tp, 0)
        got = await reader.getone()
    finally:
        await reader.stop()
    assert got.value == big
    assert dict(got.headers) == {"event_id": b"e-1"}  # the DLQ's own headers are dropped
