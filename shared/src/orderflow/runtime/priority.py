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
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

_PROC = Path("/proc")
# an unprivileged process may change an autogroup's niceness only once every 100 ms (the
# kernel's ``proc_sched_autogroup_set_nice``, EAGAIN otherwise)
_AUTOGROUP_TRIES = 4
_AUTOGROUP_PAUSE_S = 0.11


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
