"""Micro-measurements behind the runtime's set-based statements (bench/README.md): what one
consumed batch costs the runtime in the database, with per-row SQLAlchemy statements and with
the set-based ``unnest`` statements the runtime uses, on an embedded PostgreSQL.

    python -m bench.micro [--batch 500] [--rounds 20]

Reports client CPU (``time.process_time``, robust on a shared machine) and wall time per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from orderflow.devstack.embedded import EmbeddedPostgres
from orderflow.devstack.stack import project_root
from orderflow.runtime.consumer import inbox_table
from orderflow.runtime.db import runtime_tables_ddl
from orderflow.runtime.outbox import OutgoingMessage, stage

CLAIM_UNNEST = sa.text(
    "INSERT INTO inbox (event_id, topic, event_type) "
    "SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:topics AS text[]), CAST(:types AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id")
STAGE_UNNEST = sa.text(
    "INSERT INTO outbox (topic, key, value, headers) "
    "SELECT * FROM unnest(CAST(:topics AS text[]), CAST(:keys AS bytea[]), CAST(:vals AS bytea[]), "
    "CAST(:headers AS jsonb[]))")
ORDERS = sa.Table("bench_orders", sa.MetaData(), sa.Column("order_id", sa.Text, primary_key=True),
                  sa.Column("status", sa.Text), sa.Column("revision", sa.Integer))


def messages(n: int) -> list[OutgoingMessage]:
    value = json.dumps({"order_id": "x" * 36, "lines": [{"sku": "TEA-001", "quantity": 2}] * 3,
                        "pad": "y" * 1200}).encode()
    headers = [(k, str(uuid.uuid4()).encode()) for k in
               ("event_id", "event_type", "schema_version", "occurred_at", "producer", "correlation_id",
                "traceparent")]
    return [OutgoingMessage("order.received", str(uuid.uuid4()).encode(), value, headers) for _ in range(n)]


async def measure(name: str, rounds: int, sessions: async_sessionmaker[AsyncSession],
                  body: Callable[[AsyncSession], Awaitable[Any]]) -> dict[str, float]:
    cpu, wall = 0.0, 0.0
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        async with sessions() as session, session.begin():
            await body(session)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
    return {"cpu_ms": round(1000 * cpu / rounds, 2), "wall_ms": round(1000 * wall / rounds, 2)}


async def run(batch: int, rounds: int, url: str) -> dict[str, dict[str, float]]:
    engine = create_async_engine(url, pool_size=2)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA IF EXISTS micro CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA micro"))
        await conn.execute(sa.text("SET search_path TO micro"))
    engine = create_async_engine(url, pool_size=2,
                                 connect_args={"server_settings": {"search_path": "micro"}})
    async with engine.begin() as conn:
        for ddl in runtime_tables_ddl():
            await conn.execute(sa.text(ddl))
        await conn.execute(sa.text("CREATE TABLE bench_orders (order_id TEXT PRIMARY KEY, status TEXT, "
                                   "revision INT)"))
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    out: dict[str, dict[str, float]] = {}

    def rows() -> list[dict[str, Any]]:
        return [{"event_id": uuid.uuid4(), "topic": "order.received", "event_type": "OrderReceived"}
                for _ in range(batch)]

    async def claim_now(s: AsyncSession) -> None:  # the runtime's _claim today
        stmt = (pg_insert(inbox_table).values(rows()).on_conflict_do_nothing()
                .returning(inbox_table.c.event_id))
        list((await s.execute(stmt)).scalars())

    async def claim_unnest(s: AsyncSession) -> None:
        r = rows()
        list((await s.execute(CLAIM_UNNEST, {"ids": [x["event_id"] for x in r],
                                             "topics": [x["topic"] for x in r],
                                             "types": [x["event_type"] for x in r]})).scalars())

    msgs = messages(batch)

    async def stage_now(s: AsyncSession) -> None:  # the runtime's outbox.stage today
        await stage(s, msgs)

    async def stage_unnest(s: AsyncSession) -> None:
        r = [m.row() for m in msgs]
        await s.execute(STAGE_UNNEST, {"topics": [x["topic"] for x in r], "keys": [x["key"] for x in r],
                                       "vals": [x["value"] for x in r],
                                       "headers": [json.dumps(x["headers"]) for x in r]})

    ids = [str(uuid.uuid4()) for _ in range(batch)]

    async def per_event_core(s: AsyncSession) -> None:  # a handler's lookup + insert, per event
        for oid in ids:
            await s.execute(sa.select(ORDERS.c.revision).where(ORDERS.c.order_id == oid).with_for_update())
            await s.execute(pg_insert(ORDERS).values(order_id=oid, status="received", revision=1)
                            .on_conflict_do_nothing())

    async def per_batch_set(s: AsyncSession) -> None:  # the same, set-based for the batch
        await s.execute(sa.text("SELECT order_id, revision FROM bench_orders "
                                "WHERE order_id = ANY(:ids) FOR UPDATE"), {"ids": ids})
        await s.execute(sa.text("INSERT INTO bench_orders (order_id, status, revision) "
                                "SELECT o, 'received', 1 FROM unnest(CAST(:ids AS text[])) AS o "
                                "ON CONFLICT DO NOTHING"), {"ids": ids})

    for name, body in [("inbox claim: pg_insert(...).values(rows) [now]", claim_now),
                       ("inbox claim: unnest(arrays) [proposed]", claim_unnest),
                       ("outbox stage: executemany [now]", stage_now),
                       ("outbox stage: unnest(arrays) [proposed]", stage_unnest),
                       ("handler: 2 Core statements per event [now]", per_event_core),
                       ("handler: 2 set-based statements per batch [proposed]", per_batch_set)]:
        await measure(name, 2, sessions, body)  # warm the statement caches
        out[name] = await measure(name, rounds, sessions, body)
        print(f"{name:<58} client CPU {out[name]['cpu_ms']:>8} ms  wall {out[name]['wall_ms']:>8} ms "
              f"per batch of {batch}", flush=True)
    await engine.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    pg = EmbeddedPostgres(project_root() / "var" / "bench-micro" / "postgres")
    pg.start(0)
    try:
        asyncio.run(run(a.batch, a.rounds, pg.url))
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
