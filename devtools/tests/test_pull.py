"""The pull connector's parts without a broker: the cursor file, and the poller paging the fake
marketplace over real HTTP (its pushes recorded, each checked against the cursor stored at that
moment), retrying 5xx and timeouts, waiting a 429's Retry-After, stopping on request."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from orderflow.connector import PushResult, Submission
from orderflow.connector.pull import (
    Backoff,
    CursorFile,
    CursorOrderApi,
    Page,
    Poller,
    PullError,
    retry_after_seconds,
)
from orderflow.devstack.marketplace import FakeMarketplace, marketplace_orders
from orderflow.devstack.simulator import STORES

pytestmark = pytest.mark.unit

FAST = Backoff(base=0.01, cap=0.05)
TOKEN = "t0ken"  # the fake's, not a secret


class RecordingPusher:
    """Keeps every push with the cursor stored when it was made (the push comes first)."""

    def __init__(self, cursor_file: CursorFile) -> None:
        self.cursor_file = cursor_file
        self.pushes: list[tuple[list[Submission], str | None]] = []

    async def push_many(self, orders: Sequence[Submission]) -> list[PushResult]:
        self.pushes.append((list(orders), self.cursor_file.load()))
        return [PushResult(o[0], o[1], 0, n) for n, o in enumerate(orders)]

    def external_ids(self) -> list[str]:
        return [o[1] for orders, _cursor in self.pushes for o in orders]


@pytest.fixture
def market() -> Iterator[FakeMarketplace]:
    fake = FakeMarketplace(marketplace_orders(23, channel="shopify"), token=TOKEN).start()
    try:
        yield fake
    finally:
        fake.stop()


def api(market: FakeMarketplace, limit: int = 10, token: str = TOKEN,
        timeout: float = 5.0) -> CursorOrderApi:
    return CursorOrderApi(market.url, "shopify", store=STORES["shopify"], limit=limit,
                          headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


async def poll(market: FakeMarketplace, cursor_file: CursorFile, **options: object
               ) -> tuple[RecordingPusher, Poller]:
    source = api(market)
    pusher = RecordingPusher(cursor_file)
    poller = Poller(source, pusher, cursor_file, once=True, backoff=FAST, **options)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(poller.run(), 30)
    finally:
        await source.aclose()
    return pusher, poller


def test_the_cursor_file_keeps_the_cursor_and_its_source(tmp_path: Path) -> None:
    store = CursorFile(tmp_path / "deep" / "c.json", source="http://a/orders")
    assert store.load() is None  # no file yet: from the start
    store.save("pos-10")
    store.save("pos-20")
    assert store.load() == "pos-20"
    assert json.loads(store.path.read_text())["source"] == "http://a/orders"
    assert os.listdir(store.path.parent) == ["c.json"]  # no temporary file left behind
    with pytest.raises(PullError, match="belongs to http://a/orders, not http://b/orders"):
        CursorFile(store.path, source="http://b/orders").load()
    store.path.write_text("{not json")
    with pytest.raises(PullError, match="is not JSON"):
        store.load()


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


async def test_every_page_is_pushed_before_its_cursor_is_stored(
        market: FakeMarketplace, tmp_path: Path) -> None:
    cursor_file = CursorFile(tmp_path / "c.json", source=market.url)
    pusher, poller = await poll(market, cursor_file)
    assert pusher.external_ids() == [o.external_id for o in market.orders]  # each once, in order
    # each page pushed while the cursor still named the page before it
    assert [cursor for _orders, cursor in pusher.pushes] == [None, "pos-10", "pos-20"]
    assert [len(orders) for orders, _cursor in pusher.pushes] == [10, 10, 3]
    assert all(o[-1] == STORES["shopify"] for orders, _c in pusher.pushes for o in orders)
    assert cursor_file.load() == "pos-23" and poller.stats.orders == 23

    new = market.add(4)  # appear on a later page; a restart resumes from the stored cursor
    again, _ = await poll(market, cursor_file)
    assert again.external_ids() == [o.external_id for o in new]
    assert cursor_file.load() == "pos-27"
    caught_up, _ = await poll(market, cursor_file)  # nothing new: nothing pushed
    assert caught_up.pushes == [] and cursor_file.load() == "pos-27"


async def test_5xx_is_retried_and_429_waits_its_retry_after(
        market: FakeMarketplace, tmp_path: Path) -> None:
    market.fail_next(2, status=503)
    market.throttle_next(1, retry_after=0.6)
    pusher, poller = await poll(market, CursorFile(tmp_path / "c.json", source=market.url))
    served = market.requests()
    assert [s.status for s in served[:4]] == [503, 503, 429, 200]
    assert {s.cursor for s in served[:4]} == {None}  # the same page asked again
    assert served[3].at - served[2].at >= 0.6  # the Retry-After waited
    assert pusher.external_ids() == [o.external_id for o in market.orders]
    assert poller.stats.retries == 3


async def test_a_failing_api_is_given_up_after_max_attempts_and_the_cursor_stays(
        market: FakeMarketplace, tmp_path: Path) -> None:
    cursor_file = CursorFile(tmp_path / "c.json", source=market.url)
    cursor_file.save("pos-10")
    market.fail_next(3, status=500)
    with pytest.raises(PullError, match=r"failed \(500\); gave up after 3 attempts"):
        await poll(market, cursor_file, max_attempts=3)
    assert cursor_file.load() == "pos-10"


async def test_refused_credentials_are_permanent(market: FakeMarketplace, tmp_path: Path) -> None:
    source = api(market, token="wrong")
    poller = Poller(source, RecordingPusher(CursorFile(tmp_path / "c.json", source=market.url)),
                    CursorFile(tmp_path / "c.json", source=market.url), once=True, backoff=FAST)
    try:
        with pytest.raises(PullError, match=r"refused the credentials \(401\)"):
            await poller.run()
    finally:
        await source.aclose()
    assert [s.status for s in market.requests()] == [401]


async def _until(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (callers bound it with ``asyncio.wait_for``)."""
    while not condition():  # noqa: ASYNC110 - a condition of another thread's server
        await asyncio.sleep(0.02)


