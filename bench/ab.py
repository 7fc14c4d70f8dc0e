"""Two revisions of OrderFlow measured against each other in one sitting: ``bench.run`` on each
revision's own checkout, in the order A B B A (repeated ``--pairs`` times) so that a machine
getting faster or slower during the sitting weighs on both sides alike. Each side's runs are
summarised by their median and B is given as a ratio of A.

    python -m bench.ab 69537aa HEAD -- --quick --no-ceiling --no-latency --orders 6000
    python -m bench.ab 69537aa HEAD --pairs 2 -- --quick --no-ceiling --no-latency
    python -m bench.ab 69537aa HEAD --micro --pairs 3 -- --orders 2000

``--micro`` compares ``bench.micro_pipeline`` instead: each service's consumer CPU per order
(client CPU, ``time.process_time``), which a busy machine moves far less than throughput.

Each revision is checked out (detached) under ``var/bench/ab/<commit>`` and run with its own
sources first on ``PYTHONPATH`` and this checkout's virtual environment; its result files stay in
that checkout's ``bench/results/``. The summary (every run's figures, the medians, the ratios)
is printed and written to ``bench/results/ab-<UTC timestamp>.json``."""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAIN_LINE = ("intake", "review", "inventory", "logistics")

#: figure name -> (how to read it from a result file, whether more is better)
FIGURES: dict[str, bool] = {
    "orders_per_s_to_last_dispatch": True,
    "orders_per_s_every_service_done": True,
    "main_line_cpu_ms_per_order": False,
    "all_services_cpu_ms_per_order": False,
}


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def checkout(rev: str) -> Path:
    """A detached checkout of ``rev`` under var/bench/ab/, made once and reused."""
    commit = _git("rev-parse", "--short=12", f"{rev}^{{commit}}")
    tree = ROOT / "var" / "bench" / "ab" / commit
    if not (tree / ".git").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        _git("worktree", "add", "--detach", "--force", str(tree), commit)
    return tree


def python_path(tree: Path) -> str:
    roots = [tree / "connector" / "src", tree / "shared" / "src", tree / "devtools" / "src",
             *sorted((tree / "services").glob("*/src")), tree]
    return os.pathsep.join(str(p) for p in roots if p.exists())


_MICRO_LINE = re.compile(r"^(\w+)\s+(?:\d+ events\s+)?client CPU\s+([\d.]+) ms/order", re.M)


def run_micro(tree: Path, bench_args: list[str], label: str) -> dict[str, float | None]:
    """``bench.micro_pipeline`` on one checkout: client CPU ms per order, per service and all."""
    env = dict(os.environ, PYTHONPATH=python_path(tree))
    cmd = [sys.executable, "-m", "bench.micro_pipeline", *bench_args]
    print(f"# {label}: {' '.join(cmd[1:])} (in {tree})", flush=True)
    out = subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    found = {f"{name}_cpu_ms_per_order": float(value) for name, value in _MICRO_LINE.findall(out)}
    if "all_cpu_ms_per_order" not in found:
        raise SystemExit(f"{label}: bench.micro_pipeline printed no figures:\n{out[-2000:]}")
    return dict(found)


def run_once(tree: Path, bench_args: list[str], label: str) -> Path:
    """``bench.run`` on one checkout; the result file it wrote."""
    results = tree / "bench" / "results"
    before = set(results.glob("*.json")) if results.exists() else set()
    env = dict(os.environ, PYTHONPATH=python_path(tree))
    env.setdefault("ORDERFLOW_KAFKA_LIBS", str(ROOT / "var" / "kafka" / "libs"))
    cmd = [sys.executable, "-m", "bench.run", *bench_args, "--note", f"ab {label}"]
    print(f"# {label}: {' '.join(cmd[1:])} (in {tree})", flush=True)
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    written = sorted(set(results.glob("*.json")) - before)
    if not written:
        raise SystemExit(f"{label}: bench.run wrote no result file in {results}")
    return written[-1]


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    """The compared figures of one result file's single-replica phase."""
    phase = result["phases"]["1 replica"]["saturation"]
    cpu = phase.get("cpu") or {}
    done = phase.get("cpu_every_service_done") or {}
    main_line = [cpu[s]["cpu_ms_per_order"] for s in MAIN_LINE if s in cpu]
    services = [v["cpu_ms_per_order"] for s, v in done.items()
                if s in {*MAIN_LINE, "notify", "console"}]
    return {
        "orders_per_s_to_last_dispatch": phase.get("end_to_end_orders_per_s"),
        "orders_per_s_every_service_done": phase.get("every_service_done_orders_per_s"),
        "main_line_cpu_ms_per_order": round(sum(main_line), 3) if main_line else None,
        "all_services_cpu_ms_per_order": round(sum(services), 3) if services else None,
    }


