"""`orderflow demo` as a newcomer runs it, on each broker (Apache Kafka, and the embedded Tansu
broker of the Python-only default), with infrastructure of its own each time: the stack comes
up, orders flow from every channel, and the summary says nothing was lost or applied twice;
every order comes to the outcome the simulator meant (rejected or held for the seeded reason, else
fulfilled), every customer-facing event has its notification recorded, no dead letter appears;
the command exits 0 and leaves no process behind. With ``--keep`` the stack stays up with the
demo's data: a browser signs into its console with the printed user and finds the demo's orders
there, and `orderflow dev down` then stops every process it left."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from orderflow.testing.infra import BrokerKind

pytestmark = pytest.mark.e2e


CHROMIUM = Path("/usr/bin/chromium")


def _run_demo(tmp_path: Path, broker: BrokerKind, *extra: str) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "ORDERFLOW_VAR_DIR": str(tmp_path / "var")}
    for name in ("ORDERFLOW_TEST_SERVICES", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "orderflow.devstack.cli", "demo", "--json",
                          "--orders", "150", "--broker", broker, *extra], env=env,
                         capture_output=True, text=True, timeout=840, check=False)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no summary (exit {run.returncode}):\n{run.stderr[-4000:]}"
    summary = json.loads(lines[-1])
    context = f"{json.dumps(summary, indent=1)[:3000]}\n--- stderr ---\n{run.stderr[-2000:]}"
    assert summary["orders_pushed"] >= 100, context
    assert summary["lost"] == 0, context
    assert summary["duplicates"] == 0, context
    assert summary["invariant_violations"] == 0, context
    assert summary["settled"] == summary["orders_pushed"], context
    assert summary["wrong_outcome"] == 0, context
    assert summary["unnotified"] == 0, context
    assert summary["unexpected_dead_letters"] == 0, context
    assert run.returncode == 0, context
    return summary, run.stderr


@pytest.mark.timeout(900)
def test_the_demo_settles_every_order_once_on_kafka(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    _run_demo(tmp_path, "kafka")
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], f"left running: {[(p.pid, p.name()) for p in left]}"


@pytest.mark.timeout(900)
async def test_the_kept_demo_leaves_a_console_with_its_orders_until_dev_down(tmp_path: Path) -> None:
    """``orderflow demo --keep`` on the Python-only default: the summary, then a stack a browser
    signs into (the address and the user as the command printed them) showing the demo's orders;
    `orderflow dev down` stops every process of it."""
    if not _chromium_present():
        pytest.skip("/usr/bin/chromium is absent: `make browser` installs it")
    state_file = tmp_path / "var" / "dev" / "stack.json"
    try:
        summary, told = await asyncio.to_thread(_run_demo, tmp_path, "tansu", "--keep")
        state = json.loads(state_file.read_text())
        pids = [state["supervisor_pid"], *(s["pid"] for s in state["services"].values())]
        console = re.search(r"console  (http://127\.0\.0\.1:\d+/)", told)
        user = re.search(r"sign in  admin / ([^,\s]+)", told)
        assert console and user, told
        await _find_the_demo_in_the_console(console.group(1).rstrip("/"), user.group(1),
                                            pushed=int(summary["orders_pushed"]))
    finally:
        down = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "orderflow.devstack.cli", "dev", "down"],
            env={**os.environ, "ORDERFLOW_VAR_DIR": str(tmp_path / "var")},
            capture_output=True, text=True, timeout=180, check=False)
    assert down.returncode == 0, down.stderr
    assert not state_file.exists()
    _, alive = psutil.wait_procs([p for p in map(_process, pids) if p is not None], timeout=30)
    assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"


def _chromium_present() -> bool:
    return CHROMIUM.exists()


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


async def _find_the_demo_in_the_console(base: str, password: str, *, pushed: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM),
                                           args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            page.set_default_timeout(60_000)
            await page.goto(base + "/")
            assert "/login" in page.url
            await page.fill("#username", "admin")
            await page.fill("#password", password)
            await page.click("#sign-in")
            await page.wait_for_url(base + "/")
            # every order the demo pushed is on the dashboard (the console may still be catching up)
            await page.wait_for_function(
                f"() => Number(document.getElementById('count-orders').textContent) >= {pushed}",
                timeout=120_000)
            await page.goto(base + "/orders?state=dispatched")
            await page.wait_for_selector("#orders-table tbody tr[data-order-id]")
            first = page.locator("#orders-table tbody tr[data-order-id]").first
            order_id = await first.get_attribute("data-order-id")
            assert order_id
            await first.locator("a").first.click()
            await page.wait_for_url(f"**/orders/{order_id}")
            await page.wait_for_selector("#timeline li")
            assert "ShipmentDispatched" in (await page.text_content("#timeline") or "")
        finally:
            await browser.close()
