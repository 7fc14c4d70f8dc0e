"""A pull connector: a poller that pages a marketplace's order API by cursor, pushes each page's
orders onto ``order.inbound`` (``OrderPusher``, confirmed by the broker) and only then stores the
next cursor durably. A crash between the push and the store hands the page over again on restart
(at least once); intake's idempotency on (channel, store, external id, revision) makes it once.

A marketplace is reached through an ``OrderSource``: anything with ``fetch_page(cursor) -> Page``.
``CursorOrderApi`` is the one for the documented cursor contract (the simulator's fake
marketplace serves it)::

    GET {url}?limit=N[&cursor=C]            (no cursor: from the start)
    200 {"orders": [<order in the channel's format>, ...],
         "next_cursor": "<opaque; the position after this page>",
         "has_more": true | false}          (false: caught up; ask again from next_cursor later)
    429 with Retry-After: seconds           (waited, then asked again)
    5xx, a timeout, a refused connection    (asked again with backoff)
    any other status                        (permanent: ``PullError``)

Another marketplace maps onto it with a class of its own with that one method. Needs only the
standard library, pydantic, aiokafka (through the pusher) and httpx (the kit's ``pull`` extra).
Logs go through structlog where it is installed (the dev tools, the services), else through the
standard library's ``logging``; no order payload and no credential is logged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from orderflow.connector.client import PushResult, Submission, external_id_of, store_of
from orderflow.connector.files import replace_file


class PullError(Exception):
    """The poller cannot go on (the order API refused it, the cursor file is unusable); its
    message is one line. The cursor stays where it was: a restart resumes from it."""


class RetryLater(Exception):
    """A fetch to repeat: the API is throttling (``retry_after`` seconds, when it said) or failed
    transiently (a 5xx, a timeout, a refused connection)."""

    def __init__(self, reason: str, retry_after: float | None = None, *,
                 throttled: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.throttled = throttled


@dataclass(frozen=True)
class Page:
    """One page of orders as pushes (``Submission``), the cursor after it, and whether more
    orders wait beyond it now. ``refused``: orders of the page that cannot be pushed (no id, no
    store), each with its reason; they are logged and skipped."""

    orders: Sequence[Submission]
    next_cursor: str
    has_more: bool = False
    refused: Sequence[str] = ()


class OrderSource(Protocol):
    """A marketplace's order API as the poller sees it."""

    async def fetch_page(self, cursor: str | None) -> Page:
        """The page after ``cursor`` (None: the first); raises ``RetryLater`` for a fetch to
        repeat, ``PullError`` for one that cannot succeed."""
        ...


class Pusher(Protocol):
    async def push_many(self, orders: Sequence[Submission]) -> list[PushResult]: ...


# -- logging -------------------------------------------------------------------------------------

try:  # structlog where it is installed; the slim kit has the standard library's logging only
    import structlog

    _structlog: Any = structlog.get_logger(__name__)
except ImportError:  # pragma: no cover - exercised in the slim kit's own environment
    _structlog = None
_stdlib = logging.getLogger(__name__)


