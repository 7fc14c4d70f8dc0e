"""A fake marketplace order API for the pull connector (``orderflow pull``): simulator orders of
one channel, in that channel's format, served in pages by cursor as ``orderflow.connector.pull``
documents the contract (``GET /orders?cursor=C&limit=N``). It can fail requests (5xx), throttle
them (429 with Retry-After), hold them (a request waits until released) and take more orders
(they appear on later pages). An HTTP server in threads of its own (``ThreadingHTTPServer``).

    python -m orderflow.devstack.marketplace --port 8765 --orders 50 --channel shopify

Control endpoints (POST, for a fake running in a process of its own): ``/_control/fail?count=N
&status=503``, ``/_control/throttle?count=N&retry_after=S``, ``/_control/add?count=N``,
``/_control/hold``, ``/_control/release``."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orderflow.devstack.simulator import STORES, Mix, SimulatedOrder, generate_orders

CURSOR_PREFIX = "pos-"
MAX_LIMIT = 250
# a marketplace lists each order once and the fake's orders are meant to be received: no bad
# orders, no duplicates (a duplicate is what the poller's restart makes, not the marketplace)
CLEAN = Mix(bad=0.0, duplicate=0.0)


@dataclass(frozen=True)
class Served:
    """One request the fake answered: its cursor, limit, status and when (time.monotonic())."""

    cursor: str | None
    limit: int
    status: int
    at: float
    orders: int = 0


def marketplace_orders(count: int, *, channel: str = "shopify", seed: int = 11,
                       prefix: str = "MKT") -> list[SimulatedOrder]:
    """``count`` distinct simulator orders of ``channel`` (none bad, none duplicate)."""
    return generate_orders(count, seed=seed, mix=CLEAN, channels=(channel,), prefix=prefix)


class FakeMarketplace:
    def __init__(self, orders: Sequence[SimulatedOrder], *, token: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, seed: int = 11,
                 prefix: str = "MKT") -> None:
        """``token``: when given, every order request must carry ``Authorization: Bearer
        <token>`` (401 otherwise). ``seed`` and ``prefix``: those of the orders ``add()`` makes
        (``<prefix>-ADD<n>``: give each fake a prefix of its own for ids of its own)."""
        self.orders: list[SimulatedOrder] = list(orders)
        self.token = token
        self.seed = seed
        self.prefix = prefix
        self.served: list[Served] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []  # statuses of the next requests to fail
        self._throttles: list[float] = []  # Retry-After of the next requests to throttle
        self._released = threading.Event()
        self._released.set()
        self._added = 0
        self._waiting = 0
        market = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # the name http.server calls
                market._get(self)

            def do_POST(self) -> None:
                market._control(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="fake-marketplace", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/orders"

    def start(self) -> FakeMarketplace:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()  # a held request ends
        self.server.shutdown()
        self.server.server_close()

    # -- what a test (or the control endpoints) asks for -----------------------------------------
    def fail_next(self, count: int = 1, status: int = 503) -> None:
        with self._lock:
            self._failures += [status] * count

    def throttle_next(self, count: int = 1, retry_after: float = 1.0) -> None:
        with self._lock:
            self._throttles += [retry_after] * count

    def hold(self) -> None:
        """Order requests wait (unanswered) until ``release()``."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def waiting(self) -> int:
        """Order requests held right now."""
        with self._lock:
            return self._waiting

    def add(self, count: int) -> list[SimulatedOrder]:
        """``count`` new orders, listed after every order so far."""
        with self._lock:
            self._added += 1
            channel = self.orders[0].channel if self.orders else "shopify"
            new = marketplace_orders(count, channel=channel, seed=self.seed,
                                     prefix=f"{self.prefix}-ADD{self._added}")
            self.orders += new
        return new

    def requests(self) -> list[Served]:
        with self._lock:
            return list(self.served)

    # -- HTTP -----------------------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler, status: int, body: Any,
                headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(raw)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(raw)

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        if parts.path != "/orders":
            self._answer(handler, 404, {"error": "no such resource; GET /orders"})
            return
        query = parse_qs(parts.query)
        cursor = query.get("cursor", [None])[0]
        if self.token is not None and handler.headers.get("authorization") != f"Bearer {self.token}":
            self._record(cursor, 0, 401)
            self._answer(handler, 401, {"error": "missing or wrong credentials"})
            return
        try:
            limit = int(query.get("limit", ["50"])[0])
            start = 0 if cursor is None else int(cursor.removeprefix(CURSOR_PREFIX))
            if not 1 <= limit <= MAX_LIMIT or start < 0 or (
                    cursor is not None and not cursor.startswith(CURSOR_PREFIX)):
                raise ValueError
        except ValueError:
            self._record(cursor, 0, 400)
            self._answer(handler, 400, {"error": f"a cursor this API gave and a limit of 1 to "
                                                 f"{MAX_LIMIT}"})
            return
        with self._lock:
            self._waiting += 1
        self._released.wait()
        with self._lock:
            self._waiting -= 1
            failure = self._failures.pop(0) if self._failures else None
            throttle = self._throttles.pop(0) if self._throttles and failure is None else None
            page = [o.payload for o in self.orders[start:start + limit]]
            total = len(self.orders)
        if failure is not None:
            self._record(cursor, limit, failure)
            self._answer(handler, failure, {"error": "the fake marketplace failed as asked"})
            return
        if throttle is not None:
            self._record(cursor, limit, 429)
            self._answer(handler, 429, {"error": "too many requests"},
                         {"retry-after": f"{throttle:g}"})
            return
        end = min(start, total) + len(page)
        self._record(cursor, limit, 200, len(page))
        self._answer(handler, 200, {"orders": page, "next_cursor": f"{CURSOR_PREFIX}{end}",
                                    "has_more": end < total})

    def _record(self, cursor: str | None, limit: int, status: int, orders: int = 0) -> None:
        with self._lock:
            self.served.append(Served(cursor, limit, status, time.monotonic(), orders))

    def _control(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        handler.rfile.read(int(handler.headers.get("content-length") or 0))
        try:
            count = int(query.get("count", "1"))
            if parts.path == "/_control/fail":
                self.fail_next(count, int(query.get("status", "503")))
            elif parts.path == "/_control/throttle":
                self.throttle_next(count, float(query.get("retry_after", "1")))
            elif parts.path == "/_control/add":
                self.add(count)
            elif parts.path == "/_control/hold":
                self.hold()
            elif parts.path == "/_control/release":
                self.release()
            else:
                self._answer(handler, 404, {"error": "no such control"})
                return
        except ValueError:
            self._answer(handler, 400, {"error": "count, status and retry_after are numbers"})
            return
        self._answer(handler, 200, {"orders": len(self.orders)})


def main(argv: list[str] | None = None) -> int:
    from orderflow.channels import channel_names
    from orderflow.devstack.cli_args import CommandLine, UsageError, one_of, whole
    from orderflow.devstack.simulator import CHANNEL_FORMATS

    channels = tuple(c for c in channel_names() if c in CHANNEL_FORMATS)
    parser = CommandLine(prog="python -m orderflow.devstack.marketplace",
                         description="a fake marketplace order API serving simulator orders "
                                     "by cursor (for `orderflow pull`)")
    parser.add_argument("--port", type=whole(0), default=8765, help="the port (default 8765; "
                        "0: any free one)")
    parser.add_argument("--orders", type=whole(0), default=50, help="orders to serve (default 50)")
    parser.add_argument("--channel", choices=channels, default="shopify",
                        type=one_of("channel", channels),
                        help="the channel whose format the orders are in (default shopify)")
    parser.add_argument("--seed", type=whole(0), default=11, help="the simulator's seed")
    parser.add_argument("--token", default=None, help="require `Authorization: Bearer TOKEN`")
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    market = FakeMarketplace(marketplace_orders(args.orders, channel=args.channel,
                                                seed=args.seed),
                             token=args.token, port=args.port, seed=args.seed).start()
    store = STORES.get(args.channel)
    print(f"serving {args.orders} {args.channel} orders at {market.url}"
          + (f" (store {store}: `orderflow pull --store {store}`)" if store else ""), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    market.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
