"""logistics: order changes: the revision logistics knows, the pending change, a parked reservation

Revision ID: logistics_0003
"""

from alembic import op

revision = "logistics_0003"
down_revision = "logistics_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a change admitted and not yet settled keeps the order from dispatching: a reservation that
    # arrives meanwhile is parked here and dispatched when the change is settled
    op.execute("ALTER TABLE logistics_orders ADD COLUMN revision INTEGER")
    op.execute("ALTER TABLE logistics_orders ADD COLUMN pending_change_id TEXT")
    op.execute("ALTER TABLE logistics_orders ADD COLUMN pending_revision INTEGER")
    op.execute("ALTER TABLE logistics_orders ADD COLUMN parked_reservation JSONB")
    op.execute("ALTER TABLE logistics_orders ADD COLUMN parked_event_id TEXT")


def downgrade() -> None:
    for column in ("parked_event_id", "parked_reservation", "pending_revision",
                   "pending_change_id", "revision"):
        op.execute(f"ALTER TABLE logistics_orders DROP COLUMN {column}")
