"""inventory: runtime tables, stock per SKU and warehouse, the movement ledger, reservations and
the backorder queue

Revision ID: inventory_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "inventory_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE inventory_warehouses (
            warehouse_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            province TEXT NOT NULL,
            city TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE inventory_products (
            sku TEXT PRIMARY KEY,
            reorder_point INTEGER NOT NULL DEFAULT 0,
            low_flagged BOOLEAN NOT NULL DEFAULT false,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE inventory_stock (
            warehouse_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            on_hand INTEGER NOT NULL DEFAULT 0,
            reserved INTEGER NOT NULL DEFAULT 0,
            available INTEGER GENERATED ALWAYS AS (on_hand - reserved) STORED,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (warehouse_id, sku),
            CONSTRAINT inventory_stock_on_hand_not_negative CHECK (on_hand >= 0),
            CONSTRAINT inventory_stock_reserved_not_negative CHECK (reserved >= 0),
            CONSTRAINT inventory_stock_never_oversold CHECK (reserved <= on_hand)
        )
        """
    )
    op.execute("CREATE INDEX inventory_stock_by_sku ON inventory_stock (sku)")
    op.execute(
        """
        CREATE TABLE inventory_movements (
            id BIGSERIAL PRIMARY KEY,
            warehouse_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('receipt', 'adjustment', 'reservation', 'release',
                                               'shipment')),
            on_hand_delta INTEGER NOT NULL,
            reserved_delta INTEGER NOT NULL,
            order_id TEXT,
            reference TEXT NOT NULL DEFAULT '',
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX inventory_movements_by_stock ON inventory_movements (warehouse_id, sku)")
    op.execute("CREATE INDEX inventory_movements_by_order ON inventory_movements (order_id)")
    op.execute(
        """
        CREATE TABLE inventory_orders (
            order_id TEXT PRIMARY KEY,
            sequence BIGSERIAL NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('backordered', 'reserved', 'shipped',
                                                   'released')),
            priority TEXT NOT NULL,
            destination_province TEXT NOT NULL,
            order_json JSONB NOT NULL,
            filled_first_attempt BOOLEAN,
            backordered_at TIMESTAMPTZ,
            reserved_at TIMESTAMPTZ,
            expires_at TIMESTAMPTZ,
            release_reason TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX inventory_orders_expiring ON inventory_orders (expires_at) "
               "WHERE status = 'reserved'")
    op.execute(
        """
        CREATE TABLE inventory_order_lines (
            order_id TEXT NOT NULL REFERENCES inventory_orders (order_id),
            sku TEXT NOT NULL,
            ordered INTEGER NOT NULL CHECK (ordered > 0),
            short INTEGER NOT NULL DEFAULT 0 CHECK (short >= 0 AND short <= ordered),
            PRIMARY KEY (order_id, sku)
        )
        """
    )
    op.execute("CREATE INDEX inventory_backorder_queue ON inventory_order_lines (sku) "
               "WHERE short > 0")
    op.execute(
        """
        CREATE TABLE inventory_reservations (
            order_id TEXT NOT NULL REFERENCES inventory_orders (order_id),
            warehouse_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity >= 0),
            shipped INTEGER NOT NULL DEFAULT 0 CHECK (shipped >= 0),
            PRIMARY KEY (order_id, warehouse_id, sku)
        )
        """
    )
    op.execute("CREATE INDEX inventory_reservations_by_stock ON inventory_reservations "
               "(warehouse_id, sku) WHERE quantity > 0")
