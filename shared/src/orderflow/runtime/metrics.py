"""Prometheus metrics, with the same names in every service (label ``service``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
