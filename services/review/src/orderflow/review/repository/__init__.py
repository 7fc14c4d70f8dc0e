"""Review's repository: SQL only, by table group.

- ``tables``: the tables;
- ``accounts``: credit accounts, promotions' uses, the price list;
- ``orders``: the orders review decided, the decision audit, cancellations, changes;
- ``finance``: invoices and payments.

Every change to a customer's credit position happens with that customer's
``review_credit_accounts`` row locked (``SELECT ... FOR UPDATE``), and an order's row is always
locked after its customer's, so consumers, replicas and the HTTP API serialise on one customer
without deadlocking."""

from __future__ import annotations

from orderflow.review.repository.finance import FinanceRows
from orderflow.review.repository.orders import ChangeRecord, OrderRows


class ReviewRepository(OrderRows, FinanceRows):
    """Every table of review, in the session's transaction."""


__all__ = ["ChangeRecord", "ReviewRepository"]
