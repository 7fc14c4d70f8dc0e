"""The benchmark's broker choice (``--broker``, else ``ORDERFLOW_BROKER``, else Tansu) and where
it is recorded, without running the benchmark."""

from __future__ import annotations

import pytest
from bench.run import parse_args, table

pytestmark = pytest.mark.unit


def test_the_broker_comes_from_the_option_then_the_environment_then_tansu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_BROKER", raising=False)
    assert parse_args(["--quick"]).broker == "tansu"
    monkeypatch.setenv("ORDERFLOW_BROKER", "kafka")
    assert parse_args(["--quick"]).broker == "kafka"
    assert parse_args(["--quick", "--broker", "tansu"]).broker == "tansu"


def test_the_table_names_the_broker_and_kafkas_version() -> None:
    machine = {"cores": 2, "cpu_model": "x", "memory_gib": 1.0, "python": "3.11",
               "load_average_at_start": [0.0], "git_commit": "abc", "git_dirty": False}
    results = {"run_id": "R", "started_at": "now", "options": {"quick": True}, "machine": machine,
               "broker": "kafka", "kafka_version": "4.1.1", "phases": {}}
    assert "broker: Apache Kafka 4.1.1 (KRaft, one node" in table(results)
    assert "broker: Tansu" in table(results | {"broker": "tansu"})
