"""notify: runtime tables, customers' preferences, products' names, orders' facts and contacts,
and the notification log (one row per source event and channel)

Revision ID: notify_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "notify_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE notify_customers (
            customer_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            email TEXT,
            phone TEXT,
            language TEXT NOT NULL,
            preferred_channel TEXT NOT NULL,
            opt_out_marketing BOOLEAN NOT NULL DEFAULT false,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notify_products (
            sku TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notify_orders (
            order_id TEXT PRIMARY KEY,
            channel TEXT,
            external_id TEXT,
            customer_id TEXT,
            customer_name TEXT NOT NULL DEFAULT '',
            email TEXT,
            phone TEXT,
            facts JSONB,
            shipments JSONB NOT NULL DEFAULT '{}'::jsonb,
            review_notice_sent BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE notify_notifications (
            id BIGSERIAL PRIMARY KEY,
            notification_id UUID NOT NULL UNIQUE,
            source_event_id UUID NOT NULL,
            source_topic TEXT NOT NULL,
            source_event_type TEXT NOT NULL,
            kind TEXT NOT NULL,
            order_id TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
            recipient TEXT NOT NULL,
            language TEXT NOT NULL,
            context JSONB NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('pending', 'sending', 'sent', 'recorded', 'failed', 'suppressed', 'coalesced')),
            detail TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            lease_until TIMESTAMPTZ,
            coalesce_key TEXT,
            coalesced_into BIGINT REFERENCES notify_notifications (id),
            last_error TEXT,
            raw_value BYTEA NOT NULL,
            raw_headers JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            finished_at TIMESTAMPTZ,
            UNIQUE (source_event_id, channel)
        )
        """
    )
    op.execute("CREATE INDEX notify_notifications_due ON notify_notifications "
               "(channel, next_attempt_at) WHERE status IN ('pending', 'sending')")
    op.execute("CREATE INDEX notify_notifications_waiting ON notify_notifications "
               "(coalesce_key, channel) WHERE status = 'pending' AND coalesce_key IS NOT NULL")
    op.execute("CREATE INDEX notify_notifications_order ON notify_notifications (order_id)")
