"""pytest fixtures: ``infra`` (real PostgreSQL and broker for the session), ``kafka``,
``pipeline`` (the services as processes, master data loaded; also ``session_pipeline``),
``events`` (a reader of every topic; also ``session_events``),
``saga_step`` (a module's own intake, review and logistics, with no inventory),
``process_logging`` (a test's logging configuration put back as it was after it).

Register with ``pytest_plugins = ["orderflow.testing.fixtures"]`` in a conftest."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from orderflow.devstack.stack import var_dir
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra, provide_infra
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline


def _var() -> Path:
    return var_dir() / "test" / str(os.getpid())


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra(_var() / "infra") as provided:
        yield provided


@pytest.fixture(scope="session")
def kafka(infra: Infra) -> KafkaSettings:
    return infra.kafka


@pytest.fixture(scope="session")
async def session_pipeline(infra: Infra) -> AsyncIterator[Pipeline]:
    running = await Pipeline(infra, _var() / "pipeline").start()
    try:
        await running.load_demo_master_data()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
async def session_events(session_pipeline: Pipeline) -> AsyncIterator[EventLog]:
    log = await EventLog(session_pipeline.kafka).start()
    try:
        yield log
    finally:
        await log.stop()


# what tests ask for; a module may override these two with a pipeline of its own
@pytest.fixture(scope="session")
def pipeline(session_pipeline: Pipeline) -> Pipeline:
    return session_pipeline


@pytest.fixture(scope="session")
def events(session_events: EventLog) -> EventLog:
    return session_events


@pytest.fixture(scope="module")
async def saga_step(infra: Infra, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Pipeline, EventLog]]:
    """Intake, review and logistics on a broker and database of the module's own: no inventory
    carries a change on, so a test plays inventory's part of the saga itself."""
    name = f"saga-step-{request.path.parent.parent.name}"  # services/<name>/tests/test_….py
    async with private_pipeline(infra, name, ["intake", "review", "logistics"]) as running:
        yield running


@pytest.fixture
def process_logging() -> Iterator[None]:
    """Logging configured by a test (``configure_logging``) is put back as it was after it: its
    handler writes to the test's captured output, which is closed after it (later records, such
    as aiosmtpd's from its own thread in notify's tests, would then fail with "Logging error")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {n: logging.getLogger(n).level
              for n in ("aiokafka", "sqlalchemy.engine", "faststream", "uvicorn.access")}
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lvl in levels.items():
            logging.getLogger(name).setLevel(lvl)
        structlog.configure(**structlog_config)
        structlog.contextvars.clear_contextvars()
        logging.captureWarnings(False)
