"""Intake's test configuration: the signing secret of the test Shopify shop, set before the
session's services start (they inherit the environment) unless the caller set one."""

from __future__ import annotations

import json
import os
import secrets

TEST_SHOP = "orderflow-test"

# merged with what other test packages configured: the session's intake serves every test shop
_shops = json.loads(os.environ.get("ORDERFLOW_INTAKE_SHOPIFY_SECRETS") or "{}")
_shops.setdefault(TEST_SHOP, secrets.token_hex(24))
os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"] = json.dumps(_shops)


def shop_secret() -> str:
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"])[TEST_SHOP])
