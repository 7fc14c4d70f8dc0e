"""The carrier catalogue and its rules: zones, rates, transit days, the promised date, the choice
of carrier and service, and tracking-number formats. Pure: no I/O.

The catalogue is configured per company: ``DEFAULT_CATALOGUE`` below is the demo company's (SF
Express, JD Logistics, ZTO, YTO, EMS); ``ORDERFLOW_LOGISTICS_CARRIERS_FILE`` names a JSON file with
the same shape that replaces it (read by ``settings.load_catalogue``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orderflow.contracts.money import round_money
from orderflow.contracts.provinces import PROVINCES, normalise_province

Zone = Literal["same_province", "neighbouring", "national", "remote"]
ZONES: tuple[Zone, ...] = ("same_province", "neighbouring", "national", "remote")

# --- geography -----------------------------------------------------------------------------------

_BORDERS: tuple[tuple[str, str], ...] = (
    ("北京", "天津"), ("北京", "河北"), ("天津", "河北"), ("河北", "山西"), ("河北", "内蒙古"),
    ("河北", "辽宁"), ("河北", "山东"), ("河北", "河南"), ("山西", "内蒙古"), ("山西", "陕西"),
    ("山西", "河南"), ("内蒙古", "黑龙江"), ("内蒙古", "吉林"), ("内蒙古", "辽宁"),
    ("内蒙古", "陕西"), ("内蒙古", "宁夏"), ("内蒙古", "甘肃"), ("辽宁", "吉林"),
    ("吉林", "黑龙江"), ("上海", "江苏"), ("上海", "浙江"), ("江苏", "浙江"), ("江苏", "安徽"),
    ("江苏", "山东"), ("浙江", "安徽"), ("浙江", "江西"), ("浙江", "福建"), ("安徽", "江西"),
    ("安徽", "湖北"), ("安徽", "河南"), ("安徽", "山东"), ("福建", "江西"), ("福建", "广东"),
    ("江西", "湖北"), ("江西", "湖南"), ("江西", "广东"), ("山东", "河南"), ("河南", "陕西"),
    ("河南", "湖北"), ("湖北", "湖南"), ("湖北", "重庆"), ("湖北", "陕西"), ("湖南", "广东"),
    ("湖南", "广西"), ("湖南", "贵州"), ("湖南", "重庆"), ("广东", "广西"), ("广东", "海南"),
    ("广东", "香港"), ("广东", "澳门"), ("广西", "贵州"), ("广西", "云南"), ("重庆", "贵州"),
    ("重庆", "四川"), ("重庆", "陕西"), ("四川", "贵州"), ("四川", "云南"), ("四川", "西藏"),
    ("四川", "青海"), ("四川", "甘肃"), ("四川", "陕西"), ("贵州", "云南"), ("云南", "西藏"),
    ("西藏", "新疆"), ("西藏", "青海"), ("陕西", "宁夏"), ("陕西", "甘肃"), ("甘肃", "宁夏"),
    ("甘肃", "青海"), ("甘肃", "新疆"), ("青海", "新疆"),
)
NEIGHBOURS: dict[str, frozenset[str]] = {
    p: frozenset({b for a, b in _BORDERS if a == p} | {a for a, b in _BORDERS if b == p})
    for p in PROVINCES
}


def zone_of(origin_province: str | None, destination_province: str,
            remote_provinces: Iterable[str]) -> Zone:
    """The zone of a route. Same province first (a warehouse in a remote province serves its own
    province as local), then remote destinations, then neighbouring provinces, else national.
    An unknown origin (warehouse master data missing) or destination counts as national."""
    dest = normalise_province(destination_province)
    origin = normalise_province(origin_province) if origin_province else None
    if origin is not None and origin == dest:
        return "same_province"
    if dest in {normalise_province(p) for p in remote_provinces}:
        return "remote"
    if origin is not None and dest in NEIGHBOURS.get(origin, frozenset()):
        return "neighbouring"
    return "national"


# --- the catalogue -------------------------------------------------------------------------------


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rate(_Config):
    """Price of a parcel in one zone: the first kilogram, then each further (started) kilogram."""

    first_kg: Decimal = Field(ge=0)
    extra_kg: Decimal = Field(ge=0)


class TrackingFormat(_Config):
    """How a carrier's tracking numbers look.

    ``digits``: ``prefix`` then ``digits`` digits, the first of them ``first_digit`` if set
    (SF + 12 digits, JD + 13 digits, ZTO 12 digits starting 7, YTO + 10 digits).
    ``s10``: the UPU S10 format ``prefix`` (two letters) + 8 serial digits + check digit +
    ``country`` (EMS: ``EA123456785CN``)."""

    kind: Literal["digits", "s10"] = "digits"
    prefix: str = Field(default="", pattern=r"^[A-Z]{0,4}$")
    digits: int = Field(default=12, ge=6, le=20)
    first_digit: str | None = Field(default=None, pattern=r"^[0-9]$")
    country: str = Field(default="CN", pattern=r"^[A-Z]{2}$")

    @model_validator(mode="after")
    def _s10_shape(self) -> TrackingFormat:
        if self.kind == "s10" and len(self.prefix) != 2:
            raise ValueError("an S10 tracking format needs a two-letter prefix such as EA")
        return self

    @property
    def serial_space(self) -> int:
        """How many distinct serials the format has (the random part)."""
        if self.kind == "s10":
            return 100_000_000
        free_digits: int = self.digits - (1 if self.first_digit else 0)
        return int(10**free_digits)


class CarrierService(_Config):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="e.g. standard, express")
    name: str
    express: bool = False
    rates: dict[Zone, Rate] = Field(description="Zones served and their rates")
    transit_days: dict[Zone, int]
    max_weight_kg: Decimal = Field(gt=0)
    min_weight_kg: Decimal = Field(default=Decimal("0"), ge=0)
    excluded_provinces: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _zones_agree(self) -> CarrierService:
        if set(self.rates) != set(self.transit_days):
            raise ValueError(f"service {self.code}: rates and transit_days must cover the same zones")
        if any(days < 0 for days in self.transit_days.values()):
            raise ValueError(f"service {self.code}: transit days cannot be negative")
        if self.min_weight_kg > self.max_weight_kg:
            raise ValueError(f"service {self.code}: min_weight_kg is above max_weight_kg")
        return self


class Carrier(_Config):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9]{1,9}$", description="e.g. SF, JD, ZTO, YTO, EMS")
    name: str
    tracking: TrackingFormat
    cutoff_hour: int = Field(default=18, ge=0, le=24,
                             description="Last collection hour (company time): parcels handed "
                                         "over at or after it are collected the next day")
    countries: tuple[str, ...] = ("CN",)
    enabled: bool = True
    services: tuple[CarrierService, ...] = Field(min_length=1)


class CarrierCatalogue(_Config):
    """The company's carriers and the policy of choosing among them."""

    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    remote_provinces: tuple[str, ...] = ("新疆", "西藏", "青海", "内蒙古", "宁夏", "甘肃")
    tight_date_days: int = Field(default=2, ge=0, description="A requested date at most this many "
                                 "days after collection is tight: the fastest service is taken")
    packaging_kg: Decimal = Field(default=Decimal("0.2"), ge=0,
                                  description="Carton and filling added to every shipment")
    default_item_weight_kg: Decimal = Field(default=Decimal("1.0"), ge=0,
                                            description="Weight used for a SKU with no known weight")
    carriers: tuple[Carrier, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_codes(self) -> CarrierCatalogue:
        codes = [c.code for c in self.carriers]
        if len(codes) != len(set(codes)):
            raise ValueError("carrier codes must be unique")
        for carrier in self.carriers:
            services = [s.code for s in carrier.services]
            if len(services) != len(set(services)):
                raise ValueError(f"carrier {carrier.code}: service codes must be unique")
        return self

    def carrier(self, code: str) -> Carrier | None:
        return next((c for c in self.carriers if c.code == code), None)


def _rates(*pairs: tuple[str, str]) -> dict[Zone, Rate]:
    return {zone: Rate(first_kg=Decimal(a), extra_kg=Decimal(b))
            for zone, (a, b) in zip(ZONES, pairs, strict=True)}


def _days(*days: int) -> dict[Zone, int]:
    return dict(zip(ZONES, days, strict=True))


DEFAULT_CATALOGUE = CarrierCatalogue(carriers=(
    Carrier(code="SF", name="顺丰速运 SF Express", cutoff_hour=18,
            tracking=TrackingFormat(prefix="SF", digits=12),
            services=(
                CarrierService(code="standard", name="顺丰标快", max_weight_kg=Decimal(50),
                               rates=_rates(("12", "2"), ("14", "4"), ("18", "6"), ("23", "10")),
                               transit_days=_days(1, 2, 2, 4)),
                CarrierService(code="express", name="顺丰特快", express=True,
                               max_weight_kg=Decimal(30),
                               rates=_rates(("16", "3"), ("20", "6"), ("23", "8"), ("30", "13")),
                               transit_days=_days(1, 1, 1, 3)),
            )),
    Carrier(code="JD", name="京东物流 JD Logistics", cutoff_hour=20,
            tracking=TrackingFormat(prefix="JD", digits=13),
            services=(
                CarrierService(code="standard", name="京东标快", max_weight_kg=Decimal(60),
                               rates=_rates(("10", "2"), ("13", "3"), ("17", "5"), ("22", "9")),
                               transit_days=_days(1, 2, 3, 4)),
                CarrierService(code="express", name="京东特快", express=True,
                               max_weight_kg=Decimal(30), excluded_provinces=("西藏",),
                               rates=_rates(("15", "3"), ("18", "5"), ("22", "7"), ("28", "12")),
                               transit_days=_days(1, 1, 2, 3)),
                CarrierService(code="freight", name="京东快运", min_weight_kg=Decimal(20),
                               max_weight_kg=Decimal(1000),
                               rates={"same_province": Rate(first_kg=Decimal(30),
                                                            extra_kg=Decimal("1.0")),
                                      "neighbouring": Rate(first_kg=Decimal(35),
                                                           extra_kg=Decimal("1.5")),
                                      "national": Rate(first_kg=Decimal(40),
                                                       extra_kg=Decimal("2.0"))},
                               transit_days={"same_province": 2, "neighbouring": 3,
                                             "national": 4}),
            )),
    Carrier(code="ZTO", name="中通快递 ZTO Express", cutoff_hour=17,
            tracking=TrackingFormat(digits=12, first_digit="7"),
            services=(
                CarrierService(code="standard", name="中通标快", max_weight_kg=Decimal(40),
                               rates=_rates(("6", "1"), ("8", "2"), ("10", "3"), ("18", "8")),
                               transit_days=_days(2, 3, 4, 6)),
            )),
    Carrier(code="YTO", name="圆通速递 YTO Express", cutoff_hour=17,
            tracking=TrackingFormat(prefix="YTO", digits=10),
            services=(
                CarrierService(code="standard", name="圆通标快", max_weight_kg=Decimal(40),
                               rates=_rates(("6.5", "1"), ("7.5", "2"), ("10.5", "3.5"),
                                            ("17", "8")),
                               transit_days=_days(2, 3, 4, 5)),
            )),
    Carrier(code="EMS", name="中国邮政 EMS", cutoff_hour=16,
            tracking=TrackingFormat(kind="s10", prefix="EA", country="CN"),
            services=(
                CarrierService(code="standard", name="EMS 标准快递", max_weight_kg=Decimal(40),
                               rates=_rates(("10", "2"), ("14", "4"), ("20", "6"), ("21", "7")),
                               transit_days=_days(2, 3, 3, 4)),
            )),
))


# --- rates and dates -------------------------------------------------------------------------------


def chargeable_kg(weight_kg: Decimal, service: CarrierService) -> int:
    """Carriers charge by started kilogram, at least one, and at least the service's minimum."""
    billed = max(weight_kg, service.min_weight_kg)
    return max(1, math.ceil(billed))


def shipping_cost(service: CarrierService, zone: Zone, weight_kg: Decimal) -> Decimal:
    """First kilogram plus each further started kilogram, rounded half up to cents."""
    rate = service.rates[zone]
    return round_money(rate.first_kg + rate.extra_kg * (chargeable_kg(weight_kg, service) - 1))


def pickup_date(dispatched_at: datetime, cutoff_hour: int, tz: ZoneInfo) -> date:
    """The day the carrier collects: the dispatch day (company time), or the next day when the
    hand-off is at or after the carrier's last collection hour."""
    local = dispatched_at.astimezone(tz)
    return local.date() + timedelta(days=1) if local.hour >= cutoff_hour else local.date()


def promised_date(dispatched_at: datetime, carrier: Carrier, service: CarrierService, zone: Zone,
                  tz: ZoneInfo) -> date:
    """Collection day plus the service's transit days for the zone, in calendar days (Chinese
    express carriers deliver every day of the week; public holidays are not modelled)."""
    return pickup_date(dispatched_at, carrier.cutoff_hour, tz) + timedelta(
        days=service.transit_days[zone])


# --- the choice ----------------------------------------------------------------------------------

Rule = Literal["rush_fastest", "tight_date_fastest", "cheapest_meeting_date", "cheapest",
               "fastest_misses_date"]


@dataclass(frozen=True)
class ServiceOption:
    """One carrier service able to take a shipment, with its price and promise."""

    carrier: Carrier
    service: CarrierService
    zone: Zone
    cost: Decimal
    pickup_date: date
    promised_date: date
    rank: int  # position in the catalogue: the last tie-breaker

    @property
    def label(self) -> str:
        return f"{self.carrier.code} {self.service.code}"


@dataclass(frozen=True)
class CarrierChoice:
    option: ServiceOption
    rule: Rule
    detail: str
    misses_requested_date: bool
    considered: int


@dataclass(frozen=True)
class NoCarrier:
    """No configured service can take the shipment (weight or destination)."""

    reason: str


@dataclass(frozen=True)
class Consignment:
    """What the choice needs to know about a shipment."""

    weight_kg: Decimal
    origin_province: str | None
    destination_province: str
    destination_country: str
    rush: bool
    requested_date: date | None


def eligible_options(consignment: Consignment, catalogue: CarrierCatalogue,
                     dispatched_at: datetime, tz: ZoneInfo) -> list[ServiceOption]:
    """Every enabled service that serves the destination and takes the weight."""
    zone = zone_of(consignment.origin_province, consignment.destination_province,
                   catalogue.remote_provinces)
    destination = normalise_province(consignment.destination_province)
    options: list[ServiceOption] = []
    rank = 0
    for carrier in catalogue.carriers:
        for service in carrier.services:
            rank += 1
            if not carrier.enabled or consignment.destination_country not in carrier.countries:
                continue
            if zone not in service.rates:
                continue
            if destination in {normalise_province(p) for p in service.excluded_provinces}:
                continue
            if not service.min_weight_kg <= consignment.weight_kg <= service.max_weight_kg:
                continue
            options.append(ServiceOption(
                carrier=carrier, service=service, zone=zone,
                cost=shipping_cost(service, zone, consignment.weight_kg),
                pickup_date=pickup_date(dispatched_at, carrier.cutoff_hour, tz),
                promised_date=promised_date(dispatched_at, carrier, service, zone, tz),
                rank=rank,
            ))
    return options


def _fastest(o: ServiceOption) -> tuple[date, Decimal, int]:
    return (o.promised_date, o.cost, o.rank)


def _cheapest(o: ServiceOption) -> tuple[Decimal, date, int]:
    return (o.cost, o.promised_date, o.rank)


def choose_service(consignment: Consignment, catalogue: CarrierCatalogue, dispatched_at: datetime,
                   tz: ZoneInfo) -> CarrierChoice | NoCarrier:
    """The carrier rules, in order:

    1. only services that serve the destination (country, zone, excluded provinces) and take the
       weight (between their minimum and maximum) are considered;
    2. a rush order takes the fastest service that meets the requested date (``rush_fastest``);
    3. a tight requested date (at most ``tight_date_days`` after collection) takes the fastest
       service that meets it (``tight_date_fastest``);
    4. any other order takes the cheapest service that meets the requested date
       (``cheapest_meeting_date``), or the cheapest of all without one (``cheapest``);
    5. when no service meets the requested date, the fastest is taken and the shipment is flagged
       as missing it (``fastest_misses_date``).

    Fastest means the earliest promised date, then the lower price; cheapest the lower price,
    then the earlier date; the catalogue's order breaks remaining ties."""
    options = eligible_options(consignment, catalogue, dispatched_at, tz)
    if not options:
        return NoCarrier(_why_none(consignment, catalogue))
    requested = consignment.requested_date
    meeting = [o for o in options if requested is None or o.promised_date <= requested]
    count = len(options)
    if not meeting:
        best = min(options, key=_fastest)
        return CarrierChoice(best, "fastest_misses_date",
                             f"no service delivers by {requested}; fastest is {best.label} "
                             f"on {best.promised_date}", True, count)
    if consignment.rush:
        best = min(meeting, key=_fastest)
        return CarrierChoice(best, "rush_fastest",
                             f"rush order: fastest of {count} services, {best.label} on "
                             f"{best.promised_date}", False, count)
    earliest_pickup = min(o.pickup_date for o in options)
    if requested is not None and (requested - earliest_pickup).days <= catalogue.tight_date_days:
        best = min(meeting, key=_fastest)
        return CarrierChoice(best, "tight_date_fastest",
                             f"requested {requested} is tight: fastest of {len(meeting)} services "
                             f"meeting it, {best.label} on {best.promised_date}", False, count)
    best = min(meeting, key=_cheapest)
    if requested is None:
        return CarrierChoice(best, "cheapest", f"cheapest of {count} services: {best.label} "
                             f"{best.cost} {catalogue.currency}", False, count)
    return CarrierChoice(best, "cheapest_meeting_date",
                         f"cheapest of {len(meeting)} services meeting {requested}: {best.label} "
                         f"{best.cost} {catalogue.currency}", False, count)


def _why_none(consignment: Consignment, catalogue: CarrierCatalogue) -> str:
    services = [s for c in catalogue.carriers if c.enabled for s in c.services]
    if not any(consignment.destination_country in c.countries
               for c in catalogue.carriers if c.enabled):
        return f"no carrier serves country {consignment.destination_country}"
    heaviest = max((s.max_weight_kg for s in services), default=Decimal(0))
    if consignment.weight_kg > heaviest:
        return f"{consignment.weight_kg} kg is above every service's limit ({heaviest} kg)"
    return (f"no service takes {consignment.weight_kg} kg to {consignment.destination_province}")


# --- tracking numbers ------------------------------------------------------------------------------

_S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_check_digit(serial: str) -> int:
    """The UPU S10 check digit of an 8-digit serial: weights 8 6 4 2 3 5 9 7, 11 minus the sum
    modulo 11, with 10 written as 0 and 11 as 5."""
    if len(serial) != 8 or not serial.isdigit():
        raise ValueError("an S10 serial is exactly 8 digits")
    check = 11 - sum(int(d) * w for d, w in zip(serial, _S10_WEIGHTS, strict=True)) % 11
    return {10: 0, 11: 5}.get(check, check)


def tracking_number(fmt: TrackingFormat, serial: int) -> str:
    """The tracking number for ``serial`` (0 <= serial < ``fmt.serial_space``) in the format."""
    if not 0 <= serial < fmt.serial_space:
        raise ValueError(f"serial {serial} is outside the format's range")
    if fmt.kind == "s10":
        body = f"{serial:08d}"
        return f"{fmt.prefix}{body}{s10_check_digit(body)}{fmt.country}"
    if fmt.first_digit:
        return f"{fmt.prefix}{fmt.first_digit}{serial:0{fmt.digits - 1}d}"
    return f"{fmt.prefix}{serial:0{fmt.digits}d}"


def is_valid_tracking_number(fmt: TrackingFormat, value: str) -> bool:
    if fmt.kind == "s10":
        match = re.fullmatch(rf"{fmt.prefix}(\d{{8}})(\d){fmt.country}", value)
        return match is not None and s10_check_digit(match.group(1)) == int(match.group(2))
    first = fmt.first_digit or ""
    rest = fmt.digits - len(first)
    return re.fullmatch(rf"{fmt.prefix}{first}\d{{{rest}}}", value) is not None


def new_tracking_number(fmt: TrackingFormat, randbelow: Callable[[int], int]) -> str:
    """A random tracking number in the format (uniqueness is the database's job)."""
    return tracking_number(fmt, randbelow(fmt.serial_space))
