"""Logistics' service tests drive the delay watcher's clock through its API (``as_of``), which the
service allows only when told to; the pipeline's processes inherit this environment."""

from __future__ import annotations

import os

os.environ.setdefault("ORDERFLOW_LOGISTICS_ALLOW_CLOCK_OVERRIDE", "true")
