"""Intake's test configuration: the signing secret of the test Shopify shop, set before the
session's services start (they inherit the environment) unless the caller set one."""

from __future__ import annotations

import json
import os
import secrets

TEST_SHOP = "orderflow-test"

if "ORDERFLOW_INTAKE_SHOPIFY_SECRETS" not in os.environ:
    os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"] = json.dumps({TEST_SHOP: secrets.token_hex(24)})


def shop_secret() -> str:
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"])[TEST_SHOP])
