"""Push orders onto ``order.inbound`` as a connector: keyed ``<channel>:<external id>``, wrapped in
the ``OrderSubmitted`` envelope with OrderFlow's headers, batched, and confirmed by the broker
(``acks=all``) before ``push`` returns; transient broker faults are retried with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from orderflow.contracts.events import Event, OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.topics import ORDER_INBOUND, TOPIC_OF_EVENT
from orderflow.runtime.broker_auth import check_broker_credentials
from orderflow.runtime.retry import retry_transient
from orderflow.runtime.settings import KafkaSettings

EXTERNAL_ID_FIELDS: Mapping[str, tuple[str, ...]] = {
    "canonical": ("external_id",),
    "shopify": ("id", "order_number", "name"),
    "douyin": ("order_id", "shop_order_id"),
    "csv": ("order_number",),
    "xlsx": ("order_number",),
}


def external_id_of(channel: str, payload: Any) -> str:
    """The order's id in its channel, read where that channel's format keeps it."""
    if isinstance(payload, Mapping):
        for name in EXTERNAL_ID_FIELDS.get(channel, ("external_id", "id", "order_id")):
            value = payload.get(name)
            if value not in (None, ""):
                return str(value)
    if isinstance(payload, list) and payload and isinstance(payload[0], Mapping):
        return external_id_of(channel, payload[0])
    raise ValueError(f"cannot find the external id of a {channel} order")


@dataclass(frozen=True)
class PushResult:
    channel: str
    external_id: str
    partition: int
    offset: int


class OrderPusher:
    def __init__(self, kafka: KafkaSettings | None = None, *, client_id: str = "orderflow-connector",
                 producer_name: str = "connector") -> None:
        self.kafka = kafka or KafkaSettings()
        self.producer_name = producer_name
        self._client_id = client_id
        self._producer = AIOKafkaProducer(
            **self.kafka.producer_kwargs(), client_id=client_id, linger_ms=5, max_batch_size=512 * 1024,
            # what a topic takes (contracts.topics): a larger order is refused here, at once
            max_request_size=1024 * 1024, request_timeout_ms=30_000,
        )

    async def __aenter__(self) -> OrderPusher:
        # credentials the broker refuses fail at once (BrokerAuthenticationFailed), not retried
        await retry_transient(lambda: check_broker_credentials(self.kafka, client_id=self._client_id),
                              what="authenticate to the broker", max_attempts=10)
        await retry_transient(self._producer.start, what="connect to the broker", max_attempts=10)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._producer.stop()

    async def _send(self, topic: str, key: str, value: bytes,
                    headers: list[tuple[str, bytes]]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=key.encode(),
                                                             headers=headers)
        return fut

    async def publish(self, events: Iterable[Event]) -> list[Any]:
        """Publish events (master data, finance, carrier updates) with OrderFlow's headers and
        wait until the broker confirmed every one."""
        async def attempt(batch: list[Event]) -> list[Any]:
            futures = []
            for event in batch:
                key = event.key()
                headers = EventHeaders.new(event_type=event.EVENT_TYPE,
                                           schema_version=event.SCHEMA_VERSION,
                                           producer=self.producer_name, correlation_id=key)
                futures.append(await self._send(TOPIC_OF_EVENT[type(event)].name, key,
                                                event.model_dump_json().encode(),
                                                headers.to_kafka()))
            return list(await asyncio.gather(*futures))

        batch = list(events)
        return await retry_transient(lambda: attempt(batch), what="publish", max_attempts=8)

    async def push_many(self, orders: Iterable[tuple[str, str, Any]]) -> list[PushResult]:
        """Push ``(channel, external_id, payload)`` triples; returns once all are confirmed."""
        now = datetime.now(UTC)
        envelopes = [OrderSubmitted(channel=c, external_id=e, received_at=now, payload=p)
                     for c, e, p in orders]
        metadata = await self.publish(envelopes)
        return [PushResult(env.channel, env.external_id, md.partition, md.offset)
                for env, md in zip(envelopes, metadata, strict=True)]

    async def push(self, channel: str, payload: Any, external_id: str | None = None) -> PushResult:
        eid = external_id or external_id_of(channel, payload)
        return (await self.push_many([(channel, eid, payload)]))[0]


__all__ = ["ORDER_INBOUND", "OrderPusher", "PushResult", "external_id_of"]
