"""console: a customer's delivery address, which the order desk fills a new order's address from

Filled as ``customer.updated`` arrives (every update carries the whole record; an update
without an address clears it); rows stored before keep NULL until their next update or a
``rebuild``.

Revision ID: console_0008_customer_address
"""

from alembic import op

revision = "console_0008_customer_address"
down_revision = "console_0007_desk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE console_customers ADD COLUMN delivery_address JSON")


def downgrade() -> None:
    op.execute("ALTER TABLE console_customers DROP COLUMN delivery_address")
