"""The benchmark's wait for PostgreSQL's maintenance (``bench.maintenance``) against the real
PostgreSQL: a table that grew past autovacuum's thresholds is due, and the wait says so until it
has been vacuumed and analyzed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from bench.maintenance import MaintenanceSampler, maintenance_done

from orderflow.testing.infra import Infra, connect, create_database

pytestmark = pytest.mark.service


async def test_a_grown_table_is_due_until_vacuumed_and_analyzed(infra: Infra) -> None:
    name = f"maint_{uuid.uuid4().hex[:8]}"
    url = await create_database(infra.database_url, name)
    conn = await connect(url)
    try:
        # autovacuum itself kept off this table, so that only the test's VACUUM clears it
        await conn.execute("CREATE TABLE grown (n int) WITH (autovacuum_enabled = false)")
        quiet = await maintenance_done(url, timeout=5)
        assert quiet["settled"], quiet
        await conn.execute("INSERT INTO grown SELECT generate_series(1, 5000)")
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")  # the statistics reported at this transaction's end

        due = await maintenance_done(url, timeout=0.5, poll_s=0.1)
        assert not due["settled"] and due["due"] == ["public.grown"], due

        sampler = MaintenanceSampler(url, every_s=0.05).start()
        await conn.execute("VACUUM ANALYZE grown")
        deadline = asyncio.get_running_loop().time() + 10
        while sampler.samples < 2 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        sampled = await sampler.stop()
        assert sampled["samples"] >= 1 and sampled["autovacuum_busy_pct"] == 0.0, sampled

        done = await maintenance_done(url, timeout=10, poll_s=0.1)
        assert done["settled"] and done["due"] == [] and done["workers"] == [], done
    finally:
        await conn.close()
        admin = await connect(infra.database_url)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
