"""A process's CPU priority on a shared machine: its niceness, and its session's.

Linux's scheduler with autogroups (``/proc/sys/kernel/sched_autogroup_enabled``, on by default in
most distributions and on the benchmark's machine) first shares the cores between *sessions*
(``setsid``), each an equal entity whatever the number of its processes, and only then between
the processes of one session by their niceness. Every PostgreSQL backend starts a session of its
own, and the dev stack starts each service in a session of its own (``devstack.processes.spawn``),
so a process's niceness alone changes nothing against the others: a niced process that leads its
own session must also give its session (its autogroup) that niceness. Where there are no
autogroups (a container's processes are in a cgroup of their own; the setting off; no ``/proc``)
the session's part is skipped and the niceness alone sets the priority.

The dev stack starts every service through ``orderflow.devstack.launch``, which applies the
service's ``PrioritySettings`` here before the service's own ``__main__`` runs: its process's
niceness, and a hook (``orderflow.runtime.db.BACKEND_HOOKS``) that renices the PostgreSQL
backend of each connection it opens. A service started otherwise (an image, a container) keeps
its priority; across containers niceness would do nothing anyway.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.runtime import db
from orderflow.runtime.settings import load_settings

_PROC = Path("/proc")
# an unprivileged process may change an autogroup's niceness only once every 100 ms (the
# kernel's ``proc_sched_autogroup_set_nice``, EAGAIN otherwise)
_AUTOGROUP_TRIES = 4
_AUTOGROUP_PAUSE_S = 0.11
log = structlog.get_logger(__name__)


class PrioritySettings(BaseSettings):
    """A service's priority on the dev stack's one machine: ``ORDERFLOW_NICE`` and
    ``ORDERFLOW_DB_BACKEND_NICE``, the service's own prefix first (``ORDERFLOW_NOTIFY_NICE``).
    The stack gives notify and the console 19 (``devstack.stack.SIDE_CONSUMER_NICE``): the order
    flow's services get the cores first, the consumers off its path catch up when it idles."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    # added at start to the niceness the process started with (0: unchanged)
    nice: int = Field(default=0, ge=0, le=19)
    # the niceness given to the PostgreSQL backends of its connections (0: unchanged); only where
    # the database runs on this machine and its processes may be reniced, so that the service's
    # database work yields too
    db_backend_nice: int = Field(default=0, ge=0, le=19)


def kernel_has_autogroups() -> bool:
    """Whether this kernel puts each new session in an autogroup of its own. A process's own
    autogroup cannot tell: the processes of init's own session (where a container's or a
    CI runner's commands may run) are in no autogroup, and their ``autogroup`` file is empty."""
    return (_PROC / "self" / "autogroup").exists()


def autogroup_nice(pid: int) -> int | None:
    """The niceness of ``pid``'s autogroup, or None where it is in none (no autogroups in the
    kernel, or a process of init's session: the file is then empty)."""
    try:
        text = (_PROC / str(pid) / "autogroup").read_text()  # "/autogroup-123 nice 0"
    except OSError:
        return None
    parts = text.split()
    return int(parts[2]) if len(parts) == 3 and parts[1] == "nice" else None


def leads_own_session(pid: int) -> bool:
    """Whether ``pid`` started its session (its autogroup then holds it and its children only)."""
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def lower_priority(pid: int, nice: int) -> bool:
    """Give ``pid`` (0: this process) at least niceness ``nice``, and its autogroup too when the
    process leads its own session; never a higher priority. False when either was not
    permitted (nothing raised)."""
    pid = pid or os.getpid()
    try:
        if os.getpriority(os.PRIO_PROCESS, pid) < nice:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        return False
    if not leads_own_session(pid):  # the session is shared (a terminal's): not ours to lower
        return True
    current = autogroup_nice(pid)
    if current is None or current >= nice:
        return True
    for attempt in range(_AUTOGROUP_TRIES):
        if attempt:  # the kernel's limit for an unprivileged caller (EAGAIN)
            time.sleep(_AUTOGROUP_PAUSE_S)
        try:
            (_PROC / str(pid) / "autogroup").write_text(str(nice))
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return False
    return False


def renice_backend(pid: int, nice: int) -> bool:
    """Give the PostgreSQL backend ``pid`` on this machine at least niceness ``nice`` (a lower
    priority; never a higher one), and its session's autogroup the same (a backend starts a
    session of its own). False, and nothing changed, when ``pid`` is not a PostgreSQL process
    here (the database on another host: its pid means nothing here) or when this process may not
    renice it."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return False
    except OSError:
        return False
    return lower_priority(pid, nice)


def backend_renicer(nice: int) -> Callable[[int], None]:
    """A hook for ``orderflow.runtime.db.BACKEND_HOOKS``: each new connection's backend at
    ``nice``, with a warning where it cannot be."""

    def renice(pid: int) -> None:
        if not renice_backend(pid, nice):
            log.warning("the database backend could not be reniced (not a PostgreSQL process "
                        "on this machine, or not permitted); it keeps its priority",
                        backend_pid=pid, backend_nice=nice)

    return renice


def apply_service_priority(service: str) -> None:
    """In ``service``'s own process, before it starts: its niceness (added to the one it started
    with; its session's too when it leads its own), and its database backends' by a hook on the
    engines it will make."""
    settings = load_settings(PrioritySettings, service)
    if settings.nice:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings.nice)
        if not lower_priority(0, nice):
            log.warning("this process's priority could not be lowered", nice=nice)
    if settings.db_backend_nice:
        db.BACKEND_HOOKS.append(backend_renicer(settings.db_backend_nice))
