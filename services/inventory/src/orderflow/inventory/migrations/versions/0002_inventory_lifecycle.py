"""inventory: cancelled orders (tombstones) and the returns taken back into stock

Revision ID: inventory_0002
"""

from alembic import op

revision = "inventory_0002"
down_revision = "inventory_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # an order cancelled before its approval reached inventory: the late approval is skipped
    op.execute(
        """
        CREATE TABLE inventory_cancelled_orders (
            order_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            cancelled_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    # one row per return received: a second receipt of the same RMA changes nothing
    op.execute(
        """
        CREATE TABLE inventory_returns (
            rma_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            warehouse_id TEXT NOT NULL,
            restocked INTEGER NOT NULL,
            scrapped INTEGER NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE inventory_returns")
    op.execute("DROP TABLE inventory_cancelled_orders")
