"""What differs between the brokers OrderFlow runs on, decided here and nowhere else.

Apache Kafka is what production runs on, and its profile holds the production defaults. Tansu, the
embedded broker of the Python-only dev stack, keeps everything in memory and lacks parts of the
protocol; its profile holds the workarounds it needs, and code elsewhere asks the profile (through
``BrokerConnection``, and the services' ``KafkaSettings``) instead of testing which broker it is.

- idempotent producer: on for Kafka, where it keeps a retried send from writing twice; off for
  Tansu, whose InitProducerId fails (``acks=all`` on both);
- session timeout and heartbeat: 15 s and 3 s for Kafka (see below); 6 s and 1.5 s for Tansu;
  the heartbeat a third of the session or less, as Kafka requires;
- fetch max wait: 500 ms for Kafka, which answers a waiting fetch as soon as records arrive;
  100 ms for Tansu, which answers only when the wait runs out (it would add that much to every
  hop);
- end offsets: exact on Kafka (the high watermark); on Tansu the first offset of the last record
  batch plus one, so there only an end that went down shows the broker lost a partition's log
  (``orderflow.runtime.positions``);
- group state: on Kafka every group's members in one DescribeGroups request and every group's
  committed offsets in one OffsetFetch (``orderflow.runtime.lag``); on Tansu one group per request
  through the consumer API, the path proven on it (aiokafka's own DescribeGroups v3 reply parser
  garbles every group after the first, which the admin path works around on Kafka).

The session timeout is how long a consumer that stopped answering keeps its partitions: a
replica that crashed holds its orders that long before the group hands them to another. 15 s
rides out a long garbage-collection pause, a broker's leader election (seconds) and a busy host,
where Kafka's own 45 s default would leave a crashed replica's orders waiting three times longer;
a cleanly stopped consumer leaves the group at once either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class BrokerProfile:
    kind: str
    idempotent_producer: bool
    session_timeout_ms: int
    heartbeat_interval_ms: int
    fetch_max_wait_ms: int
    # consumer groups' members and committed offsets read through the admin API for every group
    # in one request; otherwise one group per request through the consumer API
    group_state_from_admin: bool
    # whether a partition's end offset is exact (the high watermark). Tansu reports the first
    # offset of the partition's last record batch plus one, so a position up to a batch beyond
    # it is normal there, and only an end that went down (the log was lost) says data is gone
    exact_end_offsets: bool


KAFKA = BrokerProfile("kafka", idempotent_producer=True, session_timeout_ms=15_000,
                      heartbeat_interval_ms=3_000, fetch_max_wait_ms=500,
                      group_state_from_admin=True, exact_end_offsets=True)
TANSU = BrokerProfile("tansu", idempotent_producer=False, session_timeout_ms=6_000,
                      heartbeat_interval_ms=1_500, fetch_max_wait_ms=100,
                      group_state_from_admin=False, exact_end_offsets=False)

_PROFILES = {p.kind: p for p in (KAFKA, TANSU)}


def profile_of(kind: Literal["kafka", "tansu"] | str) -> BrokerProfile:
    return _PROFILES[kind]
