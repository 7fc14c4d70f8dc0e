"""The published contract of every service: its AsyncAPI 3.0 document, generated from the code.

``python -m orderflow.devstack.asyncapi docs/asyncapi`` writes ``docs/asyncapi/<service>.json``;
``tests/deploy/test_asyncapi.py`` fails when a committed document no longer matches the code.
``orderflow.devstack.asyncapi_html`` reads them into one HTML page (``docs/asyncapi/index.html``
and the console's ``/events``).

What each document holds, and where it comes from:

- **Receive operations**: the service's broker exactly as it runs, built by
  ``orderflow.runtime.service.build_broker`` from ``orderflow.<service>.app.create_service()``
  (one consumer group ``orderflow.<service>`` over every subscribed topic). Nothing connects:
  the batch processor gets an engine that is never used. FastStream cannot see the payload of
  those batch subscribers (they decode records themselves), so each channel's message is filled in
  from the topic catalogue: the event model's JSON Schema, the headers, the key.
- **Send operations**: the events the service emits, found in its source (every event class of
  ``orderflow.contracts.events`` constructed in ``src/orderflow/<service>/``, migrations aside; a
  call the scan cannot see is added in ``EXTRA_PUBLICATIONS``, an event built but never published
  is taken out in ``NOT_PUBLISHED``), each on its catalogue topic, plus
  the ``<topic>.dlq`` of every topic it consumes (written by the runtime).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.message import get_model_schema
from faststream.specification.asyncapi.utils import move_pydantic_refs
from pydantic import create_model
from sqlalchemy.ext.asyncio import create_async_engine

from orderflow.contracts import events as ev
from orderflow.contracts import headers as hd
from orderflow.contracts.topics import BY_NAME, TOPIC_OF_EVENT, Topic
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.service import ServiceDefinition, build_broker
from orderflow.runtime.settings import KafkaSettings, ServiceSettings

SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
DOC_VERSION = "0.1.0"
DOC_BOOTSTRAP = "kafka:9092"  # the docker-compose broker; the document names no real cluster
DEFS = "$defs"
# events a service emits that the source scan cannot see (e.g. built by name); none today
EXTRA_PUBLICATIONS: dict[str, tuple[type[ev.Event], ...]] = {}
# events a service builds without publishing them: intake's channel order API reads a request
# into the envelope a connector would have put on order.inbound, and handles it in place
NOT_PUBLISHED: dict[str, tuple[type[ev.Event], ...]] = {"intake": (ev.OrderSubmitted,)}

_SCHEMA_REF = "#/components/schemas/"
_KAFKA_BINDING = "0.4.0"


def load_definition(service: str) -> ServiceDefinition:
    app = importlib.import_module(f"orderflow.{service}.app")
    definition: ServiceDefinition = app.create_service()
    return definition


def available_services() -> list[str]:
    """The services whose composition root exists in this checkout."""
    return [s for s in SERVICES if importlib.util.find_spec(f"orderflow.{s}") is not None
            and importlib.util.find_spec(f"orderflow.{s}.app") is not None]


def _event_classes() -> dict[str, type[ev.Event]]:
    return {model.__name__: model for model in TOPIC_OF_EVENT}


def _source_files(service: str) -> list[Path]:
    spec = importlib.util.find_spec(f"orderflow.{service}")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"orderflow.{service} is not installed")
    files: list[Path] = []
    for location in spec.submodule_search_locations:
        files += [p for p in Path(location).rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def events_constructed(source: str, known: Iterable[str]) -> set[str]:
    """Names of the ``known`` event classes called (``OrderReceived(...)`` or ``ev.X(...)``)."""
    names = set(known)
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (func.id if isinstance(func, ast.Name)
                else func.attr if isinstance(func, ast.Attribute) else None)
        if name in names:
            found.add(name)
    return found


def published_events(service: str) -> list[type[ev.Event]]:
    """The events ``service`` emits, in catalogue order."""
    classes = _event_classes()
    found: set[str] = set()
    for path in _source_files(service):
        found |= events_constructed(path.read_text(encoding="utf-8"), classes)
    found |= {model.__name__ for model in EXTRA_PUBLICATIONS.get(service, ())}
    found -= {model.__name__ for model in NOT_PUBLISHED.get(service, ())}
    return [model for model in TOPIC_OF_EVENT if model.__name__ in found]


def _payload_schema(model: type[ev.Event]) -> dict[str, Any]:
    """The model's schema as FastStream makes it for a publisher's ``schema=``."""
    body: dict[str, Any] = get_model_schema(create_model(model.__name__, response__=(model, ...)))
    return body


def _headers_schemas() -> dict[str, Any]:
    text = {"type": "string"}
    event_headers = {
        "title": "EventHeaders",
        "type": "object",
        "description": "Kafka headers every OrderFlow event carries (UTF-8 strings).",
        "properties": {
            hd.EVENT_ID: {**text, "format": "uuid", "description": "Unique per event; the inbox key"},
            hd.EVENT_TYPE: {**text, "description": "The event model's name, e.g. OrderReceived"},
            hd.SCHEMA_VERSION: {**text, "pattern": "^[0-9]+$",
                                "description": "The payload's schema version"},
            hd.OCCURRED_AT: {**text, "format": "date-time"},
            hd.PRODUCER: {**text, "description": "The service (or connector) that wrote it"},
            hd.CORRELATION_ID: {**text, "description": "The order id"},
            hd.CAUSATION_ID: {**text, "description": "The event_id of the event this one answers"},
            hd.TRACEPARENT: {**text, "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                             "description": "W3C trace context"},
        },
        "required": [hd.EVENT_ID, hd.EVENT_TYPE, hd.SCHEMA_VERSION],
    }
    dead_letter = {
        "title": "DeadLetterHeaders",
        "type": "object",
        "description": "The original message's headers plus why it was dead-lettered.",
        "properties": {
            hd.DLQ_REASON: {**text, "description": ("e.g. bad_headers, invalid_payload, "
                                                    "handler_error, unprocessable")},
            hd.DLQ_ERROR: {**text, "description": "The error, without input values"},
            hd.DLQ_SOURCE: {**text, "description": "<topic>/<partition>/<offset> of the original"},
            hd.DLQ_SERVICE: {**text, "description": "The service that dead-lettered it"},
        },
        "required": [hd.DLQ_REASON, hd.DLQ_SOURCE, hd.DLQ_SERVICE],
    }
    return {"EventHeaders": event_headers, "DeadLetterHeaders": dead_letter}


def _add_schema(schemas: dict[str, Any], body: dict[str, Any]) -> str:
    body = move_pydantic_refs(body, DEFS)
    named = {**body.pop(DEFS, {}), str(body["title"]): body}
    for name, sub in named.items():
        if schemas.setdefault(name, sub) != sub:
            raise ValueError(f"two different schemas are named {name!r}: rename one model")
    return str(body["title"])


def build_document(definition: ServiceDefinition) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of one service, as a JSON-able dict."""
    service = definition.name
    kafka = KafkaSettings.model_construct(bootstrap_servers=DOC_BOOTSTRAP)  # defaults, no env
    settings = ServiceSettings.model_construct(service=service)
    engine = create_async_engine("postgresql+asyncpg://docs@localhost/docs")  # never connects
    processor = BatchProcessor(service=service, subscriptions=definition.subscriptions,
                               engine=engine, max_bytes=settings.max_message_bytes)
    broker = build_broker(definition, kafka, settings, processor)

    publications: list[tuple[Topic, type[ev.Event] | None]] = [
        (TOPIC_OF_EVENT[model], model) for model in published_events(service)]
    publications += [(sub.topic, None) for sub in definition.subscriptions]  # their DLQs
    for topic, model in publications:
        if model is None:
            broker.publisher(topic.dlq, title=f"{topic.dlq}:Publish",
                             description=f"Messages of {topic.name} that {service} can never apply")
        else:
            broker.publisher(topic.name, schema=model, title=f"{topic.name}:Publish",
                             description=topic.description)

    spec = AsyncAPI(broker, title=f"OrderFlow {service}", version=DOC_VERSION,
                    description=definition.description or None, schema_version="3.0.0")
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    _complete(doc, definition)
    return doc


