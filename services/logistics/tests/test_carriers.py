"""The carrier rules, without a broker or a database: zones, rates, promised dates, the choice of
carrier and service, tracking-number formats, and the configurable catalogue."""

from __future__ import annotations

import json
import random
import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orderflow.logistics.domain import carriers
from orderflow.logistics.domain.carriers import (
    DEFAULT_CATALOGUE,
    CarrierCatalogue,
    CarrierChoice,
    Consignment,
    NoCarrier,
    TrackingFormat,
    choose_service,
    is_valid_tracking_number,
    normalise_province,
    pickup_date,
    promised_date,
    s10_check_digit,
    shipping_cost,
    tracking_number,
    zone_of,
)
from orderflow.logistics.settings import CatalogueError, load_catalogue

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
MORNING = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)  # before every carrier's cut-off


def service(carrier: str, code: str) -> carriers.CarrierService:
    found = DEFAULT_CATALOGUE.carrier(carrier)
    assert found is not None
    return next(s for s in found.services if s.code == code)


def consignment(weight: str = "1.5", *, origin: str | None = "上海", destination: str = "北京",
                country: str = "CN", rush: bool = False,
                requested: date | None = None) -> Consignment:
    return Consignment(weight_kg=Decimal(weight), origin_province=origin,
                       destination_province=destination, destination_country=country, rush=rush,
                       requested_date=requested)


def choose(c: Consignment, at: datetime = MORNING) -> CarrierChoice:
    choice = choose_service(c, DEFAULT_CATALOGUE, at, TZ)
    assert isinstance(choice, CarrierChoice), choice
    return choice


# --- zones -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "destination", "zone"),
    [
        ("上海", "上海市", "same_province"),
        ("上海", "浙江", "neighbouring"),
        ("广东", "广西壮族自治区", "neighbouring"),
        ("上海", "北京", "national"),
        ("四川", "西藏自治区", "remote"),  # remote wins over neighbouring
        ("上海", "新疆维吾尔自治区", "remote"),
        (None, "上海", "national"),  # warehouse location unknown
        ("上海", "Zhejiang Province", "neighbouring"),
        ("上海", "Atlantis", "national"),
    ],
)
def test_zone_of_a_route(origin: str | None, destination: str, zone: str) -> None:
    assert zone_of(origin, destination, DEFAULT_CATALOGUE.remote_provinces) == zone


def test_every_mainland_province_has_neighbours_and_borders_are_mutual() -> None:
    for province, neighbours in carriers.NEIGHBOURS.items():
        if province != "台湾":
            assert neighbours, province
        for other in neighbours:
            assert province in carriers.NEIGHBOURS[other]


def test_province_names_are_normalised() -> None:
    assert normalise_province(" 内蒙古自治区 ") == "内蒙古"
    assert normalise_province("宁夏回族自治区") == "宁夏"
    assert normalise_province("北京市") == "北京"
    assert normalise_province("guangdong sheng") == "广东"


# --- rates and dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "cost"),
    [("0.3", "18.00"), ("1.0", "18.00"), ("1.01", "24.00"), ("2", "24.00"), ("10.5", "78.00")],
)
def test_rate_is_first_kg_plus_each_started_extra_kg(weight: str, cost: str) -> None:
    assert shipping_cost(service("SF", "standard"), "national", Decimal(weight)) == Decimal(cost)


def test_freight_charges_at_least_its_minimum_weight() -> None:
    freight = service("JD", "freight")
    assert shipping_cost(freight, "national", Decimal("25")) == Decimal("88.00")  # 40 + 24 * 2
    assert carriers.chargeable_kg(Decimal("5"), freight) == 20


def test_promised_date_is_collection_day_plus_transit_days() -> None:
    sf = DEFAULT_CATALOGUE.carrier("SF")
    assert sf is not None
    standard = service("SF", "standard")
    assert promised_date(MORNING, sf, standard, "national", TZ) == date(2026, 11, 22)
    assert promised_date(MORNING, sf, standard, "remote", TZ) == date(2026, 11, 24)


def test_hand_off_after_the_carriers_cutoff_is_collected_the_next_day() -> None:
    evening = datetime(2026, 11, 20, 17, 30, tzinfo=TZ)
    assert pickup_date(evening, 18, TZ) == date(2026, 11, 20)  # SF collects until 18:00
    assert pickup_date(evening, 17, TZ) == date(2026, 11, 21)  # ZTO until 17:00
    # company time decides, whatever the clock's zone: 09:30 UTC is 17:30 in Shanghai
    assert pickup_date(datetime.fromisoformat("2026-11-20T09:30:00+00:00"), 17, TZ) == date(2026, 11, 21)
    assert pickup_date(datetime(2026, 11, 20, 23, 59, tzinfo=TZ), 24, TZ) == date(2026, 11, 20)


