"""review: cancelled orders: tombstones for those review never saw, and the cancelled status

Revision ID: review_0002
"""

from alembic import op

revision = "review_0002"
down_revision = "review_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE review_cancelled_orders (
            order_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            cancelled_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    # a reviewed order may now be cancelled (its exposure released, off the queue)
    op.execute("ALTER TABLE review_orders DROP CONSTRAINT review_orders_status_check")
    op.execute("ALTER TABLE review_orders ADD CONSTRAINT review_orders_status_check "
               "CHECK (status IN ('approved', 'held', 'rejected', 'cancelled'))")


def downgrade() -> None:
    op.execute("ALTER TABLE review_orders DROP CONSTRAINT review_orders_status_check")
    op.execute("ALTER TABLE review_orders ADD CONSTRAINT review_orders_status_check "
               "CHECK (status IN ('approved', 'held', 'rejected'))")
    op.execute("DROP TABLE review_cancelled_orders")
