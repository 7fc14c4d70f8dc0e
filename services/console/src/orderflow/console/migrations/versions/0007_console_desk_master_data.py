"""console: the master data the order desk fills an order from: a customer's contact, terms,
currency and credit limit; a product's spec, price, currency and tax rate

The columns are filled as ``customer.updated`` and ``product.updated`` arrive (every update
carries the whole record); rows stored before them keep NULL until their next update or a
``rebuild``.

Revision ID: console_0007_desk
"""

from alembic import op

revision = "console_0007_desk"
down_revision = "console_0006_actions_returns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE console_customers
            ADD COLUMN email TEXT,
            ADD COLUMN phone TEXT,
            ADD COLUMN payment_terms TEXT,
            ADD COLUMN currency TEXT,
            ADD COLUMN credit_limit NUMERIC(16, 2)
        """
    )
    op.execute(
        """
        ALTER TABLE console_products
            ADD COLUMN spec TEXT,
            ADD COLUMN unit_price NUMERIC(16, 2),
            ADD COLUMN currency TEXT,
            ADD COLUMN tax_rate NUMERIC(6, 4)
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE console_customers DROP COLUMN email, DROP COLUMN phone, "
               "DROP COLUMN payment_terms, DROP COLUMN currency, DROP COLUMN credit_limit")
    op.execute("ALTER TABLE console_products DROP COLUMN spec, DROP COLUMN unit_price, "
               "DROP COLUMN currency, DROP COLUMN tax_rate")
