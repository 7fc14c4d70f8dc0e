"""The topic dashboard: for every topic its end offsets and messages per second (now and over the
last hour), for every consumer group its lag and how many replicas (members) it has, every DLQ's
depth with its newest errors, and which services answer their health check.

End offsets come from a plain consumer. The groups' members and committed offsets come from the
broker's reader (``orderflow.runtime.lag.group_reader``): on Apache Kafka every group in one
DescribeGroups and one OffsetFetch through the admin API; on Tansu one group per request (committed
offsets through a consumer carrying the group's id that never joins it). On Tansu the high
watermark can trail a group's committed offset, so an end offset is raised to the highest commit
(``true_ends``). A background task samples every ``ORDERFLOW_CONSOLE_DASHBOARD_INTERVAL_S`` and
keeps an hour of samples in memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.console.exception_queue import DeadLetter, QuarantinedEvent
from orderflow.console.settings import ConsoleSettings
from orderflow.contracts.headers import DLQ_ERROR, DLQ_REASON, DLQ_SERVICE
from orderflow.contracts.topics import CATALOGUE
from orderflow.runtime.lag import GroupReader, Offsets, group_reader
from orderflow.runtime.logging import mask_text
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.settings import KafkaSettings

log = structlog.get_logger(__name__)

HOUR_S = 3600.0


@dataclass(frozen=True)
class Sample:
    at: float  # monotonic seconds
    ends: dict[str, int]  # topic -> sum of its partitions' end offsets


def rates(samples: Sequence[Sample], topic: str) -> tuple[float | None, float | None, float]:
    """Messages per second between the last two samples ("now"), and over the last hour (or the
    window available, returned as the third value, in seconds)."""
    if len(samples) < 2:
        return None, None, 0.0
    last, prev = samples[-1], samples[-2]
    dt = last.at - prev.at
    now = (last.ends.get(topic, 0) - prev.ends.get(topic, 0)) / dt if dt > 0 else None
    oldest = next((s for s in samples if last.at - s.at <= HOUR_S), samples[0])
    window = last.at - oldest.at
    hour = (last.ends.get(topic, 0) - oldest.ends.get(topic, 0)) / window if window > 0 else None
    return (max(0.0, now) if now is not None else None,
            max(0.0, hour) if hour is not None else None, window)


def group_lag(ends: dict[TopicPartition, int],
              committed: dict[TopicPartition, int | None]) -> dict[str, dict[str, int]]:
    """Per topic the group has committed on: committed offset, end offset and lag (summed over
    partitions; a partition with no commit yet counts from 0 once the group uses the topic)."""
    used = {tp.topic for tp, off in committed.items() if off is not None and off >= 0}
    out: dict[str, dict[str, int]] = {}
    for tp, end in ends.items():
        if tp.topic not in used:
            continue
        off = committed.get(tp)
        done = off if off is not None and off >= 0 else 0
        row = out.setdefault(tp.topic, {"committed": 0, "end": 0, "lag": 0})
        row["committed"] += done
        row["end"] += end
        row["lag"] += max(0, end - done)
    return out


def true_ends(ends: dict[TopicPartition, int],
              committed: Iterable[dict[TopicPartition, int | None]]) -> dict[TopicPartition, int]:
    """End offsets no lower than any group's committed offset: a commit proves the log reaches
    it, and the embedded broker's high watermark can lag the true end by up to a batch."""
    out = dict(ends)
    for offsets in committed:
        for tp, off in offsets.items():
            if off is not None and off > out.get(tp, 0):
                out[tp] = off
    return out


