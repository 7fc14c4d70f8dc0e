"""How PostgreSQL stores the rows a service writes and reads back at once: with
``rows_uncompressed_ddl`` a row up to a page keeps its long values as they are (no pglz on the
way in, none on the way out); a longer row is still compressed, and the downgrade brings
PostgreSQL's default back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.runtime.db import rows_compressed_again_ddl, rows_uncompressed_ddl
from orderflow.testing.infra import Infra
from orderflow.testing.records import migrated_schema

pytestmark = pytest.mark.service

# a payload that compresses well, as the events do (the same keys in every rule's outcome)
_OUTCOME = b'{"rule":"credit_limit","passed":true,"figures":{"exposure":"120.00"}},'


def _payload(size: int) -> bytes:
    return (_OUTCOME * (size // len(_OUTCOME) + 1))[:size]


async def _stored_sizes(engine: AsyncEngine, table: str) -> dict[int, int]:
    """The size each value takes on disk (pg_column_size), by its length."""
    async with engine.begin() as conn:
        for size in (3_400, 12_000):
            await conn.execute(sa.text(f"INSERT INTO {table} (v) VALUES (:v)"),
                               {"v": _payload(size)})
        rows = (await conn.execute(sa.text(
            f"SELECT octet_length(v), pg_column_size(v) FROM {table}"))).all()
        await conn.execute(sa.text(f"DELETE FROM {table}"))
    return {length: stored for length, stored in rows}


async def test_rows_up_to_a_page_stay_uncompressed_longer_ones_are_still_compressed(
        infra: Infra) -> None:
    async with migrated_schema(infra.database_url, "rows") as engine:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE plain (v BYTEA NOT NULL)"))
            await conn.execute(sa.text("CREATE TABLE whole (v BYTEA NOT NULL)"))
            for ddl in rows_uncompressed_ddl("whole"):
                await conn.execute(sa.text(ddl))
        plain = await _stored_sizes(engine, "plain")
        whole = await _stored_sizes(engine, "whole")
        async with engine.begin() as conn:
            for ddl in rows_compressed_again_ddl("whole"):
                await conn.execute(sa.text(ddl))
        again = await _stored_sizes(engine, "whole")

    assert plain[3_400] < 3_400  # PostgreSQL's default: compressed past ~2 kB
    assert whole[3_400] >= 3_400  # kept as it is
    assert whole[12_000] < 12_000  # longer than a page: compressed all the same
    assert again[3_400] < 3_400  # the downgrade: the default again
