"""The AsyncAPI documents as one page to read: ``docs/asyncapi/index.html`` and the console's
``/events`` page.

``python -m orderflow.devstack.asyncapi_html docs/asyncapi <console events.html>`` reads every
``docs/asyncapi/<service>.json`` (written by ``orderflow.devstack.asyncapi``) and writes:

- ``docs/asyncapi/index.html``: a self-contained page (inline CSS, no JavaScript, nothing
  fetched from the network);
- the console's ``asyncapi/events.html``: the same content as a fragment (its ``<style>`` and a
  ``<div class="asyncapi">``) that the console places inside its own frame, since the console
  never imports devtools.

What the page holds: an index of topics (the topic catalogue's order, then any other channel),
saying which services publish and which consume each; per service its consumer group, the topics
it receives and sends (address, partitions, key, message, headers) and its DLQs; per topic its
message and payload as a table of fields (name, type, required, description); the types those
payloads refer to, headers included. The output depends only on the documents and the catalogue
(no dates, every mapping sorted or in catalogue order), so ``tests/deploy/test_asyncapi.py`` can
compare the committed files with what the code generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from orderflow.contracts.topics import CATALOGUE, Topic

INDEX = "index.html"
_REF = "#/components/schemas/"
_TEMPLATE = "asyncapi_page.html.j2"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined)

# a field's type as text pieces; a piece with a target links to that type's table
Piece = tuple[str, str | None]
# constraints shown beside a field's description, in this order
_CONSTRAINTS = (("minLength", "min length"), ("maxLength", "max length"), ("pattern", "pattern"),
                ("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"),
                ("exclusiveMaximum", "<"), ("minItems", "min items"), ("maxItems", "max items"))


@dataclass(frozen=True)
class FieldView:
    name: str
    type: tuple[Piece, ...]
    required: bool
    description: str


@dataclass(frozen=True)
class SchemaView:
    name: str
    description: str
    fields: tuple[FieldView, ...]


@dataclass(frozen=True)
class Channel:
    """One channel of one service's document: a topic it receives or sends, or a DLQ."""
    address: str
    description: str
    partitions: int | None
    key: str
    message: str
    summary: str
    note: str
    content_type: str
    payload: str | None  # the payload schema's name; None for a DLQ's raw record
    payload_text: str
    headers: str | None


@dataclass
class ServiceView:
    name: str
    title: str
    description: str
    group: str
    receives: list[Channel] = field(default_factory=list)
    sends: list[Channel] = field(default_factory=list)
    dlqs: list[Channel] = field(default_factory=list)


@dataclass
class TopicView:
    name: str
    description: str
    partitions: int | None
    key: str
    message: str
    payload: str | None
    headers: str | None
    publishers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PageView:
    services: tuple[ServiceView, ...]
    topics: tuple[TopicView, ...]
    dlqs: tuple[TopicView, ...]
    payloads: dict[str, SchemaView]
    types: tuple[SchemaView, ...]


def _ref_name(node: Mapping[str, Any] | None) -> str | None:
    ref = (node or {}).get("$ref")
    return str(ref).rsplit("/", 1)[1] if isinstance(ref, str) and ref.startswith(_REF) else None


def _resolve(doc: Mapping[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def type_pieces(schema: Mapping[str, Any]) -> list[Piece]:
    """A JSON Schema's type in words: ``string (date-time)``, ``array of OrderLine``,
    ``string or null``, ``one of "a", "b"``; a named schema links to its table."""
    name = _ref_name(schema)
    if name is not None:
        return [(name, name)]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            pieces: list[Piece] = []
            for i, option in enumerate(schema[combinator]):
                if i:
                    pieces.append((" and " if combinator == "allOf" else " or ", None))
                pieces += type_pieces(option)
            return pieces
    if "enum" in schema:
        return [("one of " + ", ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"]),
                 None)]
    if "const" in schema:
        return [("= " + json.dumps(schema["const"], ensure_ascii=False), None)]
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return [("array of ", None), *type_pieces(items)] if items else [("array", None)]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return [("map of string to ", None), *type_pieces(schema["additionalProperties"])]
    kinds = kind if isinstance(kind, list) else [kind] if kind else ["any"]
    text = " or ".join(str(k) for k in kinds)
    if "format" in schema:
        text += f" ({schema['format']})"
    return [(text, None)]


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    said = [f"{label} {schema[key]}" for key, label in _CONSTRAINTS if key in schema]
    for option in schema.get("anyOf", []):
        said += _constraints(option)
    return said


def field_description(schema: Mapping[str, Any]) -> str:
    """The field's description, then its constraints and default in brackets."""
    text = str(schema.get("description", ""))
    said = _constraints(schema)
    if "default" in schema:
        said.append("default " + json.dumps(schema["default"], ensure_ascii=False))
    if said:
        text += (" " if text else "") + "(" + "; ".join(said) + ")"
    return text


def schema_view(name: str, schema: Mapping[str, Any]) -> SchemaView:
    required = set(schema.get("required", ()))
    fields = tuple(
        FieldView(name=prop, type=tuple(type_pieces(sub)), required=prop in required,
                  description=field_description(sub))
        for prop, sub in schema.get("properties", {}).items())
    return SchemaView(name=name, description=str(schema.get("description", "")), fields=fields)


