"""JSON Schemas of the canonical order and every event, generated from the models into
``docs/schemas/`` (``make docs``); a test fails when the committed files no longer match."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orderflow.contracts.events import ALL_EVENTS
from orderflow.contracts.order import CanonicalOrder


def documents() -> dict[str, str]:
    docs = {"canonical-order.schema.json": CanonicalOrder.model_json_schema(mode="validation")}
    for model in ALL_EVENTS:
        docs[f"events/{model.EVENT_TYPE}.schema.json"] = model.model_json_schema(mode="serialization")
    return {name: json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
            for name, schema in docs.items()}


def write(folder: Path) -> list[Path]:
    written = []
    for name, text in documents().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")
    print(f"wrote {len(write(out))} schema files to {out}")
