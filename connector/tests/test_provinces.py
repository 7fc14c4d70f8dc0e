"""A province however an address writes it comes to one short Chinese name."""

from __future__ import annotations

import pytest

from orderflow.contracts.provinces import PROVINCES, normalise_province, province_key


@pytest.mark.parametrize(("written", "key"), [
    ("广东省", "广东"), ("广西壮族自治区", "广西"), ("上海市", "上海"), (" 内蒙古自治区 ", "内蒙古"),
    ("宁夏回族自治区", "宁夏"), ("香港特别行政区", "香港"), ("Guangdong Province", "广东"),
    ("guangdong sheng", "广东"), ("Inner Mongolia", "内蒙古"), ("Hong Kong SAR", "香港"),
    ("Beijing Shi", "北京"), ("浙江", "浙江"),
])
def test_known_spellings_come_to_the_short_name(written: str, key: str) -> None:
    assert province_key(written) == key
    assert normalise_province(written) == key


def test_unknown_names_are_none_or_kept_trimmed() -> None:
    assert province_key("Atlantis") is None
    assert province_key("市") is None
    assert normalise_province("  Atlantis ") == "Atlantis"


def test_every_short_name_is_its_own_key() -> None:
    assert all(province_key(p) == p for p in PROVINCES)
