"""notify: the outbox's rows stay uncompressed

PostgreSQL compresses a row's long values once the row passes ~2 kB, and decompresses them on
each read; an outbox row is read back by the relay at once and purged within days, so that is
CPU spent for nothing. ``toast_tuple_target`` at a whole page keeps rows up to 8 kB as they are
(``orderflow.runtime.db.rows_uncompressed_ddl``); only rows written from now on. The long-lived
tables keep PostgreSQL's compression: uncompressed, they grew enough that autovacuum's passes
over them after a burst cost more than the compression saved (bench/README.md, fifteenth round).

Revision ID: notify_0004
"""

from alembic import op

from orderflow.runtime.db import rows_compressed_again_ddl, rows_uncompressed_ddl

revision = "notify_0004"
down_revision = "notify_0003"
branch_labels = None
depends_on = None

TABLES = ("outbox",)


def upgrade() -> None:
    for ddl in rows_uncompressed_ddl(*TABLES):
        op.execute(ddl)


def downgrade() -> None:
    for ddl in rows_compressed_again_ddl(*TABLES):
        op.execute(ddl)
