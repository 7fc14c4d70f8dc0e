"""console: the inspection of each return an operator entered, kept until logistics approves it

``console_return_inspections`` holds one row per RMA the console asked for: the operator, and
each SKU's inspection (restock or scrap). When ``order.return-approved`` names the RMA, the
console publishes the warehouse receipt (``order.return-received``) with that inspection and
marks the row received.

Revision ID: console_0006_actions_returns
"""

from alembic import op

revision = "console_0006_actions_returns"
down_revision = "console_0005_worklist"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_return_inspections (
            rma_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            inspection JSONB NOT NULL,
            requested_by TEXT NOT NULL,
            requested_at TIMESTAMPTZ NOT NULL,
            received_at TIMESTAMPTZ
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE console_return_inspections")
