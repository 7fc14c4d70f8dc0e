"""notify: what the retention purge of finished notifications needs

A block range index on ``created_at`` (rows come in that order) finds the old rows at almost no
cost to the inserts; a partial index on ``coalesced_into`` lets the purge, and PostgreSQL's check
of that foreign key when a folded-into row is deleted, find the rows that point at a row without
reading the table (only coalesced rows have it, so only their fold writes an entry).

Revision ID: notify_0003
"""

from alembic import op

revision = "notify_0003"
down_revision = "notify_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX notify_notifications_created ON notify_notifications "
               "USING brin (created_at)")
    op.execute("CREATE INDEX notify_notifications_coalesced_into ON notify_notifications "
               "(coalesced_into) WHERE coalesced_into IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX notify_notifications_coalesced_into")
    op.execute("DROP INDEX notify_notifications_created")
