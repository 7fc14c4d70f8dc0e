"""Consumer groups' members, state and committed offsets, and the waits built on them.

How they are read depends on the broker, decided in ``group_reader`` from the broker profile's
``group_state_from_admin`` and nowhere else:

- Apache Kafka (``AdminGroupReader``): the admin API, every group sharing a coordinator in one
  request: one DescribeGroups for the members and state, one OffsetFetch (version 8, KIP-709)
  for the committed offsets. Both requests are built here from aiokafka's protocol classes:
  aiokafka's ``list_consumer_group_offsets`` sends one group per OffsetFetch, and its
  DescribeGroups version 3 reads the answer without each group's authorized operations, which
  garbles every group after the first. Each group's coordinator is looked up once
  (FindCoordinator, one group per request, concurrently) and again after the group answers that
  it has moved.
- Tansu (``ConsumerGroupReader``): one group per request. aiokafka's own DescribeGroups, each
  naming one group (which its misreading of the groups after the first cannot touch), and the
  committed offsets through a consumer carrying the group's id that never joins it (aiokafka's
  admin OffsetFetch breaks Tansu's connection).

End offsets come from a plain consumer on both (aiokafka's admin client has no ListOffsets).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import DescribeGroupsResponse_v3
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Array,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    String,
    TaggedFields,
)

from orderflow.connector.broker_profile import profile_of
from orderflow.runtime.settings import KafkaSettings

# a group's committed offset per partition; None: nothing committed there
Offsets = dict[TopicPartition, int | None]

# the group answers that its coordinator is elsewhere (or not ready yet): look it up again
_COORDINATOR_MOVED = {14, 15, 16}  # COORDINATOR_LOAD_IN_PROGRESS, _NOT_AVAILABLE, NOT_COORDINATOR


def members_of(responses: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """DescribeGroups answers as ``{group: {"replicas", "state", "members"}}``: one member per
    consumer, so per service process. A group the broker does not know is left out."""
    out: dict[str, dict[str, Any]] = {}
    for response in responses:
        for group in response.to_object().get("groups", []):
            if group.get("error_code") != 0 or not group.get("group"):
                continue
            members = [m.get("client_host") or m.get("member_id", "")
                       for m in group.get("members", [])]
            out[group["group"]] = {"replicas": len(members), "state": group.get("state") or None,
                                   "members": sorted(members)}
    return out


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


class GroupReader(abc.ABC):
    """Reads consumer groups' members and committed offsets; ``group_reader`` picks the kind."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "orderflow-groups") -> None:
        self.kafka = kafka
        self.client_id = client_id
        self._admin: AIOKafkaAdminClient | None = None

    async def start(self) -> GroupReader:
        self._admin = AIOKafkaAdminClient(**self.kafka.client_kwargs(), client_id=self.client_id)
        await self._admin.start()
        return self

    async def stop(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None

    async def __aenter__(self) -> GroupReader:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise RuntimeError("the group reader is not started")
        return self._admin

    @abc.abstractmethod
    async def members(self, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each group's members and state (``members_of``); raises when they cannot be read."""

    @abc.abstractmethod
    async def committed(self, wanted: Mapping[str, Sequence[TopicPartition]],
                        ) -> tuple[dict[str, Offsets], dict[str, str]]:
        """Each group's committed offsets on its partitions, and why a group's could not be
        read (one group's failure leaves the others' answers)."""


class AdminGroupReader(GroupReader):
    """Apache Kafka: every group sharing a coordinator in one DescribeGroups and one OffsetFetch."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "orderflow-groups") -> None:
        super().__init__(kafka, client_id=client_id)
        self._coordinators: dict[str, int] = {}

    async def _by_coordinator(self, groups: Iterable[str],
                              ) -> tuple[dict[int, list[str]], dict[str, str]]:
        unknown = [g for g in dict.fromkeys(groups) if g not in self._coordinators]
        found = await asyncio.gather(*(self.admin.find_coordinator(g) for g in unknown),
                                     return_exceptions=True)
        failures: dict[str, str] = {}
        for group, node in zip(unknown, found, strict=True):
            if isinstance(node, BaseException):
                failures[group] = _error(node)
            else:
                self._coordinators[group] = node
        by_node: dict[int, list[str]] = defaultdict(list)
        for group in dict.fromkeys(groups):
            if group in self._coordinators:
                by_node[self._coordinators[group]].append(group)
        return by_node, failures

    async def members(self, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
        by_node, failures = await self._by_coordinator(groups)
        if failures:
            raise RuntimeError("; ".join(f"{g}: {e}" for g, e in failures.items())[:200])
        answers = await asyncio.gather(*(
            self.admin._send_request(GroupsDescribeRequest(names), node)
            for node, names in by_node.items()))
        for response in answers:
            for group in response.to_object().get("groups", []):
                if group.get("error_code") in _COORDINATOR_MOVED:
                    self._coordinators.pop(group.get("group") or "", None)
        return members_of(answers)

    async def committed(self, wanted: Mapping[str, Sequence[TopicPartition]],
                        ) -> tuple[dict[str, Offsets], dict[str, str]]:
        by_node, failures = await self._by_coordinator(wanted)
        nodes = list(by_node)
        answers = await asyncio.gather(*(
            self.admin._send_request(GroupsOffsetFetchRequest({g: wanted[g] for g in by_node[n]}),
                                     n)
            for n in nodes), return_exceptions=True)
        out: dict[str, Offsets] = {}
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                for group in by_node[node]:
                    failures[group] = _error(answer)
                    self._coordinators.pop(group, None)
                continue
            got, failed = offsets_of(answer)
            out.update(got)
            failures.update(failed)
            for group in failed:
                self._coordinators.pop(group, None)
        for group in wanted:  # a group the answer left out has committed nothing
            if group not in out and group not in failures:
                out[group] = {}
        for group, offsets in out.items():
            for tp in wanted[group]:
                offsets.setdefault(tp, None)
        return out, failures


class ConsumerGroupReader(GroupReader):
    """Tansu: one group per DescribeGroups; committed offsets through a consumer carrying the
    group's id (kept for the next reading; it never joins the group)."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str = "orderflow-groups") -> None:
        super().__init__(kafka, client_id=client_id)
        self._consumers: dict[str, AIOKafkaConsumer] = {}

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, {}
        for consumer in consumers.values():
            with contextlib.suppress(Exception):
                await consumer.stop()
        await super().stop()

    async def members(self, groups: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for group in groups:
            out.update(members_of(await self.admin.describe_consumer_groups([group])))
        return out

    async def _consumer(self, group: str) -> AIOKafkaConsumer:
        if group not in self._consumers:
            consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), group_id=group,
                                        enable_auto_commit=False, client_id=self.client_id)
            await consumer.start()
            self._consumers[group] = consumer
        return self._consumers[group]

    async def committed(self, wanted: Mapping[str, Sequence[TopicPartition]],
                        ) -> tuple[dict[str, Offsets], dict[str, str]]:
        out: dict[str, Offsets] = {}
        failures: dict[str, str] = {}
        for group, partitions in wanted.items():
            try:
                consumer = await self._consumer(group)
                # one OffsetFetch for every partition (the public ``committed`` asks one by one)
                fetched = await consumer._coordinator.fetch_committed_offsets(list(partitions))
            except Exception as exc:  # noqa: BLE001 - one group's failure leaves the others
                failures[group] = _error(exc)
                continue
            offsets: Offsets = {tp: None for tp in partitions}
            for tp, meta in fetched.items():
                offsets[tp] = meta.offset if meta.offset >= 0 else None
            out[group] = offsets
        return out, failures


def group_reader(kafka: KafkaSettings, *, client_id: str = "orderflow-groups") -> GroupReader:
    """The reader for ``kafka``'s broker (not started): through the admin API, every group in one
    request, where the broker's profile allows it; otherwise one group at a time."""
    admin = profile_of(kafka.broker).group_state_from_admin
    return (AdminGroupReader if admin else ConsumerGroupReader)(kafka, client_id=client_id)


async def committed_offsets(kafka: KafkaSettings, group: str,
                            partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """``group``'s committed offsets (0 where it committed nothing)."""
    async with group_reader(kafka) as reader:
        got, failures = await reader.committed({group: partitions})
    if group in failures:
        raise RuntimeError(f"committed offsets of {group}: {failures[group]}")
    return {tp: off or 0 for tp, off in got[group].items()}


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
    last_error = ""
    async with group_reader(kafka) as reader:
        while pending:
            got, failures = await reader.committed({group: list(pending)})
            if group in failures:  # e.g. the coordinator moving: ask again
                last_error = failures[group]
            else:
                committed = got[group]
                pending = {tp: off for tp, off in pending.items()
                           if (committed.get(tp) or 0) < off}
                if not pending:
                    return
            if time.monotonic() > deadline:
                why = f" (last error: {last_error})" if last_error else ""
                raise TimeoutError(
                    f"group {group} has not consumed {pending} after {timeout:.0f}s{why}")
            await asyncio.sleep(0.2)


# --- DescribeGroups for several groups in one request -----------------------------------------


class _DescribeGroupsRequest_v3(RequestStruct):  # type: ignore[misc]
    # aiokafka's own v3 reads the answer as v2's, without each group's authorized operations:
    # every group after the first comes back garbled
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = Schema(("groups", Array(String("utf-8"))), ("include_authorized_operations", Boolean))


class GroupsDescribeRequest(Request[_DescribeGroupsRequest_v3]):  # type: ignore[misc]
    """One DescribeGroups for several groups."""

    API_KEY = 15

    def __init__(self, groups: Sequence[str]) -> None:
        self._groups = list(groups)

    def build(self, request_struct_class: type[_DescribeGroupsRequest_v3],
              ) -> _DescribeGroupsRequest_v3:
        return request_struct_class(self._groups, False)


# --- OffsetFetch for several groups in one request (version 8, KIP-709) --------------------------


class _OffsetFetchResponse_v8(Response):  # type: ignore[misc]
    API_KEY = 9
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("groups", CompactArray(
            ("group_id", CompactString("utf-8")),
            ("topics", CompactArray(
                ("name", CompactString("utf-8")),
                ("partitions", CompactArray(
                    ("partition_index", Int32),
                    ("committed_offset", Int64),
                    ("committed_leader_epoch", Int32),
                    ("metadata", CompactString("utf-8")),
                    ("error_code", Int16),
                    ("tags", TaggedFields),
                )),
                ("tags", TaggedFields),
            )),
            ("error_code", Int16),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequest_v8(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 8
    RESPONSE_TYPE = _OffsetFetchResponse_v8
    SCHEMA = Schema(
        ("groups", CompactArray(
            ("group_id", CompactString("utf-8")),
            ("topics", CompactArray(
                ("name", CompactString("utf-8")),
                ("partition_indexes", CompactArray(Int32)),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class GroupsOffsetFetchRequest(Request[_OffsetFetchRequest_v8]):  # type: ignore[misc]
    """One OffsetFetch for several groups, each with its own partitions."""

    API_KEY = 9

    def __init__(self, wanted: Mapping[str, Sequence[TopicPartition]]) -> None:
        self._groups: list[tuple[str, list[tuple[str, list[int], dict[int, bytes]]], dict[int, bytes]]] = []
        for group, partitions in wanted.items():
            by_topic: dict[str, list[int]] = defaultdict(list)
            for tp in partitions:
                by_topic[tp.topic].append(tp.partition)
            self._groups.append((group, [(t, sorted(p), {}) for t, p in by_topic.items()], {}))

    def build(self, request_struct_class: type[_OffsetFetchRequest_v8]) -> _OffsetFetchRequest_v8:
        return request_struct_class(self._groups, False, {})


def offsets_of(response: Any) -> tuple[dict[str, Offsets], dict[str, str]]:
    """A several-group OffsetFetch answer: each group's offsets (None where it committed
    nothing), and the groups that answered with an error."""
    out: dict[str, Offsets] = {}
    failures: dict[str, str] = {}
    for group in response.to_object()["groups"]:
        name = group["group_id"]
        errors = {group["error_code"]} | {p["error_code"] for t in group["topics"]
                                          for p in t["partitions"]}
        errors.discard(0)
        if errors:
            failures[name] = ", ".join(sorted(for_code(code).__name__ for code in errors))
            continue
        out[name] = {TopicPartition(t["name"], p["partition_index"]):
                     (p["committed_offset"] if p["committed_offset"] >= 0 else None)
                     for t in group["topics"] for p in t["partitions"]}
    return out, failures


class PartitionEnds:
    """Partitions' end offsets through one consumer (no group), started at the first read and
    kept: the outbox relay looks every few seconds whether the broker lost a topic's log."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self.kafka = kafka
        self.client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**self.kafka.client_kwargs(), client_id=self.client_id,
                                        enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        return dict(await self._consumer.end_offsets(partitions))

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