def _log(level: str, event: str, **fields: Any) -> None:
    if _structlog is not None:
        getattr(_structlog, level)(event, **fields)
    else:
        getattr(_stdlib, level)("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))


# -- the cursor, kept across restarts ------------------------------------------------------------

@dataclass(frozen=True)
class CursorFile:
    """The poller's position as a JSON file, ``{"cursor": ..., "source": ..., "saved_at": ...}``,
    written atomically and durably (a temporary file beside it, fsynced, renamed over it, the
    directory fsynced): after a crash it holds the old cursor or the new one, never a torn one.
    ``source`` names the API the cursor belongs to; a file of another source is refused."""

    path: Path
    source: str

    def load(self) -> str | None:
        """The stored cursor; None when there is no file yet (start from the beginning)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PullError(f"cannot read the cursor file {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise PullError(f"the cursor file {self.path} is not JSON; move it away to start "
                            "from the beginning") from None
        cursor = data.get("cursor") if isinstance(data, dict) else None
        if cursor is not None and not isinstance(cursor, str):
            raise PullError(f"the cursor file {self.path} has no cursor string")
        if isinstance(data, dict) and data.get("source") not in (None, self.source):
            raise PullError(f"the cursor file {self.path} belongs to {data.get('source')}, "
                            f"not {self.source}; give each API a cursor file of its own")
        return cursor

    def save(self, cursor: str) -> None:
        body = json.dumps({"cursor": cursor, "source": self.source,
                           "saved_at": datetime.now(UTC).isoformat()}).encode()
        replace_file(self.path, body)  # durable: the rename itself survives a power cut


# -- the documented cursor contract over HTTP ----------------------------------------------------

RETRIED_STATUSES = frozenset({500, 502, 503, 504})


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's wait: seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def submissions(channel: str, payloads: Sequence[Any],
                store: str | None) -> tuple[list[Submission], list[str]]:
    """The pushes of a page's payloads in ``channel``'s format (id and store read as ``orderflow
    push`` reads them), and the reasons of those that cannot be pushed."""
    orders: list[Submission] = []
    refused: list[str] = []
    for n, payload in enumerate(payloads):
        try:
            orders.append((channel, external_id_of(channel, payload), payload,
                           store_of(channel, payload, store)))
        except ValueError as exc:  # StoreRefused is one
            refused.append(f"order {n + 1} of the page: {exc}")
    return orders, refused


class CursorOrderApi:
    """``OrderSource`` of the cursor contract (module docstring) over httpx. ``headers``: the
    credentials header(s) sent with every request (never logged)."""

    def __init__(self, url: str, channel: str, *, store: str | None = None, limit: int = 100,
                 headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.channel = channel
        self.store = store
        self.limit = limit
        self._client = client or httpx.AsyncClient(timeout=timeout, headers=dict(headers or {}))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch_page(self, cursor: str | None) -> Page:
        params: dict[str, str | int] = {"limit": self.limit}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            response = await self._client.get(self.url, params=params)
        except httpx.TimeoutException:
            raise RetryLater("the order API did not answer in time") from None
        except httpx.TransportError as exc:
            raise RetryLater(f"the order API cannot be reached ({type(exc).__name__}: "
                             f"{exc})") from None
        status = response.status_code
        if status == 429:
            raise RetryLater("the order API is throttling (429)",
                             retry_after_seconds(response.headers.get("retry-after")),
                             throttled=True)
        if status in RETRIED_STATUSES:
            raise RetryLater(f"the order API failed ({status})")
        if status in (401, 403):
            raise PullError(f"the order API refused the credentials ({status}) at {self.url}")
        if status != 200:
            raise PullError(f"the order API answered {status} at {self.url}: "
                            f"{response.text[:200]!r}")
        try:
            body = response.json()
        except ValueError:
            raise PullError(f"the order API at {self.url} answered 200 with no JSON") from None
        orders = body.get("orders") if isinstance(body, dict) else None
        next_cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if not isinstance(orders, list) or not isinstance(next_cursor, str):
            raise PullError(f"the order API at {self.url} answered 200 without the contract's "
                            "orders (a list) and next_cursor (a string)")
        pushes, refused = submissions(self.channel, orders, self.store)
        return Page(pushes, next_cursor, bool(body.get("has_more")), refused)


# -- the poller ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Backoff:
    """Waits between failed fetches: ``base`` doubling per attempt up to ``cap``, with jitter."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        full = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return full / 2 + random.uniform(0, full / 2)


@dataclass
class PullStats:
    pages: int = 0
    orders: int = 0
    refused: int = 0
    retries: int = 0
    cursor: str | None = None
    stopped: bool = False  # stopped by ``stop()`` (SIGTERM) rather than caught up (``once``)
    started: float = field(default_factory=time.monotonic)


class Poller:
    """Pages ``source`` from the cursor in ``cursor_file``: fetch a page, push its orders (every
    one confirmed), store its next cursor, and on. Caught up (``has_more`` false), it waits
    ``poll_interval`` and asks again (``once``: returns). ``stop()`` ends it after the page in
    hand: a fetch or a wait is cut short, a push and its cursor store are finished.

    Failed fetches (``RetryLater``) are retried with ``backoff``; after ``max_attempts`` in a row
    ``PullError`` is raised. A throttled fetch waits the API's Retry-After and does not count as
    an attempt."""

    def __init__(self, source: OrderSource, pusher: Pusher, cursor_file: CursorFile, *,
                 poll_interval: float = 30.0, once: bool = False, backoff: Backoff = Backoff(),
                 max_attempts: int = 10) -> None:
        self.source = source
        self.pusher = pusher
        self.cursor_file = cursor_file
        self.poll_interval = poll_interval
        self.once = once
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.stats = PullStats()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopped first; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        return self._stopping.is_set()

    async def _fetch(self, cursor: str | None) -> Page | None:
        """The page after ``cursor``, retried as the API asks; None when stopped first."""
        attempt = 0
        while True:
            fetch = asyncio.ensure_future(self.source.fetch_page(cursor))
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch
                return None
            try:
                return fetch.result()
            except RetryLater as exc:
                if exc.throttled:
                    delay = exc.retry_after if exc.retry_after is not None \
                        else self.backoff.delay(1)
                else:
                    attempt += 1
                    if attempt >= self.max_attempts:
                        raise PullError(f"{exc}; gave up after {attempt} attempts") from None
                    delay = self.backoff.delay(attempt)
                self.stats.retries += 1
                _log("warning", "pull.fetch_retry", reason=str(exc), cursor=cursor,
                     attempt=attempt, wait_s=round(delay, 3))
                if await self._wait(delay):
                    return None

    async def run(self) -> PullStats:
        cursor = self.cursor_file.load()
        self.stats.cursor = cursor
        _log("info", "pull.started", cursor=cursor, source=self.cursor_file.source)
        while not self._stopping.is_set():
            page = await self._fetch(cursor)
            if page is None:
                break
            if page.has_more and page.next_cursor == cursor:  # it would ask for this page forever
                raise PullError(f"the order API says more orders wait after cursor {cursor!r} "
                                "but gives no cursor past it")
            for reason in page.refused:
                _log("error", "pull.order_refused", reason=reason, cursor=cursor)
            if page.orders:
                await self.pusher.push_many(page.orders)  # returns once the broker confirmed all
            if page.next_cursor != cursor:  # only after the push: at least once
                self.cursor_file.save(page.next_cursor)
            self.stats.pages += 1
            self.stats.orders += len(page.orders)
            self.stats.refused += len(page.refused)
            _log("info", "pull.page_pushed", orders=len(page.orders), refused=len(page.refused),
                 cursor=cursor, next_cursor=page.next_cursor, has_more=page.has_more)
            cursor = self.stats.cursor = page.next_cursor
            if not page.has_more:
                if self.once:
                    break
                if await self._wait(self.poll_interval):
                    break
        self.stats.stopped = self._stopping.is_set()
        _log("info", "pull.stopped", pages=self.stats.pages, orders=self.stats.orders,
             cursor=cursor, by_signal=self.stats.stopped)
        return self.stats


__all__ = ["Backoff", "CursorFile", "CursorOrderApi", "OrderSource", "Page", "Poller", "PullError",
           "PullStats", "Pusher", "RetryLater", "retry_after_seconds", "submissions"]
