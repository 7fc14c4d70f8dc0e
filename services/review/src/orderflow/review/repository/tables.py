"""Review's tables, and the base of the repository's parts (the session they are read and written
through)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

metadata = sa.MetaData()
MONEY = sa.Numeric(16, 2)

credit_accounts = sa.Table(
    "review_credit_accounts", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("credit_limit", MONEY, nullable=False),
    sa.Column("payment_terms", sa.Text, nullable=False),
    sa.Column("open_receivables", MONEY, nullable=False),
    sa.Column("overdue_amount", MONEY, nullable=False),
    sa.Column("overdue_days", sa.Integer, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("approved_not_invoiced", MONEY, nullable=False),
    sa.Column("open_cod", MONEY, nullable=False),
    sa.Column("approved_orders", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "review_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("unit_price", sa.Numeric(14, 2), nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
promotions = sa.Table(
    "review_promotions", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("valid_from", sa.Date, nullable=False),
    sa.Column("valid_to", sa.Date, nullable=False),
    sa.Column("usage_limit", sa.Integer),
    sa.Column("used", sa.Integer, nullable=False),
)
promotion_uses = sa.Table(
    "review_promotion_uses", metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, primary_key=True),
)
orders = sa.Table(
    "review_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("grand_total", MONEY, nullable=False),
    sa.Column("exposure_kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("rules", JSONB, nullable=False),
    sa.Column("amount_due", MONEY),
    sa.Column("uninvoiced", MONEY, nullable=False),
    sa.Column("invoiced", MONEY, nullable=False),
    sa.Column("paid", MONEY, nullable=False),
    sa.Column("promo_code", sa.Text),
    sa.Column("received", JSONB, nullable=False),
    sa.Column("reviewed_at", sa.DateTime(timezone=True)),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.Text),
    sa.Column("comment", sa.Text),
)
cancelled_orders = sa.Table(
    "review_cancelled_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
)
decisions = sa.Table(
    "review_decisions", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("rules", JSONB, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
)
order_changes = sa.Table(
    "review_order_changes", metadata,
    sa.Column("change_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("received", JSONB, nullable=False),
    sa.Column("before", JSONB),
    sa.Column("credit_delta", MONEY, nullable=False),
    sa.Column("cod_delta", MONEY, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
invoices = sa.Table(
    "review_invoices", metadata,
    sa.Column("invoice_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("to_receivables", MONEY, nullable=False),
    sa.Column("moved_from_approved", MONEY, nullable=False),
)
payments = sa.Table(
    "review_payments", metadata,
    sa.Column("payment_id", sa.Text, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("amount", MONEY, nullable=False),
    sa.Column("applied_as", sa.Text, nullable=False),
)


class Rows:
    """A part of the repository: statements run in the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
