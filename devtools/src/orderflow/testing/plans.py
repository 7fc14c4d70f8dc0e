"""Query plans with and without statistics: a hot-path statement must take the same (index)
path on a table that grew since its last ANALYZE (a fresh database, the first minutes of a
backlog: autovacuum analyzes a table a minute or more after it grew) as on an analyzed one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


async def plans_before_and_after_analyze(engine: AsyncEngine, table: str, fill: str,
                                         statement: str, params: Mapping[str, Any]) -> list[str]:
    """The plan (``EXPLAIN``) of ``statement`` with ``params`` once the rows ``fill`` adds have
    gone into ``table`` after its last ANALYZE (the statistics say the table is as small as it
    was), then again with the table analyzed. Everything is rolled back."""
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(sa.text(f"ANALYZE {table}"))
        await conn.execute(sa.text(fill))
        plans = []
        for analyze in (False, True):
            if analyze:
                await conn.execute(sa.text(f"ANALYZE {table}"))
            plans.append("\n".join(r[0] for r in await conn.execute(
                sa.text(f"EXPLAIN {statement}"), dict(params))))
        await conn.rollback()
    return plans
