"""A channel added as an installed package, as a user adds one: a small plugin package built in a
temporary folder (its ``pyproject.toml`` with an ``orderflow.channels`` entry point, one module),
installed into a folder of its own (``uv pip install --target``), and intake started as its own
process with that folder on its ``PYTHONPATH``: no line of intake changed. An order of the
plugin's channel, posted to the channel order API and pushed with ``orderflow push --channel``,
is accepted and ``order.received`` carries the plugin's canonical data; a malformed one is
refused with the plugin's reason."""

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
PYPROJECT = f'''
[project]
name = "acme-orderflow"
version = "0.1.0"

[project.entry-points."orderflow.channels"]
{CHANNEL} = "acme_orderflow:CHANNEL"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[tool.hatch.build.targets.wheel]
only-include = ["acme_orderflow.py"]
'''


def install_plugin(tmp_path: Path) -> Path:
    """The plugin package built and installed into a folder of its own; that folder."""
    source = tmp_path / "acme-orderflow"
    source.mkdir()
    (source / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (source / "acme_orderflow.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    target = tmp_path / "site"
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    command = [uv, "pip", "install", "--no-deps", "--python", sys.executable,
               "--target", str(target), str(source)]
    # the build backend from uv's cache when it has it; else from the package index
    done = subprocess.run([*command, "--offline"], capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert (target / "acme_orderflow.py").exists()
    return target


def acme_order(ref: str) -> dict[str, Any]:
    order = canonical_order(ref)
    del order["external_id"]
    return {"ref": ref, "order": order}


async def test_a_channel_installed_as_a_package_takes_orders_without_a_change_to_intake(
        infra: Infra, tmp_path: Path) -> None:
    site = install_plugin(tmp_path)
    key = uuid.uuid4().hex
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env = {"PYTHONPATH": path, "ORDERFLOW_INTAKE_CHANNEL_KEYS": json.dumps({CHANNEL: key})}
    async with private_pipeline(infra, "intake-plugin", ["intake"], env) as (pipeline, events):
        port = pipeline.stack.find("intake").port
        log = pipeline.log_text("intake")
        assert '"channels"' in log and f'"{CHANNEL}"' in log  # found at start

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
