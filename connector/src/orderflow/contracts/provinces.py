"""China's provincial-level divisions, and a province however an address writes it ("广东省",
"广西壮族自治区", "Guangdong Province", "guangdong sheng") brought to its short Chinese name, the
form every service compares and keys its tables by."""

from __future__ import annotations

PROVINCES: tuple[str, ...] = (
    "北京", "天津", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "上海", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "海南", "重庆", "四川",
    "贵州", "云南", "西藏", "陕西", "甘肃", "青海", "宁夏", "新疆", "香港", "澳门", "台湾",
)
_KNOWN = frozenset(PROVINCES)

#: Pinyin and English names, letters only and lower case.
_LATIN = {
    "beijing": "北京", "tianjin": "天津", "hebei": "河北", "shanxi": "山西",
    "innermongolia": "内蒙古", "neimenggu": "内蒙古", "liaoning": "辽宁", "jilin": "吉林",
    "heilongjiang": "黑龙江", "shanghai": "上海", "jiangsu": "江苏", "zhejiang": "浙江",
    "anhui": "安徽", "fujian": "福建", "jiangxi": "江西", "shandong": "山东", "henan": "河南",
    "hubei": "湖北", "hunan": "湖南", "guangdong": "广东", "guangxi": "广西", "hainan": "海南",
    "chongqing": "重庆", "sichuan": "四川", "guizhou": "贵州", "yunnan": "云南", "tibet": "西藏",
    "xizang": "西藏", "shaanxi": "陕西", "gansu": "甘肃", "qinghai": "青海", "ningxia": "宁夏",
    "xinjiang": "新疆", "hongkong": "香港", "macau": "澳门", "macao": "澳门", "taiwan": "台湾",
}
_SUFFIXES = ("壮族自治区", "回族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")
_LATIN_SUFFIXES = ("province", "municipality", "autonomousregion", "sar", "sheng", "shi", "city")


def province_key(name: str) -> str | None:
    """The short Chinese name of a province however it is written, or None if unknown."""
    text = name.strip()
    if text in _KNOWN:
        return text
    for suffix in _SUFFIXES:
        if text.endswith(suffix) and text[: -len(suffix)] in _KNOWN:
            return text[: -len(suffix)]
    latin = "".join(ch for ch in text.lower() if ch.isalpha())
    if latin in _LATIN:
        return _LATIN[latin]
    for suffix in _LATIN_SUFFIXES:
        if latin.endswith(suffix) and latin[: -len(suffix)] in _LATIN:
            return _LATIN[latin[: -len(suffix)]]
    return None


def normalise_province(name: str) -> str:
    """``province_key`` of a name, or the name trimmed when it is not a known province."""
    return province_key(name) or name.strip()
