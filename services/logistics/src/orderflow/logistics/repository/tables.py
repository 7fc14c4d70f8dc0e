"""Logistics' tables (their migrations are in ``migrations/versions``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

warehouses = sa.Table(
    "logistics_warehouses", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("province", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "logistics_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("weight_kg", sa.Numeric(10, 3), nullable=False),
    sa.Column("tax_rate", sa.Numeric(6, 4), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
shipments = sa.Table(
    "logistics_shipments", metadata,
    sa.Column("shipment_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("external_id", sa.Text, nullable=False),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("status_at", sa.DateTime(timezone=True)),
    sa.Column("carrier", sa.Text),
    sa.Column("carrier_name", sa.Text),
    sa.Column("service", sa.Text),
    sa.Column("service_name", sa.Text),
    sa.Column("express", sa.Boolean, nullable=False),
    sa.Column("tracking_number", sa.Text, unique=True),
    sa.Column("zone", sa.Text),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("rule_detail", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("weight_kg", sa.Numeric(10, 3), nullable=False),
    sa.Column("weight_estimated", sa.Boolean, nullable=False),
    sa.Column("cost", sa.Numeric(12, 2)),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("ship_to", JSONB, nullable=False),
    sa.Column("destination_province", sa.Text, nullable=False),
    sa.Column("destination_city", sa.Text, nullable=False),
    sa.Column("requested_date", sa.Date),
    sa.Column("pickup_date", sa.Date),
    sa.Column("promised_date", sa.Date),
    sa.Column("misses_requested_date", sa.Boolean, nullable=False),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("on_time", sa.Boolean),
    sa.Column("exception_code", sa.Text),
    sa.Column("exception_detail", sa.Text),
    sa.Column("source_event_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
tracking_updates = sa.Table(
    "logistics_tracking_updates", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("shipment_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
)
delays = sa.Table(
    "logistics_delays", metadata,
    sa.Column("shipment_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("promised_date", sa.Date, nullable=False),
    sa.Column("expected_date", sa.Date),
    sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("flagged_at", sa.DateTime(timezone=True)),
)

orders = sa.Table(
    "logistics_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),  # open | cancelled
    sa.Column("order_json", JSONB),
    sa.Column("customer_id", sa.Text),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("cancelled_by", sa.Text),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    sa.Column("revision", sa.Integer),
    sa.Column("pending_change_id", sa.Text),
    sa.Column("pending_revision", sa.Integer),
    sa.Column("parked_reservation", JSONB),
    sa.Column("parked_event_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
returns = sa.Table(
    "logistics_returns", metadata,
    sa.Column("rma_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # approved | refused | received
    sa.Column("resolution", sa.Text, nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("lines", JSONB, nullable=False),
    sa.Column("carrier", sa.Text),
    sa.Column("tracking_number", sa.Text, unique=True),
    sa.Column("refund_amount", sa.Numeric(12, 2)),
    sa.Column("currency", sa.Text),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True)),
    sa.Column("inspections", JSONB),
    sa.Column("refund_id", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
