"""intake: each order's status as its channel sees it, and the channels' outcome webhooks

``intake_status`` is the projection of the outcome topics the channel order API's status route
answers from (``domain.apply_outcome``): per order, its state and the status document (reasons,
shipments, last events). ``intake_webhooks`` holds the outcome webhook each channel registered
(``PUT /api/v1/channels/{channel}/webhook``): a request that registers the URL a channel already
has is answered as a duplicate, without a second event.

Revision ID: intake_0005
"""

from alembic import op

revision = "intake_0005"
down_revision = "intake_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE intake_status (
            order_id TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            status JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE intake_webhooks (
            channel TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            set_by TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE intake_webhooks")
    op.execute("DROP TABLE intake_status")