class TopicSampler:
    def __init__(self, kafka: KafkaSettings, settings: ConsoleSettings, *,
                 partitions: list[TopicPartition] | None = None,
                 dlq_partitions: list[TopicPartition] | None = None) -> None:
        self.kafka = kafka
        self.settings = settings
        self.samples: deque[Sample] = deque()
        self.history: dict[str, deque[float]] = {}
        # every topic's partitions and every DLQ unless told otherwise (tests)
        self.partitions = partitions if partitions is not None else [
            TopicPartition(t.name, p) for t in CATALOGUE for p in range(t.partitions)]
        self.dlq_partitions = dlq_partitions if dlq_partitions is not None else [
            TopicPartition(t.dlq, 0) for t in CATALOGUE]
        self._plain: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._groups: GroupReader | None = None
        self._dlq_cache: dict[str, tuple[int, list[DeadLetter]]] = {}
        self._dlq_read_at: dict[str, float] = {}
        self._http = httpx.AsyncClient(timeout=2.0)

    async def start(self) -> None:
        self._plain = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False,
                                       client_id="orderflow-console-dashboard")
        await self._plain.start()
        self._reader = AIOKafkaConsumer(**self.kafka.client_kwargs(), enable_auto_commit=False,
                                        client_id="orderflow-console-dlq-reader")
        await self._reader.start()
        self._groups = await group_reader(self.kafka, client_id="orderflow-console-groups").start()

    async def stop(self) -> None:
        for consumer in [self._plain, self._reader]:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
        if self._groups is not None:
            await self._groups.stop()
        await self._http.aclose()

    async def members(self, groups: list[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
        """Each group's members, or why they could not be read (the page then says so)."""
        if self._groups is None:
            return {}, "not started"
        try:
            return await self._groups.members(groups), None
        except Exception as exc:  # noqa: BLE001 - replicas are a detail: never blank the page
            return {}, f"{type(exc).__name__}: {exc}"[:200]

    async def committed(self, groups: list[str]) -> tuple[dict[str, Offsets], dict[str, str]]:
        """Each group's committed offsets on every topic, and why a group's could not be read."""
        if self._groups is None:
            return {}, {g: "not started" for g in groups}
        try:
            return await self._groups.committed({g: self.partitions for g in groups})
        except Exception as exc:  # noqa: BLE001 - the page shows the groups as unreadable
            return {}, {g: f"{type(exc).__name__}: {exc}"[:200] for g in groups}

    async def dead_letters(self, tp: TopicPartition, end: int) -> tuple[int, list[DeadLetter]]:
        """The DLQ's depth and newest entries. The high watermark may lag (embedded broker), so
        reading goes on until a poll returns nothing; re-read when it moved or every 10 s."""
        cached = self._dlq_cache.get(tp.topic)
        if cached is not None and cached[0] >= end and time.monotonic() - self._dlq_read_at.get(
                tp.topic, 0.0) < 10:
            return cached
        entries: list[DeadLetter] = []
        depth = end
        if end > 0 and self._reader is not None:
            reader = self._reader
            reader.assign([tp])
            reader.seek(tp, max(0, end - self.settings.dlq_newest))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                got = (await reader.getmany(tp, timeout_ms=300, max_records=500)).get(tp, [])
                # an empty poll ends the reading only once the known end is reached: the first
                # fetch after a seek may take longer than one poll on a loaded machine
                if not got and await reader.position(tp) >= end:
                    break
                for r in got:
                    h = {k: (v or b"").decode("utf-8", "replace") for k, v in r.headers}
                    entries.append(DeadLetter(
                        topic=tp.topic.removesuffix(".dlq"), offset=r.offset,
                        key=r.key.decode("utf-8", "replace") if r.key else None,
                        reason=h.get(DLQ_REASON), error=mask_text(h.get(DLQ_ERROR, ""))[:500],
                        service=h.get(DLQ_SERVICE), event_type=h.get("event_type"),
                        at=datetime.fromtimestamp(r.timestamp / 1000, UTC)))
                    depth = max(depth, r.offset + 1)
        newest = sorted(entries, key=lambda d: d.offset, reverse=True)[:self.settings.dlq_newest]
        self._dlq_cache[tp.topic] = (depth, newest)
        self._dlq_read_at[tp.topic] = time.monotonic()
        return depth, newest

    async def health(self, name: str, url: str) -> dict[str, Any]:
        try:
            r = await self._http.get(f"{url.rstrip('/')}/healthz")
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            return {"service": name, "url": url, "up": r.status_code == 200,
                    "checks": body.get("checks", {})}
        except (httpx.HTTPError, ValueError) as exc:
            return {"service": name, "url": url, "up": False, "error": type(exc).__name__}

    async def quarantine(self, name: str, url: str) -> list[dict[str, Any]]:
        """The outbox rows ``name``'s relay quarantined (its ``GET /outbox/quarantine``); none
        when it does not answer (its health says so)."""
        try:
            r = await self._http.get(f"{url.rstrip('/')}/outbox/quarantine")
            if r.status_code != 200:
                return []
            return [QuarantinedEvent.model_validate({**row, "service": name}).model_dump(mode="json")
                    for row in r.json().get("rows", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.debug("outbox quarantine unreadable", service=name, error=type(exc).__name__)
            return []

    async def sample(self) -> dict[str, Any]:
        assert self._plain is not None
        ends_raw = await self._plain.end_offsets(self.partitions + self.dlq_partitions)
        ends: dict[TopicPartition, int] = {tp: int(off) for tp, off in ends_raw.items()}
        committed, failures = await self.committed(self.settings.groups())
        ends = true_ends(ends, committed.values())
        per_topic: dict[str, int] = {}
        for tp in self.partitions:
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + ends.get(tp, 0)
        now = time.monotonic()
        self.samples.append(Sample(now, per_topic))
        while self.samples and now - self.samples[0].at > HOUR_S + 60:
            self.samples.popleft()

        topics = []
        for t in CATALOGUE:
            rate_now, rate_hour, window = rates(self.samples, t.name)
            hist = self.history.setdefault(t.name, deque(maxlen=60))
            if rate_now is not None:
                hist.append(round(rate_now, 2))
            topics.append({"topic": t.name, "partitions": t.partitions,
                           "end_offset": per_topic.get(t.name, 0),
                           "rate_now": rate_now, "rate_hour": rate_hour,
                           "window_s": round(window, 1), "history": list(hist)})

        groups: list[dict[str, Any]] = []
        topic_ends = {tp: ends.get(tp, 0) for tp in self.partitions}
        members, members_error = await self.members(self.settings.groups())
        for group in self.settings.groups():
            seen = members.get(group)
            who = {"replicas": seen["replicas"] if seen else (None if members_error else 0),
                   "state": seen["state"] if seen else None,
                   "members": seen["members"] if seen else []}
            if members_error:
                who["members_error"] = members_error
            if group in failures:
                groups.append({"group": group, "lag": None, "topics": [], **who,
                               "error": failures[group]})
                continue
            lag = group_lag(topic_ends, committed.get(group, {}))
            groups.append({"group": group, "lag": sum(r["lag"] for r in lag.values()), **who,
                           "topics": [{"topic": k, **v} for k, v in sorted(lag.items())]})

        dlqs = []
        for tp in self.dlq_partitions:
            depth, newest = await self.dead_letters(tp, ends.get(tp, 0))
            dlqs.append({"topic": tp.topic.removesuffix(".dlq"), "dlq": tp.topic, "depth": depth,
                         "newest": [d.model_dump(mode="json") for d in newest]})

        services = await asyncio.gather(*(self.health(name, url) for name, url
                                          in sorted(self.settings.service_urls.items())))
        if "console" not in self.settings.service_urls:  # this process answers, so it is up
            services = [{"service": "console", "url": "", "up": True, "checks": {}}, *services]
        held = await asyncio.gather(*(self.quarantine(name, url) for name, url
                                      in sorted(self.settings.service_urls.items())))
        return {"at": datetime.now(UTC).isoformat(), "interval_s": self.settings.dashboard_interval_s,
                "topics": topics, "groups": groups, "dlq": dlqs, "services": list(services),
                "outbox_quarantine": [row for rows in held for row in rows]}


def dead_letters_of(snapshot: dict[str, Any] | None) -> list[DeadLetter]:
    if not snapshot:
        return []
    return [DeadLetter.model_validate(d) for q in snapshot.get("dlq", []) for d in q["newest"]]


def quarantined_of(snapshot: dict[str, Any] | None) -> list[QuarantinedEvent]:
    if not snapshot:
        return []
    return [QuarantinedEvent.model_validate(d) for d in snapshot.get("outbox_quarantine", [])]


async def run_sampler(ctx: ServiceContext) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check is noise
    settings = ConsoleSettings()
    sampler = TopicSampler(ctx.kafka, settings)
    try:
        await sampler.start()
        while not ctx.stopping.is_set():
            try:
                ctx.state["dashboard"] = await sampler.sample()
            except Exception as exc:  # noqa: BLE001 - the broker may be away; try again next time
                log.warning("dashboard sample failed", error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stopping.wait(), settings.dashboard_interval_s)
    finally:
        await sampler.stop()
