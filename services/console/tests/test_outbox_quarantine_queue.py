"""The exception queue shows the outbox rows the services' relays quarantined, read from each
service's ``GET /outbox/quarantine`` (stand-in services here: no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from orderflow.console import exception_queue
from orderflow.console.dashboard import TopicSampler, quarantined_of
from orderflow.console.settings import DEFAULT_SLA_MINUTES, ConsoleSettings
from orderflow.runtime.settings import KafkaSettings

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
REASON = ("MessageSizeTooLargeError: [Error 10] MessageSizeTooLargeError: The message is 3145834 "
          "bytes when serialized which is larger than the maximum request size")


def _services(request: httpx.Request) -> httpx.Response:
    if request.url.host == "inventory" and request.url.path == "/outbox/quarantine":
        return httpx.Response(200, json={"service": "inventory", "rows": [{
            "id": 42, "topic": "inventory.reserved", "key": "order-7", "reason": REASON,
            "staged_at": T0.isoformat(), "quarantined_at": (T0 + timedelta(seconds=1)).isoformat(),
            "size": 3 * 1024 * 1024}]})
    if request.url.host == "intake":
        return httpx.Response(200, json={"service": "intake", "rows": []})
    if request.url.host == "review":  # an older service without the route
        return httpx.Response(404, json={"detail": "Not Found"})
    raise httpx.ConnectError("refused", request=request)  # logistics is down


async def test_the_exception_queue_shows_a_quarantined_outbox_row_with_the_brokers_reason() -> None:
    urls = {"intake": "http://intake", "review": "http://review",
            "inventory": "http://inventory/", "logistics": "http://logistics"}
    sampler = TopicSampler(KafkaSettings(), ConsoleSettings(service_urls=urls),
                           partitions=[], dlq_partitions=[])
    await sampler._http.aclose()
    sampler._http = httpx.AsyncClient(transport=httpx.MockTransport(_services))
    try:
        rows = [row for name, url in sorted(urls.items())
                for row in await sampler.quarantine(name, url)]
    finally:
        await sampler._http.aclose()
    assert [(r["service"], r["id"]) for r in rows] == [("inventory", 42)]

    held = quarantined_of({"outbox_quarantine": rows})  # as the snapshot keeps them
    now = T0 + timedelta(minutes=45)
    items = exception_queue.queue([], [], now, DEFAULT_SLA_MINUTES, quarantined=held)
    assert len(items) == 1
    item = items[0]
    assert item.kind == "outbox" and item.order_id is None
    assert item.reason == f"inventory could not publish to inventory.reserved: {REASON}"
    assert item.reason_codes == ["MessageSizeTooLargeError"]
    assert item.details == {"service": "inventory", "outbox_id": 42, "topic": "inventory.reserved",
                            "key": "order-7", "size": 3 * 1024 * 1024,
                            "staged_at": T0.isoformat()}
    assert item.breached is True  # 45 minutes past its 30
    assert exception_queue.counts(items)["outbox"] == {"open": 1, "breached": 1}
    assert exception_queue.queue([], [], now, DEFAULT_SLA_MINUTES, quarantined=held,
                                 kind="outbox", reason="MessageSizeTooLargeError") == items
    assert exception_queue.queue([], [], now, DEFAULT_SLA_MINUTES, quarantined=held,
                                 kind="dlq") == []
    assert quarantined_of(None) == [] and quarantined_of({"dlq": []}) == []
