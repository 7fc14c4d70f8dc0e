"""Review's composition root."""

from __future__ import annotations

from pathlib import Path

from orderflow.contracts import topics
from orderflow.review.api import create_router
from orderflow.review.domain import ReviewPolicy
from orderflow.review.handlers import ReviewHandlers
from orderflow.review.settings import policy_from_environment
from orderflow.runtime.consumer import Subscription
from orderflow.runtime.service import ServiceDefinition


def create_service(policy: ReviewPolicy | None = None) -> ServiceDefinition:
    """Review, with the company's policy (from ``ORDERFLOW_REVIEW_POLICY_FILE``, else defaults;
    a bad file fails here, at start, naming the variable)."""
    chosen = policy or policy_from_environment()
    h = ReviewHandlers(chosen)
    return ServiceDefinition(
        name="review",
        description="Checks credit, terms, prices, promotions and delivery dates; approves, "
                    "holds (with reasons) or rejects orders; the manual review queue",
        migrations=Path(__file__).parent / "migrations" / "versions",
        subscriptions=[
            Subscription(topics.ORDER_RECEIVED, batch_handler=h.on_orders_received,
                         description="Orders to review: the canonical order and its totals"),
            Subscription(topics.ORDER_CANCELLED, h.on_order_cancelled,
                         description="Cancelled orders: their credit exposure released"),
            Subscription(topics.ORDER_CHANGE_ADMITTED, h.on_change_admitted,
                         description="Changes logistics admitted: credit for the difference, "
                                     "prices, terms and date checked again"),
            Subscription(topics.ORDER_CHANGE_REJECTED, h.on_change_rejected,
                         description="Changes refused after review applied them: undone"),
            Subscription(topics.CUSTOMER_UPDATED, h.on_customer_updated,
                         description="Credit profiles: limit, receivables, overdue, blocked, terms"),
            Subscription(topics.PRODUCT_UPDATED, h.on_product_updated,
                         description="The price list unit prices are checked against"),
            Subscription(topics.INVOICE_ISSUED, h.on_invoice_issued,
                         description="Invoices: approved-not-invoiced becomes receivable"),
            Subscription(topics.PAYMENT_RECEIVED, h.on_payment_received,
                         description="Payments: reduce receivables, release prepaid orders"),
        ],
        routers=lambda ctx: [create_router(ctx, chosen)],
    )
