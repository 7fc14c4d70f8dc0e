"""intake: the store is part of an order's identity (channel, store, external id)

Each order gets the store (shop) of its channel it belongs to, '' for none; one order per
(channel, store, external id). Orders received before keep their ids (uuid5 of
``<channel>:<external id>``): when the operator names the store a channel's earlier orders belong
to, in ``ORDERFLOW_INTAKE_LEGACY_STORES`` (JSON, ``{"shopify": "shop-a", "douyin": "4463798"}``),
every existing order of that channel gets that store, and that store's pushes keep reaching them;
an earlier marketplace order left without a store refuses every store's push
(``store_unassigned``) until one is assigned.

Revision ID: intake_0004
"""

import json
import os

import sqlalchemy as sa
from alembic import op

from orderflow.contracts.order import valid_store

revision = "intake_0004"
down_revision = "intake_0003"
branch_labels = None
depends_on = None

LEGACY_STORES = "ORDERFLOW_INTAKE_LEGACY_STORES"


def legacy_stores(text: str | None) -> dict[str, str]:
    """The operator's ``{"channel": "store"}``, checked (a bad value stops the migration, and
    with it the service, naming the variable)."""
    if not text or not text.strip():
        return {}
    try:
        stores = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{LEGACY_STORES} is not JSON ({exc.msg})") from None
    if not isinstance(stores, dict):
        raise ValueError(f'{LEGACY_STORES} must be a JSON object, {{"shopify": "shop-a"}}')
    for channel, store in stores.items():
        if not isinstance(store, str) or not valid_store(store):
            raise ValueError(f"{LEGACY_STORES}: the store of {channel!r} must be 1 to 128 "
                             "characters, no colon, no blanks")
    return stores


def upgrade() -> None:
    stores = legacy_stores(os.environ.get(LEGACY_STORES))
    op.execute("ALTER TABLE intake_orders ADD COLUMN store TEXT NOT NULL DEFAULT ''")
    for channel, store in sorted(stores.items()):
        op.get_bind().execute(
            sa.text("UPDATE intake_orders SET store = :store WHERE channel = :channel"),
            {"store": store, "channel": channel})
    op.execute("ALTER TABLE intake_orders DROP CONSTRAINT intake_orders_channel_external_id_key")
    op.execute("ALTER TABLE intake_orders ADD CONSTRAINT intake_orders_channel_store_external_id_key "
               "UNIQUE (channel, store, external_id)")


def downgrade() -> None:
    op.execute("ALTER TABLE intake_orders DROP CONSTRAINT intake_orders_channel_store_external_id_key")
    op.execute("ALTER TABLE intake_orders ADD CONSTRAINT intake_orders_channel_external_id_key "
               "UNIQUE (channel, external_id)")
    op.execute("ALTER TABLE intake_orders DROP COLUMN store")
