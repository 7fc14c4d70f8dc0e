"""intake: runtime tables and the orders intake has accepted or rejected

Revision ID: intake_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "intake_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE intake_orders (
            order_id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            external_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            status TEXT NOT NULL,
            payload_sha256 TEXT NOT NULL,
            received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (channel, external_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE intake_revisions (
            order_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            payload_sha256 TEXT NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (order_id, revision)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE intake_products (
            sku TEXT PRIMARY KEY,
            unit_price NUMERIC(14, 2) NOT NULL,
            tax_rate NUMERIC(6, 4) NOT NULL,
            weight_kg NUMERIC(10, 3) NOT NULL,
            active BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
