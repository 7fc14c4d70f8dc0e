"""Passwords, roles, tokens and the dashboard's arithmetic, without a broker or a database."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from orderflow.console import auth
from orderflow.console.dashboard import Sample, group_lag, rates, true_ends
from orderflow.console.settings import ConsoleSettings, UserEntry
from orderflow.runtime.lag import members_of

pytestmark = pytest.mark.unit


def test_scrypt_hashes_verify_and_are_salted() -> None:
    first, second = auth.hash_password("s3cret-pass"), auth.hash_password("s3cret-pass")
    assert first != second and first.startswith("scrypt$")
    assert auth.verify_password("s3cret-pass", first)
    assert not auth.verify_password("s3cret-Pass", first)
    assert not auth.verify_password("s3cret-pass", "plain-text-password")


def test_pbkdf2_hashes_verify() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw-123456", salt, 100_000)
    stored = f"pbkdf2_sha256$100000${auth._b64(salt)}${auth._b64(digest)}"
    assert auth.verify_password("pw-123456", stored)
    assert not auth.verify_password("pw-1234567", stored)


@pytest.mark.parametrize(("role", "may"), [
    ("viewer", {"view", "export"}),
    ("clerk", {"view", "export", "enter", "amend", "case"}),
    ("reviewer", {"view", "export", "decide"}),
    ("director", {"view", "export", "decide", "direct"}),
    ("admin", set(auth.PERMISSIONS)),
    ("nobody", set()),
])
def test_each_role_holds_its_rights(role: str, may: set[str]) -> None:
    """A clerk enters and amends but does not decide; a reviewer decides but enters nothing; a
    director also gives the second approval; an admin does everything."""
    assert {a for a in auth.PERMISSIONS if auth.allowed(role, a)} == may


def test_accounts_authenticate_and_the_admin_token(tmp_path: Path) -> None:
    settings = ConsoleSettings(
        users={"rita": UserEntry(role="reviewer", password_hash=auth.hash_password("rita-pass"))},
        token_file=tmp_path / "token")
    accounts = auth.Accounts.from_settings(settings)
    assert accounts.authenticate("rita", "rita-pass") is not None
    assert accounts.authenticate("rita", "wrong") is None
    assert accounts.authenticate("nobody", "rita-pass") is None
    token = (tmp_path / "token").read_text().strip()
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600
    op = accounts.bearer(token)
    assert op is not None and op.role == "admin"
    assert accounts.bearer(token + "x") is None and accounts.bearer("") is None
    # a restart keeps the token of the file
    assert auth.admin_token(settings) == token


def test_a_configured_admin_token_is_used_and_no_file_is_written(tmp_path: Path) -> None:
    settings = ConsoleSettings(admin_token="configured-token-of-some-length", token_file=tmp_path / "t",  # type: ignore[arg-type]
                               dev_users=True)
    accounts = auth.Accounts.from_settings(settings)
    assert accounts.bearer("configured-token-of-some-length") is not None
    assert not (tmp_path / "t").exists()


def test_without_configured_users_the_console_refuses_to_start_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORDERFLOW_CONSOLE_USERS", "ORDERFLOW_CONSOLE_DEV_USERS"):
        monkeypatch.delenv(name, raising=False)
    settings = ConsoleSettings(token_file=tmp_path / "t")
    with pytest.raises(auth.ConsoleConfigurationError, match="ORDERFLOW_CONSOLE_USERS is not set"):
        auth.Accounts.from_settings(settings)
    assert not (tmp_path / "t").exists(), "refused before anything is written"
    # an empty variable (Compose's ${VAR:-}) is no configuration either
    monkeypatch.setenv("ORDERFLOW_CONSOLE_USERS", "")
    with pytest.raises(auth.ConsoleConfigurationError, match="ORDERFLOW_CONSOLE_USERS"):
        auth.check_configuration(ConsoleSettings())


def test_development_users_only_where_the_dev_stack_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_CONSOLE_USERS", raising=False)
    monkeypatch.setenv("ORDERFLOW_CONSOLE_DEV_USERS", "true")
    accounts = auth.Accounts.from_settings(ConsoleSettings(token_file=tmp_path / "t"))
    assert accounts.authenticate("admin", "admin-dev") is not None
    # configured users replace them, even with the flag set
    configured = ConsoleSettings(token_file=tmp_path / "t", users={
        "rita": UserEntry(role="admin", password_hash=auth.hash_password("rita-pass-1"))})
    accounts = auth.Accounts.from_settings(configured)
    assert accounts.authenticate("admin", "admin-dev") is None
    assert accounts.authenticate("rita", "rita-pass-1") is not None


def test_the_dev_stack_marks_itself_and_gives_every_service_the_same_key(tmp_path: Path) -> None:
    from orderflow.devstack.stack import ServiceProcess, Stack
    from orderflow.runtime.service_auth import KEY_VARIABLE

    stack = Stack(root=tmp_path, services=["review", "console"], fixed_ports=False)
    console = stack.service_env(ServiceProcess("console", 0, 1))
    review = stack.service_env(ServiceProcess("review", 0, 2))
    assert console["ORDERFLOW_CONSOLE_DEV_USERS"] == "true"
    # only the console is told; the others get what the environment had
    assert review.get("ORDERFLOW_CONSOLE_DEV_USERS") == os.environ.get("ORDERFLOW_CONSOLE_DEV_USERS")
    assert console[KEY_VARIABLE] == review[KEY_VARIABLE] and len(review[KEY_VARIABLE]) >= 32
    assert stat.S_IMODE((tmp_path / "service-key").stat().st_mode) == 0o600
    again = Stack(root=tmp_path, services=["review"], fixed_ports=False)
    assert again.service_env(ServiceProcess("review", 0, 2))[KEY_VARIABLE] == review[KEY_VARIABLE]


def test_the_console_process_refuses_to_start_without_users(tmp_path: Path) -> None:
    """Before it connects to anything: exit status 2 and one line naming the variable."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in {"ORDERFLOW_CONSOLE_USERS", "ORDERFLOW_CONSOLE_DEV_USERS"}}
    env |= {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "ORDERFLOW_HTTP_PORT": "0",
            "ORDERFLOW_CONSOLE_TOKEN_FILE": str(tmp_path / "token")}
    done = subprocess.run([sys.executable, "-m", "orderflow.console"], env=env, timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "ORDERFLOW_CONSOLE_USERS is not set" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "token").exists()


