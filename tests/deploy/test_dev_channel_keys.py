"""The dev stack opens intake's channel order API with keys of its own: one per demo channel
and store, generated once, kept private, and accepted by intake's settings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from orderflow.devstack.stack import DEV_CHANNEL_KEYS, ServiceProcess, Stack
from orderflow.intake.settings import IntakeSettings

pytestmark = pytest.mark.unit


def test_a_dev_stack_gives_intake_a_key_per_demo_channel_kept_across_restarts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", raising=False)
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS", raising=False)
    stack = Stack(root=tmp_path)
    env = stack.service_env(ServiceProcess("intake", 0, 8081))
    path = Path(env["ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE"])
    keys = json.loads(path.read_text())
    assert sorted(keys) == sorted(DEV_CHANNEL_KEYS)
    assert len(set(keys.values())) == len(keys)  # no key reaches two channels
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # a restart of the stack keeps the keys a connector was given
    again = json.loads(Path(stack.service_env(ServiceProcess("intake", 0, 8081))
                            ["ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE"]).read_text())
    assert again == keys
    assert "ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE" not in stack.service_env(
        ServiceProcess("review", 0, 8082))
    monkeypatch.setenv("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", str(path))
    settings = IntakeSettings()
    assert {name: key.get_secret_value() for name, key in settings.channel_keys.items()} == keys


def test_the_keys_file_is_written_only_when_its_content_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", raising=False)
    stack = Stack(root=tmp_path)
    path = stack.channel_keys_file()
    written = path.read_text()
    os.utime(path, ns=(0, 0))  # a write would move it
    before = path.stat()
    # every intake launch after the first leaves the file alone
    for _ in range(2):
        assert Path(stack.service_env(ServiceProcess("intake", 0, 8081))
                    ["ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE"]) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, 0)
    # a file that lost its content is written again, whole, with the same keys
    path.write_text("{")
    assert stack.channel_keys_file().read_text() == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_console_is_given_the_desk_key_intake_has(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", raising=False)
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS", raising=False)
    monkeypatch.delenv("ORDERFLOW_CONSOLE_DESK_KEY", raising=False)
    stack = Stack(root=tmp_path)
    keys = json.loads(Path(stack.service_env(ServiceProcess("intake", 0, 8081))
                           ["ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE"]).read_text())
    console = stack.service_env(ServiceProcess("console", 0, 8080))
    assert console["ORDERFLOW_CONSOLE_DESK_KEY"] == keys["desk"]
    # a desk key given in the variable wins over the file's, in intake and so in the console
    monkeypatch.setenv("ORDERFLOW_INTAKE_CHANNEL_KEYS", json.dumps({"desk": "d" * 32}))
    assert stack.service_env(ServiceProcess("console", 0, 8080))[
        "ORDERFLOW_CONSOLE_DESK_KEY"] == "d" * 32
    monkeypatch.setenv("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", str(tmp_path / "channel-keys.json"))
    assert IntakeSettings().channel_keys["desk"].get_secret_value() == "d" * 32
