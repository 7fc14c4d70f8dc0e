"""The ``orderflow`` command line.

    orderflow dev up [--detach] [--replicas intake=2 ...]   start the stack (foreground, Ctrl-C stops)
    orderflow dev down                                      stop a detached stack (or a kept demo)
    orderflow dev status [--json]                           what runs, where
    orderflow push --channel CHANNEL [--store STORE] PATH   push orders as a connector would
    orderflow pull --url URL --channel CHANNEL [--once]     page a marketplace's order API by cursor
    orderflow load products|customers|warehouses|stock FILE publish master data from a CSV file
    orderflow demo [--orders N] [--keep] [--json]           the whole pipeline, end to end
    orderflow dlq list|replay TOPIC [--json]                inspect or replay a dead-letter topic

Every refusal is one line on stderr with a non-zero exit: a usage error (2, with the closest
known name for a mistyped one), a file that is missing, over a limit or not JSON, an order
without an id (2), a broker that does not answer within ``--wait`` (1); anything unexpected is
one line too (1), with its traceback under ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orderflow.devstack.cli_args import (
    CommandLine,
    UsageError,
    one_of,
    replicas,
    seconds,
    version,
    whole,
)
from orderflow.devstack.cli_output import (
    dead_letter_text,
    demo_failures,
    demo_text,
    kept_stack_text,
    stack_text,
)
from orderflow.runtime.settings import KafkaSettings

if TYPE_CHECKING:
    from orderflow.devstack.stack import Stack

BROKER_WAIT_S = 10.0


class InputError(Exception):
    """Input the command cannot use (a missing file, an order without an id): one line."""


def _state_path() -> Path:
    from orderflow.devstack.stack import var_dir

    return var_dir() / "dev" / "stack.json"


def _read_state() -> dict[str, Any] | None:
    state = _state_path()
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _kafka_from_state() -> KafkaSettings:
    """The running dev stack's broker, unless the environment names one."""
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        data = _read_state()
        if data and data.get("kafka_bootstrap_servers"):
            return KafkaSettings(bootstrap_servers=data["kafka_bootstrap_servers"],
                                 broker=data.get("broker", "kafka"))
    return KafkaSettings()


def _running_supervisor() -> int | None:
    """The pid of the stack's supervisor if one runs, other than this process (a detached one
    finds itself named); a stale state file is removed."""
    data = _read_state()
    if data is None:
        return None
    try:
        pid = int(data["supervisor_pid"])
        if pid == os.getpid():
            return None
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        _state_path().unlink(missing_ok=True)
        return None
    return pid


def _another_stack_runs(command: str) -> bool:
    """Whether a stack runs already (then said in one line): the dev stack has one state file."""
    running = _running_supervisor()
    if running is not None:
        print(f"{command}: a stack is already running (pid {running}); "
              "`orderflow dev down` stops it", file=sys.stderr)
    return running is not None


def _supervise(stack: Stack, state: Path, extra: dict[str, Any], *, quiet: bool,
               stopping: Callable[[], bool]) -> None:
    """Restart crashed services until ``stopping()``; the state file follows the restarts."""
    while not stopping():
        restarted = stack.supervise()
        if not quiet:
            up = sum(1 for sp in stack.processes if stack.healthy(sp))
            line = "  ".join(
                f"{sp.label}:{'up' if stack.healthy(sp) else 'DOWN'}"
                + (f"(restarts {sp.restarts})" if sp.restarts else "")
                for sp in stack.processes
            )
            print(f"\r{time.strftime('%H:%M:%S')} {up}/{len(stack.processes)} up | {line}  ",
                  end="", flush=True)
        if restarted:
            print(f"\nrestarted: {', '.join(restarted)}", flush=True)
            stack.write_state(state, extra)
        for _ in range(10):
            if stopping():
                break
            time.sleep(0.2)


