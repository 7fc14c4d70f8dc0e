"""Push orders onto ``order.inbound`` as a connector: keyed ``<channel>:<external id>``, wrapped in
the ``OrderSubmitted`` envelope (with the order's store: ``store_of``) with OrderFlow's headers,
batched, and confirmed by the broker (``acks=all``) before ``push`` returns; transient broker
faults are retried with backoff."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer

from orderflow.channels import channel as channel_of
from orderflow.connector.broker import BrokerConnection
from orderflow.connector.broker_auth import check_broker_credentials
from orderflow.connector.retry import retry_transient
from orderflow.contracts.events import Event, OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import valid_store
from orderflow.contracts.topics import ORDER_INBOUND, TOPIC_OF_EVENT

#: where an order's id is in a channel no installed channel describes
DEFAULT_EXTERNAL_ID_FIELDS = ("external_id", "id", "order_id")


def _unwrapped(channel: str, payload: Any) -> Any:
    """The order, out of the objects its channel's format may wrap it in
    (``Channel.order_wrappers``: Douyin's order-detail response keeps it in
    ``data.shop_order_detail``)."""
    found = channel_of(channel)
    for name in found.order_wrappers if found is not None else ():
        if isinstance(payload, Mapping) and isinstance(payload.get(name), Mapping):
            payload = payload[name]
    return payload


def external_id_of(channel: str, payload: Any) -> str:
    """The order's id in its channel, read where that channel's format keeps it."""
    payload = _unwrapped(channel, payload)
    found = channel_of(channel)
    fields = found.external_id_fields if found is not None else DEFAULT_EXTERNAL_ID_FIELDS
    if isinstance(payload, Mapping):
        for name in fields:
            value = payload.get(name)
            if value not in (None, ""):
                return str(value)
    if isinstance(payload, list) and payload and isinstance(payload[0], Mapping):
        return external_id_of(channel, payload[0])
    raise ValueError(f"a {channel} order without an id (none of {', '.join(fields)})")


class BrokerUnreachable(ConnectionError):
    """No bootstrap broker accepted a connection within the wait (``wait_for_broker``)."""

    def __init__(self, bootstrap_servers: str, within: float) -> None:
        super().__init__(f"no Kafka broker answered at {bootstrap_servers} within {within:g} s")
        self.bootstrap_servers = bootstrap_servers
        self.within = within


async def wait_for_broker(kafka: BrokerConnection, within: float) -> None:
    """Return once one of ``kafka``'s bootstrap brokers accepts a TCP connection; raise
    ``BrokerUnreachable`` after ``within`` seconds of trying. A quiet check for interactive
    tools, before a client that would retry (and log every retry) much longer."""
    from aiokafka.conn import collect_hosts

    hosts = [(host, port) for host, port, _family in collect_hosts(kafka.bootstrap_servers)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        for host, port in hosts:
            left = deadline - loop.time()
            try:
                _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                         timeout=max(0.1, min(left, 2.0)))
            except (OSError, TimeoutError):
                continue
            writer.close()
            return
        if loop.time() >= deadline:
            raise BrokerUnreachable(kafka.bootstrap_servers, within)
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))


class StoreRefused(ValueError):
    """A push whose store cannot be told: ``code`` is ``store_missing`` (a marketplace order
    without one) or ``store_mismatch`` (the push and its payload name different stores)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def store_in(channel: str, payload: Any) -> str | None:
    """The store a channel's payload names, if its format has one (``Channel.store_fields``:
    Douyin's ``shop_id``)."""
    payload = _unwrapped(channel, payload)
    found = channel_of(channel)
    if not isinstance(payload, Mapping) or found is None:
        return None
    for name in found.store_fields:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int | str):
            continue
        text = str(value).strip()
        if text:
            return text
    return None