# --- the choice ---------------------------------------------------------------------------------------


def test_without_a_requested_date_the_cheapest_service_is_taken() -> None:
    choice = choose(consignment(destination="上海"))
    assert (choice.option.carrier.code, choice.option.service.code) == ("ZTO", "standard")
    assert choice.option.cost == Decimal("7.00")  # 2 started kg: 6 + 1
    assert choice.rule == "cheapest"
    assert not choice.misses_requested_date
    assert choice.considered == 7  # all but JD freight, which needs 20 kg


def test_a_rush_order_takes_the_fastest_service() -> None:
    choice = choose(consignment(rush=True))
    assert (choice.option.carrier.code, choice.option.service.code) == ("SF", "express")
    assert choice.option.promised_date == date(2026, 11, 21)
    assert choice.rule == "rush_fastest"
    assert choice.option.service.express


def test_a_rush_order_with_equally_fast_services_takes_the_cheaper() -> None:
    choice = choose(consignment(destination="上海", rush=True))  # four services deliver next day
    assert (choice.option.carrier.code, choice.option.service.code) == ("JD", "standard")
    assert choice.rule == "rush_fastest"


def test_a_tight_requested_date_takes_the_fastest_service_meeting_it() -> None:
    choice = choose(consignment(requested=date(2026, 11, 22)))
    assert choice.rule == "tight_date_fastest"
    assert choice.option.promised_date == date(2026, 11, 21)
    assert choice.option.label == "SF express"


def test_a_relaxed_requested_date_takes_the_cheapest_service_meeting_it() -> None:
    far = choose(consignment(requested=date(2026, 11, 30)))
    assert far.rule == "cheapest_meeting_date"
    assert far.option.label == "ZTO standard"  # 4 days, 13.00
    nearer = choose(consignment(requested=date(2026, 11, 23)))
    assert nearer.rule == "cheapest_meeting_date"
    assert nearer.option.label == "JD standard"  # ZTO and YTO would arrive on the 24th
    assert nearer.option.promised_date <= date(2026, 11, 23)
    assert nearer.option.cost == Decimal("22.00")


def test_when_no_service_meets_the_date_the_fastest_is_taken_and_flagged() -> None:
    choice = choose(consignment(requested=date(2026, 11, 20)))
    assert choice.rule == "fastest_misses_date"
    assert choice.misses_requested_date
    assert choice.option.label == "SF express"
    rush = choose(consignment(rush=True, requested=date(2026, 11, 19)))
    assert rush.rule == "fastest_misses_date" and rush.misses_requested_date


def test_weight_limits_are_respected() -> None:
    heavy = choose(consignment("45"))
    assert heavy.option.label == "JD freight"
    assert heavy.considered == 3  # SF standard, JD standard, JD freight
    assert all(o.service.max_weight_kg >= Decimal(45) for o in carriers.eligible_options(
        consignment("45"), DEFAULT_CATALOGUE, MORNING, TZ))
    too_heavy = choose_service(consignment("1200"), DEFAULT_CATALOGUE, MORNING, TZ)
    assert isinstance(too_heavy, NoCarrier)
    assert "1000" in too_heavy.reason


def test_destination_limits_are_respected() -> None:
    tibet = carriers.eligible_options(consignment(destination="西藏", rush=True),
                                      DEFAULT_CATALOGUE, MORNING, TZ)
    labels = {o.label for o in tibet}
    assert "JD express" not in labels  # excluded province
    assert "JD freight" not in labels  # no remote zone
    assert choose(consignment(destination="西藏", rush=True)).option.label == "SF express"
    abroad = choose_service(consignment(country="US"), DEFAULT_CATALOGUE, MORNING, TZ)
    assert isinstance(abroad, NoCarrier)
    assert "US" in abroad.reason


def test_a_disabled_carrier_is_never_chosen() -> None:
    data = DEFAULT_CATALOGUE.model_dump(mode="json")
    for carrier in data["carriers"]:
        if carrier["code"] == "ZTO":
            carrier["enabled"] = False
    catalogue = CarrierCatalogue.model_validate(data)
    choice = choose_service(consignment(destination="上海"), catalogue, MORNING, TZ)
    assert isinstance(choice, CarrierChoice)
    assert choice.option.label == "YTO standard"


