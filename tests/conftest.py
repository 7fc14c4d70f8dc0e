"""Cross-service tests' configuration: a Shopify shop with a signing secret for the webhook
tests, set before the session's services start (they inherit the environment) unless intake's
own test configuration or the caller already set one; and helpers to reach it."""

from __future__ import annotations

import json
import os
import secrets

FAULTS_SHOP = "orderflow-faults"

# merged with what other test packages configured: the session's intake serves every test shop
_shops = json.loads(os.environ.get("ORDERFLOW_INTAKE_SHOPIFY_SECRETS") or "{}")
_shops.setdefault(FAULTS_SHOP, secrets.token_hex(24))
os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"] = json.dumps(_shops)


def shopify_shop() -> tuple[str, str]:
    """A shop the running intake knows, and its signing secret."""
    shops: dict[str, str] = json.loads(os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"])
    shop = FAULTS_SHOP if FAULTS_SHOP in shops else sorted(shops)[0]
    return shop, shops[shop]
