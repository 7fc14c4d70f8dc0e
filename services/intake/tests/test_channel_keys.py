"""The channel order API's credentials, without a running service: which keys the settings take,
and which key (channel, store) a request's credential is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from orderflow.intake import channel_api, domain
from orderflow.intake.settings import IntakeSettings

pytestmark = pytest.mark.unit

KEYS = {"desk": SecretStr("desk-key-0123456789"),
        "shopify/shop-a": SecretStr("shop-a-key-0123456789")}


def settings(monkeypatch: pytest.MonkeyPatch, keys: object, **env: str) -> IntakeSettings:
    monkeypatch.setenv("ORDERFLOW_INTAKE_CHANNEL_KEYS", json.dumps(keys))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return IntakeSettings()


@pytest.mark.parametrize(("keys", "complaint"), [
    ({"desk": "short"}, "at least 16"),
    ({"shopify": "a-long-enough-key-0123"}, "names its store"),
    ({"desk": "the-same-key-0123456", "canonical": "the-same-key-0123456"}, "the same key"),
    ({"shopify/a b": "a-long-enough-key-0123"}, "no blanks"),
    ({"": "a-long-enough-key-0123"}, "not channel/store"),
])
def test_unusable_keys_fail_the_start_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, keys: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValidationError, match="ORDERFLOW_INTAKE_CHANNEL_KEYS") as raised:
        settings(monkeypatch, keys)
    assert complaint in str(raised.value)
    assert "0123" not in str(raised.value)  # never the key itself


def test_keys_from_a_file_join_those_of_the_variable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    file.write_text(json.dumps({"douyin/4463798": "douyin-key-0123456789"}))
    got = settings(monkeypatch, {"desk": "desk-key-0123456789"},
                   ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE=str(file))
    assert set(got.channel_keys) == {"desk", "douyin/4463798"}
    file.write_text("not json")
    with pytest.raises(ValidationError, match="ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE"):
        settings(monkeypatch, {}, ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE=str(file))


def test_no_keys_is_the_default_and_closes_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERFLOW_INTAKE_CHANNEL_KEYS", raising=False)
    assert IntakeSettings().channel_keys == {}
    closed = channel_api.identify_caller({}, {"x-orderflow-key": "anything"}, b"{}")
    assert isinstance(closed, channel_api.Denied) and closed.status == 503
    # no credential is 401 first, keys or not
    assert channel_api.identify_caller({}, {}, b"{}") == channel_api.identify_caller(KEYS, {}, b"{}")
    assert channel_api.identify_caller({}, {}, b"{}").status == 401  # type: ignore[union-attr]


@pytest.mark.parametrize("headers", [
    {"authorization": "Bearer shop-a-key-0123456789"},
    {"authorization": "bearer  shop-a-key-0123456789 "},
    {"x-orderflow-key": "shop-a-key-0123456789"},
    {"x-orderflow-signature": channel_api.body_signature("shop-a-key-0123456789", b'{"id": 1}')},
])
def test_each_way_of_presenting_a_key_names_its_channel_and_store(
        headers: dict[str, str]) -> None:
    assert channel_api.identify_caller(KEYS, headers, b'{"id": 1}') == channel_api.Caller(
        "shopify/shop-a", "shopify", "shop-a")


@pytest.mark.parametrize("headers", [
    {"authorization": "Basic shop-a-key-0123456789"},
    {"x-orderflow-key": "shop-a-key-012345678"},
    {"x-orderflow-signature": channel_api.body_signature("shop-a-key-0123456789", b"{}")},
    {"x-orderflow-signature": "sha256=" + "0" * 64},
    {"x-orderflow-signature": "é" * 70},
])
def test_a_wrong_key_or_signature_is_401(headers: dict[str, str]) -> None:
    denied = channel_api.identify_caller(KEYS, headers, b'{"id": 1}')
    assert isinstance(denied, channel_api.Denied) and denied.status == 401


def test_a_key_reaches_its_own_channel_and_store_only() -> None:
    shop = channel_api.Caller("shopify/shop-a", "shopify", "shop-a")
    assert channel_api.authorise(shop, "shopify", None) == shop
    assert channel_api.authorise(shop, "shopify", "shop-a") == shop
    assert channel_api.authorise(shop, "shopify", "shop-b").status == 403  # type: ignore[union-attr]
    assert channel_api.authorise(shop, "douyin", None).status == 403  # type: ignore[union-attr]
    desk = channel_api.Caller("desk", "desk", None)
    assert channel_api.authorise(desk, "desk", "anything").status == 403  # type: ignore[union-attr]


def test_only_a_desk_caller_names_who_entered_its_order() -> None:
    """The author a request names is the push's for channel desk only; a connector's claim is
    dropped (nobody at OrderFlow entered a platform's order), and so is a blank one."""
    body = json.dumps({"external_id": "DESK-1", "id": 7}).encode()
    desk = channel_api.Caller("desk", "desk", None)
    shop = channel_api.Caller("shopify/shop-a", "shopify", "shop-a")
    canonical = channel_api.Caller("canonical", "canonical", None)
    kept = channel_api.read_submission(desk, body, author=" clerk ")
    assert not isinstance(kept, domain.Refused) and kept.author == "clerk"
    for caller in (shop, canonical):
        pushed = channel_api.read_submission(caller, body, author="clerk")
        assert not isinstance(pushed, domain.Refused) and pushed.author is None, caller
    blank = channel_api.read_submission(desk, body, author="  ")
    assert not isinstance(blank, domain.Refused) and blank.author is None
    assert domain.author_of("desk", "x" * 500) == "x" * domain.MAX_AUTHOR_LENGTH
    # a push consumed from order.inbound: its own channel decides, whatever it claims
    assert domain.author_of("douyin", "clerk") is None and domain.author_of("desk", None) is None
