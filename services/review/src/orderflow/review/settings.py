"""Review's own settings (prefix ``ORDERFLOW_REVIEW_``): where the company's policy comes from.

The policy's fields and defaults are the domain's (``domain.ReviewPolicy``); a company overrides
any of them with a JSON file named by ``ORDERFLOW_REVIEW_POLICY_FILE``; fields it leaves out keep
their defaults. A bad file stops the service at start with a message that names the variable and
the offending field.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.review.domain import ReviewPolicy

POLICY_FILE_VARIABLE = "ORDERFLOW_REVIEW_POLICY_FILE"


class ReviewSettings(BaseSettings):
    """The review service's own settings (prefix ``ORDERFLOW_REVIEW_``)."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_REVIEW_", extra="ignore")

    policy_file: Path | None = Field(default=None,
                                     description="JSON file overriding the default policy")


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the variable and the problem."""


def load_policy(path: Path | None) -> ReviewPolicy:
    """The default policy, or the defaults overridden by the JSON file at ``path``."""
    if path is None:
        return ReviewPolicy()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{POLICY_FILE_VARIABLE}={path}: cannot read it ({exc.strerror})") from exc
    try:
        return ReviewPolicy.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise PolicyError(f"{POLICY_FILE_VARIABLE}={path}: {problems}") from exc


def policy_from_environment() -> ReviewPolicy:
    return load_policy(ReviewSettings().policy_file)
