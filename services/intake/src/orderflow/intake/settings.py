"""Intake's own settings (prefix ``ORDERFLOW_INTAKE_``), beside the runtime's common ones."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.contracts.order import valid_store


class IntakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_INTAKE_", extra="ignore",
                                      hide_input_in_errors=True)

    shopify_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-shop webhook signing secrets as JSON, {"shop-name": "secret"}: the shop '
                    "name is the last part of the webhook URL /webhooks/shopify/{shop}, and the "
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

    @field_validator("shopify_secrets")
    @classmethod
    def _no_empty_secrets(cls, secrets: dict[str, SecretStr]) -> dict[str, SecretStr]:
        empty = [shop for shop, secret in secrets.items() if not secret.get_secret_value()]
        if empty:
            raise ValueError(f"ORDERFLOW_INTAKE_SHOPIFY_SECRETS: empty secret for {', '.join(empty)}")
        unusable = [shop for shop in secrets if not valid_store(shop)]
        if unusable:
            raise ValueError("ORDERFLOW_INTAKE_SHOPIFY_SECRETS: a shop name is a store: 1 to 128 "
                             f"characters, no colon, no blanks ({', '.join(map(repr, unusable))})")
        return secrets