def test_a_short_admin_token_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValidationError, match="ORDERFLOW_CONSOLE_ADMIN_TOKEN must be at least"):
        ConsoleSettings(admin_token="short")  # type: ignore[arg-type]


def test_bad_settings_fail_naming_the_problem() -> None:
    with pytest.raises(ValidationError, match="role must be one of"):
        UserEntry(role="boss", password_hash="scrypt$1$2$3$abc$def")
    with pytest.raises(ValidationError, match="unknown kinds"):
        ConsoleSettings(sla_minutes={"lunch": 5})
    assert ConsoleSettings(sla_minutes={"held": 5}).sla_minutes["dlq"] == 30


def test_rates_now_and_over_the_window() -> None:
    samples = [Sample(0.0, {"t": 0}), Sample(10.0, {"t": 100}), Sample(12.0, {"t": 110})]
    now, hour, window = rates(samples, "t")
    assert now == 5.0 and window == 12.0 and hour == pytest.approx(110 / 12)
    assert rates(samples[:1], "t") == (None, None, 0.0)
    long = [Sample(float(s), {"t": s}) for s in range(0, 7200, 60)]
    _now, hour, window = rates(long, "t")
    assert window == 3600.0 and hour == 1.0


def test_lag_from_end_and_committed_offsets() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    lag = group_lag({a0: 10, a1: 5, b0: 7}, {a0: 8, a1: None, b0: None})
    assert lag == {"a": {"committed": 8, "end": 15, "lag": 7}}  # b is not the group's topic


def test_a_committed_offset_proves_the_log_reaches_it() -> None:
    a0, a1 = TopicPartition("a", 0), TopicPartition("a", 1)
    assert true_ends({a0: 5, a1: 9}, [{a0: 7, a1: None}, {a0: 6}]) == {a0: 7, a1: 9}


class _Described:
    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.groups = groups

    def to_object(self) -> dict[str, Any]:
        return {"throttle_time_ms": 0, "groups": self.groups}


def test_members_of_counts_one_replica_per_member_and_skips_unknown_groups() -> None:
    def member(mid: str, host: str = "") -> dict[str, Any]:
        return {"member_id": mid, "client_id": "", "client_host": host,
                "member_metadata": b"", "member_assignment": b""}
    described = [_Described([
        {"error_code": 0, "group": "orderflow.intake", "state": "Stable", "protocol_type": "consumer",
         "protocol": "range", "members": [member("a-1", "/10.0.0.2"), member("a-2", "/10.0.0.3")]}]),
        _Described([
            {"error_code": 0, "group": "orderflow.review", "state": "Empty",
             "protocol_type": "consumer", "protocol": "", "members": []},
            # what the embedded broker answers for a group it does not know
            {"error_code": -1, "group": None, "state": "", "protocol_type": "nope",
             "protocol": "Empty", "members": []}])]
    got = members_of(described)
    assert got == {
        "orderflow.intake": {"replicas": 2, "state": "Stable", "members": ["/10.0.0.2", "/10.0.0.3"]},
        "orderflow.review": {"replicas": 0, "state": "Empty", "members": []},
    }


class _Refusing:
    """What ``requirement`` asks of the console: the operator, and the audit log."""

    def __init__(self, op: auth.Operator) -> None:
        self.op = op
        self.audited: list[tuple[str, str | None, str]] = []

    async def operator(self, _request: Any) -> auth.Operator:
        return self.op

    async def audit(self, op: auth.Operator, action: str, target: str | None, outcome: str,
                    **_detail: Any) -> None:
        self.audited.append((action, target, outcome))


@pytest.mark.parametrize(("rights", "audited", "said", "holder"), [
    (("replay",), "replay", "may not replay", "admin"),
    (("case", "amend", "decide"), "case|amend|decide",
     "holds none of the rights case, amend, decide", "reviewer"),
])
async def test_a_refusal_is_audited_under_every_right_the_route_takes(
        rights: tuple[str, ...], audited: str, said: str, holder: str) -> None:
    from fastapi import HTTPException
    from starlette.requests import Request

    from orderflow.console.api import requirement

    console = _Refusing(auth.Operator(name="vic", role="viewer", via="token"))
    check = requirement(console, *rights)  # type: ignore[arg-type]
    request = Request({"type": "http", "method": "POST", "path": "/api/worklist/claim",
                       "headers": [], "query_string": b""})
    with pytest.raises(HTTPException) as refused:
        await check(request)
    assert refused.value.status_code == 403 and said in str(refused.value.detail)
    assert console.audited == [(audited, "/api/worklist/claim", "forbidden")]
    # one right among them lets the operator through, unaudited
    console.op = auth.Operator(name="hal", role=holder, via="token")
    assert (await check(request)).name == "hal"
    assert len(console.audited) == 1
