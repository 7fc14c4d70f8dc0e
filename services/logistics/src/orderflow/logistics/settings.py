"""Logistics settings: ``ORDERFLOW_LOGISTICS_*`` variables and the carrier catalogue file they
name; bad values fail fast, naming the variable."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.logistics.domain import (
    DEFAULT_CATALOGUE,
    CarrierCatalogue,
    DelayPolicy,
    ReturnPolicy,
)


class CatalogueError(ValueError):
    """The carriers file cannot be used; the message names the variable and the problem."""


def load_catalogue(path: Path | None, *, variable: str = "ORDERFLOW_LOGISTICS_CARRIERS_FILE",
                   ) -> CarrierCatalogue:
    """The default catalogue, or the one in the JSON file at ``path``."""
    if path is None:
        return DEFAULT_CATALOGUE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"{variable}={path}: cannot read the file ({exc.strerror})") from exc
    try:
        return CarrierCatalogue.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:8])
        raise CatalogueError(f"{variable}={path}: not a valid carrier catalogue: {problems}") from exc


class LogisticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_LOGISTICS_", extra="ignore")

    carriers_file: Path | None = Field(
        default=None, description="JSON carrier catalogue replacing the built-in demo one")
    timezone: str = Field(default="Asia/Shanghai",
                          description="The company's time zone: dispatch days, promised days")
    delay_watch_interval_s: float = Field(default=60.0, gt=0, le=86_400,
                                          description="How often the delay watcher runs")
    delay_watch_page: int = Field(default=500, ge=1, le=10_000,
                                  description="Shipments the watcher checks per transaction")
    out_for_delivery_deadline_hour: int = Field(
        default=12, ge=0, le=24,
        description="On the promised day, a shipment not out for delivery by this hour is late")
    exception_grace_hours: int = Field(
        default=12, ge=0, le=240,
        description="A carrier exception still open this long later flags the shipment delayed")
    return_window_days: int = Field(default=7, ge=0, le=365,
                                    description="Returns accepted this many days after delivery")
    non_returnable_skus: frozenset[str] = Field(
        default=frozenset(), description="SKUs that cannot be returned (JSON list)")
    refused_return_conditions: frozenset[str] = Field(
        default=frozenset({"damaged_by_customer"}),
        description="Item conditions a return is refused for (JSON list)")
    return_carrier: str = Field(default="SF", min_length=1,
                                description="The carrier that collects returns")
    allow_clock_override: bool = Field(
        default=False,
        description="Let POST /api/delay-watch/run take an as_of time (tests and demos only)")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"ORDERFLOW_LOGISTICS_TIMEZONE={value!r} is not a known time zone") from exc
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def catalogue(self) -> CarrierCatalogue:
        return load_catalogue(self.carriers_file)

    @property
    def return_policy(self) -> ReturnPolicy:
        return ReturnPolicy(window_days=self.return_window_days,
                            non_returnable_skus=self.non_returnable_skus,
                            refused_conditions=self.refused_return_conditions)

    @property
    def delay_policy(self) -> DelayPolicy:
        return DelayPolicy(tz=self.tz,
                           out_for_delivery_deadline_hour=self.out_for_delivery_deadline_hour,
                           exception_grace_hours=self.exception_grace_hours)
