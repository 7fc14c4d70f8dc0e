"""Real receivers for notify's tests (``orderflow.testing.sinks``), one of each per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orderflow.testing.sinks import HttpReceiver, SmtpSink


@pytest.fixture(scope="module")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="module")
async def http_receiver() -> AsyncIterator[HttpReceiver]:
    receiver = await HttpReceiver().start()
    try:
        yield receiver
    finally:
        await receiver.stop()
