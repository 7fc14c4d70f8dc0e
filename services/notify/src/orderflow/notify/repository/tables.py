"""Notify's tables, and the base of the handlers' repository parts (the session they are read and
written through)."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.ext.asyncio import AsyncSession

metadata = sa.MetaData()
customers = sa.Table(
    "notify_customers", metadata,
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("preferred_channel", sa.Text, nullable=False),
    sa.Column("opt_out_marketing", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "notify_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
orders = sa.Table(
    "notify_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("channel", sa.Text),
    sa.Column("external_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("customer_name", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("phone", sa.Text),
    sa.Column("facts", JSONB),
    sa.Column("shipments", JSONB, nullable=False),
    sa.Column("review_notice_sent", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
notifications = sa.Table(
    "notify_notifications", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("notification_id", sa.Uuid, nullable=False),
    sa.Column("source_event_id", sa.Uuid, nullable=False),
    sa.Column("source_topic", sa.Text, nullable=False),
    sa.Column("source_event_type", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("context", JSON, nullable=False),  # JSON: written and read whole
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    sa.Column("coalesce_key", sa.Text),
    sa.Column("coalesced_into", sa.BigInteger),
    sa.Column("last_error", sa.Text),
    sa.Column("raw_value", sa.LargeBinary, nullable=False),
    sa.Column("raw_headers", JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


class Rows:
    """A part of the repository: statements run in the session's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session


def json_text(value: Any) -> str:
    """A value as the JSON text a statement casts to ``json`` / ``jsonb``."""
    return orjson.dumps(value).decode()
