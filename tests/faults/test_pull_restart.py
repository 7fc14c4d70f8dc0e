"""The pull connector (``orderflow pull``, a process of its own) against the fake marketplace and
intake on a broker of the module's own: killed with SIGKILL mid-page, restarted, every order of
the marketplace comes out as exactly one ``order.received``; 5xx and 429 answers are retried;
SIGTERM stops it cleanly with its cursor kept.

The kill point is made certain by a wrapper that runs the CLI with one seam held: the page's push
stops after its first orders are confirmed (``mid-push``), or the whole page is confirmed and
the cursor store never happens (``before-cursor``); the wrapper writes a marker and hangs there
until the test kills it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from orderflow.devstack.marketplace import FakeMarketplace, marketplace_orders
from orderflow.devstack.processes import stop, wait_until
from orderflow.devstack.simulator import STORES, SimulatedOrder
from orderflow.runtime.lag import wait_consumed
from orderflow.testing.events import EventLog
from orderflow.testing.infra import Infra
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.private import private_pipeline

pytestmark = pytest.mark.fault

PAGE = 10
# runs ``orderflow`` with one seam held (argv: marker, hold, the CLI's arguments)
WRAPPER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from orderflow.connector import OrderPusher
    from orderflow.connector.pull import CursorFile
    from orderflow.devstack.cli import main

    marker, hold, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    kind, _, arg = hold.partition(":")
    if kind == "mid-push":  # the second page: its first ARG orders confirmed, then a crash
        push_many, pages = OrderPusher.push_many, []

        async def held_push(self, orders):
            pages.append(orders)
            if len(pages) < 2:
                return await push_many(self, orders)
            await push_many(self, list(orders)[:int(arg)])
            marker.write_text("pushed")
            time.sleep(3600)

        OrderPusher.push_many = held_push
    else:  # "before-cursor": page pushed, its cursor ARG never stored
        save = CursorFile.save

        def held_save(self, cursor):
            if cursor == arg:
                marker.write_text("pushed")
                time.sleep(3600)
            save(self, cursor)

        CursorFile.save = held_save
    sys.exit(main(argv))
''')


@pytest.fixture(scope="module")
async def intake_alone(infra: Infra) -> AsyncIterator[tuple[Pipeline, EventLog]]:
    async with private_pipeline(infra, "pull-connector", ["intake"]) as running:
        yield running


@pytest.fixture
def market() -> Iterator[FakeMarketplace]:
    prefix = f"PULL-{uuid.uuid4().hex[:6]}"  # ids of this test's own, also of added orders
    fake = FakeMarketplace(marketplace_orders(25, prefix=prefix), token="pull-test",
                           prefix=prefix).start()
    try:
        yield fake
    finally:
        fake.stop()


def environment(pipeline: Pipeline) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": pipeline.kafka.bootstrap_servers,
            "ORDERFLOW_KAFKA_BROKER": pipeline.kafka.broker,
            "ORDERFLOW_PULL_CREDENTIALS": "Bearer pull-test"}


def pull_args(market: FakeMarketplace, cursor: Path, *extra: str) -> list[str]:
    return ["pull", "--url", market.url, "--channel", "shopify", "--store", STORES["shopify"],
            "--cursor-file", str(cursor), "--limit", str(PAGE), "--retry-base", "0.05",
            "--quiet", *extra]


def run_pull(pipeline: Pipeline, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orderflow.devstack.cli", *args],
                          env=environment(pipeline), capture_output=True, text=True, timeout=180)


def start(pipeline: Pipeline, args: list[str], output: Path) -> subprocess.Popen[bytes]:
    """``python ARGS`` in the background, its output in ``output``."""
    with open(output, "wb") as log:
        return subprocess.Popen([sys.executable, *args], env=environment(pipeline), stdout=log,
                                stderr=subprocess.STDOUT)


def stored_cursor(path: Path) -> str | None:
    return json.loads(path.read_text())["cursor"] if path.exists() else None


def inbound_of(events: EventLog, orders: list[SimulatedOrder]) -> Counter[str]:
    ids = {o.external_id for o in orders}
    return Counter(e.event.external_id for e in events.of("order.inbound")
                   if e.event is not None and e.event.external_id in ids)


async def each_received_once(pipeline: Pipeline, events: EventLog,
                             orders: list[SimulatedOrder]) -> None:
    """Every order received, intake past every hand-over of them, and none received twice."""
    ids = {o.order_id for o in orders}
    await events.wait_for(lambda: ids <= {e.key for e in events.of("order.received")},
                          timeout=120, what=f"order.received for all {len(ids)} orders")
    targets: dict[TopicPartition, int] = {}
    external = {o.external_id for o in orders}
    for e in events.of("order.inbound"):
        if e.event is not None and e.event.external_id in external:
            tp = TopicPartition("order.inbound", e.partition)
            targets[tp] = max(targets.get(tp, 0), e.offset + 1)
    await wait_consumed(pipeline.kafka, "orderflow.intake", targets, timeout=120)
    received = Counter(e.key for e in events.of("order.received") if e.key in ids)
    assert set(received) == ids  # none missing
    assert [oid for oid, n in received.items() if n != 1] == []  # none twice


@pytest.mark.parametrize(("hold", "pushed_before_kill"), [("mid-push:4", 14),
                                                         ("before-cursor:pos-20", 20)])
async def test_a_poller_killed_mid_page_hands_every_order_over_once(
        intake_alone: tuple[Pipeline, EventLog], market: FakeMarketplace, tmp_path: Path,
        hold: str, pushed_before_kill: int) -> None:
    pipeline, events = intake_alone
    cursor = tmp_path / "cursor.json"
    marker = tmp_path / "held"
    wrapper = tmp_path / "held_pull.py"
    wrapper.write_text(WRAPPER)
    first = market.orders[:]
    proc = start(pipeline, [str(wrapper), str(marker), hold, *pull_args(market, cursor, "--once")],
                 tmp_path / "held.log")
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, timeout=120,
                   what="the poller to reach its kill point")
        assert proc.poll() is None, (tmp_path / "held.log").read_text()
        # the first page and part (or all) of the second confirmed; the second's cursor not stored
        await events.wait_for(lambda: sum(inbound_of(events, first).values())
                              >= pushed_before_kill, timeout=60, what="the pushes before the kill")
        assert sum(inbound_of(events, first).values()) == pushed_before_kill
        assert stored_cursor(cursor) == f"pos-{PAGE}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        stop(proc)

    added = market.add(5)  # new orders appear on later pages
    restarted = run_pull(pipeline, pull_args(market, cursor, "--once"))
    assert restarted.returncode == 0, restarted.stderr
    assert "pulled 20 orders in 2 pages" in restarted.stdout  # from page 2 on: 10, then 10
    assert stored_cursor(cursor) == "pos-30"

    every = first + added
    await each_received_once(pipeline, events, every)
    handed = inbound_of(events, every)
    again = [o.external_id for o in first[PAGE:pushed_before_kill]]
    assert sorted(eid for eid, n in handed.items() if n == 2) == sorted(again)  # at least once
    assert set(handed.values()) <= {1, 2} and set(handed) == {o.external_id for o in every}


async def test_5xx_and_429_are_retried_and_every_order_received_once(
        intake_alone: tuple[Pipeline, EventLog], market: FakeMarketplace, tmp_path: Path) -> None:
    pipeline, events = intake_alone
    market.fail_next(2, status=503)
    market.throttle_next(1, retry_after=1)
    result = run_pull(pipeline, pull_args(market, tmp_path / "cursor.json", "--once"))
    assert result.returncode == 0, result.stderr
    served = market.requests()
    assert [s.status for s in served] == [503, 503, 429, 200, 200, 200]
    assert served[3].at - served[2].at >= 1.0  # Retry-After waited
    await each_received_once(pipeline, events, market.orders)
    assert set(inbound_of(events, market.orders).values()) == {1}


async def test_sigterm_stops_the_poller_cleanly_with_its_cursor(
        intake_alone: tuple[Pipeline, EventLog], market: FakeMarketplace, tmp_path: Path) -> None:
    pipeline, events = intake_alone
    cursor = tmp_path / "cursor.json"
    out = tmp_path / "pull.out"
    # polls on (no --once): caught up, it waits a minute before asking again
    proc = start(pipeline, ["-m", "orderflow.devstack.cli",
                            *pull_args(market, cursor, "--poll", "60")], out)
    try:
        wait_until(lambda: stored_cursor(cursor) == "pos-25" or proc.poll() is not None,
                   timeout=120, what="the poller to catch up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, out.read_text()
    finally:
        stop(proc)
    assert "caught up" not in out.read_text() and "stopped at cursor 'pos-25'" in out.read_text()
    await each_received_once(pipeline, events, market.orders)
