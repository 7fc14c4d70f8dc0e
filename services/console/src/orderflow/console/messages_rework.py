"""The texts of the rework path and the import's preview (both languages): the order's revision
among its facts, a sheet row named beside the reason that concerns it."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "fact.revision": {"en": "revision", "zh-CN": "版本"},
    "desk.import_row": {"en": "row {row}", "zh-CN": "第 {row} 行"},
}
