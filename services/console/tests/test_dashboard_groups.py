"""The dashboard's consumer groups against the real broker (Apache Kafka unless
``ORDERFLOW_TEST_BROKER=tansu``): each group's members and lag, read the broker's way (on Kafka
every group in one DescribeGroups and one OffsetFetch)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.console.dashboard import TopicSampler
from orderflow.console.settings import ConsoleSettings
from orderflow.runtime.lag import AdminGroupReader, ConsumerGroupReader
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings

pytestmark = pytest.mark.service


def _member(kafka: KafkaSettings, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, **kafka.client_kwargs(), group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            session_timeout_ms=kafka.session_timeout_ms,
                            heartbeat_interval_ms=kafka.heartbeat_interval_ms)


async def _assigned(consumers: list[AIOKafkaConsumer], partitions: int, timeout: float = 60) -> None:
    """Until the group's members share every partition (one rebalance settled)."""
    deadline = time.monotonic() + timeout
    while True:
        owned = [tp for c in consumers for tp in c.assignment()]
        if len(owned) == partitions == len(set(owned)) and all(c.assignment() for c in consumers):
            return
        assert time.monotonic() < deadline, f"no settled assignment after {timeout}s: {owned}"
        await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))


async def test_the_dashboard_reads_every_groups_members_and_lag(kafka: KafkaSettings) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"test.dashboard.{run}"
    await create_topics(kafka, [(topic, 2)])
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await producer.start()
    try:
        for i in range(10):  # five records on each partition
            await producer.send_and_wait(topic, b"x", partition=i % 2)
    finally:
        await producer.stop()

    two, one, gone, never = (f"test.dashboard.{run}.{n}" for n in ("two", "one", "gone", "never"))
    # "gone" committed offset 5 on partition 0 only, then left: no member, lag 5 (partition 1
    # counts from 0)
    leaver = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=gone, enable_auto_commit=False)
    await leaver.start()
    try:
        leaver.assign(tps)
        await leaver.commit({tps[0]: 5})
    finally:
        await leaver.stop()

    members = [_member(kafka, topic, two), _member(kafka, topic, two), _member(kafka, topic, one)]
    sampler = TopicSampler(kafka, ConsoleSettings(service_urls={},
                                                  consumer_groups=[two, one, gone, never]),
                           partitions=tps, dlq_partitions=[])
    try:
        for m in members:
            await m.start()
        await asyncio.gather(_assigned(members[:2], 2), _assigned(members[2:], 2))
        # "two": each member commits 2 on its partition (lag 3 + 3); "one": everything (lag 0)
        for m in members[:2]:
            await m.commit({tp: 2 for tp in m.assignment()})
        await members[2].commit({tp: 5 for tp in tps})

        await sampler.start()
        reader = sampler._groups
        assert isinstance(reader, AdminGroupReader if kafka.broker == "kafka"
                          else ConsumerGroupReader)
        requests: Counter[str] = Counter()
        send = reader.admin._send_request

        async def counted(request: Any, node_id: int | None = None) -> Any:
            requests[type(request).__name__] += 1
            return await send(request, node_id)
        reader.admin._send_request = counted

        await sampler.sample()  # the first looks the coordinators up
        requests.clear()
        snap = await sampler.sample()
    finally:
        for m in members:
            await m.stop()
        await sampler.stop()

    groups = {g["group"]: g for g in snap["groups"]}
    assert all("error" not in g and "members_error" not in g for g in groups.values()), groups
    assert (groups[two]["replicas"], groups[two]["state"]) == (2, "Stable")
    assert (groups[one]["replicas"], groups[one]["state"]) == (1, "Stable")
    assert groups[gone]["replicas"] == 0 and groups[never]["replicas"] == 0
    assert groups[two]["lag"] == 6 and groups[two]["topics"] == [
        {"topic": topic, "committed": 4, "end": 10, "lag": 6}]
    assert groups[one]["lag"] == 0 and groups[one]["topics"] == [
        {"topic": topic, "committed": 10, "end": 10, "lag": 0}]
    assert groups[gone]["lag"] == 5 and groups[gone]["topics"] == [
        {"topic": topic, "committed": 5, "end": 10, "lag": 5}]
    assert groups[never]["lag"] == 0 and groups[never]["topics"] == []
    if kafka.broker == "kafka":  # the four groups in one request each (one coordinator here)
        assert requests == {"GroupsDescribeRequest": 1, "GroupsOffsetFetchRequest": 1}, requests
    else:  # one group per DescribeGroups; offsets through the groups' own consumers
        assert requests["DescribeGroupsRequest"] == 4, requests