# --- tracking numbers ---------------------------------------------------------------------------------

FORMATS = {
    "SF": r"SF\d{12}",
    "JD": r"JD\d{13}",
    "ZTO": r"7\d{11}",
    "YTO": r"YTO\d{10}",
    "EMS": r"EA\d{9}CN",
}


@pytest.mark.parametrize("code", sorted(FORMATS))
def test_tracking_numbers_follow_each_carriers_format(code: str) -> None:
    carrier = DEFAULT_CATALOGUE.carrier(code)
    assert carrier is not None
    rng = random.Random(code)
    for _ in range(200):
        number = carriers.new_tracking_number(carrier.tracking, rng.randrange)
        assert re.fullmatch(FORMATS[code], number), number
        assert is_valid_tracking_number(carrier.tracking, number)
    top = tracking_number(carrier.tracking, carrier.tracking.serial_space - 1)
    assert re.fullmatch(FORMATS[code], top)
    with pytest.raises(ValueError, match="outside"):
        tracking_number(carrier.tracking, carrier.tracking.serial_space)


@pytest.mark.parametrize(
    ("serial", "check"),
    [("12345678", 5), ("00000000", 5), ("00004000", 0), ("47312482", 9)],
)
def test_s10_check_digit(serial: str, check: int) -> None:
    # 12345678: 8+12+12+8+15+30+63+56 = 204, 204 mod 11 = 6, 11 - 6 = 5
    # 00000000: 11 - 0 = 11, written 5; 00004000: 4 * 3 = 12, 11 - 1 = 10, written 0;
    # 47312482 is the UPU example AA473124829GB
    assert s10_check_digit(serial) == check


def test_s10_numbers_with_a_wrong_check_digit_are_invalid() -> None:
    ems = TrackingFormat(kind="s10", prefix="EA")
    assert tracking_number(ems, 12345678) == "EA123456785CN"
    assert is_valid_tracking_number(ems, "EA123456785CN")
    assert not is_valid_tracking_number(ems, "EA123456789CN")
    assert not is_valid_tracking_number(ems, "EB123456785CN")
    with pytest.raises(ValueError, match="two-letter"):
        TrackingFormat(kind="s10", prefix="E")


# --- the catalogue file ---------------------------------------------------------------------------------


def test_the_default_catalogue_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "carriers.json"
    path.write_text(DEFAULT_CATALOGUE.model_dump_json(indent=2), encoding="utf-8")
    assert load_catalogue(path) == DEFAULT_CATALOGUE
    assert load_catalogue(None) is DEFAULT_CATALOGUE


def test_a_company_catalogue_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "carriers.json"
    path.write_text(json.dumps({
        "tight_date_days": 0,
        "packaging_kg": "0",
        "carriers": [{
            "code": "DBL", "name": "德邦快递", "cutoff_hour": 19,
            "tracking": {"prefix": "DPK", "digits": 12},
            "services": [{"code": "standard", "name": "德邦标准快递", "max_weight_kg": 60,
                          "rates": {"national": {"first_kg": "9", "extra_kg": "2.5"}},
                          "transit_days": {"national": 3}}],
        }],
    }), encoding="utf-8")
    catalogue = load_catalogue(path)
    choice = choose_service(consignment("3"), catalogue, MORNING, TZ)
    assert isinstance(choice, CarrierChoice)
    assert choice.option.label == "DBL standard"
    assert choice.option.cost == Decimal("14.00")
    # only the national zone is served: a same-province destination has no carrier
    assert isinstance(choose_service(consignment(destination="上海"), catalogue, MORNING, TZ),
                      NoCarrier)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a valid carrier catalogue"),
        ('{"carriers": []}', "carriers"),
        (json.dumps({"carriers": [{"code": "X1", "name": "x", "tracking": {},
                                   "services": [{"code": "s", "name": "s", "max_weight_kg": 1,
                                                 "rates": {"national": {"first_kg": 1,
                                                                        "extra_kg": 1}},
                                                 "transit_days": {"remote": 2}}]}]}),
         "same zones"),
    ],
)
def test_a_bad_catalogue_file_fails_naming_the_variable(tmp_path: Path, content: str,
                                                        message: str) -> None:
    path = tmp_path / "carriers.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogueError, match="ORDERFLOW_LOGISTICS_CARRIERS_FILE") as caught:
        load_catalogue(path)
    assert message in str(caught.value)
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "missing.json")
