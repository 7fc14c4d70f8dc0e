"""The realistic platform samples under ``samples/`` and the canonical orders they must become."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from orderflow.devstack.catalogue import products
from orderflow.intake import domain

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    return copy.deepcopy(json.loads((SAMPLES / name).read_text(encoding="utf-8")))


def expected(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.expected.json").read_text(encoding="utf-8"))


def demo_catalogue() -> dict[str, domain.Product]:
    return {sku: domain.Product(sku, p.unit_price, p.tax_rate, p.weight_kg, p.active)
            for sku, p in products().items()}
