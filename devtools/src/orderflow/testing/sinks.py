"""Real receivers of notifications that record what they were sent: an SMTP server (aiosmtpd, in
its own thread), an HTTP server on the caller's event loop that can also fail or hang (notify's
tests), and one in threads of its own (``make chaos`` counts the deliveries per delivery id with
it and the SMTP server)."""

from __future__ import annotations

import asyncio
import contextlib
import email
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from orderflow.devstack.processes import free_port


@dataclass(frozen=True)
class ReceivedEmail:
    recipients: tuple[str, ...]
    message: EmailMessage
    at: float = 0.0  # time.monotonic() on arrival

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return str(self.message.get_content())


class SmtpSink:
    """An SMTP server that keeps every message; it refuses addresses starting with ``refuse``."""

    def __init__(self) -> None:
        self.received: list[ReceivedEmail] = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(ReceivedEmail(tuple(envelope.rcpt_tos), message,
                                              time.monotonic()))
        return "250 Message accepted"

    def to(self, address: str) -> list[ReceivedEmail]:
        with self._lock:
            return [m for m in self.received if address in m.recipients]

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class HttpReceiver:
    """A small HTTP/1.1 server: ``/ok/...`` answers 200, ``/fail/...`` 500, ``/hang/...`` never."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> HttpReceiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip()
                           for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(ReceivedRequest(method, path, headers, body, time.monotonic()))
                if path.startswith("/hang"):
                    await asyncio.sleep(3600)
                status = "200 OK" if path.startswith("/ok") else "500 Internal Server Error"
                writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def to(self, prefix: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


class WebhookSink:
    """An HTTP server in threads of its own (``ThreadingHTTPServer``) that answers every POST 200
    and keeps it: its answers do not wait for the caller's event loop, however busy that is."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received = ReceivedRequest("POST", self.path,
                                           {k.lower(): v for k, v in self.headers.items()},
                                           body, time.monotonic())
                with sink._lock:
                    sink.requests.append(received)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-sink",
                                        daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self.requests)

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
