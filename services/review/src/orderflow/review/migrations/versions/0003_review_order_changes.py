"""review: order changes: each change review saw, what it moved, and what to restore

Revision ID: review_0003
"""

from alembic import op

revision = "review_0003"
down_revision = "review_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # status: early (the order was not reviewed yet: its review takes the new content),
    # applied (to a held or approved order; ``before`` restores it), released (applied to a held
    # order that then passed every rule and was approved), refused, undone (compensated)
    op.execute(
        """
        CREATE TABLE review_order_changes (
            change_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            status TEXT NOT NULL,
            received JSONB NOT NULL,
            before JSONB,
            credit_delta NUMERIC(16, 2) NOT NULL DEFAULT 0,
            cod_delta NUMERIC(16, 2) NOT NULL DEFAULT 0,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX review_order_changes_order ON review_order_changes (order_id)")


def downgrade() -> None:
    op.execute("DROP TABLE review_order_changes")
