"""logistics: the outbox's rows stay uncompressed (``orderflow.runtime.db.keep_outbox_rows_uncompressed``)

Revision ID: logistics_0004
"""

from orderflow.runtime.db import compress_outbox_rows_again, keep_outbox_rows_uncompressed

revision = "logistics_0004"
down_revision = "logistics_0003"
branch_labels = None
depends_on = None

upgrade = keep_outbox_rows_uncompressed
downgrade = compress_outbox_rows_again
