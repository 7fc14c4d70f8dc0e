"""console: rows written and read back at once stay uncompressed

PostgreSQL compresses a row's long values once the row passes ~2 kB (and decompresses them on
each read): its outbox, the events it keeps and its views of the orders (3 kB).
``toast_tuple_target`` at a whole page keeps rows up to 8 kB as they are
(``orderflow.runtime.db.rows_uncompressed_ddl``); only rows written from now on.

Revision ID: console_0003
"""

from alembic import op

from orderflow.runtime.db import rows_compressed_again_ddl, rows_uncompressed_ddl

revision = "console_0003"
down_revision = "console_0002"
branch_labels = None
depends_on = None

TABLES = ("outbox", "console_events", "console_orders")


def upgrade() -> None:
    for ddl in rows_uncompressed_ddl(*TABLES):
        op.execute(ddl)


def downgrade() -> None:
    for ddl in rows_compressed_again_ddl(*TABLES):
        op.execute(ddl)
