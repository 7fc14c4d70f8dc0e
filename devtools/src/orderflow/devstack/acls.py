"""Kafka ACLs derived from the topic catalogue and the code: one principal per service, one for
the connectors. The one source of truth for who may do what on the broker: the Strimzi
``KafkaUser`` resources (``orderflow.devstack.k8s_users``) and the live tests' secured cluster
(``apply_acls``) both come from ``all_acls()``.

What each principal gets (every ACL literal, host ``*``, Allow):

- a service ``orderflow-<service>``: Read and Describe on exactly the topics it subscribes to
  (its composition root's subscriptions) and on its consumer group ``orderflow.<service>``;
  Write and Describe on exactly the topics of the events it emits (its AsyncAPI send operations,
  ``orderflow.devstack.asyncapi.published_events``) and on the DLQ of every topic it consumes
  (the runtime dead-letters there);
- the console, besides: its dashboard shows every DLQ's newest dead letters and every
  service group's lag and members (Read and Describe on every DLQ, Describe on every
  ``orderflow.<service>`` group), and its DLQ replay (``POST /api/dlq/<topic>/replay``,
  ``orderflow.runtime.dlq``) republishes a DLQ's entries onto the topic they came
  from and remembers how far it went in the group ``orderflow.dlq-replay.<topic>`` (Write and
  Describe on every topic of the catalogue, Read and Describe on those groups);
- the connectors ``orderflow-connector``: Write on ``order.inbound`` and on the master-data
  topics (the events ``orderflow.devstack.masterdata`` builds from its CSV files); Write
  implies Describe.

No principal needs a cluster ACL: the producers are idempotent, and since Kafka 3.0 a producer
may initialise its idempotent id with Write on any topic instead of ``IdempotentWrite`` on the
cluster (KIP-679); the live tests run every producer this way.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orderflow.contracts.topics import BY_NAME, CATALOGUE, ORDER_INBOUND, TOPIC_OF_EVENT
from orderflow.runtime.settings import KafkaSettings, ServiceSettings

ResourceType = Literal["topic", "group", "cluster"]
Operation = Literal["Read", "Write", "Describe"]

PRINCIPAL_PREFIX = "orderflow-"
CONNECTOR = "orderflow-connector"
GROUP_PREFIX: str = ServiceSettings.model_fields["consumer_group_prefix"].default
# the order in which a resource's operations are listed
OPERATIONS: tuple[Operation, ...] = ("Read", "Write", "Describe")
RESOURCE_TYPES: tuple[ResourceType, ...] = ("topic", "group", "cluster")


@dataclass(frozen=True, order=True)
class Acl:
    """Allow ``User:<user>`` one operation on one literal resource, from any host."""

    user: str
    resource_type: ResourceType
    resource: str
    operation: Operation

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def principal_of(service: str) -> str:
    """The Kafka user a service authenticates as."""
    return f"{PRINCIPAL_PREFIX}{service}"


def group_of(service: str) -> str:
    return f"{GROUP_PREFIX}.{service}"


def replay_group_of(topic: str) -> str:
    """The group in which a DLQ replay remembers how far it went (``runtime.dlq``)."""
    return f"{GROUP_PREFIX}.dlq-replay.{topic}"


def services() -> list[str]:
    """The services whose code is in this checkout (each gets its principal)."""
    from orderflow.devstack.asyncapi import available_services

    return available_services()


def consumed_topics(service: str) -> list[str]:
    """The topics ``service`` subscribes to, from its composition root."""
    from orderflow.devstack.asyncapi import load_definition

    return [s.topic.name for s in load_definition(service).subscriptions]


def published_topics(service: str) -> list[str]:
    """The topics of the events ``service`` emits (its AsyncAPI send operations, DLQs aside)."""
    from orderflow.devstack.asyncapi import published_events

    return [TOPIC_OF_EVENT[model].name for model in published_events(service)]


def master_data_topics() -> list[str]:
    """The topics of the events the master-data loader builds from its CSV files."""
    from orderflow.devstack.asyncapi import events_constructed

    spec = importlib.util.find_spec("orderflow.devstack.masterdata")
    assert spec is not None and spec.origin is not None
    names = events_constructed(Path(spec.origin).read_text(encoding="utf-8"),
                               [model.__name__ for model in TOPIC_OF_EVENT])
    return [topic.name for model, topic in TOPIC_OF_EVENT.items() if model.__name__ in names]


def connector_topics() -> list[str]:
    return [ORDER_INBOUND.name, *master_data_topics()]


def _grant(user: str, resource_type: ResourceType, names: Iterable[str],
           operations: Iterable[Operation]) -> set[Acl]:
    return {Acl(user, resource_type, name, op) for name in names for op in operations}


def service_acls(service: str) -> set[Acl]:
    user = principal_of(service)
    consumed = consumed_topics(service)
    writes = [*published_topics(service), *(BY_NAME[t].dlq for t in consumed)]
    acls = (_grant(user, "topic", consumed, ("Read", "Describe"))
            | _grant(user, "group", [group_of(service)], ("Read", "Describe"))
            | _grant(user, "topic", writes, ("Write", "Describe")))
    if service == "console":
        # the dashboard: every DLQ's newest entries, every service group's lag and members
        acls |= _grant(user, "topic", [t.dlq for t in CATALOGUE], ("Read", "Describe"))
        acls |= _grant(user, "group", [group_of(s) for s in services()], ("Describe",))
        # the DLQ replay: a DLQ's entries back onto their topic, its progress in a group
        acls |= _grant(user, "topic", [t.name for t in CATALOGUE], ("Write", "Describe"))
        acls |= _grant(user, "group", [replay_group_of(t.name) for t in CATALOGUE],
                       ("Read", "Describe"))
    return acls


def connector_acls() -> set[Acl]:
    return _grant(CONNECTOR, "topic", connector_topics(), ("Write",))


def all_acls() -> dict[str, list[Acl]]:
    """Every principal's ACLs, sorted: each service's, then the connectors'."""
    out = {principal_of(s): sorted(service_acls(s)) for s in services()}
    out[CONNECTOR] = sorted(connector_acls())
    return out


