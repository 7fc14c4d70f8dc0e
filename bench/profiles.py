"""Sampling profiles of the service processes under load (py-spy, optional) and a summary of
where their time goes: by library (the leaf frame's package) and by the project's own functions
(inclusive)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# py-spy names files relative to their sys.path entry ("sqlalchemy/orm/session.py",
# "runtime/consumer.py", "intake/handlers.py"); the first matching prefix names the bucket
SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
BUCKETS: tuple[tuple[str, str], ...] = (
    ("asyncio/selector_events.py:_SelectorSocketTransport.write", "socket write (syscall)"),
    ("selectors.py:EpollSelector.select", "waiting in epoll (idle)"),
    ("runtime/", "orderflow runtime"),
    ("contracts/", "orderflow contracts"),
    ("devstack/", "orderflow devstack"),
    *((f"{name}/", "service code") for name in SERVICES),
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic"),
    ("aiokafka/", "aiokafka"),
    ("kafka/", "aiokafka"),
    ("faststream/", "FastStream"),
    ("fast_depends/", "FastStream"),
    ("structlog/", "structlog"),
    ("logging/", "logging"),
    ("json/", "json"),
    ("prometheus_client/", "prometheus_client"),
    ("opentelemetry/", "OpenTelemetry"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("uuid.py", "uuid"),
    ("_pydecimal.py", "decimal"),
    ("jinja2/", "jinja2"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("zoneinfo/", "zoneinfo"),
    ("greenlet", "greenlet"),
)
OWN = ("runtime/", "contracts/", "devstack/", *(f"{name}/" for name in SERVICES))
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@dataclass
class Profiler:
    """``py-spy record`` on each pid, stopped with SIGINT (py-spy then writes its file)."""

    out_dir: Path
    rate: int = 50
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    def start(self, targets: dict[str, int]) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy (profiling only)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for label, pid in targets.items():
            out = self.out_dir / f"{label}.txt"
            proc = subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw",
                 "--output", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=(self.out_dir / f"{label}.log").open("wb"))
            self.running[label] = (proc, out)

    def stop(self) -> dict[str, dict[str, Any]]:
        for proc, _ in self.running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        summaries: dict[str, dict[str, Any]] = {}
        for label, (proc, out) in self.running.items():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                summaries[label] = summarise(out)
        self.running.clear()
        return summaries


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file") or ""


def bucket_of(func: str, path: str) -> str:
    where = f"{path}:{func}"
    for fragment, name in BUCKETS:
        if where.startswith(fragment) or f"/{fragment}" in where:
            return name
    return "python stdlib/other"


def summarise(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples by bucket (leaf frame), the top leaf functions, and the project's
    functions by inclusive share. Samples are wall-clock: on a busy machine a process is often
    descheduled in a syscall (a socket write wakes PostgreSQL), which shows as "socket write"."""
    by_bucket: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        # py-spy's raw format starts with the thread ("process ...;thread ...") when asked; skip
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        func, path = _parse(frames[-1])
        by_bucket[bucket_of(func, path)] += count
        leaves[f"{func} ({Path(path).name})"] += count
        mine = set()
        for f in frames:
            fn, fp = _parse(f)
            if fp.startswith(OWN):
                mine.add(f"{fp}:{fn}")
        for name in mine:
            inclusive[name] += count

    def share(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in counter.most_common(n)] if total else []

    return {"samples": total, "by_library_pct": dict(share(by_bucket, 30)),
            "top_leaf_pct": share(leaves, top), "orderflow_inclusive_pct": share(inclusive, top)}
