"""`orderflow dev up` as a developer runs it: everything up, Ctrl-C leaves no process behind;
with KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL set, nothing embedded is started."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.devstack.processes import wait_until
from orderflow.testing.infra import Infra, create_database

pytestmark = pytest.mark.e2e


def _start(var: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    env = {**os.environ, "ORDERFLOW_VAR_DIR": str(var), **env_extra}
    env.pop("ORDERFLOW_TEST_SERVICES", None)
    proc = subprocess.Popen([sys.executable, "-m", "orderflow.devstack.cli", "dev", "up", "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state = var / "dev" / "stack.json"

    def ready() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"dev up exited early:\n{out}")
        return state.exists() and bool(json.loads(state.read_text()).get("ready"))

    wait_until(ready, timeout=180, what="the dev stack to be ready")
    return proc, json.loads(state.read_text())


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_ctrl_c_on_dev_up_leaves_no_process_behind(tmp_path: Path) -> None:
    proc, state = _start(tmp_path / "var", {})
    assert state["embedded"] == {"postgres": True, "broker": True}
    services = state["services"]
    assert isinstance(services, dict)
    assert {"intake", "review", "inventory", "logistics", "notify"} <= set(services)
    started = _descendants(proc.pid)
    names = {p.name() for p in started}
    assert "postgres" in names
    assert any("tansu" in n for n in names)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to the foreground process
    assert proc.wait(120) == 0
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"
    assert not (tmp_path / "var" / "dev" / "stack.json").exists()


async def test_with_external_urls_nothing_embedded_is_started(tmp_path: Path, infra: Infra) -> None:
    """The stack's services on servers it did not start. Not the test session's own broker and
    database: its services would join the running pipeline's consumer groups (a rebalance in every
    group, partitions held by a member that is about to leave) and publish its demo master data
    into the pipeline's topics. A broker of the test's own and a new database on the test server."""
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        database_url = await create_database(infra.database_url,
                                             f"devstack_external_{uuid.uuid4().hex[:8]}")
        proc, state = await asyncio.to_thread(_start, tmp_path / "var", {
            "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap})
        try:
            assert state["embedded"] == {"postgres": False, "broker": False}
            assert state["database_url"] == database_url
            assert state["kafka_bootstrap_servers"] == broker.bootstrap
            names = {p.name() for p in _descendants(proc.pid)}
            assert "postgres" not in names
            assert not any("tansu" in n for n in names)
            assert not (tmp_path / "var" / "dev" / "postgres").exists()
        finally:
            proc.send_signal(signal.SIGINT)
            await asyncio.to_thread(proc.wait, 120)
    finally:
        broker.stop()
