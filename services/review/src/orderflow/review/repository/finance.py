"""Invoices and payments finance sent, each recorded once with what review made of it."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.events import InvoiceIssued, PaymentReceived
from orderflow.review.domain import ZERO
from orderflow.review.repository.tables import Rows, invoices, payments


class FinanceRows(Rows):
    """Invoices and payments."""

    async def record_invoice(self, invoice: InvoiceIssued) -> bool:
        """Record an invoice once; False if finance already sent this invoice id."""
        inserted = (await self.session.execute(
            pg_insert(invoices).values(invoice_id=invoice.invoice_id,
                                       customer_id=invoice.customer_id, order_id=invoice.order_id,
                                       amount=invoice.amount, to_receivables=ZERO,
                                       moved_from_approved=ZERO)
            .on_conflict_do_nothing().returning(invoices.c.invoice_id)
        )).first()
        return inserted is not None

    async def settle_invoice(self, invoice_id: str, to_receivables: Decimal,
                             moved: Decimal) -> None:
        await self.session.execute(invoices.update().where(invoices.c.invoice_id == invoice_id)
                                   .values(to_receivables=to_receivables, moved_from_approved=moved))

    async def record_payment(self, payment: PaymentReceived) -> bool:
        """Record a payment once; False if finance already sent this payment id."""
        inserted = (await self.session.execute(
            pg_insert(payments).values(payment_id=payment.payment_id,
                                       customer_id=payment.customer_id, order_id=payment.order_id,
                                       amount=payment.amount, applied_as="pending")
            .on_conflict_do_nothing().returning(payments.c.payment_id)
        )).first()
        return inserted is not None

    async def settle_payment(self, payment_id: str, applied_as: str) -> None:
        await self.session.execute(payments.update().where(payments.c.payment_id == payment_id)
                                   .values(applied_as=applied_as))
