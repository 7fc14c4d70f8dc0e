"""`orderflow dev up` as a developer runs it, on either broker: everything up, Ctrl-C leaves no
process behind (the broker's JVM included); on Apache Kafka, the stack stopped mid-flow and started
again loses and strands no order; with KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL set, nothing
embedded is started."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from orderflow.connector import OrderPusher
from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.devstack.eventlog import EventLog
from orderflow.devstack.masterdata import load_demo_data
from orderflow.devstack.processes import wait_until
from orderflow.devstack.simulator import generate_orders
from orderflow.devstack.tracking import Tracker
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.infra import Infra, create_database

pytestmark = pytest.mark.e2e


def _start(var: Path, env_extra: dict[str, str],
           broker: str = "tansu") -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    env = {**os.environ, "ORDERFLOW_VAR_DIR": str(var), **env_extra}
    env.pop("ORDERFLOW_TEST_SERVICES", None)
    proc = subprocess.Popen([sys.executable, "-m", "orderflow.devstack.cli", "dev", "up", "--quiet",
                             "--broker", broker],
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


def _is_broker(process: psutil.Process, broker: str) -> bool:
    with contextlib.suppress(psutil.Error):
        if broker == "tansu":
            return "tansu" in process.name()
        return process.name() == "java" and "kafka.Kafka" in process.cmdline()
    return False


@pytest.mark.parametrize("broker", ["tansu", "kafka"])
def test_ctrl_c_on_dev_up_leaves_no_process_behind(tmp_path: Path, broker: str) -> None:
    proc, state = _start(tmp_path / "var", {}, broker)
    assert state["embedded"] == {"postgres": True, "broker": True}
    assert state["broker"] == broker
    services = state["services"]
    assert isinstance(services, dict)
    assert {"intake", "review", "inventory", "logistics", "notify"} <= set(services)
    started = _descendants(proc.pid)
    names = {p.name() for p in started}
    assert "postgres" in names
    assert any(_is_broker(p, broker) for p in started)
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


async def _settle(kafka: KafkaSettings, order_ids: set[str], timeout: float) -> Tracker:
    """Follow every topic from its start until each order is settled (or the time is up)."""
    tracker = Tracker()
    async with EventLog(kafka) as log:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            tracker.feed_new(log.events)
            if all(tracker.settled(oid) for oid in order_ids):
                break
            await asyncio.sleep(0.3)
        tracker.feed_new(log.events)
    return tracker


async def test_dev_up_on_kafka_stopped_mid_flow_and_started_again_loses_and_strands_no_order(
        tmp_path: Path) -> None:
    """Orders pushed, the stack stopped (Ctrl-C) while they flow, started again: the broker's log,
    the groups' positions and the database survived, and every order settles once, with no
    operator action."""
    var = tmp_path / "var"
    proc, state = await asyncio.to_thread(_start, var, {}, "kafka")
    kafka = KafkaSettings(bootstrap_servers=str(state["kafka_bootstrap_servers"]), broker="kafka")
    orders = generate_orders(60, seed=11)
    order_ids = {o.order_id for o in orders}
    try:
        await load_demo_data(kafka)
        async with OrderPusher(kafka, producer_name="tests") as pusher:
            await pusher.push_many([o.submission() for o in orders])
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 120) == 0
    proc, state = await asyncio.to_thread(_start, var, {}, "kafka")
    try:
        assert state["kafka_bootstrap_servers"] == str(kafka.bootstrap_servers)
        tracker = await _settle(kafka, order_ids, timeout=180)
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(proc.wait, 120) == 0
    unsettled = sorted(oid for oid in order_ids if not tracker.settled(oid))
    assert unsettled == [], f"{len(unsettled)} of {len(order_ids)} orders stranded: {unsettled[:5]}"
    assert tracker.duplicates() == {}
