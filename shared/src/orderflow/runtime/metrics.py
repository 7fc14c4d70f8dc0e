"""Prometheus metrics, with the same names in every service (label ``service``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from orderflow.runtime.unit_of_work import IncomingEvent

MESSAGES_CONSUMED = Counter(
    "orderflow_messages_consumed_total",
    "Messages consumed, by outcome (applied, duplicate, dead_lettered)",
    ["service", "topic", "outcome"],
)
BATCH_SECONDS = Histogram(
    "orderflow_batch_seconds",
    "Time to apply one consumed batch, transaction and commit included",
    ["service", "topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_PUBLISHED = Counter(
    "orderflow_events_published_total", "Events the outbox relay published", ["service", "topic"]
)
OUTBOX_BACKLOG = Gauge(
    "orderflow_outbox_backlog",
    "Outbox rows waiting to be published, quarantined ones left out (reported by the replica "
    "whose relay leads: exact when a pass finds less than a batch, else counted at most every "
    "few seconds)",
    ["service"],
)
DEAD_LETTERS = Counter(
    "orderflow_dead_letters_total", "Messages sent to a DLQ, by reason", ["service", "topic", "reason"]
)
BATCH_FAILURES = Counter(
    "orderflow_batch_failures_total",
    "Consumed batches that could not be applied and were rewound to be delivered again (the "
    "partition stalls until they apply: alert on any increase)",
    ["service", "topic"],
)
PUBLISH_REFUSED = Counter(
    "orderflow_outbox_publish_refused_total",
    "Outbox rows the broker refused to take (e.g. TopicAuthorizationFailedError: the service may "
    "not write the topic); the row stays unpublished: quarantined if the refusal is for good "
    "(orderflow_outbox_quarantined_total), else the relay stops behind it until it is fixed: "
    "alert on any increase",
    ["service", "topic", "error"],
)
OUTBOX_REPUBLISHED = Counter(
    "orderflow_outbox_republished",
    "Outbox rows published again because the broker lost the log of their topic (a partition's "
    "end went down); consumers skip the events they had applied",
    ["service"],
)
OUTBOX_QUARANTINED = Counter(
    "orderflow_outbox_quarantined",
    "Outbox rows the broker refused for good (too large, invalid topic, not authorised), by the "
    "broker's error: kept in the outbox unpublished, shown in the console's exception queue; "
    "the rows behind them flow on",
    ["service", "topic", "reason"],
)
OUTBOX_QUARANTINE = Gauge(
    "orderflow_outbox_quarantine_rows",
    "Outbox rows quarantined and not released (at the relay's last count)", ["service"]
)
TRANSIENT_RETRIES = Counter(
    "orderflow_transient_retries_total", "Transient faults retried", ["service", "what"]
)
EVENT_AGE = Histogram(
    "orderflow_event_age_seconds",
    "From an event's occurred_at (its producer staged it) to the commit of the batch that applied "
    "it: one hop's latency (outbox, broker, waiting, handling); the main line's hops "
    "(order.inbound at intake, order.received at review, order.approved at inventory, "
    "stock.reserved at logistics) add up to the latency from push to dispatch",
    ["service", "topic"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
# business facts, each counted by the service that decides it, once its transaction committed
ORDERS_ALLOCATED = Counter(
    "orderflow_orders_allocated_total",
    "Orders inventory allocated at their first attempt, by outcome: filled (every line reserved "
    "in full: the fill rate) or backordered",
    ["service", "outcome"],
)
SHIPMENTS_DELIVERED = Counter(
    "orderflow_shipments_delivered_total",
    "Shipments delivered, by whether they arrived by their promised date (on_time: true or "
    "false: the on-time rate)",
    ["service", "on_time"],
)


def observe_event_ages(service: str, applied: Iterable[IncomingEvent[Any]]) -> None:
    """``EVENT_AGE`` of events just applied (their batch committed)."""
    now = time.time()
    children: dict[str, Any] = {}  # a batch is mostly of one topic: one label lookup
    for event in applied:
        child = children.get(event.topic)
        if child is None:
            child = children[event.topic] = EVENT_AGE.labels(service, event.topic)
        child.observe(max(0.0, now - event.headers.occurred_at.timestamp()))
