"""What the ``orderflow`` command line prints for a person (``--json`` prints the data as is):
the demo's summary, dead letters, the running stack, and how to reach a stack the demo kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the demo's counts that must all be 0 (its exit status says whether they are)
DEMO_CHECKS = ("lost", "duplicates", "invariant_violations", "wrong_outcome", "unnotified",
               "unexpected_dead_letters")


def demo_failures(summary: Mapping[str, Any]) -> list[str]:
    """The checks of ``DEMO_CHECKS`` the demo's summary fails."""
    return [name for name in DEMO_CHECKS if summary.get(name)]


def _counts(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{name} {n}" for name, n in (counts or {}).items()) or "none"


def demo_text(summary: Mapping[str, Any]) -> str:
    """The demo's summary in a few lines; the last says whether everything came out right."""
    lines = [
        f"pushed   {summary.get('orders_pushed')} orders in {summary.get('messages_pushed')} "
        f"messages (re-pushes included): {_counts(summary.get('channels'))}",
        f"settled  {summary.get('settled')}/{summary.get('orders_pushed')} in "
        f"{summary.get('settle_s')} s ({summary.get('elapsed_s')} s in all)",
        f"states   {_counts(summary.get('states'))}",
        f"held     {_counts(summary.get('held_by_reason'))}",
        f"rejected {_counts(summary.get('rejected_by_reason'))}",
        f"carriers {summary.get('delivered_orders')} delivered, {summary.get('delayed_orders')} "
        f"delayed, {summary.get('carrier_exceptions')} exceptions",
        f"notified {_counts(summary.get('notifications'))}",
        "checks   " + ", ".join(f"{name.replace('_', ' ')} {summary.get(name)}"
                                for name in DEMO_CHECKS),
    ]
    failed = demo_failures(summary)
    lines.append(f"NOT RIGHT: {', '.join(failed)} (`--json` shows examples)" if failed
                 else "all right: nothing lost, nothing applied twice, every outcome as meant")
    return "\n".join(lines)


def dead_letter_text(entry: Mapping[str, Any]) -> str:
    """One dead letter of ``orderflow dlq list`` on one line."""
    error = f": {entry['error']}" if entry.get("error") else ""
    return (f"offset {entry.get('offset')}  {entry.get('event_type') or '?'}  key "
            f"{entry.get('key') or '-'}  from {entry.get('service') or '?'}  "
            f"{entry.get('reason') or 'no reason'}{error}")


def stack_text(state: Mapping[str, Any]) -> str:
    """The running stack (its state file) in a few lines; the database URL without its
    password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    embedded = state.get("embedded") or {}
    lines = [f"supervisor pid {state.get('supervisor_pid')}"
             + ("" if state.get("ready") else " (starting)")]
    if state.get("kafka_bootstrap_servers"):
        lines.append(f"broker    {state['kafka_bootstrap_servers']} ({state.get('broker')}"
                     f"{', embedded' if embedded.get('broker') else ''})")
    if state.get("database_url"):
        try:
            url = make_url(str(state["database_url"])).render_as_string(hide_password=True)
        except ArgumentError:
            url = "(not a database URL)"
        lines.append(f"database  {url}"
                     f"{' (embedded)' if embedded.get('postgres') else ''}")
    for label, service in (state.get("services") or {}).items():
        lines.append(f"{label:<10}http://127.0.0.1:{service.get('port')}/  "
                     f"(pid {service.get('pid')})")
    return "\n".join(lines)


def kept_stack_text(state: Mapping[str, Any], dev_users: Mapping[str, tuple[str, str]]) -> str:
    """How to reach and stop the stack ``orderflow demo --keep`` left running."""
    services = state.get("services") or {}
    lines = ["the demo's stack keeps running with its data:"]
    console = services.get("console")
    if console:
        lines.append(f"  console  http://127.0.0.1:{console['port']}/")
        users = sorted(dev_users.items(), key=lambda item: item[0] != "admin")
        if users:
            lines.append("  sign in  " + ", ".join(f"{name} / {password}"
                                                  for name, (_role, password) in users)
                         + " (the development users: user / password)")
        if state.get("root"):
            lines.append(f"  API      bearer token in {state['root']}/console-token")
    lines.append(f"  push     `orderflow push` and `orderflow load` reach its broker "
                 f"({state.get('kafka_bootstrap_servers')})")
    lines.append("  stop     `orderflow dev down`")
    return "\n".join(lines)
