"""console: runtime tables, the read model (events, order views, master data names), operator
sessions and the audit log

Revision ID: console_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "console_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE console_events (
            event_id TEXT PRIMARY KEY,
            order_id TEXT NOT NULL,
            topic TEXT NOT NULL,
            event_type TEXT NOT NULL,
            producer TEXT NOT NULL,
            occurred_at TIMESTAMPTZ NOT NULL,
            payload JSONB NOT NULL,
            consumed_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX console_events_order ON console_events (order_id)")
    op.execute(
        """
        CREATE TABLE console_orders (
            order_id TEXT PRIMARY KEY,
            state TEXT,
            channel TEXT,
            external_id TEXT,
            customer_id TEXT,
            customer_name TEXT,
            currency TEXT,
            grand_total NUMERIC(16, 2),
            priority TEXT,
            hold_codes TEXT[] NOT NULL DEFAULT '{}',
            exception_kinds TEXT[] NOT NULL DEFAULT '{}',
            tracking_numbers TEXT[] NOT NULL DEFAULT '{}',
            first_seen_at TIMESTAMPTZ,
            received_at TIMESTAMPTZ,
            state_since TIMESTAMPTZ,
            last_event_at TIMESTAMPTZ,
            view JSONB NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    for column in ("state", "channel", "customer_id", "external_id", "received_at",
                   "last_event_at"):
        op.execute(f"CREATE INDEX console_orders_{column} ON console_orders ({column})")
    op.execute("CREATE INDEX console_orders_tracking ON console_orders USING gin (tracking_numbers)")
    op.execute("CREATE INDEX console_orders_exceptions ON console_orders (order_id) "
               "WHERE cardinality(exception_kinds) > 0")
    op.execute(
        """
        CREATE TABLE console_customers (
            customer_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            blocked BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console_products (
            sku TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            active BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console_sessions (
            digest TEXT PRIMARY KEY,
            user_name TEXT NOT NULL,
            role TEXT NOT NULL,
            csrf_token TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at TIMESTAMPTZ NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console_audit (
            id BIGSERIAL PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL DEFAULT now(),
            user_name TEXT NOT NULL,
            role TEXT NOT NULL,
            via TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT,
            outcome TEXT NOT NULL,
            detail JSONB NOT NULL DEFAULT '{}'
        )
        """
    )
