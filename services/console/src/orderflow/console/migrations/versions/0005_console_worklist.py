"""console: worklists (who works on a queue item, and items closed as handled) and customer cases

``console_worklist`` holds one row per item someone claimed, was assigned or closed, keyed by the
item's key (``orderflow.console.worklist``): a claim is one conditional upsert, so of two
operators claiming the same item at once one gets it. ``console_cases`` holds customers'
inquiries and complaints.

Revision ID: console_0005_worklist
"""

from alembic import op

revision = "console_0005_worklist"
down_revision = "console_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_worklist (
            item_key TEXT PRIMARY KEY,
            assignee TEXT,
            assigned_by TEXT,
            assigned_at TIMESTAMPTZ,
            done_by TEXT,
            done_at TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX console_worklist_assignee ON console_worklist (assignee)")
    op.execute(
        """
        CREATE TABLE console_cases (
            id BIGSERIAL PRIMARY KEY,
            customer_id TEXT NOT NULL,
            order_id TEXT,
            type TEXT NOT NULL CHECK (type IN ('inquiry', 'complaint')),
            text TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'answered', 'closed')),
            due_at TIMESTAMPTZ NOT NULL,
            created_by TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_by TEXT,
            updated_at TIMESTAMPTZ
        )
        """
    )
    op.execute("CREATE INDEX console_cases_order ON console_cases (order_id)")
    op.execute("CREATE INDEX console_cases_status ON console_cases (status)")


def downgrade() -> None:
    op.execute("DROP TABLE console_cases")
    op.execute("DROP TABLE console_worklist")
