"""What the sender does after a failed attempt: try again later, or give up."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryLater:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


def after_failure(attempts: int, *, max_attempts: int, permanent: bool, error: str,
                  initial_s: float, maximum_s: float) -> RetryLater | GiveUp:
    """Exponential backoff (initial, 2x, 4x, ... capped) until ``max_attempts``; a permanent
    failure (a refused address, a 4xx from a webhook) is not retried."""
    if permanent:
        return GiveUp(f"permanent failure after {attempts} attempt(s): {error}")
    if attempts >= max_attempts:
        return GiveUp(f"gave up after {attempts} attempts: {error}")
    return RetryLater(min(initial_s * (2 ** max(attempts - 1, 0)), maximum_s))
