"""Operators, roles, passwords, tokens and CSRF.

- Roles (``orderflow.runtime.service_auth.GRANTS``): ``viewer`` (reads everything), ``clerk``
  (also enters, changes, cancels and returns orders, records payments, scans and customer
  cases), ``reviewer`` (reads; approves and rejects held orders, asks for a cancel),
  ``director`` (a reviewer who also gives the second approval above the review policy's
  thresholds), ``admin`` (every right: also replays dead letters, reads the audit log, releases
  an order's stock and runs the delay watch).
- Passwords are stored as ``scrypt$<n>$<r>$<p>$<salt>$<hash>`` (hashlib.scrypt, 16-byte random
  salt) or ``pbkdf2_sha256$<iterations>$<salt>$<hash>``; ``python -m orderflow.console
  hash-password`` prints one.
- Sessions are random tokens (only their SHA-256 is stored, in the console's database table,
  so a sign-in holds on every replica and a sign-out ends it on all), expire after
  ``ORDERFLOW_CONSOLE_SESSION_TTL_MINUTES``, and carry a CSRF token that every form and every
  state-changing API call made with the session cookie must echo (bearer-token calls need none).
- Operators come from ``ORDERFLOW_CONSOLE_USERS`` (a Secret). The documented development users
  exist only where the dev stack says so (``ORDERFLOW_CONSOLE_DEV_USERS=true``); anywhere else
  the console refuses to start without configured users, naming the variable.
- The admin token comes from ``ORDERFLOW_CONSOLE_ADMIN_TOKEN`` (a Secret, the same on every
  replica); without it one is generated into the token file, which only one replica sees.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

from orderflow.console.settings import ConsoleSettings, UserEntry
from orderflow.runtime.service_auth import grants

log = structlog.get_logger(__name__)

SESSION_COOKIE = "orderflow_console_session"
LOGIN_CSRF_COOKIE = "orderflow_console_login_csrf"
CSRF_HEADER = "X-CSRF-Token"

# the right each action needs (``grants``: which roles hold it)
PERMISSIONS: dict[str, str] = {
    "view": "viewer",
    "export": "viewer",
    "enter": "clerk",  # enter an order at the desk, paste or import orders
    "amend": "clerk",  # change, cancel or return an order; record a payment or a carrier scan
    "case": "clerk",  # record and work a customer case
    "decide": "reviewer",  # approve, reject or send back a held order; ask for a cancel
    "direct": "director",  # the second approval above the review policy's thresholds
    "replay": "admin",  # replay a dead-letter topic
    "audit": "admin",
    "release": "admin",  # release an order's stock in inventory
    "delay_watch": "admin",  # run a delay-watch round in logistics
}

# documented development users, used only when ORDERFLOW_CONSOLE_USERS is not set and
# ORDERFLOW_CONSOLE_DEV_USERS=true (the dev stack sets it; nothing else should)
DEV_USERS: dict[str, tuple[str, str]] = {
    "viewer": ("viewer", "viewer-dev"),
    "clerk": ("clerk", "clerk-dev"),
    "reviewer": ("reviewer", "reviewer-dev"),
    "director": ("director", "director-dev"),
    "admin": ("admin", "admin-dev"),
}

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, expected = _unb64(parts[4]), _unb64(parts[5])
            digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                                    dklen=len(expected), maxmem=256 * 1024 * 1024)
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations, salt, expected = int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
            digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations,
                                         dklen=len(expected))
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action``: it holds the right the action needs."""
    return grants(role, PERMISSIONS[action])


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    via: str  # session | token
    csrf_token: str | None = None
    session_digest: str | None = None

    def may(self, action: str) -> bool:
        return allowed(self.role, action)

    def rights(self) -> list[str]:
        """The actions the operator may take (the page shows only their buttons)."""
        return [action for action in PERMISSIONS if self.may(action)]


class ConsoleConfigurationError(ValueError):
    """The console cannot start as configured (the message names the variable)."""


NO_USERS_MESSAGE = (
    "ORDERFLOW_CONSOLE_USERS is not set: the console has no operators and does not start. Set "
    "ORDERFLOW_CONSOLE_USERS to JSON {\"name\": {\"role\": \"viewer|clerk|reviewer|director|admin\", "
    "\"password_hash\": \"...\"}} (from a Secret; python -m orderflow.console hash-password "
    "prints a hash). The development users are only for the dev stack "
    "(ORDERFLOW_CONSOLE_DEV_USERS=true)")


def check_configuration(settings: ConsoleSettings) -> None:
    """Raise ``ConsoleConfigurationError`` when the console may not start as configured."""
    if settings.users is None and not settings.dev_users:
        raise ConsoleConfigurationError(NO_USERS_MESSAGE)


class Accounts:
    """The operators the console knows, and the admin token."""

    def __init__(self, users: dict[str, UserEntry], admin_token: str) -> None:
        self.users = users
        self._admin_digest = token_digest(admin_token)
        self._dummy = hash_password(secrets.token_urlsafe(8))

    @classmethod
    def from_settings(cls, settings: ConsoleSettings) -> Accounts:
        check_configuration(settings)
        users = settings.users
        if users is None:
            log.warning("ORDERFLOW_CONSOLE_DEV_USERS=true and ORDERFLOW_CONSOLE_USERS is not set: "
                        "the development users (viewer, reviewer, admin; see the README) sign in")
            users = {name: UserEntry(role=role, password_hash=hash_password(password))
                     for name, (role, password) in DEV_USERS.items()}
        return cls(users, admin_token(settings))

    def authenticate(self, name: str, password: str) -> UserEntry | None:
        user = self.users.get(name)
        # the same work whether the user exists or not: no user enumeration by timing
        ok = verify_password(password, user.password_hash if user else self._dummy)
        return user if user is not None and ok else None

    def bearer(self, token: str) -> Operator | None:
        if token and hmac.compare_digest(token_digest(token), self._admin_digest):
            return Operator(name="admin-token", role="admin", via="token")
        return None


def admin_token(settings: ConsoleSettings) -> str:
    """The admin token: the configured one, or one kept in the token file (created if absent)."""
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        return settings.admin_token.get_secret_value()
    path: Path = settings.token_file
    if path.exists():
        existing = path.read_text().strip()
        if len(existing) >= 32:
            log.info("admin token read from the token file", path=str(path))
            return existing
    if not settings.dev_users:
        log.warning("ORDERFLOW_CONSOLE_ADMIN_TOKEN is not set: an admin token is generated into "
                    "the token file, which other replicas do not see; give every replica the "
                    "same token from a Secret", path=str(path))
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(token + "\n")
    tmp.replace(path)
    log.info("admin token generated and written to the token file", path=str(path))
    return token


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
