"""The connector kit as a connector's author gets it: its wheel, built from ``connector/``,
installed with its dependencies alone in a fresh virtual environment; the example connector of
its README, run there, pushes an order onto ``order.inbound`` of an embedded Tansu broker, and the
order is read back from the topic as intake would read it.

The installation comes from uv's cache (``make install`` filled it) or the package index."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from orderflow.contracts.events import OrderSubmitted
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder
from orderflow.contracts.topics import ORDER_INBOUND
from orderflow.devstack.embedded import EmbeddedBroker
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings

pytestmark = pytest.mark.service

KIT = Path(__file__).resolve().parents[1]
# what the services' runtime and the dev tools need, and a connector must not be made to install
NOT_IN_THE_KIT = ("faststream", "sqlalchemy", "asyncpg", "structlog", "fastapi", "alembic",
                  "pydantic-settings", "openpyxl", "httpx")


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        pytest.skip("uv is not installed here (make install installs it)")
    return uv


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _readme_example() -> str:
    readme = (KIT / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Example", 1)[1]
    found = re.search(r"```python\n(.*?)```", example, re.S)
    assert found, "the README's Example section has no python block"
    return found.group(1)


@pytest.fixture
async def tansu(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "tansu")
    (tmp_path / "tansu").mkdir()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_a_connector_on_the_slim_kit_alone_pushes_an_order(
        tmp_path: Path, tansu: EmbeddedBroker) -> None:
    uv = _uv()
    # uv's own settings of the workspace (its environment, its Python) are not the connector's
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UV_", "VIRTUAL_ENV", "PYTHON"))}
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    _run([uv, "build", "--wheel", "--out-dir", str(dist), str(KIT)], env, tmp_path)
    (wheel,) = dist.glob("orderflow_connector-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], env, tmp_path)
    python = venv / "bin" / "python"
    _run([uv, "pip", "install", "--python", str(python), str(wheel)], env, tmp_path, timeout=300)

    # -I: the venv's packages only (no PYTHONPATH, no user site, not the working directory)
    installed = _run([str(python), "-I", "-c",
                      "import importlib.metadata as md\n"
                      "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in md.distributions())))"],
                     env, tmp_path).split()
    assert "orderflow-connector" in installed and {"pydantic", "aiokafka"} <= set(installed)
    assert [n for n in installed if n.startswith("orderflow-")] == ["orderflow-connector"], installed
    assert not set(NOT_IN_THE_KIT) & set(installed), sorted(set(NOT_IN_THE_KIT) & set(installed))

    kafka = KafkaSettings(bootstrap_servers=tansu.bootstrap, broker="tansu")
    await create_topics(kafka, [(ORDER_INBOUND.name, ORDER_INBOUND.partitions)])
    connector = tmp_path / "push_order.py"
    connector.write_text(_readme_example(), encoding="utf-8")
    # the example, then what it loaded: the kit, not the runtime (nor could it: not installed)
    out = _run([str(python), "-I", "-c",
                f"import runpy, sys; sys.argv = ['push_order.py', {tansu.bootstrap!r}, 'tansu']\n"
                f"runpy.run_path({str(connector)!r}, run_name='__main__')\n"
                "import importlib.util as u\n"
                "assert u.find_spec('orderflow.runtime') is None\n"
                "assert u.find_spec('orderflow.devstack') is None\n"
                "assert not {'faststream', 'sqlalchemy', 'structlog'} & set(sys.modules)\n"
                "import orderflow.connector\n"
                "print('kit at', orderflow.connector.__file__)\n"
                # without the [settings] extra, no broker from the environment: said, not guessed
                "try:\n"
                "    orderflow.connector.OrderPusher()\n"
                "except TypeError as exc:\n"
                "    print('without settings:', exc)\n"],
               env, tmp_path, timeout=120)
    assert re.search(r"pushed PO-1001 to partition \d+, offset \d+", out), out
    assert f"kit at {venv}" in out, out
    assert "without settings: OrderPusher() reads the broker from ORDERFLOW_KAFKA_*" in out, out

    consumer = AIOKafkaConsumer(ORDER_INBOUND.name, **kafka.client_kwargs(),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        records = []
        for _ in range(150):  # up to 30 s: the order is on the topic before the example ends
            batch = await consumer.getmany(timeout_ms=200)
            records += [r for rs in batch.values() for r in rs]
            if records:
                break
    finally:
        await consumer.stop()
    assert len(records) == 1, records
    (record,) = records
    assert record.key == b"canonical:PO-1001"
    headers = EventHeaders.from_kafka(record.headers)
    assert (headers.event_type, headers.producer) == ("OrderSubmitted", "example-connector")
    submitted = OrderSubmitted.model_validate_json(record.value or b"")
    assert (submitted.channel, submitted.external_id, submitted.store) == ("canonical", "PO-1001", None)
    order = CanonicalOrder.model_validate(submitted.payload)
    assert (order.customer.id, [(line.sku, line.quantity) for line in order.lines]) == (
        "C0001", [("TEA-001", 2)])
