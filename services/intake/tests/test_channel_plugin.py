"""A channel added as an installed package, as a user adds one: a small plugin package built in a
temporary folder (its ``pyproject.toml`` with an ``orderflow.channels`` entry point, one module),
installed into a folder of its own (``uv pip install --target``), and intake started as its own
process with that folder on its ``PYTHONPATH``: no line of intake changed. An order of the
plugin's channel, posted to the channel order API and pushed with ``orderflow push --channel``,
is accepted and ``order.received`` carries the plugin's canonical data; a malformed one is
refused with the plugin's reason. A broken plugin beside it is skipped with its reason; two
claiming one channel stop intake's start, naming both."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.infra import Infra
from orderflow.testing.private import private_pipeline

pytestmark = pytest.mark.service

CHANNEL = "acme"
PLUGIN_MODULE = '''
"""Channel acme: an Acme order is {"ref": <its number>, "order": <the order, canonical fields>}."""

from collections.abc import Mapping

from orderflow.channels import AdapterError, Channel, ChannelOrder


def to_canonical(payload):
    order = payload.get("order") if isinstance(payload, Mapping) else None
    if not isinstance(order, Mapping):
        raise AdapterError("an Acme order carries its order under 'order'", "order",
                           code="acme_order_missing")
    return ChannelOrder({**order, "external_id": str(payload["ref"]),
                         "notes": "through the acme plugin"})


CHANNEL = Channel(to_canonical, external_id_fields=("ref",))
'''
PYPROJECT = """
[project]
name = "{package}"
version = "0.1.0"

[project.entry-points."orderflow.channels"]
{channel} = "{module}:CHANNEL"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
only-include = ["{module}.py"]
"""


def install_plugin(tmp_path: Path, package: str, module: str, source: str,
                   channel: str = CHANNEL) -> Path:
    """A plugin package (``module``.py holding ``source``, its entry point naming ``channel``)
    built and installed into ``tmp_path``/site; that folder."""
    folder = tmp_path / package
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(PYPROJECT).format(package=package, channel=channel, module=module))
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    target = tmp_path / "site"
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    command = [uv, "pip", "install", "--no-deps", "--python", sys.executable,
               "--target", str(target), str(folder)]
    # the build backend from uv's cache when it has it; else from the package index
    done = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (target / f"{module}.py").exists()
    return target


def plugin_path(site: Path) -> str:
    return os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])


def acme_order(ref: str) -> dict[str, Any]:
    order = canonical_order(ref)
    del order["external_id"]
    return {"ref": ref, "order": order}


async def test_a_channel_installed_as_a_package_takes_orders_without_a_change_to_intake(
        infra: Infra, tmp_path: Path) -> None:
    site = install_plugin(tmp_path, "acme-orderflow", "acme_orderflow", PLUGIN_MODULE)
    # a second plugin, broken (its module's import fails): skipped with its reason
    install_plugin(tmp_path, "broken-orderflow", "broken_orderflow",
                   "import a_module_nobody_installed\n", channel="broken")
    key = uuid.uuid4().hex
    path = plugin_path(site)
    env = {"PYTHONPATH": path, "ORDERFLOW_INTAKE_CHANNEL_KEYS": json.dumps({CHANNEL: key})}
    async with private_pipeline(infra, "intake-plugin", ["intake"], env) as (pipeline, events):
        port = pipeline.stack.find("intake").port
        found = [json.loads(line) for line in pipeline.log_text("intake").splitlines()
                 if '"channels"' in line or "channel plugin skipped" in line]
        started = next(entry for entry in found if entry["event"] == "channels")
        assert CHANNEL in started["channels"] and "douyin" in started["channels"]
        skipped = next(entry for entry in found if entry["event"].startswith("channel plugin skipped"))
        assert skipped["entry_point"].startswith("broken = broken_orderflow:CHANNEL")
        assert "ModuleNotFoundError" in skipped["reason"]

        async def post(body: dict[str, Any]) -> httpx.Response:
            async with httpx.AsyncClient(timeout=30) as client:
                return await client.post(
                    f"http://127.0.0.1:{port}/api/v1/channels/{CHANNEL}/orders",
                    json=body, headers={"Authorization": f"Bearer {key}"})

        ref = f"ACME-{uuid.uuid4().hex[:10]}"
        accepted = await post(acme_order(ref))
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["order_id"] == order_id_for(CHANNEL, ref)
        received = await events.wait_for_event("order.received", order_id_for(CHANNEL, ref),
                                               timeout=60)
        assert received.event.channel == CHANNEL and received.event.external_id == ref
        assert received.event.order.notes == "through the acme plugin"  # the plugin's data

        malformed = await post({"ref": f"ACME-{uuid.uuid4().hex[:10]}", "order": "none"})
        assert malformed.status_code == 422, malformed.text
        assert [(r["code"], r["field"]) for r in malformed.json()["reasons"]] == [
            ("acme_order_missing", "order")]
        assert "under 'order'" in malformed.json()["reasons"][0]["message"]

        # a connector's push of the plugin's channel: orderflow push --channel acme
        pushed = f"ACME-{uuid.uuid4().hex[:10]}"
        orders = tmp_path / "acme-orders.json"
        orders.write_text(json.dumps([acme_order(pushed)]))
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "orderflow.devstack.cli", "push", "--channel", CHANNEL,
             str(orders)], capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": path,
                 "KAFKA_BOOTSTRAP_SERVERS": pipeline.kafka.bootstrap_servers,
                 "ORDERFLOW_KAFKA_BROKER": pipeline.infra.broker})
        assert cli.returncode == 0, cli.stdout + cli.stderr
        received = await events.wait_for_event("order.received", order_id_for(CHANNEL, pushed),
                                               timeout=60)
        assert received.event.order.notes == "through the acme plugin"


async def test_two_plugins_claiming_one_channel_stop_intakes_start(
        infra: Infra, tmp_path: Path) -> None:
    site = install_plugin(tmp_path, "acme-orderflow", "acme_orderflow", PLUGIN_MODULE)
    install_plugin(tmp_path, "acme-imitation", "acme_imitation", PLUGIN_MODULE)
    env = {"PYTHONPATH": plugin_path(site),
           "ORDERFLOW_INTAKE_CHANNEL_KEYS": json.dumps({CHANNEL: uuid.uuid4().hex})}
    with pytest.raises(RuntimeError) as refused:
        async with private_pipeline(infra, "intake-plugin-clash", ["intake"], env,
                                    master_data=False):
            pass
    message = str(refused.value)
    assert "service intake exited" in message
    assert f"channel '{CHANNEL}' is claimed by 2 entry points" in message
    assert "acme_orderflow:CHANNEL" in message and "acme_imitation:CHANNEL" in message