def _detach(cmd: list[str], what: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    """Start ``cmd`` (this command line again) in a session of its own, its output appended to
    ``var/dev/supervisor.log``; the state file names it at once, so `orderflow dev down` stops
    it whatever it is doing. Returns the process, the log and the log's size before it."""
    from orderflow.devstack.processes import write_json_atomically
    from orderflow.devstack.stack import var_dir

    log = var_dir() / "dev" / "supervisor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orderflow.devstack.cli", *cmd],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    write_json_atomically(_state_path(), {"supervisor_pid": proc.pid, "starting": what})
    return proc, log, offset


def cmd_dev_up(args: argparse.Namespace) -> int:
    from orderflow.devstack.stack import Stack, broker_choice, var_dir
    from orderflow.runtime.logging import mask_text

    if _another_stack_runs("orderflow dev up"):
        return 1
    state = _state_path()
    state.parent.mkdir(parents=True, exist_ok=True)
    if args.detach:
        cmd = ["dev", "up", "--quiet"]
        if args.broker:
            cmd += ["--broker", args.broker]
        for name, count in args.replicas:
            cmd += ["--replicas", f"{name}={count}"]
        proc, log, offset = _detach(cmd, "dev up")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(_log_since(log, offset).decode("utf-8", "replace")[-3000:],
                      file=sys.stderr)
                return 1
            if (_read_state() or {}).get("ready"):
                print(f"stack up (supervisor pid {proc.pid}); logs in var/dev/logs; "
                      "`orderflow dev down` stops it")
                return 0
            time.sleep(0.3)
        print("orderflow dev up: the stack did not become ready in time; "
              "`orderflow dev down` stops what started", file=sys.stderr)
        return 1

    stack = Stack(root=var_dir() / "dev", replicas=dict(args.replicas),
                  broker_kind=broker_choice(args.broker))
    stopping = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("starting infrastructure ...", flush=True)
        stack.start_infrastructure()
        embedded = [k for k, v in stack.embedded.items() if v]
        print(f"  database  {mask_text(stack.database_url)}"
              f"{' (embedded)' if stack.postgres else ' (external)'}")
        kind = {"kafka": "Apache Kafka, KRaft", "tansu": "embedded Tansu"}[stack.broker_kind]
        print(f"  broker    {stack.bootstrap} ({kind if stack.broker else 'external'})")
        print(f"starting services: {', '.join(stack.services)} ...", flush=True)
        stack.start_services()
        stack.write_state(state)
        stack.wait_healthy(timeout=300)
        stack.write_state(state, {"ready": True})
        console = next((sp for sp in stack.processes if sp.name == "console"), None)
        if console:
            print(f"console: http://127.0.0.1:{console.port}/  (token: var/dev/console-token)")
        print(f"ready; embedded: {', '.join(embedded) or 'none'}; Ctrl-C stops everything",
              flush=True)
        _supervise(stack, state, {"ready": True}, quiet=args.quiet, stopping=lambda: stopping)
    except Exception as exc:  # noqa: BLE001 - reported, then everything is stopped
        print(f"\nerror: {exc}", file=sys.stderr)
        return_code = 1
    else:
        return_code = 0
    finally:
        print("\nstopping services, broker and database ...", flush=True)
        stack.stop()
        state.unlink(missing_ok=True)
        print("stopped", flush=True)
    return return_code


def cmd_dev_down(_args: argparse.Namespace) -> int:
    from orderflow.devstack.processes import stop_pid

    data = _read_state()
    if data is None:
        print("no stack is running")
        return 0
    gone = stop_pid(int(data["supervisor_pid"]), timeout=90)
    print("stack stopped" if gone else "the supervisor did not stop in time; it was killed")
    _state_path().unlink(missing_ok=True)
    return 0


def cmd_dev_status(args: argparse.Namespace) -> int:
    data = _read_state()
    if data is None:
        print("no stack is running")
        return 1
    print(json.dumps(data, indent=2) if args.json else stack_text(data))
    return 0


