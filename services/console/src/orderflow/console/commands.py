"""Command-line actions of the console (``python -m orderflow.console <command>``).

``rebuild``: with the console stopped, empty the read model (and the console's inbox), then read
every topic from the beginning with a plain consumer (no consumer group) and apply each event with
the console's own handlers and batch processor, exactly as the running service does. It reads up
to the end of every partition (no lower than what the ``orderflow.console`` group committed), and
leaves the group's offsets alone: whatever arrives later, the console consumes on its next start,
and what the rebuild already applied is skipped by the inbox. Because an order's view is a function
of the set of its events, the result is the same as the read model built live.

``hash-password``: read a password from stdin (or prompt) and print its hash for
``ORDERFLOW_CONSOLE_USERS``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition

from orderflow.console.auth import hash_password
from orderflow.console.dashboard import true_ends
from orderflow.console.repository import READ_MODEL_TABLES
from orderflow.contracts.topics import CATALOGUE
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.settings import DatabaseSettings, KafkaSettings, ServiceSettings, load_settings

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


async def _targets(kafka: KafkaSettings, group: str,
                   tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where to stop reading: the end offsets, no lower than the group's committed offsets."""
    probe = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        ends = {tp: int(off) for tp, off in (await probe.end_offsets(tps)).items()}
        fetched = await probe._coordinator.fetch_committed_offsets(tps)
        committed = {tp: (m.offset if m.offset >= 0 else None) for tp, m in fetched.items()}
        return true_ends(ends, [committed])
    finally:
        await probe.stop()


async def replay(kafka: KafkaSettings, processor: BatchProcessor, targets: dict[TopicPartition, int],
                 *, idle_s: float = 10.0) -> int:
    """Apply every record from the beginning up to ``targets``; returns the records read."""
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id="orderflow-console-rebuild")
    await consumer.start()
    try:
        consumer.assign(list(targets))
        await consumer.seek_to_beginning(*targets)
        pending = {tp for tp, end in targets.items() if end > 0}
        read, quiet_since = 0, time.monotonic()
        while pending and time.monotonic() - quiet_since < idle_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            records = [r for rs in batches.values() for r in rs]
            if not records:
                continue
            quiet_since = time.monotonic()
            await processor.process(records, None)
            read += len(records)
            for tp, rs in batches.items():
                if rs[-1].offset + 1 >= targets.get(tp, 0):
                    pending.discard(tp)
        return read
    finally:
        await consumer.stop()


async def rebuild() -> str:
    from orderflow.console.app import create_service

    database = load_settings(DatabaseSettings, "console")
    kafka = load_settings(KafkaSettings, "console")
    service = load_settings(ServiceSettings, "console")
    group = f"{service.consumer_group_prefix}.console"
    definition = create_service()
    engine = make_engine(database, "console", application_name="orderflow-console-rebuild")
    try:
        await migrate(engine, "console", MIGRATIONS)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"TRUNCATE {', '.join(READ_MODEL_TABLES)}, inbox"))
            last_outbox = (await conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM outbox"))).scalar()
        tps = [TopicPartition(t.name, p) for t in CATALOGUE for p in range(t.partitions)]
        targets = await _targets(kafka, group, tps)
        processor = BatchProcessor(service="console", subscriptions=definition.subscriptions,
                                   engine=engine, max_bytes=service.max_message_bytes)
        read = await replay(kafka, processor, targets)
        async with engine.begin() as conn:
            # poison messages were dead-lettered when first consumed: do not publish them again
            await conn.execute(sa.text("DELETE FROM outbox WHERE id > :last"), {"last": last_outbox})
            orders = (await conn.execute(sa.text("SELECT count(*) FROM console_orders"))).scalar()
    finally:
        await engine.dispose()
    return f"read model rebuilt: {read} messages replayed, {orders} orders"


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderflow.console")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("rebuild", help="empty the read model and replay every topic into it "
                                   "(stop the console first)")
    sub.add_parser("hash-password", help="print a password hash for ORDERFLOW_CONSOLE_USERS")
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() \
            else getpass.getpass("password: ")
        if len(password) < 8:
            print("a password needs at least 8 characters", file=sys.stderr)
            return 2
        print(hash_password(password))
        return 0
    print(asyncio.run(rebuild()))
    return 0
