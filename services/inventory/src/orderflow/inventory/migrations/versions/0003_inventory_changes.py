"""inventory: order changes that arrive before the order's approval

Revision ID: inventory_0003
"""

from alembic import op

revision = "inventory_0003"
down_revision = "inventory_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the newest content a change brought for an order inventory has not had approved yet: the
    # approval that arrives later reserves this content, not its own older one
    op.execute(
        """
        CREATE TABLE inventory_order_revisions (
            order_id TEXT PRIMARY KEY,
            revision INTEGER NOT NULL,
            order_json JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE inventory_order_revisions")
