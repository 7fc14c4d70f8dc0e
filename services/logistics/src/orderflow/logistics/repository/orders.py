"""The order records (``logistics_orders``): one row per order logistics heard of, whose row lock
arbitrates dispatch, cancel and change; the order's content as logistics keeps it, the pending
change and a reservation parked while it is pending."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import StockReserved
from orderflow.contracts.order import CanonicalOrder
from orderflow.logistics.domain import OrderContent, OrderLock
from orderflow.logistics.repository.tables import orders
from orderflow.runtime.sqlalchemy_bridge import Statement

# one statement per table whatever the number of orders, run on asyncpg directly (``Statement``);
# rows locked in sorted order (byte order: COLLATE "C" in SQL and Python's sort agree), so
# replicas handling overlapping orders cannot deadlock crosswise. An order's content is kept the
# first time something brings it (a reservation), until a settled change replaces it.
_ENSURE = Statement(
    "INSERT INTO logistics_orders (order_id, status, order_json, customer_id) "
    "SELECT order_id, 'open', order_json, customer_id FROM unnest(CAST(:ids AS text[]), "
    "CAST(:orders AS jsonb[]), CAST(:customer_ids AS text[])) WITH ORDINALITY "
    "AS o(order_id, order_json, customer_id, n) ORDER BY n "
    "ON CONFLICT (order_id) DO UPDATE SET order_json = excluded.order_json, "
    "customer_id = excluded.customer_id, updated_at = now() "
    "WHERE logistics_orders.order_json IS NULL AND excluded.order_json IS NOT NULL")
# the row's small columns; its JSON only by ``contents`` (a JSON column cleared by an update is
# the JSON null: none, as SQL's NULL)
_LOCK = Statement(
    "SELECT order_id, status, CAST(order_json ->> 'revision' AS integer) AS kept_revision, "
    "revision, pending_change_id, NULLIF(parked_reservation, 'null') IS NOT NULL AS parked, "
    "parked_event_id FROM logistics_orders WHERE order_id = ANY(CAST(:ids AS text[])) "
    "ORDER BY order_id COLLATE \"C\" FOR UPDATE")
_CONTENTS = Statement(
    "SELECT order_id, CAST(NULLIF(order_json, 'null') AS text), "
    "CAST(NULLIF(parked_reservation, 'null') AS text) "
    "FROM logistics_orders WHERE order_id = ANY(CAST(:ids AS text[]))")
_PARK = Statement(
    "UPDATE logistics_orders AS t SET parked_reservation = p.reserved, "
    "parked_event_id = p.event_id, updated_at = now() FROM unnest(CAST(:ids AS text[]), "
    "CAST(:reserved AS jsonb[]), CAST(:event_ids AS text[])) AS p(order_id, reserved, event_id) "
    "WHERE t.order_id = p.order_id")


class OrderRecords:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, brought: Sequence[tuple[str, CanonicalOrder | None]],
                   ) -> dict[str, OrderLock]:
        """The records of these orders (order id, the content the first event of the order
        brings, None when it brings none), created if new and their content kept if they had
        none, each locked FOR UPDATE until the transaction ends: a reservation, a cancel and a
        change of one order are decided one after the other, whichever replica handles them.
        Two round trips."""
        first: dict[str, CanonicalOrder | None] = {}
        for order_id, order in brought:
            if first.get(order_id) is None:
                first[order_id] = order
        ids = sorted(first)
        await _ENSURE.run(self.session, {
            "ids": ids,
            "orders": [o.model_dump_json() if (o := first[i]) is not None else None for i in ids],
            "customer_ids": [o.customer.id if (o := first[i]) is not None else None
                             for i in ids]})
        rows = await _LOCK.fetch(self.session, {"ids": ids})
        return {r[0]: OrderLock(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}

    async def contents(self, order_ids: Iterable[str]) -> dict[str, OrderContent]:
        """The orders' JSON as their records keep it (the caller holds their locks)."""
        rows = await _CONTENTS.fetch(self.session, {"ids": sorted(set(order_ids))})
        return {order_id: OrderContent(
            CanonicalOrder.model_validate(json.loads(order)) if order is not None else None,
            StockReserved.model_validate(json.loads(parked)) if parked is not None else None)
            for order_id, order, parked in rows}

    async def park(self, parked: Sequence[tuple[str, StockReserved, str]]) -> None:
        """Park a reservation on each of these orders (each once): (order id, the reservation,
        its event id)."""
        if parked:
            await _PARK.run(self.session, {
                "ids": [p[0] for p in parked], "reserved": [p[1].model_dump_json() for p in parked],
                "event_ids": [p[2] for p in parked]})

    async def mark_change_pending(self, order_id: str, change_id: str, revision: int) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            pending_change_id=change_id, pending_revision=revision, updated_at=sa.func.now()))

    async def settle_change(self, order_id: str, order: CanonicalOrder | None) -> None:
        """The pending change is settled: applied (``order``, its new content and revision) or
        refused (None); the parked reservation is cleared (the caller dispatched it or not)."""
        values: dict[str, Any] = {"pending_change_id": None, "pending_revision": None,
                                  "parked_reservation": None, "parked_event_id": None,
                                  "updated_at": sa.func.now()}
        if order is not None:
            values.update(order_json=order.model_dump(mode="json"), customer_id=order.customer.id,
                          revision=order.revision)
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(**values))

    async def mark_cancelled(self, order_id: str, reason: str, requested_by: str) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            status="cancelled", cancel_reason=reason, cancelled_by=requested_by,
            cancelled_at=sa.func.now(), updated_at=sa.func.now()))
