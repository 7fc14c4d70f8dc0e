"""Intake's test configuration: the signing secrets of the test Shopify shops and Douyin shops (a
second one of each for the tests of one shop against another's orders) and the keys of the
channel order API, set before the session's services start (they inherit the environment) unless
the caller set them."""

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

# the Douyin app's client secret of the simulator's 抖店 shop (test_douyin_webhook.py), and of
# another shop, merged the same way
DOUYIN_SHOP = "77977"  # orderflow.devstack.simulator.DOUYIN_SHOP_ID: the shop_id its orders carry
OTHER_DOUYIN_SHOP = "77978"
_douyin = json.loads(os.environ.get("ORDERFLOW_INTAKE_DOUYIN_SECRETS") or "{}")
_douyin.setdefault(DOUYIN_SHOP, secrets.token_hex(24))
_douyin.setdefault(OTHER_DOUYIN_SHOP, secrets.token_hex(24))
os.environ["ORDERFLOW_INTAKE_DOUYIN_SECRETS"] = json.dumps(_douyin)

# the channel order API's keys (test_channel_api.py), merged the same way
_keys = json.loads(os.environ.get("ORDERFLOW_INTAKE_CHANNEL_KEYS") or "{}")
for _name in ("canonical", "desk", f"shopify/{TEST_SHOP}"):
    _keys.setdefault(_name, secrets.token_hex(24))
os.environ["ORDERFLOW_INTAKE_CHANNEL_KEYS"] = json.dumps(_keys)

# outcome webhooks of the tests post over plain http to this machine only
os.environ.setdefault("ORDERFLOW_INTAKE_OUTCOME_WEBHOOK_HTTP_HOSTS", '["127.0.0.1"]')


def channel_key(name: str) -> str:
    """The key of ``name`` (``channel`` or ``channel/store``) in the channel order API."""
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_CHANNEL_KEYS"])[name])


def douyin_secret(shop: str = DOUYIN_SHOP) -> str:
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_DOUYIN_SECRETS"])[shop])


def shop_secret(shop: str = TEST_SHOP) -> str:
    return str(json.loads(os.environ["ORDERFLOW_INTAKE_SHOPIFY_SECRETS"])[shop])
