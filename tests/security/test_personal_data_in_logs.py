"""Personal data never reaches a log line: orders from every channel (good and bad ones, so
rejections and their reasons are logged too) are pushed through every running service, and then
every service's log of the whole run is searched for the e-mails and phones of every customer."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from orderflow.connector import OrderPusher
from orderflow.devstack.catalogue import customers
from orderflow.devstack.simulator import Mix, generate_orders
from orderflow.devstack.tracking import Tracker
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.e2e


def personal_data() -> dict[str, str]:
    """Every e-mail and phone of the demo customers (the orders carry them), as they would be
    written: the phone also without separators; and the street of their delivery address
    (master data's ``customer.updated``, which the services consume)."""
    found: dict[str, str] = {}
    for c in customers().values():
        found[c.email] = f"{c.customer_id} e-mail"
        found[c.phone] = f"{c.customer_id} phone"
        found[re.sub(r"\D", "", c.phone)] = f"{c.customer_id} phone digits"
        if c.delivery_address is not None:  # as written, and as a JSON log line escapes it
            found[c.delivery_address.line1] = f"{c.customer_id} street"
            found[json.dumps(c.delivery_address.line1)[1:-1]] = f"{c.customer_id} street (JSON)"
    return found


async def test_no_log_line_of_a_full_run_holds_an_email_or_a_phone(
        pipeline: Pipeline, events: EventLog) -> None:
    orders = generate_orders(40, seed=uuid.uuid4().int % 10_000, prefix=f"PII{uuid.uuid4().hex[:6]}",
                             mix=Mix(bad=0.25, duplicate=0.1, rush=0.2, large=0.1))
    ids = {o.order_id for o in orders}
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many([o.submission() for o in orders])
    tracker = Tracker()

    def settled() -> bool:
        tracker.feed_new(events.events)
        return all(tracker.settled(o) for o in ids)

    await events.wait_for(settled, timeout=180, what="every pushed order settled")
    if "notify" in pipeline.services:  # the last service to write about an order
        await events.wait_for(lambda: any(e.key in ids for e in events.of("notification.recorded")),
                              timeout=60, what="notify's records")
    leaks: list[str] = []
    lines = 0
    for sp in pipeline.stack.processes:
        text = pipeline.log_text(sp.label)
        lines += text.count("\n")
        for value, what in personal_data().items():
            if value and value in text:
                line = next(ln for ln in text.splitlines() if value in ln)
                leaks.append(f"{sp.label}: {what}: {line[:300]}")
    assert lines > len(pipeline.stack.processes) * 5, "the services' logs were not captured"
    assert not leaks, "\n".join(leaks[:20])
