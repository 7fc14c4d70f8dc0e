"""Notify's settings (``ORDERFLOW_NOTIFY_*``). Bad values fail at start, naming the variable."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SmtpTls = Literal["none", "starttls", "tls"]


class NotifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_NOTIFY_", extra="ignore")

    # e-mail
    smtp_host: str | None = Field(
        default=None, description="SMTP server; unset = e-mails are only recorded (dev default)")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "OrderFlow <no-reply@orderflow.local>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: SmtpTls = Field(default="none", description="none, starttls or tls (implicit)")
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=300)

    # webhooks back to the order's sales channel
    webhook_urls: dict[str, str] = Field(
        default_factory=dict, description='JSON: {"shopify": "https://..."}; channel -> URL')
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key")
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="JSON: per-channel keys overriding webhook_secret")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120)

    # SMS
    sms_provider: Literal["logging"] = "logging"

    # messages
    default_language: Literal["zh-CN", "en"] = "zh-CN"
    sender_name: str = Field(default="OrderFlow", description="Signature of every message")
    timezone: str = Field(default="Asia/Shanghai", description="Times in messages are shown in it")
    tracking_url_template: str = "https://www.kuaidi100.com/chaxun?com={carrier}&nu={tracking_number}"
    tracking_urls: dict[str, str] = Field(
        default_factory=dict, description="JSON: per-carrier tracking URL templates")

    # delivery
    coalesce_window_s: float = Field(default=2.0, ge=0, le=300)
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_initial_s: float = Field(default=2.0, gt=0, le=3600)
    retry_max_s: float = Field(default=300.0, gt=0, le=86_400)
    poll_interval_s: float = Field(default=0.25, gt=0, le=60,
                                   description="shortest wait between two claims of a channel")
    idle_interval_s: float = Field(
        default=2.0, gt=0, le=300,
        description="longest wait of a channel's sender with nothing due: it is woken by the "
                    "commits of this process, this bounds how late it sees another replica's rows")
    concurrency: int = Field(default=4, ge=1, le=100, description="sends in flight per channel")
    retention_days: int = Field(
        default=90, ge=1, le=3650,
        description="finished notifications (sent, recorded, failed, suppressed, coalesced) "
                    "created longer ago than this are deleted; unfinished ones are kept")
    purge_interval_s: float = Field(default=3600.0, gt=0, le=86_400)
    record_only_concurrency: int = Field(
        default=100, ge=1, le=1000,
        description="sends in flight per channel whose driver only records (no SMTP host, the "
                    "logging SMS provider): such a send finishes at once, so this is how many "
                    "one claim takes")

    @model_validator(mode="after")
    def _check(self) -> NotifySettings:
        for channel, url in self.webhook_urls.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"ORDERFLOW_NOTIFY_WEBHOOK_URLS[{channel!r}] is not an http(s) URL")
            if channel not in self.webhook_secrets and self.webhook_secret is None:
                raise ValueError(
                    f"ORDERFLOW_NOTIFY_WEBHOOK_URLS names {channel!r} but neither "
                    "ORDERFLOW_NOTIFY_WEBHOOK_SECRET nor ORDERFLOW_NOTIFY_WEBHOOK_SECRETS gives "
                    "it a signing key")
        for name, template in {"ORDERFLOW_NOTIFY_TRACKING_URL_TEMPLATE": self.tracking_url_template,
                               **{f"ORDERFLOW_NOTIFY_TRACKING_URLS[{c!r}]": t
                                  for c, t in self.tracking_urls.items()}}.items():
            try:
                template.format(carrier="X", tracking_number="1")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{name} may only use {{carrier}} and {{tracking_number}}") from exc
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"ORDERFLOW_NOTIFY_TIMEZONE {self.timezone!r} is not a known time zone") \
                from exc
        if self.smtp_username and self.smtp_tls == "none":
            raise ValueError("ORDERFLOW_NOTIFY_SMTP_USERNAME is set but ORDERFLOW_NOTIFY_SMTP_TLS is "
                             "none: credentials would travel unencrypted; use starttls or tls")
        return self

    def secret_for(self, channel: str) -> bytes:
        secret = self.webhook_secrets.get(channel) or self.webhook_secret
        if secret is None:
            raise KeyError(channel)
        return secret.get_secret_value().encode()
