"""The console's settings (prefix ``ORDERFLOW_CONSOLE_``); bad values fail fast, naming the variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.runtime.service_auth import ROLES

__all__ = ["ROLES", "ConsoleSettings", "UserEntry"]
MIN_ADMIN_TOKEN_LENGTH = 24

DEFAULT_SERVICE_URLS: dict[str, str] = {
    "intake": "http://127.0.0.1:8081",
    "review": "http://127.0.0.1:8082",
    "inventory": "http://127.0.0.1:8083",
    "logistics": "http://127.0.0.1:8084",
    "notify": "http://127.0.0.1:8085",
}

# minutes an item may wait in the exception queue before it turns red, by kind
DEFAULT_SLA_MINUTES: dict[str, float] = {
    "held": 240,
    "rework": 1440,
    "backordered": 1440,
    "delayed": 120,
    "carrier_exception": 60,
    "dlq": 30,
    "outbox": 30,
    "rejected": 480,
    "change_refused": 480,
    "cancel_refused": 240,
    "return_open": 1440,
    # a customer case is due by its own date; this is the due date one gets without
    "case": 1440,
}


class UserEntry(BaseModel):
    """One operator: a role and a password hash (``scrypt$...`` or ``pbkdf2_sha256$...``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    password_hash: str = Field(min_length=10)

    @field_validator("role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return value


class ConsoleSettings(BaseSettings):
    # an empty variable counts as unset (Compose passes ``${VAR:-}`` as an empty string)
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_CONSOLE_", extra="ignore",
                                      env_ignore_empty=True)

    admin_token: SecretStr | None = Field(
        default=None, description="A bearer token with the admin role (a Secret; the same on "
                                  "every replica); generated into token_file when unset")
    token_file: Path = Field(
        default=Path("var/console-token"),
        description="Where the generated admin token is written (mode 0600) when none is set")
    users: dict[str, UserEntry] | None = Field(
        default=None, description="JSON: name -> {role, password_hash} (a Secret); the console "
                                  "refuses to start without it unless dev_users is true")
    dev_users: bool = Field(
        default=False, description="Sign in with the documented development users when "
                                   "users is unset: set by the dev stack only, never elsewhere")
    review_url: str = Field(default="http://127.0.0.1:8082",
                            description="The review service's HTTP API (approve/reject)")
    service_urls: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SERVICE_URLS),
                                         description="JSON: service -> base URL, for health")
    consumer_groups: list[str] = Field(
        default_factory=list,
        description="Consumer groups to watch; default orderflow.<service> for every service")
    session_ttl_minutes: int = Field(default=480, ge=1, le=60 * 24 * 30)
    cookie_secure: bool = Field(default=False, description="Send cookies over HTTPS only")
    sla_minutes: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SLA_MINUTES))
    dashboard_interval_s: float = Field(default=2.0, gt=0.1, le=300)
    dlq_newest: int = Field(default=5, ge=1, le=100)
    page_size: int = Field(default=50, ge=1, le=500)
    review_timeout_s: float = Field(default=10.0, gt=0, le=120)
    desk_key: SecretStr | None = Field(
        default=None, description="The order desk's key of intake's channel order API (channel "
                                  "desk; a Secret): the desk posts and checks orders with it")
    desk_key_file: Path | None = Field(
        default=None, description="A file holding the desk key (a mounted secret), read when "
                                  "desk_key is unset; the dev stack points it at its own key")

    def desk_secret(self) -> str | None:
        """The desk's key of intake's channel order API, or None (the desk cannot submit)."""
        if self.desk_key is not None and self.desk_key.get_secret_value():
            return self.desk_key.get_secret_value()
        if self.desk_key_file is not None and self.desk_key_file.is_file():
            return self.desk_key_file.read_text(encoding="utf-8").strip() or None
        return None

    @field_validator("admin_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and 0 < len(value.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"ORDERFLOW_CONSOLE_ADMIN_TOKEN must be at least "
                             f"{MIN_ADMIN_TOKEN_LENGTH} characters")
        return value

    @field_validator("sla_minutes")
    @classmethod
    def _sla_complete(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = set(value) - set(DEFAULT_SLA_MINUTES)
        if unknown:
            raise ValueError(f"ORDERFLOW_CONSOLE_SLA_MINUTES: unknown kinds {sorted(unknown)}; "
                             f"known: {sorted(DEFAULT_SLA_MINUTES)}")
        return {**DEFAULT_SLA_MINUTES, **value}

    def groups(self) -> list[str]:
        if self.consumer_groups:
            return list(self.consumer_groups)
        names = sorted({*self.service_urls, "console"})
        return [f"orderflow.{name}" for name in names]
