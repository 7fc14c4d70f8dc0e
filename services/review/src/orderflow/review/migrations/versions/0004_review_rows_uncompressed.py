"""review: the outbox's rows stay uncompressed (``orderflow.runtime.db.keep_outbox_rows_uncompressed``)

Revision ID: review_0004
"""

from orderflow.runtime.db import compress_outbox_rows_again, keep_outbox_rows_uncompressed

revision = "review_0004"
down_revision = "review_0003"
branch_labels = None
depends_on = None

upgrade = keep_outbox_rows_uncompressed
downgrade = compress_outbox_rows_again
