"""review: runtime tables, credit accounts, price list, promotions, reviewed orders, decision audit,
invoices and payments

Revision ID: review_0001
"""

from alembic import op

from orderflow.runtime.db import runtime_tables_ddl

revision = "review_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for ddl in runtime_tables_ddl():
        op.execute(ddl)
    op.execute(
        """
        CREATE TABLE review_credit_accounts (
            customer_id TEXT PRIMARY KEY,
            known BOOLEAN NOT NULL,
            currency TEXT NOT NULL,
            credit_limit NUMERIC(16, 2) NOT NULL,
            payment_terms TEXT NOT NULL,
            open_receivables NUMERIC(16, 2) NOT NULL DEFAULT 0,
            overdue_amount NUMERIC(16, 2) NOT NULL DEFAULT 0,
            overdue_days INTEGER NOT NULL DEFAULT 0,
            blocked BOOLEAN NOT NULL DEFAULT false,
            approved_not_invoiced NUMERIC(16, 2) NOT NULL DEFAULT 0,
            open_cod NUMERIC(16, 2) NOT NULL DEFAULT 0,
            approved_orders INTEGER NOT NULL DEFAULT 0,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE review_products (
            sku TEXT PRIMARY KEY,
            unit_price NUMERIC(14, 2) NOT NULL,
            currency TEXT NOT NULL,
            active BOOLEAN NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE review_promotions (
            code TEXT PRIMARY KEY,
            valid_from DATE NOT NULL,
            valid_to DATE NOT NULL,
            usage_limit INTEGER,
            used INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        """
        CREATE TABLE review_promotion_uses (
            code TEXT NOT NULL,
            order_id TEXT NOT NULL,
            used_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (code, order_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE review_orders (
            order_id TEXT PRIMARY KEY,
            channel TEXT NOT NULL,
            external_id TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            currency TEXT NOT NULL,
            grand_total NUMERIC(16, 2) NOT NULL,
            exposure_kind TEXT NOT NULL CHECK (exposure_kind IN ('credit', 'cod', 'prepaid')),
            status TEXT NOT NULL CHECK (status IN ('approved', 'held', 'rejected')),
            reasons JSONB NOT NULL DEFAULT '[]',
            rules JSONB NOT NULL DEFAULT '[]',
            amount_due NUMERIC(16, 2),
            uninvoiced NUMERIC(16, 2) NOT NULL DEFAULT 0,
            invoiced NUMERIC(16, 2) NOT NULL DEFAULT 0,
            paid NUMERIC(16, 2) NOT NULL DEFAULT 0,
            promo_code TEXT,
            received JSONB NOT NULL,
            reviewed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            decided_at TIMESTAMPTZ,
            decided_by TEXT,
            comment TEXT
        )
        """
    )
    op.execute("CREATE INDEX review_orders_held ON review_orders (reviewed_at) "
               "WHERE status = 'held'")
    op.execute("CREATE INDEX review_orders_customer ON review_orders (customer_id)")
    op.execute(
        """
        CREATE TABLE review_decisions (
            id BIGSERIAL PRIMARY KEY,
            order_id TEXT NOT NULL,
            decision TEXT NOT NULL,
            decided_by TEXT NOT NULL,
            comment TEXT,
            reasons JSONB NOT NULL DEFAULT '[]',
            rules JSONB NOT NULL DEFAULT '[]',
            decided_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX review_decisions_order ON review_decisions (order_id, id)")
    op.execute(
        """
        CREATE TABLE review_invoices (
            invoice_id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            order_id TEXT,
            amount NUMERIC(16, 2) NOT NULL,
            to_receivables NUMERIC(16, 2) NOT NULL,
            moved_from_approved NUMERIC(16, 2) NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE review_payments (
            payment_id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            order_id TEXT,
            amount NUMERIC(16, 2) NOT NULL,
            applied_as TEXT NOT NULL,
            recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX review_payments_order ON review_payments (order_id) "
               "WHERE order_id IS NOT NULL")
