"""``orderflow-audit``: pip-audit over the locked dependencies (``uv export`` of ``uv.lock``).

Known vulnerabilities fail it (exit 1). When no vulnerability database answers (a machine without
the internet: PyPI's JSON API and OSV unreachable), nothing could be audited: it says so in one
line and exits 0, unless ``ORDERFLOW_REQUIRE_AUDIT=1`` (set it in CI that has the internet), where
that is a failure too (exit 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _requirements(root: Path, out: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "export", "--frozen", "--all-packages", "--all-extras",
                    "--no-emit-workspace", "--no-hashes", "--quiet", "-o", str(out)],
                   cwd=root, check=True)


def audit(root: Path) -> int:
    required = os.environ.get("ORDERFLOW_REQUIRE_AUDIT") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        reqs = Path(tmp) / "requirements.txt"
        _requirements(root, reqs)
        pip_audit = Path(sys.executable).parent / "pip-audit"
        done = subprocess.run([str(pip_audit), "-r", str(reqs), "--no-deps", "--disable-pip",
                               "-f", "json", "--progress-spinner", "off", "-s", "osv"],
                              capture_output=True, text=True)
    code, lines = judge(done.stdout, done.stderr, required=required)
    for line in lines:
        print(line)
    return code


def judge(stdout: str, stderr: str, *, required: bool) -> tuple[int, list[str]]:
    """pip-audit's JSON report (or its failure) as an exit code and what to print."""
    try:
        report = json.loads(stdout)
    except ValueError:
        first = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        return (2 if required else 0), [
            f"dependency audit: no vulnerability database answered ({first})"
            + ("" if required else "; nothing audited here (ORDERFLOW_REQUIRE_AUDIT=1 fails)")]
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    lines = [f"dependency audit: {d['name']} {d.get('version')} has known vulnerabilities: "
             + ", ".join(v["id"] for v in d["vulns"]) for d in vulnerable]
    if vulnerable:
        return 1, lines
    if deps and len(skipped) == len(deps):
        return (2 if required else 0), [
            f"dependency audit: none of {len(deps)} packages could be audited "
            f"({skipped[0]['skip_reason'][:120]})"]
    return 0, [f"dependency audit: {len(deps) - len(skipped)} packages audited, no known "
               f"vulnerabilities ({len(skipped)} not audited)"]


def main() -> None:
    root = Path(__file__).resolve()
    while not (root / "uv.lock").exists() and root.parent != root:
        root = root.parent
    sys.exit(audit(root))


if __name__ == "__main__":
    main()