def _json_refused(source: str, exc: json.JSONDecodeError, line_offset: int = 0) -> Exception:
    from orderflow.connector.limits import FileRefused

    return FileRefused(source, f"not JSON at line {exc.lineno + line_offset}, column "
                               f"{exc.colno}: {exc.msg}")


def read_orders(path: Path, channel: str) -> list[Any]:
    """One JSON file (an order or a list of them), a folder of JSON files, or JSON lines;
    for the csv channel a CSV file grouped into orders by ``order_number``. Every file is read
    within the ``ORDERFLOW_FILE_*`` limits (``FileRefused`` beyond them, or not JSON: where)."""
    from orderflow.connector.limits import FileLimits, FileRefused, one_line, read_bounded

    if path.is_dir():
        items: list[Any] = []
        for child in sorted(path.iterdir()):
            if child.suffix in {".json", ".jsonl", ".csv"}:
                items += read_orders(child, channel)
        return items
    limits = FileLimits()
    if path.suffix == ".csv" or channel in {"csv", "xlsx"}:
        from orderflow.connector.spreadsheet import read_order_sheet

        return read_order_sheet(path, limits)
    with path.open("rb") as fh:
        raw = read_bounded(fh, path.name, limits)
    try:
        text = raw.decode("utf-8")
        if path.suffix == ".jsonl":
            lines = [(n, line) for n, line in enumerate(text.splitlines()) if line.strip()]
            if len(lines) > limits.max_rows:
                raise FileRefused(path.name, f"more than {limits.max_rows} orders "
                                             "(ORDERFLOW_FILE_MAX_ROWS)")
            orders = []
            for n, line in lines:
                try:
                    orders.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise _json_refused(path.name, exc, line_offset=n) from None
            return orders
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_refused(path.name, exc) from None
    except UnicodeDecodeError as exc:
        raise FileRefused(path.name, f"not UTF-8 text ({one_line(exc)})") from None
    except RecursionError:
        raise FileRefused(path.name, "not JSON (nested too deeply)") from None
    orders = data if isinstance(data, list) else [data]
    if len(orders) > limits.max_rows:
        raise FileRefused(path.name, f"more than {limits.max_rows} orders "
                                     "(ORDERFLOW_FILE_MAX_ROWS)")
    return orders


def _existing(name: str) -> Path:
    path = Path(name)
    if not path.exists():
        raise InputError(f"no such file or folder: {name}")
    return path


def cmd_push(args: argparse.Namespace) -> int:
    from orderflow.connector import OrderPusher, StoreRefused, Submission, external_id_of, store_of

    payloads = read_orders(_existing(args.path), args.channel)
    orders: list[Submission] = []
    for n, p in enumerate(payloads, start=1):  # every order told before anything is pushed
        try:
            orders.append((args.channel, external_id_of(args.channel, p), p,
                           store_of(args.channel, p, args.store)))
        except StoreRefused as exc:
            hint = " (--store STORE)" if exc.code == "store_missing" else ""
            print(f"orderflow push: refused, {exc.code}: {exc}{hint}; nothing pushed",
                  file=sys.stderr)
            return 2
        except ValueError as exc:
            raise InputError(f"{args.path}: order {n} of {len(payloads)} is {exc}; "
                             "nothing pushed") from None

    async def run() -> int:
        async with OrderPusher(_kafka_from_state(), connect_within=args.wait) as pusher:
            results = await pusher.push_many(orders)
        return len(results)

    count = asyncio.run(run())
    store = f", store {args.store}" if args.store else ""
    print(f"pushed {count} order{'s' if count != 1 else ''} onto order.inbound "
          f"(channel {args.channel}{store})")
    return 0


PULL_CREDENTIALS_ENV = "ORDERFLOW_PULL_CREDENTIALS"


def _default_cursor_file(channel: str, store: str | None) -> Path:
    from orderflow.devstack.stack import var_dir

    return var_dir() / "pull" / f"{channel}{'-' + store if store else ''}.cursor.json"


