"""The ``orderflow`` command line as a newcomer meets it: every mistake is one line on stderr
with a non-zero exit and no traceback (a missing file, bad JSON with where, an order without an
id, an unknown name with the closest known one, a bad number, a broker that does not answer); an
unexpected error is one line pointing at ``--debug``, which shows the traceback; ``--version``;
examples in every command's help; a readable summary by default and JSON with ``--json``; and
``demo --keep``'s refusal and what it prints."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from orderflow.devstack import cli
from orderflow.devstack.masterdata import DEMO_DATA
from orderflow.devstack.processes import free_port

pytestmark = pytest.mark.unit

SUMMARY: dict[str, Any] = {
    "orders_pushed": 40, "messages_pushed": 44, "channels": {"canonical": 20, "csv": 20},
    "settled": 40, "states": {"delivered": 30, "held": 4, "rejected": 6}, "lost": 0,
    "duplicates": 0, "held_by_reason": {"credit_limit": 4},
    "rejected_by_reason": {"unknown_sku": 6}, "delivered_orders": 30, "delayed_orders": 2,
    "invariant_violations": 0, "carrier_exceptions": 1, "notifications": {"sent": 80},
    "wrong_outcome": 0, "unnotified": 0, "unexpected_dead_letters": 0, "settle_s": 9.5,
    "elapsed_s": 31.2,
}


@pytest.fixture(autouse=True)
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A var/ of the test's own (no dev stack's state file is ever read)."""
    monkeypatch.setenv("ORDERFLOW_VAR_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], status: int = 2) -> str:
    """Run the command line; it must exit ``status`` with one line on stderr (returned)."""
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err.rstrip("\n")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "orders.json"
    assert refused(capsys, ["push", "--channel", "canonical", str(missing)]) == (
        f"orderflow push: no such file or folder: {missing}")
    assert refused(capsys, ["load", "products", str(tmp_path / "p.csv")]) == (
        f"orderflow load: no such file or folder: {tmp_path / 'p.csv'}")


def test_bad_json_is_told_with_its_line_and_column(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "orders.json", '{\n  "external_id": "A1",\n  "lines": [1,,2]\n}\n')
    assert refused(capsys, ["push", "--channel", "canonical", path]) == (
        "orderflow push: refused orders.json: not JSON at line 3, column 15: Expecting value")
    lines = write(tmp_path / "orders.jsonl", '{"external_id": "A1"}\n\n{"external_id": "A2"\n')
    assert refused(capsys, ["push", "--channel", "canonical", lines]) == (
        "orderflow push: refused orders.jsonl: not JSON at line 3, column 21: "
        "Expecting ',' delimiter")


def test_an_order_without_an_id_pushes_nothing(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "orders.json", json.dumps([{"external_id": "A1"}, {"lines": []}]))
    assert refused(capsys, ["push", "--channel", "canonical", path]) == (
        f"orderflow push: {path}: order 2 of 2 is a canonical order without an id "
        "(none of external_id); nothing pushed")
    shop = write(tmp_path / "shop.json", json.dumps({"email": "a@example.com"}))
    assert "a shopify order without an id (none of id, order_number, name)" in refused(
        capsys, ["push", "--channel", "shopify", "--store", "s1", shop])


def test_an_unknown_name_is_refused_with_the_closest_known_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "orders.json", "{}")
    err = refused(capsys, ["push", "--channel", "shopfy", path])
    assert err.startswith("orderflow push: argument --channel: unknown channel 'shopfy'; "
                          "did you mean shopify? (known: canonical, csv, desk, douyin, shopify, "
                          "xlsx)"), err
    assert "--help" in err
    assert "did you mean" not in refused(capsys, ["push", "--channel", "zzz", path])
    assert "did you mean products?" in refused(capsys, ["load", "prodcts", path])
    assert "did you mean order.received?" in refused(capsys, ["dlq", "list",
                                                              "order.received.dlq"])
    assert "did you mean tansu?" in refused(capsys, ["demo", "--broker", "tansoo"])