def _channel(doc: Mapping[str, Any], operation: Mapping[str, Any]) -> Channel:
    channel = _resolve(doc, operation["channel"]["$ref"])
    (message_ref,) = operation["messages"]
    message = _resolve(doc, _resolve(doc, message_ref["$ref"])["$ref"])
    payload = message.get("payload", {})
    return Channel(
        address=str(channel["address"]),
        description=str(channel.get("description", "")),
        partitions=channel.get("bindings", {}).get("kafka", {}).get("partitions"),
        key=str(message.get("bindings", {}).get("kafka", {}).get("key", {}).get("description", "")),
        message=str(message.get("name", "")),
        summary=str(message.get("summary", "")),
        note=str(message.get("description", "")),
        content_type=str(message.get("contentType", doc.get("defaultContentType", ""))),
        payload=_ref_name(payload),
        payload_text=str(payload.get("description", "")),
        headers=_ref_name(message.get("headers")))


def _merge_schemas(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for service, doc in sorted(documents.items()):
        for name, body in doc.get("components", {}).get("schemas", {}).items():
            if schemas.setdefault(name, body) != body:
                raise ValueError(f"{service}'s schema {name!r} differs from another document's")
    return schemas


def build_view(documents: Mapping[str, Mapping[str, Any]],
               catalogue: Iterable[Topic] = CATALOGUE) -> PageView:
    """What the page shows, from the documents (``service`` -> AsyncAPI document), services in
    the documents' order, topics in the catalogue's."""
    topics = {t.name: TopicView(name=t.name, description=t.description, partitions=t.partitions,
                                key=t.key, message=t.model.EVENT_TYPE, payload=t.model.__name__,
                                headers="EventHeaders")
              for t in catalogue}
    dlqs: dict[str, TopicView] = {}
    services = []
    for service, doc in documents.items():
        info = doc["info"]
        view = ServiceView(name=service, title=str(info.get("title", service)),
                           description=str(info.get("description", "")),
                           group=str(info.get("x-consumer-group", "")))
        for operation in doc.get("operations", {}).values():
            ch = _channel(doc, operation)
            is_dlq = ch.payload is None
            if is_dlq:
                view.dlqs.append(ch)
            else:
                (view.receives if operation["action"] == "receive" else view.sends).append(ch)
            index = dlqs if is_dlq else topics
            topic = index.setdefault(ch.address, TopicView(
                name=ch.address, description=ch.description, partitions=ch.partitions, key=ch.key,
                message=ch.message, payload=ch.payload, headers=ch.headers))
            (topic.consumers if operation["action"] == "receive" else topic.publishers).append(service)
        for channels in (view.receives, view.sends, view.dlqs):
            channels.sort(key=lambda c: c.address)
        services.append(view)
    for topic in [*topics.values(), *dlqs.values()]:
        topic.publishers.sort()
        topic.consumers.sort()

    schemas = _merge_schemas(documents)
    payload_names = {t.payload for t in topics.values() if t.payload in schemas}
    payloads = {name: schema_view(name, schemas[name]) for name in sorted(payload_names)}
    types = tuple(schema_view(name, body) for name, body in sorted(schemas.items())
                  if name not in payload_names)
    return PageView(services=tuple(services), topics=tuple(topics.values()),
                    dlqs=tuple(sorted(dlqs.values(), key=lambda t: t.name)),
                    payloads=payloads, types=types)


def fragment(documents: Mapping[str, Mapping[str, Any]],
             catalogue: Iterable[Topic] = CATALOGUE) -> str:
    """The page's content (its ``<style>`` and one ``<div class="asyncapi">``), to be placed in
    another page's body."""
    return _env.get_template(_TEMPLATE).render(view=build_view(documents, catalogue),
                                               standalone=False)


def page(documents: Mapping[str, Mapping[str, Any]],
         catalogue: Iterable[Topic] = CATALOGUE) -> str:
    """The self-contained HTML page."""
    return _env.get_template(_TEMPLATE).render(view=build_view(documents, catalogue),
                                               standalone=True)


def load_documents(doc_dir: Path) -> dict[str, dict[str, Any]]:
    """The documents of ``doc_dir``, services in the order of ``orderflow.devstack.asyncapi``."""
    from orderflow.devstack.asyncapi import SERVICES

    found = {p.stem: p for p in doc_dir.glob("*.json")}
    order = [s for s in SERVICES if s in found] + sorted(set(found) - set(SERVICES))
    return {s: json.loads(found[s].read_text(encoding="utf-8")) for s in order}


def generate(doc_dir: Path, console_page: Path | None = None) -> list[Path]:
    """Write ``<doc_dir>/index.html`` and, when given, the console's fragment; returns the
    files written."""
    documents = load_documents(doc_dir)
    written = [doc_dir / INDEX]
    written[0].write_text(page(documents), encoding="utf-8")
    if console_page is not None:
        console_page.parent.mkdir(parents=True, exist_ok=True)
        console_page.write_text(fragment(documents), encoding="utf-8")
        written.append(console_page)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderflow.devstack.asyncapi_html",
                                     description="Write the AsyncAPI documents as one HTML page")
    parser.add_argument("doc_dir", type=Path, nargs="?", default=Path("docs/asyncapi"))
    parser.add_argument("console_page", type=Path, nargs="?", default=None,
                        help="also write the console's fragment here")
    args = parser.parse_args(argv)
    for path in generate(args.doc_dir, args.console_page):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
