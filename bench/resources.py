"""CPU seconds and peak resident memory of the stack's processes (psutil), sampled in a thread."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]

MB = 1024 * 1024


@dataclass
class Watched:
    label: str
    pid: int
    include_children: bool = False  # PostgreSQL: the postmaster and its backends
    proc: psutil.Process | None = None
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    peak_rss: int = 0
    gone: bool = False

    def processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        procs = [self.proc]
        if self.include_children:
            with contextlib.suppress(psutil.Error):
                procs += self.proc.children(recursive=True)
        return procs

    def cpu(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> int:
        """Resident memory; for a process tree (PostgreSQL) the proportional set size summed,
        so that shared buffers are not counted once per backend."""
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_full_info().pss if self.include_children else p.memory_info().rss
        return total


@dataclass
class ResourceMonitor:
    """Call ``start`` at the beginning of a measured window and ``stop`` at its end."""

    interval_s: float = 0.25
    tree_every: int = 40
    watched: list[Watched] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def add(self, label: str, pid: int, *, include_children: bool = False) -> None:
        w = Watched(label, pid, include_children)
        try:
            w.proc = psutil.Process(pid)
        except psutil.Error:
            w.gone = True
        self.watched.append(w)

    def _sample(self, *, trees: bool = True) -> None:
        for w in self.watched:
            if w.proc is None or (w.include_children and not trees):
                continue
            if not w.proc.is_running():
                w.gone = True
                continue
            w.peak_rss = max(w.peak_rss, w.rss())

    def _loop(self) -> None:
        # a process tree's PSS (PostgreSQL: every backend's smaps_rollup, a walk of its page
        # tables by the kernel, more as the backends touch the shared buffers) is read only every
        # ``tree_every`` ticks (10 s) and at the window's start and end: at every tick it cost
        # the driver ~8 % of a core, and every 2 s still ~5 % at 300 orders/s (measured
        # with py-spy), taken from the services it measures; the services' RSS (the target) keeps
        # every tick
        tick = 0
        while not self._stop.wait(self.interval_s):
            tick += 1
            self._sample(trees=tick % self.tree_every == 0)

    def start(self) -> None:
        for w in self.watched:
            w.cpu_start = w.cpu()
        self._sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._sample()
        for w in self.watched:
            w.cpu_end = w.cpu()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each watched process (take two, subtract)."""
        return {w.label: w.cpu() for w in self.watched}

    def report(self) -> dict[str, dict[str, float | bool]]:
        return {w.label: {"cpu_s": round(max(0.0, w.cpu_end - w.cpu_start), 2),
                          "cpu_total_s": round(w.cpu_end, 2),
                          "peak_rss_mb": round(w.peak_rss / MB, 1),
                          "restarted_or_gone": w.gone}
                for w in self.watched}
