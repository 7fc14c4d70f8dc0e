"""Inventory's tables, and the base of the repository's parts (the session they are read and
written through).

Stock is a row per (warehouse, SKU) with ``on_hand`` and ``reserved`` (``available`` is a generated
column, ``on_hand - reserved``); the database refuses a negative figure or ``reserved > on_hand``
(CHECK constraints). Every change of a stock row writes a row of the movement ledger
(``inventory_movements``) in the same transaction, so each unit is accounted for by a receipt, an
adjustment, a reservation, a release or a shipment."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

metadata = sa.MetaData()
warehouses = sa.Table(
    "inventory_warehouses", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("province", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "inventory_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("reorder_point", sa.Integer, nullable=False),
    sa.Column("low_flagged", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
stock = sa.Table(
    "inventory_stock", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("on_hand", sa.Integer, nullable=False),
    sa.Column("reserved", sa.Integer, nullable=False),
    sa.Column("available", sa.Integer, sa.Computed("on_hand - reserved")),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
movements = sa.Table(
    "inventory_movements", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("on_hand_delta", sa.Integer, nullable=False),
    sa.Column("reserved_delta", sa.Integer, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("reference", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
)
orders = sa.Table(
    "inventory_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("sequence", sa.BigInteger),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("destination_province", sa.Text, nullable=False),
    sa.Column("order_json", sa.JSON, nullable=False),
    sa.Column("filled_first_attempt", sa.Boolean),
    sa.Column("backordered_at", sa.DateTime(timezone=True)),
    sa.Column("reserved_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("release_reason", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
order_lines = sa.Table(
    "inventory_order_lines", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("ordered", sa.Integer, nullable=False),
    sa.Column("short", sa.Integer, nullable=False),
)
cancelled_orders = sa.Table(
    "inventory_cancelled_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
)
returns = sa.Table(
    "inventory_returns", metadata,
    sa.Column("rma_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("restocked", sa.Integer, nullable=False),
    sa.Column("scrapped", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)
order_revisions = sa.Table(
    "inventory_order_revisions", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("order_json", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
reservations = sa.Table(
    "inventory_reservations", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("shipped", sa.Integer, nullable=False),
)


class Rows:
    """A part of the repository: statements run in the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
