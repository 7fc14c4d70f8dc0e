"""The consumer-group readers without a broker: which one each broker gets, and the
several-group requests built from aiokafka's protocol classes, encoded and decoded as on the
wire (the live readings are in services/console/tests/test_dashboard_groups.py)."""

from __future__ import annotations

import io

import pytest
from aiokafka import TopicPartition

from orderflow.runtime.lag import (
    AdminGroupReader,
    ConsumerGroupReader,
    GroupsDescribeRequest,
    GroupsOffsetFetchRequest,
    group_reader,
    members_of,
    offsets_of,
)
from orderflow.runtime.settings import KafkaSettings

pytestmark = pytest.mark.unit

VERSIONS = {9: (1, 9), 15: (0, 5)}  # what Apache Kafka 4.1 answers to ApiVersions, in part


def test_the_broker_kind_chooses_the_reader() -> None:
    assert type(group_reader(KafkaSettings(broker="kafka"))) is AdminGroupReader
    assert type(group_reader(KafkaSettings(broker="tansu"))) is ConsumerGroupReader


def test_one_offset_fetch_carries_every_group_and_reads_each_answer() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    struct = GroupsOffsetFetchRequest({"g1": [b, a], "g2": [TopicPartition("u", 0)]}).prepare(
        VERSIONS)
    assert (struct.API_VERSION, struct.FLEXIBLE_VERSION) == (8, True)
    sent = struct.SCHEMA.decode(io.BytesIO(struct.encode()))
    assert sent[0] == [("g1", [("t", [0, 1], {})], {}), ("g2", [("u", [0], {})], {})]
    answer = struct.RESPONSE_TYPE(0, [
        ("g1", [("t", [(0, 7, -1, "", 0, {}), (1, -1, -1, None, 0, {})], {})], 0, {}),
        ("g2", [("u", [(0, 3, -1, "", 0, {})], {})], 16, {}),  # NOT_COORDINATOR
        ("g3", [("t", [(0, 1, -1, "", 29, {})], {})], 0, {}),  # TOPIC_AUTHORIZATION_FAILED
    ], {})
    decoded = struct.RESPONSE_TYPE.decode(io.BytesIO(answer.encode()))
    offsets, failures = offsets_of(decoded)
    assert offsets == {"g1": {a: 7, b: None}}
    assert failures == {"g2": "NotCoordinatorForGroupError",
                        "g3": "TopicAuthorizationFailedError"}


def test_one_describe_groups_reads_every_group_of_the_answer() -> None:
    struct = GroupsDescribeRequest(["g1", "g2"]).prepare(VERSIONS)
    assert struct.API_VERSION == 3
    member = ("m-1", "c", "/10.0.0.2", b"", b"")
    answer = struct.RESPONSE_TYPE(0, [
        (0, "g1", "Stable", "consumer", "range", [member, ("m-2", "c", "/10.0.0.3", b"", b"")],
         -2147483648),
        (0, "g2", "Empty", "consumer", "", [], -2147483648)])
    decoded = struct.RESPONSE_TYPE.decode(io.BytesIO(answer.encode()))
    assert members_of([decoded]) == {
        "g1": {"replicas": 2, "state": "Stable", "members": ["/10.0.0.2", "/10.0.0.3"]},
        "g2": {"replicas": 0, "state": "Empty", "members": []}}
