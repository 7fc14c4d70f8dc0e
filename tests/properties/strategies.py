"""Hypothesis strategies for the bad-input properties: any JSON value, and realistic platform
payloads with one part broken (a key removed, a value of the wrong type, a huge string...)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from orderflow.devstack.simulator import CHANNEL_FORMATS, generate_orders


def examples(n: int) -> int:
    """A test's example budget: ten times as many under ``HYPOTHESIS_PROFILE=hunt``."""
    return n * 10 if os.environ.get("HYPOTHESIS_PROFILE") == "hunt" else n


INTAKE_SAMPLES = Path(__file__).resolve().parents[2] / "services" / "intake" / "tests" / "samples"

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["", "0", "-1", "1e309", "NaN", "0.001", "99999999999999999999.99",
                              "2026-02-30", "2026-11-20T10:00:00+08:00", "orderflow:C0001",
                              "TEA-001", "CNY", "rush", "net30", "\x00", "💥" * 10]))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12) | st.sampled_from(
        ["id", "order_id", "external_id", "lines", "line_items", "rows", "sku", "quantity",
         "price", "customer", "shipping_address", "currency", "created_at", "order_status"]),
        children, max_size=5),
    max_leaves=20,
)


finite_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                  | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
finite_json_values = st.recursive(  # what a JSON encoder can write (no NaN, no Infinity)
    finite_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def realistic_payloads() -> dict[str, list[Any]]:
    """Payloads every adapter must read: the intake samples and simulated orders per channel."""
    out: dict[str, list[Any]] = {channel: [] for channel in (*CHANNEL_FORMATS, "xlsx")}
    for name, channel in (("shopify_orders_create.json", "shopify"),
                          ("shopify_orders_create_b2b_tax_excluded.json", "shopify"),
                          ("douyin_order_detail.json", "douyin")):
        path = INTAKE_SAMPLES / name
        if path.exists():
            out[channel].append(json.loads(path.read_text(encoding="utf-8")))
    for order in generate_orders(24, seed=5, prefix="PROP"):
        out[order.channel].append(order.payload)
    out["xlsx"] = [copy.deepcopy(p) for p in out["csv"]]
    # the order desk takes a typed order (canonical JSON) or one order of a pasted sheet
    out["desk"] = [copy.deepcopy(p) for p in (*out["canonical"], *out["csv"])]
    return out


REALISTIC = realistic_payloads()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            paths += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            paths += _paths(v, (*prefix, i))
    return paths


@st.composite
def mutated(draw: st.DrawFn, payload: Any) -> Any:
    """``payload`` with one to three parts broken."""
    result = copy.deepcopy(payload)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(result)
        if not paths:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent = result
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "huge", "negate", "stringify"]))
        if action == "delete":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(json_values)
        elif action == "huge":
            parent[last] = "9" * draw(st.integers(300, 5000))
        elif action == "negate" and isinstance(parent[last], int | float) \
                and not isinstance(parent[last], bool):
            parent[last] = -parent[last]
        else:
            parent[last] = json.dumps(parent[last])
    return result


def realistic_then_mutated(channel: str) -> st.SearchStrategy[Any]:
    return st.sampled_from(REALISTIC[channel]).flatmap(mutated)
