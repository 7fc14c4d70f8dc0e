"""inventory: the outbox's rows stay uncompressed (``orderflow.runtime.db.keep_outbox_rows_uncompressed``)

Revision ID: inventory_0004
"""

from orderflow.runtime.db import compress_outbox_rows_again, keep_outbox_rows_uncompressed

revision = "inventory_0004"
down_revision = "inventory_0003"
branch_labels = None
depends_on = None

upgrade = keep_outbox_rows_uncompressed
downgrade = compress_outbox_rows_again