def store_of(channel: str, payload: Any, store: str | None = None) -> str | None:
    """The store of a push of ``payload``: ``store`` (the connector's, the webhook's shop) or,
    without one, the one the payload names (Douyin's ``shop_id``); both given, they must agree
    (``store_mismatch``). A marketplace channel's push without either is ``store_missing``;
    any other channel's is None (its orders have no store). A marketplace channel is one whose
    ``Channel.per_store`` says so. Raises ``StoreRefused``."""
    named = store_in(channel, payload)
    if store is not None and named is not None and named != store:
        raise StoreRefused("store_mismatch", f"the push names store {store!r}, its {channel} "
                                             f"order store {named!r}")
    found = store if store is not None else named
    if found is None:
        found_channel = channel_of(channel)
        if found_channel is not None and found_channel.per_store:
            where = f" (nor does its payload's {'/'.join(found_channel.store_fields)})" \
                if found_channel.store_fields else ""
            raise StoreRefused("store_missing", f"a {channel} order is only known by its store, "
                                                f"and the push names none{where}")
        return None
    if not valid_store(found):
        raise StoreRefused("store_invalid", f"{found[:140]!r} cannot name a store (1 to 128 "
                                            "characters, no colon, no blanks)")
    return found


@dataclass(frozen=True)
class PushResult:
    channel: str
    external_id: str
    partition: int
    offset: int
    store: str | None = None


# a push: (channel, external id, payload), or with the order's store as a fourth item
Submission = tuple[str, str, Any] | tuple[str, str, Any, str | None]


def _from_environment() -> BrokerConnection:
    try:
        from orderflow.connector.settings import ConnectorSettings
    except ImportError as exc:  # pydantic-settings is the [settings] extra
        raise TypeError("OrderPusher() reads the broker from ORDERFLOW_KAFKA_* with "
                        "orderflow-connector[settings] installed; without it, pass a "
                        "BrokerConnection") from exc
    return ConnectorSettings()


class OrderPusher:
    def __init__(self, kafka: BrokerConnection | None = None, *, client_id: str = "orderflow-connector",
                 producer_name: str = "connector", connect_within: float | None = None) -> None:
        """``kafka``: the broker to push to; None reads it from the environment
        (``ORDERFLOW_KAFKA_*``: ``ConnectorSettings``, the ``[settings]`` extra).
        ``connect_within``: give up with ``BrokerUnreachable`` when no broker accepts a
        connection within that many seconds (an interactive tool's wait); None retries as a
        service does."""
        self.kafka = kafka or _from_environment()
        self.producer_name = producer_name
        self.connect_within = connect_within
        self._client_id = client_id
        self._producer = AIOKafkaProducer(
            **self.kafka.producer_kwargs(), client_id=client_id, linger_ms=5, max_batch_size=512 * 1024,
            # what a topic takes (contracts.topics): a larger order is refused here, at once
            max_request_size=1024 * 1024, request_timeout_ms=30_000,
        )

    async def __aenter__(self) -> OrderPusher:
        if self.connect_within is not None:
            try:
                await wait_for_broker(self.kafka, self.connect_within)
            except BrokerUnreachable:
                await self._producer.stop()  # built, never started: closed all the same
                raise
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

    async def push_many(self, orders: Iterable[Submission]) -> list[PushResult]:
        """Push ``(channel, external_id, payload)`` or ``(channel, external_id, payload, store)``
        tuples; returns once all are confirmed. Every order's store is told first (``store_of``):
        a marketplace order without one raises ``StoreRefused`` and nothing is pushed."""
        now = datetime.now(UTC)
        envelopes = []
        for order in orders:
            channel, external_id, payload = order[0], order[1], order[2]
            store = store_of(channel, payload, order[3] if len(order) == 4 else None)
            envelopes.append(OrderSubmitted(channel=channel, external_id=external_id,
                                            store=store, received_at=now, payload=payload))
        metadata = await self.publish(envelopes)
        return [PushResult(env.channel, env.external_id, md.partition, md.offset, env.store)
                for env, md in zip(envelopes, metadata, strict=True)]

    async def push(self, channel: str, payload: Any, external_id: str | None = None, *,
                   store: str | None = None) -> PushResult:
        """Push one order; ``store`` is the shop it came from (required for the marketplace
        channels unless the payload names it: ``store_of``)."""
        eid = external_id or external_id_of(channel, payload)
        return (await self.push_many([(channel, eid, payload, store)]))[0]


__all__ = ["ORDER_INBOUND", "BrokerUnreachable", "OrderPusher", "PushResult",
           "StoreRefused", "Submission", "external_id_of", "store_in", "store_of", "wait_for_broker"]
