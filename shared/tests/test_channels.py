"""The channel registry (``orderflow.channels``): entry points of group ``orderflow.channels``
found and loaded; a plugin that cannot be loaded skipped with its reason; two claiming one
channel refused with both named; intake's own channels registered the same way."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from orderflow.channels import (
    ENTRY_POINT_GROUP,
    Channel,
    ChannelConflict,
    ChannelOrder,
    channel_names,
    discover,
    per_store,
    registry,
)
from orderflow.connector import external_id_of, store_of

pytestmark = pytest.mark.unit


def entry(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on ``sys.path`` with plugin modules: a good one, one whose import fails, one
    whose object is not a ``Channel``."""
    (tmp_path / "good_plugin.py").write_text(
        "from orderflow.channels import Channel, ChannelOrder\n"
        "CHANNEL = Channel(lambda payload: ChannelOrder(payload), external_id_fields=('ref',),\n"
        "                  per_store=True)\n")
    (tmp_path / "broken_plugin.py").write_text("import a_module_nobody_installed\n")
    (tmp_path / "wrong_plugin.py").write_text("CHANNEL = {'to_canonical': None}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_plugin_is_loaded_and_a_broken_one_skipped_with_its_reason(plugins: Path) -> None:
    found = discover([entry("good", "good_plugin:CHANNEL"),
                      entry("broken", "broken_plugin:CHANNEL"),
                      entry("wrong", "wrong_plugin:CHANNEL"),
                      entry("missing", "good_plugin:NOT_THERE"),
                      entry("Bad:Name", "good_plugin:CHANNEL")])
    assert list(found.channels) == ["good"]
    good = found.channels["good"]
    assert isinstance(good, Channel) and good.to_canonical({"ref": 1}) == ChannelOrder({"ref": 1})
    skipped = {origin.split(" = ")[0]: reason for origin, reason in found.skipped.items()}
    assert set(skipped) == {"broken", "wrong", "missing", "Bad:Name"}
    assert "ModuleNotFoundError" in skipped["broken"]
    assert "a_module_nobody_installed" in skipped["broken"]
    assert "dict, not an orderflow.channels.Channel" in skipped["wrong"]
    assert "AttributeError" in skipped["missing"]
    assert "lower-case" in skipped["Bad:Name"]


def test_two_plugins_claiming_one_channel_are_refused_naming_both(plugins: Path) -> None:
    with pytest.raises(ChannelConflict) as refused:
        discover([entry("good", "good_plugin:CHANNEL"),
                  entry("shopify", "good_plugin:CHANNEL"),
                  entry("shopify", "orderflow.intake.adapters.shopify:CHANNEL")])
    message = str(refused.value)
    assert "channel 'shopify' is claimed by 2 entry points" in message
    assert "good_plugin:CHANNEL" in message
    assert "orderflow.intake.adapters.shopify:CHANNEL" in message
    assert "uninstall or rename" in message


def test_intakes_own_channels_are_registered_as_entry_points() -> None:
    assert {"canonical", "desk", "shopify", "douyin", "csv", "xlsx"} <= set(channel_names())
    assert not registry().skipped
    # the marketplaces' orders are only known by their store; the connector reads where their
    # formats keep the id and the store from the same registry
    assert {name for name in channel_names() if per_store(name)} >= {"shopify", "douyin"}
    assert not per_store("canonical") and not per_store("no-such-channel")
    douyin = {"data": {"shop_order_detail": {"order_id": "6920", "shop_id": 77977}}}
    assert external_id_of("douyin", douyin) == "6920"
    assert store_of("douyin", douyin) == "77977"
    assert external_id_of("shopify", {"id": 42, "order_number": 1001}) == "42"
