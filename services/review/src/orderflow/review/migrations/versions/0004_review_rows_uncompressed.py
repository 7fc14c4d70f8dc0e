"""review: rows written and read back at once stay uncompressed

PostgreSQL compresses a row's long values once the row passes ~2 kB (and decompresses them on
each read): its outbox (an approval carries every rule's outcome: 3.4 kB), its orders and
decisions (the rules' outcomes, 2.6 kB). ``toast_tuple_target`` at a whole page keeps rows up to
8 kB as they are (``orderflow.runtime.db.rows_uncompressed_ddl``); only rows written from now
on.

Revision ID: review_0004
"""

from alembic import op

from orderflow.runtime.db import rows_compressed_again_ddl, rows_uncompressed_ddl

revision = "review_0004"
down_revision = "review_0003"
branch_labels = None
depends_on = None

TABLES = ("outbox", "review_orders", "review_decisions")


def upgrade() -> None:
    for ddl in rows_uncompressed_ddl(*TABLES):
        op.execute(ddl)


def downgrade() -> None:
    for ddl in rows_compressed_again_ddl(*TABLES):
        op.execute(ddl)
