"""notify: the senders' claim reads due rows in the order it takes them

The claim takes a channel's due rows ordered by ``(next_attempt_at, id)`` with a limit. The index
it had, ``(channel, next_attempt_at)``, left the ``id`` to a sort, and on a table grown since its
last ANALYZE (a fresh database, a backlog) PostgreSQL chose to read every pending and sending row
of the channel, sort them and keep the first few hundred: 11-12 ms a claim in the benchmark,
reading 12,000 rows to return 100. With ``id`` in the index the rows come in the claim's order,
and with the claim's "due" as the index's range (``repository._DUE``) the scan ends at the first
row not yet due, whatever the statistics say (0.3 ms on the same rows).

Revision ID: notify_0005
"""

from alembic import op

revision = "notify_0005"
down_revision = "notify_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX notify_notifications_due")
    op.execute("CREATE INDEX notify_notifications_due ON notify_notifications "
               "(channel, next_attempt_at, id) WHERE status IN ('pending', 'sending')")


def downgrade() -> None:
    op.execute("DROP INDEX notify_notifications_due")
    op.execute("CREATE INDEX notify_notifications_due ON notify_notifications "
               "(channel, next_attempt_at) WHERE status IN ('pending', 'sending')")
