"""The ``orderflow`` command line.

    orderflow dev up [--detach] [--replicas intake=2 ...]   start the stack (foreground, Ctrl-C stops)
    orderflow dev down                                      stop a detached stack
    orderflow dev status                                    what runs, where
    orderflow push --channel CHANNEL [--store STORE] PATH   push orders as a connector would
    orderflow load products|customers|warehouses|stock FILE publish master data from a CSV file
    orderflow demo [--orders N]                             the whole pipeline, end to end
    orderflow dlq list|replay TOPIC                         inspect or replay a dead-letter topic
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orderflow.runtime.settings import KafkaSettings


def _state_path() -> Path:
    from orderflow.devstack.stack import var_dir

    return var_dir() / "dev" / "stack.json"


def _kafka_from_state() -> KafkaSettings:
    """The running dev stack's broker, unless the environment names one."""
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        state = _state_path()
        if state.exists():
            data = json.loads(state.read_text())
            return KafkaSettings(bootstrap_servers=data["kafka_bootstrap_servers"],
                                 broker=data.get("broker", "kafka"))
    return KafkaSettings()


def _parse_replicas(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, count = item.partition("=")
        out[name] = int(count or "1")
    return out


def cmd_dev_up(args: argparse.Namespace) -> int:
    from orderflow.devstack.stack import Stack, broker_choice, var_dir
    from orderflow.runtime.logging import mask_text

    state = _state_path()
    if state.exists():
        data = json.loads(state.read_text())
        try:
            os.kill(int(data["supervisor_pid"]), 0)
            print(f"a stack is already running (pid {data['supervisor_pid']}); "
                  "`orderflow dev down` stops it", file=sys.stderr)
            return 1
        except (ProcessLookupError, ValueError, KeyError):
            state.unlink()
    if args.detach:
        log = var_dir() / "dev" / "supervisor.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "orderflow.devstack.cli", "dev", "up", "--quiet"]
        if args.broker:
            cmd += ["--broker", args.broker]
        for r in args.replicas:
            cmd += ["--replicas", r]
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
            if state.exists() and json.loads(state.read_text()).get("ready"):
                print(f"stack up (supervisor pid {proc.pid}); logs in var/dev/logs; "
                      "`orderflow dev down` stops it")
                return 0
            time.sleep(0.3)
        print("the stack did not become ready in time", file=sys.stderr)
        return 1

    stack = Stack(root=var_dir() / "dev", replicas=_parse_replicas(args.replicas),
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
        data = json.loads(state.read_text())
        data["ready"] = True
        state.write_text(json.dumps(data, indent=2))
        console = next((sp for sp in stack.processes if sp.name == "console"), None)
        if console:
            print(f"console: http://127.0.0.1:{console.port}/  (token: var/dev/console-token)")
        print(f"ready; embedded: {', '.join(embedded) or 'none'}; Ctrl-C stops everything",
              flush=True)
        while not stopping:
            restarted = stack.supervise()
            up = sum(1 for sp in stack.processes if stack.healthy(sp))
            line = "  ".join(
                f"{sp.label}:{'up' if stack.healthy(sp) else 'DOWN'}"
                + (f"(restarts {sp.restarts})" if sp.restarts else "")
                for sp in stack.processes
            )
            if not args.quiet:
                print(f"\r{time.strftime('%H:%M:%S')} {up}/{len(stack.processes)} up | {line}  ",
                      end="", flush=True)
            if restarted:
                print(f"\nrestarted: {', '.join(restarted)}", flush=True)
                stack.write_state(state)
            for _ in range(10):
                if stopping:
                    break
                time.sleep(0.2)
    except Exception as exc:  # noqa: BLE001 - reported, then everything is stopped
        print(f"\nerror: {exc}", file=sys.stderr)
        return_code = 1
    else:
        return_code = 0
    finally:
        print("\nstopping services, broker and database ...", flush=True)
        stack.stop()
        if state.exists():
            state.unlink()
        print("stopped", flush=True)
    return return_code


def cmd_dev_down(_args: argparse.Namespace) -> int:
    from orderflow.devstack.processes import stop_pid

    state = _state_path()
    if not state.exists():
        print("no stack is running")
        return 0
    data = json.loads(state.read_text())
    gone = stop_pid(int(data["supervisor_pid"]), timeout=90)
    print("stack stopped" if gone else "the supervisor did not stop in time; it was killed")
    if state.exists():
        state.unlink()
    return 0


def cmd_dev_status(_args: argparse.Namespace) -> int:
    state = _state_path()
    if not state.exists():
        print("no stack is running")
        return 1
    print(state.read_text())
    return 0


def read_orders(path: Path, channel: str) -> list[Any]:
    """One JSON file (an order or a list of them), a folder of JSON files, or JSON lines;
    for the csv channel a CSV file grouped into orders by ``order_number``. Every file is read
    within the ``ORDERFLOW_FILE_*`` limits (``FileRefused`` beyond them)."""
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
            lines = [line for line in text.splitlines() if line.strip()]
            if len(lines) > limits.max_rows:
                raise FileRefused(path.name, f"more than {limits.max_rows} orders "
                                             "(ORDERFLOW_FILE_MAX_ROWS)")
            return [json.loads(line) for line in lines]
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileRefused(path.name, f"not JSON ({one_line(exc)})") from None
    except RecursionError:
        raise FileRefused(path.name, "not JSON (nested too deeply)") from None
    orders = data if isinstance(data, list) else [data]
    if len(orders) > limits.max_rows:
        raise FileRefused(path.name, f"more than {limits.max_rows} orders "
                                     "(ORDERFLOW_FILE_MAX_ROWS)")
    return orders


def cmd_push(args: argparse.Namespace) -> int:
    from orderflow.connector import OrderPusher, StoreRefused, Submission, external_id_of, store_of

    payloads = read_orders(Path(args.path), args.channel)
    orders: list[Submission] = []
    try:
        for p in payloads:  # every order's store told before anything is pushed
            orders.append((args.channel, external_id_of(args.channel, p), p,
                           store_of(args.channel, p, args.store)))
    except StoreRefused as exc:
        hint = " (--store STORE)" if exc.code == "store_missing" else ""
        print(f"orderflow push: refused, {exc.code}: {exc}{hint}; nothing pushed", file=sys.stderr)
        return 2

    async def run() -> int:
        async with OrderPusher(_kafka_from_state()) as pusher:
            results = await pusher.push_many(orders)
        return len(results)

    count = asyncio.run(run())
    store = f", store {args.store}" if args.store else ""
    print(f"pushed {count} order{'s' if count != 1 else ''} onto order.inbound "
          f"(channel {args.channel}{store})")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from orderflow.devstack.masterdata import load_file

    report = asyncio.run(load_file(args.kind, Path(args.file), _kafka_from_state()))
    for problem in report.problems:
        print(f"{args.file}:{problem}", file=sys.stderr)
    print(f"loaded {report.published} {args.kind} row(s); {len(report.problems)} bad row(s)")
    return 0 if report.published or not report.problems else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from orderflow.devstack.demo import run_demo

    summary = run_demo(orders=args.orders, seed=args.seed, timeout_s=args.timeout,
                       broker=args.broker)
    print(json.dumps(summary, sort_keys=False))
    failed = [name for name in ("lost", "duplicates", "invariant_violations", "wrong_outcome",
                                "unnotified", "unexpected_dead_letters") if summary.get(name)]
    if failed:
        print(f"orderflow demo: not right: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from orderflow.runtime.dlq import list_dlq, replay_dlq

    kafka = _kafka_from_state()
    if args.action == "list":
        for entry in asyncio.run(list_dlq(kafka, args.topic, limit=args.limit)):
            print(json.dumps(entry, ensure_ascii=False))
        return 0
    count = asyncio.run(replay_dlq(kafka, args.topic))
    print(f"replayed {count} message(s) from {args.topic}.dlq onto {args.topic}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderflow", description="OrderFlow command line")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="the local stack").add_subparsers(dest="action", required=True)
    up = dev.add_parser("up", help="start the stack; stays in the foreground until Ctrl-C")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N")
    up.add_argument("--broker", choices=["kafka", "tansu"], default=None,
                    help="Apache Kafka (KRaft, one node) or the embedded Tansu broker; "
                         "default ORDERFLOW_BROKER, else tansu")
    up.set_defaults(func=cmd_dev_up)
    dev.add_parser("down", help="stop a detached stack").set_defaults(func=cmd_dev_down)
    dev.add_parser("status", help="show the running stack").set_defaults(func=cmd_dev_status)

    push = sub.add_parser("push", help="push orders onto order.inbound as a connector would")
    push.add_argument("--channel", required=True)
    push.add_argument("--store", default=None,
                      help="the store (shop) the orders belong to: required for shopify; for "
                           "douyin the payload's shop_id unless given")
    push.add_argument("path")
    push.set_defaults(func=cmd_push)

    load = sub.add_parser("load", help="publish master data from a CSV file")
    load.add_argument("kind", choices=["products", "customers", "warehouses", "stock"])
    load.add_argument("file")
    load.set_defaults(func=cmd_load)

    demo = sub.add_parser("demo", help="bring the stack up, push orders, report, stop")
    demo.add_argument("--orders", type=int, default=300)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--timeout", type=float, default=240.0)
    demo.add_argument("--broker", choices=["kafka", "tansu"], default=None,
                      help="Apache Kafka (KRaft, one node) or the embedded Tansu broker; "
                           "default ORDERFLOW_BROKER, else tansu")
    demo.set_defaults(func=cmd_demo)

    dlq = sub.add_parser("dlq", help="inspect or replay a dead-letter topic")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("topic", help="the consumed topic, e.g. order.received (not the .dlq name)")
    dlq.add_argument("--limit", type=int, default=50)
    dlq.set_defaults(func=cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> int:
    from orderflow.connector.limits import FileRefused

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except FileRefused as exc:  # a file over a limit: its reason, not a traceback
        print(f"orderflow {args.command}: refused {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