@pytest.mark.parametrize(("argv", "says"), [
    (["dev", "up", "--replicas", "intake=two"], "argument --replicas: expected a whole number, "
                                                "got 'two'"),
    (["dev", "up", "--replicas", "intake=0"], "argument --replicas: expected 1 or more, got 0"),
    (["dev", "up", "--replicas", "intak=2"], "unknown service 'intak'; did you mean intake?"),
    (["dev", "up", "--replicas", "intake="], "expected SERVICE=N, got 'intake='"),
    (["demo", "--orders", "many"], "argument --orders: expected a whole number, got 'many'"),
    (["demo", "--orders", "0"], "argument --orders: expected 1 or more, got 0"),
    (["demo", "--timeout", "-5"], "argument --timeout: expected a number of seconds above 0"),
    (["demo", "--timeout", "nan"], "argument --timeout: expected a number of seconds above 0"),
    (["dlq", "list", "order.received", "--limit", "x"], "argument --limit: expected a whole"),
    (["push", "--channel", "csv", "--wait", "soon", "f"], "argument --wait: expected a number"),
])
def test_a_bad_number_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                  says: str) -> None:
    err = refused(capsys, argv)
    assert says in err and err.startswith("orderflow "), err


def test_a_broker_that_does_not_answer_is_named_after_a_bounded_wait(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", address)
    path = write(tmp_path / "orders.json", json.dumps({"external_id": "A1"}))
    started = time.monotonic()
    err = refused(capsys, ["push", "--channel", "canonical", "--wait", "1.5", path], status=1)
    assert 1.5 <= time.monotonic() - started < 10
    assert err.startswith(f"orderflow push: no Kafka broker answered at {address} within 1.5 s; "
                          "is a stack up?"), err
    assert "orderflow dev up --detach" in err
    customers = write(tmp_path / "customers.csv",
                      "".join((DEMO_DATA / "customers.csv").open().readlines()[:2]))
    assert f"answered at {address} within 0.5 s" in refused(
        capsys, ["load", "customers", customers, "--wait", "0.5"], status=1)
    assert f"answered at {address} within 0.5 s" in refused(
        capsys, ["dlq", "list", "order.received", "--wait", "0.5"], status=1)


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("the state\nfile broke")

    monkeypatch.setattr(cli, "_read_state", broken)
    assert refused(capsys, ["dev", "status"], status=1) == (
        "orderflow dev status: unexpected error: RuntimeError: the state file broke "
        "(rerun with --debug for the traceback)")
    for argv in (["--debug", "dev", "status"], ["dev", "status", "--debug"]):
        with pytest.raises(RuntimeError, match="the state"):
            cli.main(argv)
        assert "--debug" not in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"orderflow {metadata.version('orderflow-devtools')}\n"


@pytest.mark.parametrize("argv", [["dev", "up"], ["dev", "down"], ["dev", "status"], ["push"],
                                  ["load"], ["demo"], ["dlq"]])
def test_every_command_has_examples_and_every_option_help(
        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"orderflow {' '.join(argv)}" in out.split("example")[1], out
    parser = cli.build_parser()
    for name in argv:
        (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = commands.choices[name]
    for action in parser._actions:
        assert action.help, f"{argv} {action.dest} has no help"


def test_the_channel_option_lists_its_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["push", "--help"])
    assert "{canonical,csv,desk,douyin,shopify,xlsx}" in capsys.readouterr().out  # installed, sorted


@pytest.fixture
def stack_state(var: Path) -> dict[str, Any]:
    state = {"supervisor_pid": os.getpid(), "database_url":
             "postgresql+asyncpg://orderflow:s3cret@127.0.0.1:55432/orderflow",
             "kafka_bootstrap_servers": "127.0.0.1:19092", "broker": "tansu",
             "embedded": {"postgres": True, "broker": True}, "ready": True,
             "services": {"console": {"pid": 11, "port": 8080},
                          "intake": {"pid": 12, "port": 8081}}}
    (var / "dev").mkdir(parents=True)
    (var / "dev" / "stack.json").write_text(json.dumps(state))
    return state


def test_dev_status_reads_well_and_gives_its_json(stack_state: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dev", "status"]) == 0
    out = capsys.readouterr().out
    assert "broker    127.0.0.1:19092 (tansu, embedded)" in out
    assert "console   http://127.0.0.1:8080/" in out
    assert "s3cret" not in out
    assert cli.main(["dev", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == stack_state


@pytest.mark.parametrize("failing", [None, "lost"])
def test_the_demo_summary_reads_well_and_its_json_is_the_last_line(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        failing: str | None) -> None:
    summary = {**SUMMARY, **({failing: 3} if failing else {})}
    monkeypatch.setattr("orderflow.devstack.demo.run_demo", lambda **_kw: summary)
    status = 1 if failing else 0
    assert cli.main(["demo", "--orders", "40"]) == status
    out, err = capsys.readouterr()
    assert "settled  40/40 in 9.5 s" in out
    assert "rejected unknown_sku 6" in out
    assert not out.lstrip().startswith("{")
    assert out.splitlines()[-1].startswith("NOT RIGHT: lost" if failing else "all right")
    assert (err == "orderflow demo: not right: lost\n") if failing else err == ""
    assert cli.main(["demo", "--json"]) == status
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == summary


def test_dlq_list_reads_well_and_gives_json_lines(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"offset": 4, "key": "o-1", "reason": "poison", "error": "ValueError: bad",
                "service": "review", "event_type": "OrderReceived", "event_id": "e1",
                "bytes": 120}]

    async def reachable(*_args: Any) -> None:
        return None

    async def listed(*_args: Any, **_kwargs: Any) -> list[dict[str, Any]]:
        return entries

    monkeypatch.setattr("orderflow.connector.wait_for_broker", reachable)
    monkeypatch.setattr("orderflow.runtime.dlq.list_dlq", listed)
    assert cli.main(["dlq", "list", "order.received"]) == 0
    assert capsys.readouterr().out == ("offset 4  OrderReceived  key o-1  from review  "
                                       "poison: ValueError: bad\n")
    assert cli.main(["dlq", "list", "order.received", "--json"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == entries


def test_demo_keep_refuses_while_a_stack_runs(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (var / "dev").mkdir(parents=True)
        (var / "dev" / "stack.json").write_text(json.dumps({"supervisor_pid": other.pid}))
        assert refused(capsys, ["demo", "--keep"], status=1) == (
            f"orderflow demo: a stack is already running (pid {other.pid}); "
            "`orderflow dev down` stops it")
    finally:
        other.kill()
        other.wait()


def test_demo_keep_prints_the_summary_and_how_to_reach_and_stop_the_stack(
        var: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The detached demo stood in for by a process that only waits: the state file it would
    write says the stack is ready; this process relays its log and prints where to go."""
    spawned: list[subprocess.Popen[bytes]] = []

    def detach(cmd: list[str], what: str) -> tuple[subprocess.Popen[bytes], Path, int]:
        assert (cmd[:2], what) == (["demo", "--serve"], "demo")
        assert cmd[cmd.index("--orders") + 1] == "40"
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        spawned.append(proc)
        log = var / "dev" / "supervisor.log"
        log.write_text("starting the embedded stack ...\n")
        (var / "dev" / "stack.json").write_text(json.dumps({
            "supervisor_pid": proc.pid, "ready": True, "demo": SUMMARY,
            "root": str(var / "demo"), "kafka_bootstrap_servers": "127.0.0.1:40001",
            "services": {"console": {"pid": 1, "port": 40123}}}))
        return proc, log, 0

    monkeypatch.setattr(cli, "_detach", detach)
    try:
        assert cli.main(["demo", "--keep", "--orders", "40"]) == 0
        out, err = capsys.readouterr()
        assert "starting the embedded stack ..." in err
        assert "settled  40/40" in out
        assert "console  http://127.0.0.1:40123/" in out
        assert "admin / admin-dev" in out
        assert f"bearer token in {var / 'demo'}/console-token" in out
        assert "stop     `orderflow dev down`" in out
        assert spawned[0].poll() is None  # left running, for `orderflow dev down`
        # as its parent, reap it once stopped (a stack's supervisor is no child of `dev down`)
        threading.Thread(target=spawned[0].wait, daemon=True).start()
        assert cli.main(["dev", "down"]) == 0
        assert spawned[0].wait(10) is not None
        assert not (var / "dev" / "stack.json").exists()
    finally:
        for proc in spawned:
            proc.kill()
            proc.wait()
