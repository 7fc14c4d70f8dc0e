"""notify: a notification's context and its source event's headers as JSON, not JSONB

Written once, read whole, never queried inside: JSON keeps the text as written, so PostgreSQL
does not convert it to and from its binary form on every insert and read (the notification
insert was notify's costliest statement).

Revision ID: notify_0002
"""

from alembic import op

revision = "notify_0002"
down_revision = "notify_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE notify_notifications ALTER COLUMN context TYPE json USING context::json, "
               "ALTER COLUMN raw_headers TYPE json USING raw_headers::json")


def downgrade() -> None:
    op.execute("ALTER TABLE notify_notifications ALTER COLUMN context TYPE jsonb "
               "USING context::jsonb, ALTER COLUMN raw_headers TYPE jsonb USING raw_headers::jsonb")