def _complete(doc: dict[str, Any], definition: ServiceDefinition) -> None:
    """Fill in what FastStream cannot know: payloads of batch subscribers, headers, keys,
    partitions, the consumer group."""
    service = definition.name
    group = f"orderflow.{service}"
    subscriptions = {sub.topic.name: sub for sub in definition.subscriptions}
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    messages: dict[str, Any] = components.setdefault("messages", {})
    schemas.update(_headers_schemas())
    doc["info"]["x-consumer-group"] = group

    receiving = {op["channel"]["$ref"].rsplit("/", 1)[1]
                 for op in doc.get("operations", {}).values() if op.get("action") == "receive"}
    for op in doc.get("operations", {}).values():
        if op.get("action") == "receive":
            op["bindings"] = {"kafka": {"groupId": {"type": "string", "enum": [group]},
                                        "bindingVersion": _KAFKA_BINDING}}

    for channel_name, channel in doc.get("channels", {}).items():
        address = channel["address"]
        is_dlq = address.endswith(".dlq")
        topic = BY_NAME[address.removesuffix(".dlq")]
        channel["bindings"]["kafka"]["partitions"] = 1 if is_dlq else topic.partitions
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[1]]
            message["contentType"] = "application/octet-stream" if is_dlq else "application/json"
            message["bindings"] = {"kafka": {
                "key": {"type": "string", "description": topic.key},
                "bindingVersion": _KAFKA_BINDING}}
            if is_dlq:
                message["name"] = "DeadLetter"
                message["summary"] = f"The original {topic.name} record, unchanged"
                message["headers"] = {"$ref": _SCHEMA_REF + "DeadLetterHeaders"}
                message["payload"] = {"description": "The original record's value, as received"}
                continue
            message["name"] = topic.model.EVENT_TYPE
            message["headers"] = {"$ref": _SCHEMA_REF + "EventHeaders"}
            if channel_name in receiving:
                sub = subscriptions[address]
                channel["description"] = sub.description or topic.description
                message["summary"] = (f"{topic.model.EVENT_TYPE}, schema versions "
                                      f"{', '.join(str(v) for v in sorted(sub.accept_versions))}")
                if sub.headerless:
                    message["description"] = ("Connectors may send it without OrderFlow's headers: "
                                              "the event id is then derived from topic, partition "
                                              "and offset.")
                name = _add_schema(schemas, _payload_schema(topic.model))
                message["payload"] = {"$ref": _SCHEMA_REF + name}
            else:
                message["summary"] = f"{topic.model.EVENT_TYPE}, schema version {topic.model.SCHEMA_VERSION}"

    used = json.dumps({k: v for k, v in doc.items() if k != "components"}) + json.dumps(messages)
    for name in [n for n in schemas if (_SCHEMA_REF + n) not in used]:
        if name.endswith(":Payload"):  # the batch subscribers' empty payload, replaced above
            del schemas[name]
    # FastStream keeps publishers in a set: sort, so the document is the same on every run
    for key in ("channels", "operations"):
        doc[key] = dict(sorted(doc.get(key, {}).items()))
    for key in ("messages", "schemas"):
        components[key] = dict(sorted(components[key].items()))


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path, services: Iterable[str] | None = None) -> list[Path]:
    """Write ``<out_dir>/<service>.json`` for each service; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for service in services or available_services():
        path = out_dir / f"{service}.json"
        path.write_text(render(build_document(load_definition(service))), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderflow.devstack.asyncapi",
                                     description="Write every service's AsyncAPI document")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("docs/asyncapi"))
    parser.add_argument("--service", action="append", choices=SERVICES,
                        help="only this service (repeatable); default: every service present")
    args = parser.parse_args(argv)
    for path in generate(args.out_dir, args.service):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
