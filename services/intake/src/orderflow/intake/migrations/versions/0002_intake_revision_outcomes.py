"""intake: revisions as Unix times (BIGINT), and what became of each revision

Revision ID: intake_0002
"""

from alembic import op

revision = "intake_0002"
down_revision = "intake_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE intake_orders ALTER COLUMN revision TYPE BIGINT")
    op.execute("ALTER TABLE intake_revisions ALTER COLUMN revision TYPE BIGINT")
    # received | rejected (first push or retry) | change (newer revision of a received order,
    # published as OrderRevisionReceived) | refused (a newer revision that failed the checks)
    op.execute("ALTER TABLE intake_revisions ADD COLUMN status TEXT NOT NULL DEFAULT 'received'")
    op.execute("ALTER TABLE intake_revisions ADD COLUMN reasons JSONB NOT NULL DEFAULT '[]'")
    op.execute("CREATE INDEX intake_orders_channel_status ON intake_orders (channel, status)")


def downgrade() -> None:
    op.execute("DROP INDEX intake_orders_channel_status")
    op.execute("ALTER TABLE intake_revisions DROP COLUMN reasons")
    op.execute("ALTER TABLE intake_revisions DROP COLUMN status")
