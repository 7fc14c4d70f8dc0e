"""Child processes that die with their parent, and are stopped in order when it ends."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from orderflow.connector.files import replace_file

_PR_SET_PDEATHSIG = 1


def _own_session_tied_to_parent() -> None:
    """Run in the child before exec: receive SIGTERM when the parent dies (even by SIGKILL), in a
    session of its own. Ctrl-C in the terminal reaches the supervisor only (it stops the children
    in order), and where the scheduler groups processes by session (Linux's autogroups) each child
    is weighed as one, as every PostgreSQL backend is: sharing the supervisor's session, the
    services together weighed as much as one backend, and a niced one could not lower its
    session's share (``orderflow.devstack.priority``)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setsid()


def spawn(args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
          run_as: Mapping[str, object] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log: IO[Any] = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        kwargs: dict[str, Any] = dict(run_as or {})
        return subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None, cwd=cwd,
            preexec_fn=_own_session_tied_to_parent,
            **kwargs,
        )
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes] | None, *, timeout: float = 20.0,
         sig: int = signal.SIGTERM) -> None:
    """Ask a child to stop, wait, then kill it."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def stop_pid(pid: int, *, timeout: float = 20.0) -> bool:
    """Stop a process we only know by pid; True if it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            # as servers bind: a port with connections in TIME_WAIT is free to listen on
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def wait_until(check: Callable[[], bool], *, timeout: float, what: str,
               interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0



def write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """``data`` as JSON in ``path``, replaced whole: a process polling the file (a state file)
    reads the old content or the new, never an empty file."""
    replace_file(path, json.dumps(data, indent=2).encode(), durable=False)
