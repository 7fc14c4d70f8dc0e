"""Each order's state as notify keeps it (``notify_orders``): read for a run, locked, and written
back as the run's events left it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from orderflow.notify.domain import Contact, OrderRecord
from orderflow.notify.repository.tables import Rows, json_text
from orderflow.runtime.sqlalchemy_bridge import Statement

# the orders a run saves, created when missing (as the per-event upsert would), in id order
_CREATE_ORDERS = Statement(
    "INSERT INTO notify_orders (order_id) SELECT o FROM unnest(CAST(:ids AS text[])) AS o "
    "ORDER BY o ON CONFLICT (order_id) DO NOTHING RETURNING order_id")
# every order of a run, locked in the order of its id (replicas cannot deadlock crosswise)
_LOCK_ORDERS = Statement(
    "SELECT order_id, channel, external_id, customer_id, customer_name, email, phone, facts, "
    "shipments, review_notice_sent FROM notify_orders "
    "WHERE order_id = ANY(CAST(:ids AS text[])) ORDER BY order_id FOR UPDATE")
# the orders' state as the run's events left it (what the per-event upserts and updates would)
_SAVE_ORDERS = Statement(
    "UPDATE notify_orders o SET channel = u.channel, external_id = u.external_id, "
    "customer_id = u.customer_id, customer_name = u.customer_name, email = u.email, "
    "phone = u.phone, facts = CAST(u.facts AS jsonb), shipments = CAST(u.shipments AS jsonb), "
    "review_notice_sent = u.review_notice_sent, updated_at = now() "
    "FROM unnest(CAST(:ids AS text[]), CAST(:channels AS text[]), CAST(:external_ids AS text[]), "
    "CAST(:customer_ids AS text[]), CAST(:names AS text[]), CAST(:emails AS text[]), "
    "CAST(:phones AS text[]), CAST(:facts AS text[]), CAST(:shipments AS text[]), "
    "CAST(:reviews AS boolean[])) AS u(order_id, channel, external_id, customer_id, "
    "customer_name, email, phone, facts, shipments, review_notice_sent) "
    "WHERE o.order_id = u.order_id")


class OrderRows(Rows):
    """The orders' rows."""

    async def create_orders(self, order_ids: Iterable[str]) -> set[str]:
        """Create the rows of these orders that are missing (empty, in id order); the ids
        created."""
        wanted = sorted(set(order_ids))
        if not wanted:
            return set()
        return {r[0] for r in await _CREATE_ORDERS.fetch(self.session, {"ids": wanted})}

    async def lock_orders(self, order_ids: Iterable[str]) -> dict[str, OrderRecord]:
        """The orders' rows, locked in the order of their ids."""
        wanted = sorted(set(order_ids))
        if not wanted:
            return {}
        rows = await _LOCK_ORDERS.fetch(self.session, {"ids": wanted})
        return {order_id: OrderRecord(
            order_id, channel, external_id, customer_id, Contact(customer_name, email, phone),
            dict(facts) if facts is not None else None, dict(shipments), review_notice_sent)
            for (order_id, channel, external_id, customer_id, customer_name, email, phone, facts,
                 shipments, review_notice_sent) in rows}

    async def save_orders(self, records: Sequence[OrderRecord]) -> None:
        """Write the orders' state (rows locked by ``lock_orders`` in this transaction)."""
        if not records:
            return
        await _SAVE_ORDERS.run(self.session, {
            "ids": [r.order_id for r in records],
            "channels": [r.channel for r in records],
            "external_ids": [r.external_id for r in records],
            "customer_ids": [r.customer_id for r in records],
            "names": [r.contact.name for r in records],
            "emails": [r.contact.email for r in records],
            "phones": [r.contact.phone for r in records],
            "facts": [None if r.facts is None else json_text(r.facts) for r in records],
            "shipments": [json_text(r.shipments) for r in records],
            "reviews": [r.review_notice_sent for r in records],
        })
