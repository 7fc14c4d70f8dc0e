"""Passwords, roles, tokens and the dashboard's arithmetic, without a broker or a database."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from orderflow.console import auth
from orderflow.console.dashboard import Sample, group_lag, members_of, rates, true_ends
from orderflow.console.settings import ConsoleSettings, UserEntry

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
    ("reviewer", {"view", "export", "decide"}),
    ("admin", {"view", "export", "decide", "replay", "audit"}),
    ("nobody", set()),
])
def test_roles_include_the_ones_before(role: str, may: set[str]) -> None:
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
    settings = ConsoleSettings(admin_token="configured-token-of-some-length", token_file=tmp_path / "t")  # type: ignore[arg-type]
    accounts = auth.Accounts.from_settings(settings)
    assert accounts.bearer("configured-token-of-some-length") is not None
    assert not (tmp_path / "t").exists()


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
