"""The benchmark's wait for orders to settle (``bench.run.wait_settled``) over the watcher's
record of settled orders, without a broker: orders settled before the wait and while it waits
are counted once each, and an order that never settles is returned after the stall time."""

from __future__ import annotations

import asyncio

import pytest
from bench.run import wait_settled
from bench.watch import Watcher
from bench.workload import BenchOrder

from orderflow.runtime.settings import KafkaSettings

pytestmark = pytest.mark.unit


def orders(*external_ids: str) -> list[BenchOrder]:
    return [BenchOrder("canonical", e, {}) for e in external_ids]


def settle(w: Watcher, order: BenchOrder) -> None:
    w._settle(order.order_id)  # as the watcher's reader does on the order's last event
    w._settle(order.order_id)  # a second shipment of it: settled once
    w.records += 1
    w._changed.set()


async def test_orders_settled_before_and_during_the_wait_are_all_counted() -> None:
    w = Watcher(KafkaSettings())
    early, late, later = orders("A", "B", "C")
    settle(w, early)

    async def flow() -> None:
        for order in (late, later):
            await asyncio.sleep(0.05)
            settle(w, order)

    task = asyncio.create_task(flow())
    pending = await wait_settled(w, [early, late, later], stall_s=10, what="test")
    await task
    assert pending == set()
    assert w.settled_log == [early.order_id, late.order_id, later.order_id]
    assert all(w.settled(o.order_id) for o in (early, late, later))


async def test_an_order_that_never_settles_is_returned_after_the_stall() -> None:
    w = Watcher(KafkaSettings())
    done, stuck = orders("D", "E")
    settle(w, done)
    assert await wait_settled(w, [done, stuck], stall_s=0.2, what="test") == {stuck.order_id}
    assert not w.settled(stuck.order_id)
