"""intake: the outbox's rows stay uncompressed (``orderflow.runtime.db.keep_outbox_rows_uncompressed``)

Revision ID: intake_0003
"""

from orderflow.runtime.db import compress_outbox_rows_again, keep_outbox_rows_uncompressed

revision = "intake_0003"
down_revision = "intake_0002"
branch_labels = None
depends_on = None

upgrade = keep_outbox_rows_uncompressed
downgrade = compress_outbox_rows_again
