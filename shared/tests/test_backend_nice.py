"""The database work of a service at a lower priority: where the database runs on the same
machine (the dev stack), notify's and the console's PostgreSQL backends are reniced with them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from orderflow.devstack.stack import SIDE_CONSUMER_NICE, ServiceProcess, Stack
from orderflow.runtime.db import make_engine, renice_backend
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.infra import Infra


async def _backend_nice(infra: Infra, backend_nice: int) -> int:
    engine = make_engine(DatabaseSettings(url=infra.database_url, backend_nice=backend_nice),
                         "public")
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            return os.getpriority(os.PRIO_PROCESS, pid)
    finally:
        await engine.dispose()


async def test_an_engines_connections_get_backends_at_its_backend_niceness(infra: Infra) -> None:
    if infra.kind != "embedded":
        pytest.skip("the database runs elsewhere: its backends are not this machine's processes")
    assert await _backend_nice(infra, 7) == 7
    assert await _backend_nice(infra, 0) == 0  # by default a backend keeps its priority


def test_only_a_postgresql_process_is_reniced_and_never_to_a_higher_priority() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert renice_backend(os.getpid(), 19) is False  # this test is not PostgreSQL
    assert os.getpriority(os.PRIO_PROCESS, 0) == mine
    assert renice_backend(2**22 + 12345, 5) is False  # no such process


def test_the_dev_stack_renices_the_side_consumers_backends_when_the_database_is_local(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ORDERFLOW_NICE", "ORDERFLOW_DB_BACKEND_NICE"):
        monkeypatch.delenv(name, raising=False)

    def backend_nice(url: str, service: str) -> str | None:
        stack = Stack(tmp_path, services=[service], database_url=url)
        return stack.service_env(ServiceProcess(service, 0, 8100)).get("ORDERFLOW_DB_BACKEND_NICE")

    local = "postgresql+asyncpg://postgres@127.0.0.1:5432/orderflow"
    assert backend_nice(local, "console") == str(SIDE_CONSUMER_NICE)
    assert backend_nice(local, "notify") == str(SIDE_CONSUMER_NICE)
    assert backend_nice(local, "review") is None  # the order flow's own keep their priority
    assert backend_nice("postgresql+asyncpg://app@db.internal:5432/orderflow", "console") is None
    monkeypatch.setenv("ORDERFLOW_NICE", "4")  # the service's niceness, whatever it is
    assert backend_nice(local, "console") == "4"
