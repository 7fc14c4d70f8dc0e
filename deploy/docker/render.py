"""Write services/<name>/Dockerfile for every service from deploy/docker/Dockerfile.template.

Run from anywhere: ``python deploy/docker/render.py`` (``--check`` exits 1 when a file differs).
tests/deploy/test_dockerfiles.py runs the same comparison."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).with_name("Dockerfile.template")
SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")


def render(service: str) -> str:
    members = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
    copies = "\n".join(f"COPY services/{m}/pyproject.toml services/{m}/" for m in members)
    return TEMPLATE.read_text(encoding="utf-8").format(service=service, member_copies=copies)


def main(argv: list[str]) -> int:
    stale = []
    for service in SERVICES:
        path = ROOT / "services" / service / "Dockerfile"
        text = render(service)
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text, encoding="utf-8")
            print(path.relative_to(ROOT))
    if stale:
        print("stale (run python deploy/docker/render.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