def by_resource(acls: Iterable[Acl]) -> list[tuple[ResourceType, str, list[Operation]]]:
    """The ACLs grouped by resource (type, name), each with its operations in a fixed order."""
    grouped: dict[tuple[ResourceType, str], set[Operation]] = defaultdict(set)
    for acl in acls:
        grouped[(acl.resource_type, acl.resource)].add(acl.operation)
    keyed = sorted(grouped, key=lambda k: (RESOURCE_TYPES.index(k[0]), k[1]))
    return [(rtype, name, [op for op in OPERATIONS if op in grouped[(rtype, name)]])
            for rtype, name in keyed]


# -- a live broker ------------------------------------------------------------------------------
# Kafka's protocol codes (org.apache.kafka.common.resource / acl)
_RESOURCE_CODE: dict[ResourceType, int] = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION_CODE: dict[Operation, int] = {"Read": 3, "Write": 4, "Describe": 8}
_ANY, _ALLOW, _LITERAL = 1, 3, 3


def _create_acls_request(creations: list[tuple[Any, ...]]) -> Any:
    """A CreateAcls request with many creations (aiokafka's own builder takes one)."""
    from aiokafka.protocol.admin import CreateAclsRequest_v1
    from aiokafka.protocol.api import Request

    class CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
        API_KEY = 30

        def build(self, request_struct_class: type[Any]) -> Any:
            return request_struct_class(creations)

    return CreateAcls()


async def apply_acls(kafka: KafkaSettings, acls: Iterable[Acl], *, timeout: float = 60) -> int:
    """Create ``acls`` on the broker (``kafka`` authenticates as a super user) in one request,
    existing ones left as they are, then wait until every broker enforces them (the controller
    takes them at once; a broker applies them from the metadata log a little later, seconds
    after a burst of topic creations). Returns how many were sent; raises on any refusal."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import for_code

    wanted = set(acls)
    creations = [(_RESOURCE_CODE[a.resource_type], a.resource, _LITERAL, a.principal, "*",
                  _OPERATION_CODE[a.operation], _ALLOW) for a in sorted(wanted)]
    if not creations:
        return 0
    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="orderflow-acls")  # type: ignore[arg-type]
    await admin.start()
    try:
        response = await admin._send_request(_create_acls_request(creations))
        failed = [(c, code, message) for c, (code, message)
                  in zip(creations, response.creation_responses, strict=True) if code]
        if failed:
            (resource_type, name, _, principal, _, operation, _), code, message = failed[0]
            raise RuntimeError(f"{len(failed)} ACL(s) refused, first {principal} op {operation} "
                               f"on {resource_type}:{name}: {for_code(code).__name__} {message}")
        deadline = time.monotonic() + timeout
        for node in [b.nodeId for b in admin._client.cluster.brokers()]:
            while not wanted <= await _describe(admin, node):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"broker {node} does not enforce the ACLs created "
                                       f"{timeout:.0f}s ago")
                await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return len(creations)


async def _describe(admin: Any, node: int | None = None) -> set[Acl]:
    """The Allow ACLs a broker (``node``, else any) enforces, as far as ``Acl`` can express
    them (literal Read, Write or Describe on a topic, group or the cluster, for a ``User:``
    principal from any host): DescribeAcls is answered from the broker's own authorizer."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DescribeAclsRequest

    request = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
    response = await (admin._send_request(request) if node is None
                      else admin._send_request_to_node(node, request))
    if response.error_code:
        raise RuntimeError(f"DescribeAcls: {for_code(response.error_code).__name__} "
                           f"{response.error_message}")
    types = {code: name for name, code in _RESOURCE_CODE.items()}
    operations = {code: name for name, code in _OPERATION_CODE.items()}
    out: set[Acl] = set()
    for resource_type, name, pattern, entries in response.resources:
        for principal, host, operation, permission in entries:
            if (resource_type in types and operation in operations and pattern == _LITERAL
                    and permission == _ALLOW and host == "*" and principal.startswith("User:")):
                out.add(Acl(principal.removeprefix("User:"), types[resource_type], name,
                            operations[operation]))
    return out


async def describe_acls(kafka: KafkaSettings) -> set[Acl]:
    """Every Allow ACL on the broker that ``Acl`` can express (see ``_describe``)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.client_kwargs(), client_id="orderflow-acls")  # type: ignore[arg-type]
    await admin.start()
    try:
        return await _describe(admin)
    finally:
        await admin.close()


def flatten(acls: Mapping[str, Iterable[Acl]]) -> set[Acl]:
    return {acl for each in acls.values() for acl in each}
