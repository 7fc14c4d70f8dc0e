"""The HMAC-SHA256 signatures intake checks (a Shopify webhook's, a channel order's) and the one
constant-time comparison every credential of intake's routes goes through."""

from __future__ import annotations

import hashlib
import hmac


def hmac_sha256(secret: str, body: bytes) -> bytes:
    """The HMAC-SHA256 of ``body`` under ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def same_secret(expected: str, given: str | None) -> bool:
    """Whether ``given`` (a header's value, blanks around it ignored) is ``expected``, compared
    in constant time (``hmac.compare_digest``): the time taken tells nothing of how much of it
    matched."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace"))