def cmd_pull(args: argparse.Namespace) -> int:
    from orderflow.connector import OrderPusher
    from orderflow.connector.pull import Backoff, CursorFile, CursorOrderApi, Poller
    from orderflow.runtime.logging import configure_logging

    configure_logging("pull", level="WARNING" if args.quiet else "INFO")
    credentials = os.environ.get(PULL_CREDENTIALS_ENV)
    headers = {args.credentials_header: credentials} if credentials else {}
    cursor_path = Path(args.cursor_file) if args.cursor_file else \
        _default_cursor_file(args.channel, args.store)
    cursor_file = CursorFile(cursor_path, source=args.url)
    cursor_file.load()  # an unusable cursor file is refused before anything starts

    async def run() -> tuple[int, int, str | None, bool]:
        source = CursorOrderApi(args.url, args.channel, store=args.store, limit=args.limit,
                                headers=headers, timeout=args.timeout)
        try:
            async with OrderPusher(_kafka_from_state(), connect_within=args.wait,
                                   client_id="orderflow-pull") as pusher:
                poller = Poller(source, pusher, cursor_file, poll_interval=args.poll,
                                once=args.once, max_attempts=args.max_attempts,
                                backoff=Backoff(base=args.retry_base))
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, poller.stop)
                stats = await poller.run()
        finally:
            await source.aclose()
        return stats.orders, stats.pages, stats.cursor, stats.stopped

    orders, pages, cursor, stopped = asyncio.run(run())
    why = "stopped" if stopped else "caught up"
    print(f"pulled {orders} order{'s' if orders != 1 else ''} in {pages} "
          f"page{'s' if pages != 1 else ''} onto order.inbound (channel {args.channel}); "
          f"{why} at cursor {cursor!r} ({cursor_path})")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from orderflow.devstack.masterdata import load_file

    report = asyncio.run(load_file(args.kind, _existing(args.file), _kafka_from_state(),
                                   connect_within=args.wait))
    for problem in report.problems:
        print(f"{args.file}:{problem}", file=sys.stderr)
    print(f"loaded {report.published} {args.kind} row(s); {len(report.problems)} bad row(s)")
    return 0 if report.published or not report.problems else 1


