"""notify: the outcome webhooks channels registered through intake (``channel.webhook-set``)

One row per channel: the URL its outcome notifications are posted to instead of the configured
one (``ORDERFLOW_NOTIFY_WEBHOOK_URLS``), and whether it is used: a channel without a signing
secret in notify's configuration has its registration recorded with the reason, and not used.

Revision ID: notify_0006
"""

from alembic import op

revision = "notify_0006"
down_revision = "notify_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE notify_channel_webhooks (
            channel TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            usable BOOLEAN NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            set_by TEXT NOT NULL,
            set_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE notify_channel_webhooks")
