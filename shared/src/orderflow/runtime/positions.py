"""Positions a partition no longer has: when the broker lost its data.

A broker that loses a partition's log (Tansu restarted: it keeps everything in memory; a topic
deleted and created again; a cluster rebuilt) leaves every group's committed position, and every
consumer's fetch position, beyond the partition's new end. Apache Kafka answers a fetch there
with OFFSET_OUT_OF_RANGE and the consumer starts again from the earliest offset; Tansu answers
with nothing, so the consumer waits for offsets that will not come for a long time, and the
orders written since are stranded.

``PositionGuard`` makes both behave the same, and the way Kafka does:

- on assignment, a committed position beyond the partition's end is out of range: the consumer
  reads the partition again from its start;
- every few seconds, a partition whose position stands beyond its end (and has not moved since the
  last look) is read again from its start;
- a batch fetched before such a reset commits nothing on that partition (``may_commit``), so no
  commit lands beyond the high watermark.

"Beyond its end" is exact where the broker's end offsets are (Apache Kafka's high watermark).
Tansu reports the first offset of a partition's last record batch plus one, so a position up to a
batch beyond that is normal there; on such a broker (its profile says so) a position counts as
beyond the end only when the partition's end went down since the guard last saw it: the log was
lost. The guard remembers the ends it saw for the life of the process.

Reading a partition again is harmless: the inbox skips every event already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

log = structlog.get_logger(__name__)


class PositionGuard(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: Callable[[], Any], *, service: str,
                 interval_s: float = 5.0, exact_end_offsets: bool = True) -> None:
        self._consumer = consumer
        self.service = service
        self.interval_s = interval_s
        self.exact_end_offsets = exact_end_offsets
        self.reset_at: dict[TopicPartition, float] = {}
        self._last_seen: dict[TopicPartition, int] = {}
        self._highest_end: dict[TopicPartition, int] = {}

    def _beyond(self, tp: TopicPartition, position: int, end: int) -> bool:
        """Whether ``position`` lies beyond the partition's end (see the module's docstring)."""
        highest = self._highest_end.get(tp, end)
        self._highest_end[tp] = max(highest, end)
        if position <= end:
            return False
        return self.exact_end_offsets or end < highest

    # -- the rebalance listener -------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._last_seen.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = list(assigned)
        consumer = self._consumer()
        if not partitions or consumer is None:
            return
        try:
            ends = await consumer.end_offsets(partitions)
            beyond = []
            for tp in partitions:
                committed = await consumer.committed(tp)
                end = ends.get(tp)
                if committed is not None and end is not None and self._beyond(tp, committed, end):
                    beyond.append((tp, committed, end))
        except KafkaError as exc:  # the periodic check looks again
            log.warning("positions could not be checked on assignment", error=str(exc)[:300])
            return
        for tp, committed, end in beyond:
            await self._reset(consumer, tp, position=committed, end=end, why="committed position")

    # -- the periodic check -----------------------------------------------------------------------
    async def check(self) -> int:
        """Reset every assigned partition whose fetch position stands beyond its end and has not
        moved since the last check; the number reset."""
        consumer = self._consumer()
        if consumer is None:
            return 0
        assigned = list(consumer.assignment())
        if not assigned:
            return 0
        ends = await consumer.end_offsets(assigned)
        reset = 0
        for tp in assigned:
            try:
                position = await consumer.position(tp)
            except (IllegalStateError, KafkaError):
                continue
            end = ends.get(tp)
            still = self._last_seen.get(tp) == position
            self._last_seen[tp] = position
            if end is not None and self._beyond(tp, position, end) and still:
                await self._reset(consumer, tp, position=position, end=end, why="fetch position")
                reset += 1
        return reset

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            await asyncio.sleep(self.interval_s)
            with contextlib.suppress(KafkaError, IllegalStateError, asyncio.TimeoutError):
                await self.check()

    async def _reset(self, consumer: Any, tp: TopicPartition, *, position: int, end: int,
                     why: str) -> None:
        with contextlib.suppress(IllegalStateError):  # no longer assigned: its owner checks
            await consumer.seek_to_beginning(tp)
            self.reset_at[tp] = time.monotonic()
            self._last_seen.pop(tp, None)
            self._highest_end[tp] = end  # the partition's new log
            log.warning("the partition's position is beyond its end (the broker lost its data?): "
                        "reading it again from its start; the inbox skips what was applied",
                        service=self.service, topic=tp.topic, partition=tp.partition,
                        position=position, end=end, found_by=why)

    def may_commit(self, tp: TopicPartition, fetched_at: float) -> bool:
        """False for a partition reset after the batch holding ``tp``'s records was fetched."""
        reset = self.reset_at.get(tp)
        return reset is None or reset < fetched_at