def _print_demo(summary: dict[str, Any], as_json: bool) -> int:
    print(json.dumps(summary, sort_keys=False) if as_json else demo_text(summary), flush=True)
    failed = demo_failures(summary)
    if failed:
        print(f"orderflow demo: not right: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _log_since(log: Path, offset: int) -> bytes:
    with contextlib.suppress(OSError), log.open("rb") as fh:
        fh.seek(offset)
        return fh.read()
    return b""


def _serve_kept_demo(stack: Stack, summary: dict[str, Any]) -> None:
    """In the detached process of ``demo --keep``: publish the summary and the stack in the state
    file, then supervise the stack until `orderflow dev down` (SIGTERM) stops it."""
    state = _state_path()
    extra = {"ready": True, "demo": summary, "root": str(stack.root)}
    stack.write_state(state, extra)
    with contextlib.suppress(KeyboardInterrupt):  # the demo's SIGTERM handler raises it
        _supervise(stack, state, extra, quiet=True, stopping=lambda: False)


def _keep_demo(args: argparse.Namespace) -> int:
    """``demo --keep``: the demo runs in a process of its own that keeps the stack afterwards;
    this one relays its progress, prints the summary and how to reach and stop the stack."""
    from orderflow.devstack.processes import stop_pid

    if _another_stack_runs("orderflow demo"):
        return 1
    _state_path().parent.mkdir(parents=True, exist_ok=True)
    cmd = ["demo", "--serve", "--orders", str(args.orders), "--seed", str(args.seed),
           "--timeout", str(args.timeout)] + (["--broker", args.broker] if args.broker else [])
    proc, log, offset = _detach(cmd, "demo")
    try:
        while True:
            text = _log_since(log, offset)
            offset += len(text)
            sys.stderr.write(text.decode("utf-8", "replace"))
            sys.stderr.flush()
            data = _read_state() or {}
            if data.get("ready") and data.get("supervisor_pid") == proc.pid:
                break
            if proc.poll() is not None:
                print(f"orderflow demo: the demo ended (exit {proc.returncode}) before keeping "
                      f"its stack; its output is in {log}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop_pid(proc.pid, timeout=90)
        _state_path().unlink(missing_ok=True)
        print("orderflow demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    code = _print_demo(data["demo"], args.json)
    print(kept_stack_text(data, _dev_users()), file=sys.stderr if args.json else sys.stdout)
    return code


def _dev_users() -> dict[str, tuple[str, str]]:
    """The console's development users (the dev stack turns them on), if the console is here."""
    try:
        from orderflow.console.auth import DEV_USERS
    except ImportError:
        return {}
    return dict(DEV_USERS)


def cmd_demo(args: argparse.Namespace) -> int:
    from orderflow.devstack.demo import run_demo

    if args.serve:  # the detached process of ``demo --keep``
        try:
            run_demo(orders=args.orders, seed=args.seed, timeout_s=args.timeout,
                     broker=args.broker, keep=_serve_kept_demo)
        finally:
            if (_read_state() or {}).get("supervisor_pid") == os.getpid():
                _state_path().unlink(missing_ok=True)
        return 0
    if args.keep:
        return _keep_demo(args)
    summary = run_demo(orders=args.orders, seed=args.seed, timeout_s=args.timeout,
                       broker=args.broker)
    return _print_demo(summary, args.json)


def cmd_dlq(args: argparse.Namespace) -> int:
    from orderflow.connector import wait_for_broker
    from orderflow.runtime.dlq import list_dlq, replay_dlq

    kafka = _kafka_from_state()
    asyncio.run(wait_for_broker(kafka, args.wait))
    if args.action == "list":
        entries = asyncio.run(list_dlq(kafka, args.topic, limit=args.limit))
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False) if args.json else dead_letter_text(entry))
        if not entries and not args.json:
            print(f"no dead letters on {args.topic}.dlq")
        return 0
    count = asyncio.run(replay_dlq(kafka, args.topic))
    print(f"replayed {count} message(s) from {args.topic}.dlq onto {args.topic}")
    return 0


BROKER_HELP = ("Apache Kafka (KRaft, one node) or the embedded Tansu broker; default "
               "ORDERFLOW_BROKER, else tansu")
WAIT_HELP = (f"seconds to wait for the broker before giving up (default {BROKER_WAIT_S:g}); "
             "the broker is the dev stack's (var/dev/stack.json) unless KAFKA_BOOTSTRAP_SERVERS "
             "names one")
EXAMPLES = {
    "up": """examples:
  orderflow dev up                          # foreground; Ctrl-C stops everything
  orderflow dev up --detach --broker kafka  # background; `orderflow dev down` stops it
  orderflow dev up --replicas inventory=2""",
    "down": "example:\n  orderflow dev down",
    "status": "examples:\n  orderflow dev status\n  orderflow dev status --json",
    "push": """examples:
  orderflow push --channel csv services/intake/tests/samples/order_sheet.csv
  orderflow push --channel shopify --store my-shop orders.json
  orderflow push --channel canonical orders.jsonl   # one order per line""",
    "pull": f"""examples:
  python -m orderflow.devstack.marketplace --port 8765 &   # a fake marketplace
  orderflow pull --url http://127.0.0.1:8765/orders --channel shopify --store orderflow-demo --once
  {PULL_CREDENTIALS_ENV}="Bearer TOKEN" orderflow pull --url https://api.example/orders \\
      --channel douyin --cursor-file var/pull/douyin.json   # polls until SIGTERM""",
    "load": """examples:
  orderflow load products devtools/src/orderflow/devstack/demo_data/products.csv
  orderflow load stock stock.csv""",
    "demo": """examples:
  orderflow demo                        # 300 orders on a fresh stack, then stop everything
  orderflow demo --orders 50 --keep     # keep the stack and its console afterwards
  orderflow demo --json | tail -n 1     # the summary as one JSON line""",
    "dlq": """examples:
  orderflow dlq list order.received --limit 10
  orderflow dlq replay order.received""",
}


def build_parser() -> argparse.ArgumentParser:
    from orderflow.channels import channel_names
    from orderflow.contracts.topics import CATALOGUE
    from orderflow.devstack.stack import ALL_SERVICES, BROKER_CHOICES

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an unexpected error")

    def command(group: Any, name: str, helptext: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, help=helptext, description=helptext, epilog=EXAMPLES.get(name),
            parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
        return parser

    def broker_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--broker", choices=BROKER_CHOICES, default=None, help=BROKER_HELP,
                            type=one_of("broker", BROKER_CHOICES))

    def wait_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--wait", type=seconds, default=BROKER_WAIT_S, metavar="SECONDS",
                            help=WAIT_HELP)

    parser = CommandLine(prog="orderflow", description="OrderFlow command line: the local stack, "
                         "the demo, pushing and pulling orders, master data, dead letters",
                         epilog="`orderflow COMMAND --help` shows a command's options and "
                                "examples", parents=[common],
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"orderflow {version()}",
                        help="print the version of orderflow-devtools and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = command(sub, "dev", "the local stack: up, down, status").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    up = command(dev, "up", "start the stack; stays in the foreground until Ctrl-C")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N",
                    type=replicas(ALL_SERVICES),
                    help=f"run N processes of a service (repeatable); one of "
                         f"{', '.join(ALL_SERVICES)}")
    broker_option(up)
    up.set_defaults(func=cmd_dev_up)
    command(dev, "down", "stop a detached stack (or the stack a demo kept)").set_defaults(
        func=cmd_dev_down)
    status = command(dev, "status", "show the running stack: broker, database, services")
    status.add_argument("--json", action="store_true", help="print the state file's JSON")
    status.set_defaults(func=cmd_dev_status)

    push = command(sub, "push", "push orders onto order.inbound as a connector would")
    channels = channel_names()  # the installed ones: intake's and any plugin's
    push.add_argument("--channel", required=True, choices=channels,
                      type=one_of("channel", channels), help="the channel whose format the "
                      "orders are in")
    push.add_argument("--store", default=None,
                      help="the store (shop) the orders belong to: required for shopify (and a "
                           "channel whose orders are per store); for douyin the payload's "
                           "shop_id unless given")
    wait_option(push)
    push.add_argument("path", help="a JSON file (an order or a list), a folder of them, a JSON "
                                   "lines file (.jsonl), or an order sheet (.csv, .xlsx)")
    push.set_defaults(func=cmd_push)

    pull = command(sub, "pull", "page a marketplace's order API by cursor and push its orders "
                   "onto order.inbound")
    pull.add_argument("--url", required=True, help="the order API (GET URL?cursor=C&limit=N "
                      "answering {orders, next_cursor, has_more}: orderflow/connector/pull.py)")
    pull.add_argument("--channel", required=True, choices=channels,
                      type=one_of("channel", channels), help="the channel whose format the "
                      "API's orders are in")
    pull.add_argument("--store", default=None,
                      help="the store (shop) the orders belong to: required for shopify; for "
                           "douyin the payload's shop_id unless given")
    pull.add_argument("--cursor-file", default=None, metavar="PATH",
                      help="where the cursor is kept across restarts (default "
                           "var/pull/CHANNEL[-STORE].cursor.json)")
    pull.add_argument("--limit", type=whole(1), default=100,
                      help="orders per page asked for (default 100)")
    pull.add_argument("--once", action="store_true",
                      help="stop when caught up instead of polling on")
    pull.add_argument("--poll", type=seconds, default=30.0, metavar="SECONDS",
                      help="caught up, ask again after this long (default 30)")
    pull.add_argument("--credentials-header", default="Authorization", metavar="NAME",
                      help=f"the header carrying ${PULL_CREDENTIALS_ENV} (read from the "
                           "environment, never the command line; default Authorization)")
    pull.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
                      help="how long one request may take before it is retried (default 30)")
    pull.add_argument("--max-attempts", type=whole(1), default=10,
                      help="failed requests (5xx, timeouts) in a row before giving up "
                           "(default 10); a 429's Retry-After is waited and not counted")
    pull.add_argument("--retry-base", type=seconds, default=0.5, metavar="SECONDS",
                      help="the first retry's wait, doubling up to 30 s (default 0.5)")
    pull.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    wait_option(pull)
    pull.set_defaults(func=cmd_pull)

    kinds = ("products", "customers", "warehouses", "stock")
    load = command(sub, "load", "publish master data from a CSV file")
    load.add_argument("kind", choices=kinds, type=one_of("kind", kinds),
                      help="what the file holds")
    load.add_argument("file", help="the CSV file (see devstack/demo_data for the columns)")
    wait_option(load)
    load.set_defaults(func=cmd_load)

    demo = command(sub, "demo", "bring the stack up, push orders, report, stop")
    demo.add_argument("--orders", type=whole(1), default=300, help="orders to generate "
                      "(default 300)")
    demo.add_argument("--seed", type=whole(0), default=7,
                      help="the generator's seed: the same seed, the same orders (default 7)")
    demo.add_argument("--timeout", type=seconds, default=240.0, metavar="SECONDS",
                      help="how long to wait for every order to settle (default 240)")
    broker_option(demo)
    demo.add_argument("--json", action="store_true",
                      help="print the summary as one JSON line (the last line of stdout)")
    demo.add_argument("--keep", action="store_true",
                      help="leave the stack and its console running with the demo's data; "
                           "`orderflow dev down` stops it")
    demo.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)

    topics = tuple(t.name for t in CATALOGUE)
    dlq = command(sub, "dlq", "inspect or replay a dead-letter topic")
    dlq.add_argument("action", choices=("list", "replay"), type=one_of("action", ("list",
                     "replay")), help="list the newest dead letters, or replay those not "
                     "replayed before")
    dlq.add_argument("topic", choices=topics, type=one_of("topic", topics), metavar="TOPIC",
                     help="the consumed topic, e.g. order.received (not the .dlq name)")
    dlq.add_argument("--limit", type=whole(1), default=50, help="list at most this many, the "
                     "newest (default 50)")
    dlq.add_argument("--json", action="store_true", help="list each as a JSON line")
    wait_option(dlq)
    dlq.set_defaults(func=cmd_dlq)
    return parser


