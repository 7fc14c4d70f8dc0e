"""console: the dead letters the console replayed (one row per DLQ entry, who and when)

A replay of one dead letter inserts its row in the transaction that sends it: a second replay
of the same entry finds the row and is refused; a whole-DLQ replay inserts the rows of every
entry it sends and skips the entries replayed one by one before.

Revision ID: console_0004
"""

from alembic import op

revision = "console_0004"
down_revision = "console_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_dlq_replays (
            dlq_topic TEXT NOT NULL,
            dlq_partition INTEGER NOT NULL,
            dlq_offset BIGINT NOT NULL,
            event_id TEXT,
            replayed_by TEXT NOT NULL,
            replayed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            how TEXT NOT NULL,
            PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE console_dlq_replays")