def summarise(runs: list[dict[str, Any]], names: dict[str, bool]) -> dict[str, Any]:
    sides: dict[str, dict[str, float | None]] = {}
    for side in ("A", "B"):
        own = [r["figures"] for r in runs if r["side"] == side]
        sides[side] = {}
        for name in names:
            values = [f[name] for f in own if f.get(name) is not None]
            sides[side][name] = round(statistics.median(values), 3) if values else None
    ratios: dict[str, float | None] = {}
    for name in names:
        a, b = sides["A"][name], sides["B"][name]
        ratios[name] = round(b / a, 3) if a and b is not None else None
    # the spread within a side: how far apart the same code's runs fell (the noise)
    spread: dict[str, float | None] = {}
    for name in names:
        rel = []
        for side in ("A", "B"):
            values = [r["figures"][name] for r in runs
                      if r["side"] == side and r["figures"].get(name) is not None]
            if len(values) > 1 and min(values) > 0:
                rel.append(max(values) / min(values) - 1)
        spread[name] = round(max(rel), 3) if rel else None
    return {"median": sides, "ratio_b_over_a": ratios, "within_side_spread": spread}


def table(summary: dict[str, Any], runs: list[dict[str, Any]], a: str, b: str,
          names: dict[str, bool]) -> str:
    lines = [f"A = {a}, B = {b}; runs in the order {' '.join(r['side'] for r in runs)}",
             f"{'figure':34} {'A':>10} {'B':>10} {'B/A':>7} {'noise':>7}  (better)"]
    for name, more_is_better in names.items():
        m, r, s = summary["median"], summary["ratio_b_over_a"], summary["within_side_spread"]

        def cell(v: float | None, fmt: str) -> str:
            return format(v, fmt) if v is not None else "-"
        lines.append(f"{name:34} {cell(m['A'][name], '10.3f')} {cell(m['B'][name], '10.3f')} "
                     f"{cell(r[name], '7.3f')} {cell(s[name], '7.1%')}  "
                     f"({'higher' if more_is_better else 'lower'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    bench_args: list[str] = []
    if "--" in args:
        at = args.index("--")
        args, bench_args = args[:at], args[at + 1:]
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", help="revision A (the reference)")
    p.add_argument("b", help="revision B (the candidate)")
    p.add_argument("--pairs", type=int, default=1, help="how many A B B A sequences (default 1)")
    p.add_argument("--micro", action="store_true",
                   help="compare bench.micro_pipeline's CPU per order instead of bench.run")
    opts = p.parse_args(args)
    trees = {"A": checkout(opts.a), "B": checkout(opts.b)}
    commits = {side: _git("rev-parse", "--short=12", "HEAD", cwd=tree)
               for side, tree in trees.items()}
    runs: list[dict[str, Any]] = []
    for _ in range(opts.pairs):
        for side in ("A", "B", "B", "A"):
            label = f"{side} {commits[side]}"
            if opts.micro:
                run: dict[str, Any] = {"figures": run_micro(trees[side], bench_args, label)}
            else:
                path = run_once(trees[side], bench_args, label)
                run = {"result_file": str(path),
                       "figures": figures(json.loads(path.read_text()))}
            runs.append({"side": side, "commit": commits[side], **run})
            print(f"#   {json.dumps(runs[-1]['figures'])}", flush=True)
    names = FIGURES if not opts.micro else {
        name: False for name in dict.fromkeys(n for r in runs for n in r["figures"])}
    summary = summarise(runs, names)
    text = table(summary, runs, f"{opts.a} ({commits['A']})", f"{opts.b} ({commits['B']})",
                 names)
    out = ROOT / "bench" / "results" / f"ab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"a": {"rev": opts.a, "commit": commits["A"]},
                               "b": {"rev": opts.b, "commit": commits["B"]},
                               "tool": "bench.micro_pipeline" if opts.micro else "bench.run",
                               "bench_args": bench_args, "runs": runs, **summary,
                               "table": text}, indent=2) + "\n")
    print(text)
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
