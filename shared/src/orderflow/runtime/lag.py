"""Consumer-group positions and lag through the consumer API (the embedded broker's admin
OffsetFetch breaks the connection; ``AIOKafkaConsumer.committed`` works on both brokers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.runtime.settings import KafkaSettings


async def committed_offsets(kafka: KafkaSettings, group: str,
                            partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for tp in partitions:
            out[tp] = (await consumer.committed(tp)) or 0
        return out
    finally:
        await consumer.stop()


async def end_offsets(kafka: KafkaSettings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def wait_consumed(kafka: KafkaSettings, group: str, targets: Mapping[TopicPartition, int],
                        *, timeout: float = 60.0) -> None:
    """Wait until ``group`` committed at least ``targets`` (next offsets to read) everywhere.

    ``targets`` come from the producer's own delivery reports, not from the broker's high
    watermark, which the embedded broker may report late."""
    deadline = time.monotonic() + timeout
    pending = dict(targets)
    while pending:
        committed = await committed_offsets(kafka, group, list(pending))
        pending = {tp: off for tp, off in pending.items() if committed.get(tp, 0) < off}
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} has not consumed {pending} after {timeout:.0f}s")
        await asyncio.sleep(0.2)
