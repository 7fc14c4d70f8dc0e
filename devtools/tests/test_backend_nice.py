"""The database work of a service at a lower priority: where the database runs on the same
machine (the dev stack), notify's and the console's PostgreSQL backends are reniced with them,
and where the scheduler weighs sessions (Linux's autogroups) their sessions too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from orderflow.devstack.priority import (
    apply_service_priority,
    autogroup_nice,
    kernel_has_autogroups,
    leads_own_session,
    lower_priority,
    renice_backend,
)
from orderflow.devstack.processes import spawn, stop
from orderflow.devstack.stack import SIDE_CONSUMER_NICE, ServiceProcess, Stack
from orderflow.runtime import db
from orderflow.runtime.db import make_engine
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.infra import Infra

AUTOGROUPS = kernel_has_autogroups()  # every new session (a backend's, a child's) has one


async def _backend_nice(infra: Infra, backend_nice: int,
                        monkeypatch: pytest.MonkeyPatch) -> tuple[int, int | None]:
    """The niceness of a new connection's backend, and its autogroup's, in an engine made after
    the service's priority was applied as the dev stack's launcher applies it (the test's own
    process keeps its niceness: ``ORDERFLOW_NICE`` unset)."""
    monkeypatch.setattr(db, "BACKEND_HOOKS", [])
    monkeypatch.delenv("ORDERFLOW_NICE", raising=False)
    monkeypatch.setenv("ORDERFLOW_DB_BACKEND_NICE", str(backend_nice))
    apply_service_priority("review")
    engine = make_engine(DatabaseSettings(url=infra.database_url), "public")
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            assert leads_own_session(pid)  # PostgreSQL's backends start sessions of their own
            return os.getpriority(os.PRIO_PROCESS, pid), autogroup_nice(pid)
    finally:
        await engine.dispose()


async def test_an_engines_connections_get_backends_at_its_backend_niceness(
        infra: Infra, monkeypatch: pytest.MonkeyPatch) -> None:
    if infra.kind != "embedded":
        pytest.skip("the database runs elsewhere: its backends are not this machine's processes")
    assert await _backend_nice(infra, 7, monkeypatch) == (7, 7 if AUTOGROUPS else None)
    # by default a backend keeps its priority
    assert await _backend_nice(infra, 0, monkeypatch) == (0, 0 if AUTOGROUPS else None)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child in a session of its own, as the dev stack starts every process."""
    proc = spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                 log_path=Path(os.devnull))
    yield proc
    stop(proc, timeout=5)


def test_the_dev_stack_starts_each_process_in_a_session_of_its_own(
        sleeper: subprocess.Popen[bytes]) -> None:
    assert leads_own_session(sleeper.pid)
    assert os.getsid(sleeper.pid) != os.getsid(0)


def test_a_process_leading_its_session_is_lowered_with_its_session_never_raised(
        sleeper: subprocess.Popen[bytes]) -> None:
    assert lower_priority(sleeper.pid, 7) is True
    assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == 7
    assert autogroup_nice(sleeper.pid) == (7 if AUTOGROUPS else None)
    assert lower_priority(sleeper.pid, 3) is True  # never to a higher priority
    assert os.getpriority(os.PRIO_PROCESS, sleeper.pid) == 7
    assert autogroup_nice(sleeper.pid) == (7 if AUTOGROUPS else None)


def test_a_process_sharing_its_session_is_lowered_alone() -> None:
    """A process in a session it did not start (a terminal's, this test's): only its own
    niceness, never the session's, which holds other processes."""
    mine = autogroup_nice(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not leads_own_session(child.pid)
        assert lower_priority(child.pid, 5) is True
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 5
        assert autogroup_nice(child.pid) == mine == autogroup_nice(os.getpid())
    finally:
        stop(child, timeout=5)


def test_an_autogroups_niceness_is_read_from_proc(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "autogroup").write_text("/autogroup-123 nice 19\n")
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "autogroup").write_text("something else\n")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "autogroup").write_text("")  # init's session is in no autogroup
    monkeypatch.setattr("orderflow.devstack.priority._PROC", tmp_path)
    assert autogroup_nice(42) == 19
    assert autogroup_nice(43) is None  # not the format it knows: as if there were none
    assert autogroup_nice(44) is None  # no such process, or no autogroups
    assert autogroup_nice(1) is None
    # whether the kernel has them is not read off a process's own (CI may run in init's session)
    assert kernel_has_autogroups() is False
    (tmp_path / "self").symlink_to(tmp_path / "1")
    assert kernel_has_autogroups() is True


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
