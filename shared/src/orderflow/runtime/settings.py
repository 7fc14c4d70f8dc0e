"""Settings with pydantic-settings.

Common settings are read from ``ORDERFLOW_*`` variables (plus the conventional
``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``); each service may override any of them with its
own prefix, e.g. ``ORDERFLOW_INTAKE_DATABASE_URL``. Bad values fail fast, naming the variable.
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeVar

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.connector.broker_profile import profile_of
from orderflow.connector.settings import ConnectorSettings

_S = TypeVar("_S", bound=BaseSettings)


class KafkaSettings(ConnectorSettings):
    """How to reach the broker (``ConnectorSettings``, the connector kit's: addresses, TLS, SASL,
    the broker's kind) and how a service's consumers fetch from it."""

    # 0: the broker profile's value
    session_timeout_ms: int = Field(default=0, ge=0, description="consumer group session")
    heartbeat_interval_ms: int = Field(default=0, ge=0)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    # what a consumer prefetches and holds while it works through a backlog: aiokafka's defaults
    # (50 MB per fetch, 1 MB per partition) let a service reading many topics (notify 16, the
    # console every one) buffer tens of MB it cannot handle yet
    fetch_max_bytes: int = Field(default=2_097_152, ge=65_536,
                                 description="most bytes one fetch brings, all partitions")
    max_partition_fetch_bytes: int = Field(default=131_072, ge=16_384,
                                           description="most bytes one fetch brings per partition")
    # how long the broker may hold a consumer's fetch when it has no records for it (0: the
    # broker profile's value)
    fetch_max_wait_ms: int = Field(default=0, ge=0, le=30_000,
                                   description="longest the broker holds a consumer's fetch")

    @model_validator(mode="after")
    def _profile_defaults(self) -> KafkaSettings:
        profile = profile_of(self.broker)
        self.session_timeout_ms = self.session_timeout_ms or profile.session_timeout_ms
        self.heartbeat_interval_ms = self.heartbeat_interval_ms or profile.heartbeat_interval_ms
        self.fetch_max_wait_ms = self.fetch_max_wait_ms or profile.fetch_max_wait_ms
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("ORDERFLOW_KAFKA_HEARTBEAT_INTERVAL_MS must be at most a third of "
                             "ORDERFLOW_KAFKA_SESSION_TIMEOUT_MS")
        return self

    def faststream_security(self) -> Any:
        """The FastStream security object. FastStream's SASL classes fall back to plaintext unless
        told to use TLS, so ``use_ssl`` is always passed explicitly from the protocol."""
        from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

        use_ssl = self.security_protocol.endswith("SSL")
        ctx = self.ssl_context()
        if not self.security_protocol.startswith("SASL"):
            return BaseSecurity(ssl_context=ctx, use_ssl=use_ssl) if use_ssl else None
        cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256,
               "SCRAM-SHA-512": SASLScram512}[self.sasl_mechanism or "PLAIN"]
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        return cls(username=self.sasl_username or "", password=password, ssl_context=ctx,
                   use_ssl=use_ssl)


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_DB_", extra="ignore", populate_by_name=True)

    url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/orderflow",
        validation_alias=AliasChoices("DATABASE_URL", "ORDERFLOW_DATABASE_URL"),
    )
    pool_size: int = Field(default=5, ge=1, le=100)
    max_overflow: int = Field(default=5, ge=0, le=100)

    @model_validator(mode="after")
    def _async_driver(self) -> DatabaseSettings:
        if self.url.startswith("postgresql://") or self.url.startswith("postgres://"):
            self.url = "postgresql+asyncpg://" + self.url.split("://", 1)[1]
        if not self.url.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return self


class ServiceSettings(BaseSettings):
    """Settings of one service process. Prefix: ``ORDERFLOW_<SERVICE>_``, then ``ORDERFLOW_``."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    service: str = "orderflow"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535, description="health/metrics; 0 = none")
    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    batch_timeout_ms: int = Field(default=20, ge=1, le=10_000)
    max_message_bytes: int = Field(default=1_000_000, ge=1024)
    relay_batch_size: int = Field(default=1000, ge=1, le=10_000)
    relay_poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    graceful_timeout_s: float = Field(default=15.0, gt=0, le=600)
    # how long the inbox remembers an event it applied (a redelivery within it is skipped): longer
    # than anything can come again, the topics' retention (7 days), a DLQ's (30 days) for a
    # replay, and a group's committed offsets' expiry (then it re-reads from the earliest)
    inbox_retention_days: int = Field(default=45, ge=1, le=3650)
    # the cyclic garbage collector (see runtime/service.py tune_gc): what the process holds once
    # started is frozen out of it, and a young generation this many allocations long: long enough
    # that a batch of a few hundred records (tens of thousands of objects alive while it runs,
    # freed by reference counting when it ends) seldom triggers a collection that walks them all
    # (10,000 → 100,000: 5-10 % less CPU in review and inventory, 2-4 MB more peak RSS; 400,000
    # bought little more for 10 MB; docs/decisions/0003-gc-freeze.md)
    gc_freeze: bool = True
    gc_young_threshold: int = Field(default=100_000, ge=100, le=10_000_000)
    consumer_group_prefix: str = "orderflow"


def service_env_prefix(service: str) -> str:
    return f"ORDERFLOW_{service.upper()}_"


def load_settings(cls: type[_S], service: str) -> _S:
    """Load ``cls`` with the service's own prefix (``ORDERFLOW_INTAKE_...``) overriding the
    common one; the service's prefix also covers the kafka and database fields by their names,
    e.g. ``ORDERFLOW_INTAKE_URL`` is not a thing but ``ORDERFLOW_INTAKE_DATABASE_URL`` is."""
    prefix = service_env_prefix(service)
    fields = cls.model_fields
    data: dict[str, str] = {}
    for name, value in os.environ.items():
        if not name.startswith(prefix):
            continue
        key = name[len(prefix):].lower()
        for candidate in (key, key.removeprefix("kafka_"), key.removeprefix("db_"),
                          key.removeprefix("database_")):
            if candidate in fields:
                data[candidate] = value
                break
    return cls(**data)  # type: ignore[arg-type]