def _error_line(command: str, exc: BaseException, debug: bool) -> tuple[str, int]:
    """The one line an exception out of a command prints, and the exit status."""
    from orderflow.connector import BrokerUnreachable
    from orderflow.connector.limits import FileRefused, one_line
    from orderflow.connector.pull import PullError

    if isinstance(exc, PullError):  # the order API refused, the cursor file is unusable
        return f"{command}: {exc}", 1
    if isinstance(exc, FileRefused):  # a file over a limit, or not JSON: its reason
        return f"{command}: refused {exc}", 2
    if isinstance(exc, InputError):
        return f"{command}: {exc}", 2
    if isinstance(exc, BrokerUnreachable):
        return (f"{command}: {exc}; is a stack up? (`orderflow dev up --detach` starts one, "
                "KAFKA_BOOTSTRAP_SERVERS names another)"), 1
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{command}: cannot read {exc.filename}: {exc.strerror}", 2
    if isinstance(exc, KeyboardInterrupt):
        return f"{command}: interrupted", 130
    hint = "" if debug else " (rerun with --debug for the traceback)"
    return f"{command}: unexpected error: {one_line(exc)}{hint}", 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = f"orderflow {args.command}" + (f" {args.action}" if args.command == "dev" else "")
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as exc:  # one line, not a traceback
        line, status = _error_line(command, exc, debug)
        print(line, file=sys.stderr)
        if debug and status == 1 and not isinstance(exc, KeyboardInterrupt):
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
