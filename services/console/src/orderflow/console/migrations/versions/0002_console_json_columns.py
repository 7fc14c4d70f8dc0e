"""console: stored events' payloads and the order views as JSON, not JSONB

Written whole, read whole, never queried inside (the filters use the view's own columns): JSON
keeps the text as written, so PostgreSQL does not convert it to and from its binary form on
every insert, upsert and read (the view upserts and the replays were the console's costliest
statements).

Revision ID: console_0002
"""

from alembic import op

revision = "console_0002"
down_revision = "console_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE console_events ALTER COLUMN payload TYPE json USING payload::json")
    op.execute("ALTER TABLE console_orders ALTER COLUMN view TYPE json USING view::json")


def downgrade() -> None:
    op.execute("ALTER TABLE console_orders ALTER COLUMN view TYPE jsonb USING view::jsonb")
    op.execute("ALTER TABLE console_events ALTER COLUMN payload TYPE jsonb USING payload::jsonb")
