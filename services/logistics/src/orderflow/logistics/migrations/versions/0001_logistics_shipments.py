"""logistics: runtime tables, shipments, tracking history, delays, and master data

Revision ID: logistics_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "logistics_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE logistics_warehouses (
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
        CREATE TABLE logistics_products (
            sku TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            weight_kg NUMERIC(10, 3) NOT NULL CHECK (weight_kg >= 0),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE logistics_shipments (
            shipment_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            external_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            warehouse_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('no_carrier', 'dispatched', 'picked_up',
                'in_transit', 'out_for_delivery', 'delivered', 'exception')),
            status_at TIMESTAMPTZ,
            carrier TEXT,
            carrier_name TEXT,
            service TEXT,
            service_name TEXT,
            express BOOLEAN NOT NULL DEFAULT false,
            tracking_number TEXT UNIQUE,
            zone TEXT,
            rule TEXT NOT NULL,
            rule_detail TEXT NOT NULL DEFAULT '',
            priority TEXT NOT NULL,
            lines JSONB NOT NULL,
            weight_kg NUMERIC(10, 3) NOT NULL,
            weight_estimated BOOLEAN NOT NULL DEFAULT false,
            cost NUMERIC(12, 2),
            currency TEXT NOT NULL,
            ship_to JSONB NOT NULL,
            destination_province TEXT NOT NULL,
            destination_city TEXT NOT NULL,
            requested_date DATE,
            pickup_date DATE,
            promised_date DATE,
            misses_requested_date BOOLEAN NOT NULL DEFAULT false,
            dispatched_at TIMESTAMPTZ NOT NULL,
            delivered_at TIMESTAMPTZ,
            on_time BOOLEAN,
            exception_code TEXT,
            exception_detail TEXT,
            source_event_id TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CHECK (status = 'no_carrier' OR (tracking_number IS NOT NULL AND carrier IS NOT NULL
                                             AND promised_date IS NOT NULL))
        )
        """
    )
    op.execute("CREATE INDEX logistics_shipments_order ON logistics_shipments (order_id)")
    op.execute(
        "CREATE INDEX logistics_shipments_open ON logistics_shipments (shipment_id) "
        "WHERE status IN ('dispatched', 'picked_up', 'in_transit', 'out_for_delivery', 'exception')"
    )
    op.execute(
        """
        CREATE TABLE logistics_tracking_updates (
            id BIGSERIAL PRIMARY KEY,
            shipment_id TEXT NOT NULL REFERENCES logistics_shipments (shipment_id),
            status TEXT NOT NULL,
            occurred_at TIMESTAMPTZ NOT NULL,
            location TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (shipment_id, status, occurred_at)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE logistics_delays (
            shipment_id TEXT NOT NULL REFERENCES logistics_shipments (shipment_id),
            reason TEXT NOT NULL,
            order_id TEXT NOT NULL,
            promised_date DATE NOT NULL,
            expected_date DATE,
            observed_at TIMESTAMPTZ NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('watcher', 'tracking')),
            flagged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (shipment_id, reason)
        )
        """
    )
