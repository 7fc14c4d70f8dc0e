"""A pipeline of a test module's own: its own Tansu broker (quick to start) and its own database
on the session's PostgreSQL, so the events it publishes reach only the services it starts and
no other test's events reach them. For tests that need a running process with a chosen set of
services (a saga step with no next service to carry it on, a signal, an HTTP answer)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.devstack.stack import var_dir
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra, create_database
from orderflow.testing.pipeline import Pipeline


def private_root(name: str) -> Path:
    """A fresh directory of this test process for ``name``'s broker and service logs."""
    root = var_dir() / "test" / str(os.getpid()) / f"{name}-{uuid.uuid4().hex[:8]}"
    (root / "infra").mkdir(parents=True, exist_ok=True)
    return root


@contextlib.asynccontextmanager
async def private_infra(infra: Infra, root: Path) -> AsyncIterator[Infra]:
    """A Tansu broker under ``root`` (an existing directory) and a new database on the server
    of ``infra``."""
    broker = EmbeddedBroker(root)
    broker.start()
    try:
        database_url = await create_database(infra.database_url, f"private_{uuid.uuid4().hex[:12]}")
        yield Infra(database_url, broker.bootstrap, "embedded", broker="tansu")
    finally:
        broker.stop()


@contextlib.asynccontextmanager
async def private_pipeline(infra: Infra, name: str, services: list[str],
                           extra_env: dict[str, str] | None = None, *,
                           master_data: bool = True) -> AsyncIterator[tuple[Pipeline, EventLog]]:
    """``services`` running on a private infrastructure (see ``private_infra``), the demo master
    data loaded unless ``master_data`` is false; with a reader of every topic."""
    root = private_root(name)
    async with private_infra(infra, root / "infra") as own:
        pipeline = await Pipeline(own, root / "pipeline", services=services,
                                  extra_env=extra_env).start()
        try:
            if master_data:
                await pipeline.load_demo_master_data()
            events = await EventLog(pipeline.kafka).start()
            try:
                yield pipeline, events
            finally:
                await events.stop()
        finally:
            pipeline.stop()
