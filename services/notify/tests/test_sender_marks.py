"""The sender marks finished sends in group commits: the first at once, the ones that finish
meanwhile together in the next transaction; a round that fails for good is marked again one
notification at a time, so one bad row cannot hold back the others."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from orderflow.notify.channels import Delivered
from orderflow.notify.sender import ChannelSender
from orderflow.notify.settings import NotifySettings

pytestmark = pytest.mark.unit


class Marks:
    """Stands in for the marking transaction: records each round, fails rows named bad."""

    def __init__(self, bad: set[int]) -> None:
        self.rounds: list[list[int]] = []
        self.bad = bad
        self.first_started = asyncio.Event()
        self.release_first = asyncio.Event()

    async def __call__(self, _ctx: Any, items: list[tuple[Any, Any]]) -> None:
        ids = [row.id for row, _ in items]
        self.rounds.append(ids)
        if len(self.rounds) == 1:
            self.first_started.set()
            await self.release_first.wait()
        if self.bad & set(ids):
            raise ValueError(f"row {sorted(self.bad & set(ids))} cannot be marked")


def sender(marks: Marks) -> ChannelSender:
    driver = SimpleNamespace(channel="email", records_only=False)
    s = ChannelSender(driver, NotifySettings(), renderer=None, send_timeout_s=5)  # type: ignore[arg-type]
    s._mark = marks  # type: ignore[method-assign,assignment]
    return s


async def test_sends_finishing_during_a_mark_share_the_next_transaction() -> None:
    marks = Marks(bad=set())
    s = sender(marks)
    ctx = SimpleNamespace(stopping=asyncio.Event())
    ok = Delivered("sent", "ok")
    first = asyncio.create_task(s._marked(ctx, SimpleNamespace(id=1), ok))  # type: ignore[arg-type]
    await asyncio.wait_for(marks.first_started.wait(), 5)
    later = [asyncio.create_task(s._marked(ctx, SimpleNamespace(id=n), ok))  # type: ignore[arg-type]
             for n in (2, 3, 4)]
    await asyncio.sleep(0)  # let them queue behind the running mark
    marks.release_first.set()
    await asyncio.wait_for(asyncio.gather(first, *later), 5)
    assert marks.rounds == [[1], [2, 3, 4]]


async def test_a_row_that_cannot_be_marked_fails_alone() -> None:
    marks = Marks(bad={3})
    s = sender(marks)
    ctx = SimpleNamespace(stopping=asyncio.Event())
    ok = Delivered("sent", "ok")
    first = asyncio.create_task(s._marked(ctx, SimpleNamespace(id=1), ok))  # type: ignore[arg-type]
    await asyncio.wait_for(marks.first_started.wait(), 5)
    later = {n: asyncio.create_task(s._marked(ctx, SimpleNamespace(id=n), ok))  # type: ignore[arg-type]
             for n in (2, 3, 4)}
    await asyncio.sleep(0)
    marks.release_first.set()
    await asyncio.wait_for(first, 5)
    results = await asyncio.wait_for(asyncio.gather(*later.values(), return_exceptions=True), 5)
    outcome = dict(zip(later, results, strict=True))
    assert outcome[2] is None and outcome[4] is None
    assert isinstance(outcome[3], ValueError)
    # the shared round failed, then each row was marked on its own
    assert marks.rounds == [[1], [2, 3, 4], [2], [3], [4]]
