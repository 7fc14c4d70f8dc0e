"""logistics: the order record that arbitrates cancel vs dispatch, returns (RMA), tax rates

Revision ID: logistics_0002
"""

from alembic import op

revision = "logistics_0002"
down_revision = "logistics_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # one row per order logistics heard of (a reservation or a cancel request): the row lock on
    # it decides between a cancellation and a dispatch
    op.execute(
        """
        CREATE TABLE logistics_orders (
            order_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            order_json JSONB,
            customer_id TEXT,
            cancel_reason TEXT,
            cancelled_by TEXT,
            cancelled_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE logistics_returns (
            rma_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            status TEXT NOT NULL,
            resolution TEXT NOT NULL,
            reasons JSONB NOT NULL DEFAULT '[]',
            lines JSONB NOT NULL DEFAULT '[]',
            carrier TEXT,
            tracking_number TEXT UNIQUE,
            refund_amount NUMERIC(12, 2),
            currency TEXT,
            requested_at TIMESTAMPTZ NOT NULL,
            received_at TIMESTAMPTZ,
            inspections JSONB,
            refund_id TEXT,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX logistics_returns_order ON logistics_returns (order_id)")
    op.execute("ALTER TABLE logistics_products ADD COLUMN tax_rate NUMERIC(6, 4) NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE logistics_products DROP COLUMN tax_rate")
    op.execute("DROP TABLE logistics_returns")
    op.execute("DROP TABLE logistics_orders")
