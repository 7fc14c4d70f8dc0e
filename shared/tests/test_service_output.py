"""A service process writes its log lines, JSON, to standard output (structlog's, the
libraries', Python's warnings alike) and nothing to standard error; asked to stop while it still waits for its
database, it says so in one line and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

import pytest

from orderflow.devstack.processes import free_port, stop, wait_until

pytestmark = pytest.mark.unit


def _collect(stream: IO[bytes], into: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        into.append(raw.decode("utf-8", "replace"))


def _json(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_service_process_logs_json_lines_to_stdout_and_nothing_to_stderr() -> None:
    nowhere = free_port()  # nothing listens there: the service waits for its database
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ORDERFLOW_LOG_FORMAT": "auto",
           "DATABASE_URL": f"postgresql+asyncpg://orderflow:orderflow@127.0.0.1:{nowhere}/x",
           "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{nowhere}", "ORDERFLOW_HTTP_PORT": "0"}
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "orderflow.notify"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=_collect, args=(stream, lines), daemon=True)
               for stream, lines in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        wait_until(lambda: any(str(line.get("event")).startswith("transient fault, retrying")
                               for line in _json(out[:])) or proc.poll() is not None,
                   timeout=60, what="the service's first retry logged")
        assert proc.poll() is None, "".join(out + err)[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(out + err)[-3000:]
    finally:
        stop(proc)
        for reader in readers:
            reader.join(10)
    assert err == [], "".join(err)[-3000:]
    lines = _json(out)
    assert len(lines) == len([line for line in out if line.strip()]), out  # every line is JSON
    retry = next(line for line in lines
                 if line["event"].startswith("transient fault, retrying"))
    assert retry["service"] == "notify" and retry["level"] == "warning"
    assert retry["what"] == "migrate"
    assert lines[-1]["event"] == "service stopped before it started"
    assert lines[-1]["waiting_for"] == "migrate"


def test_pythons_warnings_are_log_lines_on_stdout_too() -> None:
    script = ("import warnings\n"
              "from orderflow.runtime.logging import configure_logging\n"
              "configure_logging('t', fmt='json')\n"
              "warnings.warn('a library is careful', UserWarning, stacklevel=1)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    (line,) = _json(done.stdout.splitlines())
    assert line["logger"] == "py.warnings" and line["level"] == "warning"
    assert "a library is careful" in line["event"]
