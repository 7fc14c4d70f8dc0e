"""Intake's test configuration: the signing secrets of the test Shopify shops (a second one for
the tests of one shop against another's orders), set before the session's services start (they
inherit the environment) unless the caller set them."""

from __future__ import annotations

import json
import os
import secrets

TEST_SHOP = "orderflow-test"
OTHER_SHOP = "orderflow-test-other"

# merged with what other test packages configured: the session's intake serves every test shop
_shops = json.loads(os.environ.get("ORDERFLOW_INTAKE_SHOPIFY_SECRETS") or "{}")
_shops.setdefault(TEST_SHOP, secrets.token_hex(24))
_shops.setdefault(OTHER_SHOP, secrets.token_hex(24))
os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"] = json.dumps(_shops)


def shop_secret(shop: str = TEST_SHOP) -> str:
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"])[shop])
