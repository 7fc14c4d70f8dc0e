"""review: the sent_back status (an order a reviewer sent back for rework; its next revision is
reviewed again)

Revision ID: review_0005_approvals
"""

from alembic import op

revision = "review_0005_approvals"
down_revision = "review_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE review_orders DROP CONSTRAINT review_orders_status_check")
    op.execute("ALTER TABLE review_orders ADD CONSTRAINT review_orders_status_check "
               "CHECK (status IN ('approved', 'held', 'rejected', 'cancelled', 'sent_back'))")


def downgrade() -> None:
    op.execute("UPDATE review_orders SET status = 'rejected' WHERE status = 'sent_back'")
    op.execute("ALTER TABLE review_orders DROP CONSTRAINT review_orders_status_check")
    op.execute("ALTER TABLE review_orders ADD CONSTRAINT review_orders_status_check "
               "CHECK (status IN ('approved', 'held', 'rejected', 'cancelled'))")
