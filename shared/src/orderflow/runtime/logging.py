"""structlog set-up: JSON in services (readable on a terminal), stdlib loggers routed through it,
personal data masked by a processor so no caller has to remember to."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
PHONE_RE = re.compile(r"(?<![\w-])(\+?\d[\d -]{5,}\d)(?![\w-])")
PERSONAL_KEYS = frozenset(
    {"email", "phone", "address", "shipping_address", "line1", "customer_name", "recipient"}
)


def mask_email(value: str) -> str:
    return EMAIL_RE.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", value)


def mask_phone(value: str) -> str:
    def _mask(m: re.Match[str]) -> str:
        digits = m.group(1)
        return "*" * max(len(digits) - 4, 3) + digits[-4:] if len(digits) >= 7 else digits

    return PHONE_RE.sub(_mask, value)


def mask_text(value: str) -> str:
    return mask_phone(mask_email(value))


def _mask_value(key: str, value: Any) -> Any:
    if key in PERSONAL_KEYS and value not in (None, ""):
        if isinstance(value, str) and key == "email":
            return mask_email(value)
        if isinstance(value, str) and key == "phone":
            digits = value.strip()
            return "***" + digits[-4:] if len(digits) > 4 else "***"
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask e-mails, phones and addresses in every field."""
    for key in list(event_dict):
        event_dict[key] = _mask_value(key, event_dict[key])
    return event_dict


_configured = False


def configure_logging(service: str, *, fmt: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    global _configured
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "sqlalchemy.engine", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