async def test_a_timeout_is_retried(market: FakeMarketplace, tmp_path: Path) -> None:
    market.hold()
    source = api(market, timeout=0.3)
    cursor_file = CursorFile(tmp_path / "c.json", source=market.url)
    pusher = RecordingPusher(cursor_file)
    poller = Poller(source, pusher, cursor_file, once=True, backoff=FAST)
    task = asyncio.ensure_future(poller.run())
    try:
        # the held request timed out and is asked again
        await asyncio.wait_for(_until(lambda: poller.stats.retries >= 1), 10)
        market.release()
        stats = await asyncio.wait_for(task, 30)
    finally:
        market.release()
        await source.aclose()
    assert stats.orders == 23 and pusher.external_ids() == [o.external_id for o in market.orders]


async def test_stop_cuts_a_fetch_or_a_wait_short_and_keeps_the_cursor(
        market: FakeMarketplace, tmp_path: Path) -> None:
    cursor_file = CursorFile(tmp_path / "c.json", source=market.url)
    source = api(market, timeout=60)
    try:
        market.hold()  # the first fetch hangs
        held = Poller(source, RecordingPusher(cursor_file), cursor_file, backoff=FAST)
        task = asyncio.ensure_future(held.run())
        await asyncio.wait_for(_until(lambda: market.waiting() == 1), 10)
        held.stop()
        stats = await asyncio.wait_for(task, 5)
        assert stats.stopped and stats.pages == 0 and cursor_file.load() is None
        market.release()

        # caught up, it waits a minute before asking again: stop() ends the wait at once
        waiting = Poller(source, RecordingPusher(cursor_file), cursor_file, poll_interval=60,
                         backoff=FAST)
        task = asyncio.ensure_future(waiting.run())
        await asyncio.wait_for(_until(lambda: cursor_file.load() == "pos-23"), 20)
        waiting.stop()
        stats = await asyncio.wait_for(task, 5)
    finally:
        market.release()
        await source.aclose()
    assert stats.stopped and stats.orders == 23 and cursor_file.load() == "pos-23"


def test_a_page_of_an_order_without_an_id_pushes_the_others() -> None:
    from orderflow.connector.pull import submissions

    orders, refused = submissions("shopify", [{"id": 1}, {"note": "no id"}], "shop")
    assert [o[1] for o in orders] == ["1"]
    assert refused == ["order 2 of the page: a shopify order without an id (none of id, "
                       "order_number, name)"]
    assert Page(orders, "c").has_more is False


def test_the_command_refuses_a_cursor_file_of_another_api_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orderflow.devstack.cli import main

    cursor = tmp_path / "c.json"
    CursorFile(cursor, source="http://elsewhere/orders").save("pos-3")
    status = main(["pull", "--url", "http://127.0.0.1:9/orders", "--channel", "douyin",
                   "--cursor-file", str(cursor), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1 and "\n" not in err
    assert err.startswith("orderflow pull: the cursor file ") and "belongs to " \
        "http://elsewhere/orders, not http://127.0.0.1:9/orders" in err


async def test_an_api_whose_cursor_does_not_move_is_refused(tmp_path: Path) -> None:
    class Stuck:
        async def fetch_page(self, cursor: str | None) -> Page:
            return Page([], cursor or "c0", has_more=True)

    cursor_file = CursorFile(tmp_path / "c.json", source="stuck")
    cursor_file.save("c0")
    poller = Poller(Stuck(), RecordingPusher(cursor_file), cursor_file, backoff=FAST)
    with pytest.raises(PullError, match="gives no cursor past it"):
        await asyncio.wait_for(poller.run(), 5)
