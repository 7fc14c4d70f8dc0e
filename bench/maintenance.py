"""PostgreSQL's own maintenance around the latency phases: autovacuum's pass over what a burst
wrote runs a minute or two after it, on the same two cores as the next load, and decided the
full runs' p99 at 300/s (a worker was sampled busy through both latency phases after the
20,000-order burst). The benchmark therefore waits, before each fixed rate, until no
table is due for autovacuum or autoanalyze and no worker runs (bounded, recorded), and samples
while each rate runs how often a worker was busy and on what, so that a phase's latency is read
with its maintenance beside it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# the tables autovacuum would pick now, by PostgreSQL's rules with the server's settings (no
# table of ours sets its own): dead rows, rows inserted since the last vacuum, rows changed since
# the last analyze, each over its threshold plus its scale factor of the table's size
DUE = sa.text("""
SELECT s.schemaname || '.' || s.relname
FROM pg_stat_all_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
CROSS JOIN LATERAL (SELECT greatest(c.reltuples, 0)::float8 AS n) AS t
WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
  AND (s.n_dead_tup > current_setting('autovacuum_vacuum_threshold')::float8
                      + current_setting('autovacuum_vacuum_scale_factor')::float8 * t.n
       OR s.n_ins_since_vacuum > current_setting('autovacuum_vacuum_insert_threshold')::float8
                      + current_setting('autovacuum_vacuum_insert_scale_factor')::float8 * t.n
       OR (c.relkind = 'r'
           AND s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
                      + current_setting('autovacuum_analyze_scale_factor')::float8 * t.n))
ORDER BY 1
""")
WORKERS = sa.text("""
SELECT coalesce(nullif(query, ''), '?') FROM pg_stat_activity
WHERE backend_type = 'autovacuum worker' AND datname = current_database()
""")


async def maintenance_done(database_url: str, timeout: float, poll_s: float = 1.0) -> dict[str, Any]:
    """Wait until nothing is due for autovacuum and no worker runs, for at most ``timeout``
    seconds: how long it took, whether it got there, and what was left if not."""
    engine = create_async_engine(database_url, pool_size=1)
    started = time.monotonic()
    due: list[str] = []
    workers: list[str] = []
    try:
        while True:
            async with engine.connect() as conn:
                due = list((await conn.execute(DUE)).scalars())
                workers = list((await conn.execute(WORKERS)).scalars())
            if (not due and not workers) or time.monotonic() - started > timeout:
                break
            await asyncio.sleep(poll_s)
    finally:
        await engine.dispose()
    return {"waited_s": round(time.monotonic() - started, 1), "settled": not due and not workers,
            "due": due, "workers": workers}


class MaintenanceSampler:
    """Samples, every ``every_s`` while it runs, whether an autovacuum worker is busy and on what
    (``report()``: the share of samples with one, and the statements seen most)."""

    def __init__(self, database_url: str, every_s: float = 0.5) -> None:
        self.database_url = database_url
        self.every_s = every_s
        self.samples = 0
        self.busy = 0
        self.seen: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._engine: AsyncEngine | None = None

    def start(self) -> MaintenanceSampler:
        self._engine = create_async_engine(self.database_url, pool_size=1)
        self._task = asyncio.create_task(self._run(), name="maintenance-sampler")
        return self

    async def _run(self) -> None:
        assert self._engine is not None
        while True:
            try:
                async with self._engine.connect() as conn:
                    workers = list((await conn.execute(WORKERS)).scalars())
            except Exception:  # noqa: BLE001 - a sample missed is not a benchmark failed
                workers = None
            if workers is not None:
                self.samples += 1
                self.busy += bool(workers)
                self.seen.update(w.removeprefix("autovacuum: ")[:120] for w in workers)
            await asyncio.sleep(self.every_s)

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._engine is not None:
            await self._engine.dispose()
        return {"samples": self.samples,
                "autovacuum_busy_pct": round(100.0 * self.busy / self.samples, 1)
                if self.samples else None,
                "autovacuum_seen": dict(self.seen.most_common(8))}
