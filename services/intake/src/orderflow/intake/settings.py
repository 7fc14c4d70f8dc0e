"""Intake's own settings (prefix ``ORDERFLOW_INTAKE_``), beside the runtime's common ones."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.channels import per_store
from orderflow.contracts.order import valid_store

MIN_CHANNEL_KEY_LENGTH = 16


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_INTAKE_", extra="ignore",
                                      hide_input_in_errors=True)

    shopify_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-shop webhook signing secrets as JSON, {"shop-name": "secret"}: the shop '
                    "name is the last part of the webhook URL /webhooks/shopify/{shop}, and the "
                    "store of the orders it pushes",
    )
    douyin_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-shop client secrets of the Douyin app that signs the webhook (its '
                    'X-Douyin-Signature) as JSON, {"shop-id": "secret"}: the shop is the 抖店 '
                    "shop id, the last part of the webhook URL /webhooks/douyin/{shop}, and the "
                    "store of the orders it pushes",
    )
    webhook_max_bytes: int = Field(
        default=512 * 1024, ge=1024, le=900_000,
        description="Largest webhook body accepted (413 above); below the broker message limit",
    )
    webhook_max_age_s: float = Field(
        default=900.0, gt=0, le=7 * 24 * 3600,
        description="A webhook whose X-Shopify-Triggered-At is older than this (or as far in the "
                    "future) is refused 401: a captured request cannot be replayed later. Shopify "
                    "retries a failed delivery for hours; an outage longer than this is caught up "
                    "by the connector's order sync, not by the webhooks",
    )
    webhook_publish_timeout_s: float = Field(
        default=4.0, gt=0, le=60,
        description="How long a webhook waits for the broker's confirmation before answering 503 "
                    "(Shopify gives up after 5 s and retries)",
    )

    channel_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Keys of the channel order API (POST /api/v1/channels/{channel}/orders) as '
                    'JSON, {"channel/store": "key", "desk": "key"}: a key (sent as a bearer token '
                    "or X-OrderFlow-Key, or the HMAC-SHA256 key of X-OrderFlow-Signature) reaches "
                    "that channel's orders of that store only; a channel without stores is named "
                    "alone. No keys: the route is closed (503)",
    )
    channel_keys_file: Path | None = Field(
        default=None,
        description="A JSON file of more channel keys, in the form of ORDERFLOW_INTAKE_CHANNEL_KEYS "
                    "(a mounted secret); read at start. A name in both: the variable's key",
    )
    http_max_backlog: int = Field(
        default=5000, ge=0,
        description="The channel order API answers 429 (with Retry-After) while intake's outbox "
                    "holds this many unpublished events or more; 0 refuses every submission",
    )
    http_retry_after_s: int = Field(
        default=5, ge=1, le=3600,
        description="The Retry-After of a 429 from the channel order API",
    )

    outcome_webhook_http_hosts: frozenset[str] = Field(
        default_factory=frozenset,
        description='Hosts an outcome webhook (PUT /api/v1/channels/{channel}/webhook) may name '
                    'over plain http, as JSON, ["127.0.0.1", "localhost"]: for development; '
                    "every other URL is https",
    )

    @model_validator(mode="after")
    def _read_channel_keys_file(self) -> IntakeSettings:
        if self.channel_keys_file is not None:
            try:
                loaded = json.loads(self.channel_keys_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ValueError(f"ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE: cannot read "
                                 f"{self.channel_keys_file} as JSON ({type(exc).__name__})") from exc
            if not isinstance(loaded, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
                raise ValueError("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE: a JSON object of "
                                 '{"channel/store": "key"}')
            # a name in both: the variable's key (the file holds the deployment's defaults)
            merged = {**{k: SecretStr(v) for k, v in loaded.items()}, **self.channel_keys}
            self.channel_keys = _checked_channel_keys(merged, "ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE")
        return self

    @field_validator("channel_keys")
    @classmethod
    def _valid_channel_keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return _checked_channel_keys(keys, "ORDERFLOW_INTAKE_CHANNEL_KEYS")

    @field_validator("shopify_secrets", "douyin_secrets")
    @classmethod
    def _no_empty_secrets(cls, secrets: dict[str, SecretStr],
                          info: ValidationInfo) -> dict[str, SecretStr]:
        variable = f"ORDERFLOW_INTAKE_{(info.field_name or '').upper()}"
        empty = [shop for shop, secret in secrets.items() if not secret.get_secret_value()]
        if empty:
            raise ValueError(f"{variable}: empty secret for {', '.join(empty)}")
        unusable = [shop for shop in secrets if not valid_store(shop)]
        if unusable:
            raise ValueError(f"{variable}: a shop name is a store: 1 to 128 "
                             f"characters, no colon, no blanks ({', '.join(map(repr, unusable))})")
        return secrets


def channel_of_key(name: str) -> tuple[str, str | None]:
    """The channel and store a channel key's name (``channel/store``, or ``channel``) names."""
    channel, _, store = name.partition("/")
    return channel, store or None


def _checked_channel_keys(keys: dict[str, SecretStr], variable: str) -> dict[str, SecretStr]:
    """Every key non-empty, long enough to guess no sooner than a password, used once (a key
    names one channel and store), under a name ``channel/store`` or ``channel``; the keys of a
    channel whose orders are only known by their store (``Channel.per_store``) name their store."""
    problems = []
    seen: dict[str, str] = {}
    for name, key in keys.items():
        channel, store = channel_of_key(name)
        value = key.get_secret_value()
        if len(value) < MIN_CHANNEL_KEY_LENGTH:
            problems.append(f"{name!r}: a key of at least {MIN_CHANNEL_KEY_LENGTH} characters")
        elif value in seen:
            problems.append(f"{name!r}: the same key as {seen[value]!r} (one key per channel "
                            "and store)")
        seen.setdefault(value, name)
        if not channel or len(channel) > 32 or not valid_store(channel) or "/" in (store or ""):
            problems.append(f"{name!r}: not channel/store or channel")
        elif store is not None and not valid_store(store):
            problems.append(f"{name!r}: a store is 1 to 128 characters, no colon, no blanks")
        elif store is None and per_store(channel):
            problems.append(f"{name!r}: a {channel} key names its store ({channel}/<store>)")
    if problems:
        raise ValueError(f"{variable}: {'; '.join(problems)}")
    return keys
