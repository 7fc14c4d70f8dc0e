"""The orders inventory holds stock for: their lines (ordered and still short), holds, tombstones
of cancelled orders, early revisions, returns.

Everything about one order (its approval, cancellation, changes) runs under the order's key lock
(``lock_order_keys``), whichever topic and replica it comes from; an order's row is locked before
its holds and stock rows. Lookups of several orders go by the primary key, one per order
(LATERAL ... OFFSET 0), whatever the statistics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.order import CanonicalOrder
from orderflow.inventory.domain import (
    ApprovalContext,
    FirstAttempt,
    OrderRecord,
    Pick,
    WaitingOrder,
)
from orderflow.inventory.repository.stock import StockRows
from orderflow.inventory.repository.tables import (
    cancelled_orders,
    order_lines,
    order_revisions,
    orders,
    reservations,
    returns,
)
from orderflow.runtime.sqlalchemy_bridge import Statement

_B = sa.bindparam
_SET_SHORT = order_lines.update().where(order_lines.c.order_id == _B("o_id")).values(
    short=sa.func.coalesce(sa.cast(_B("shorts", type_=JSONB).op("->>")(order_lines.c.sku),
                                   sa.Integer), 0))
_MARK_RESERVED = orders.update().where(orders.c.order_id == _B("o_id")).values(
    status="reserved", reserved_at=_B("v_reserved_at"), expires_at=_B("v_expires_at"),
    updated_at=sa.func.now())

# every key, in one sorted order (the caller sorts)
_LOCK_ORDER_KEYS = Statement("""
SELECT count(pg_advisory_xact_lock(hashtextextended('inventory-order:' || k.o_id, 0)))
FROM (SELECT o_id FROM unnest(CAST(:o_ids AS text[])) WITH ORDINALITY AS t(o_id, n)
      ORDER BY n) AS k
""")
# per order: cancelled here, its early revision, already known (read under the keys' locks)
_APPROVAL_CONTEXTS = Statement("""
SELECT k.o_id AS order_id,
       EXISTS (SELECT 1 FROM inventory_cancelled_orders AS c WHERE c.order_id = k.o_id)
           AS cancelled,
       (SELECT CAST(r.order_json AS text) FROM inventory_order_revisions AS r
        WHERE r.order_id = k.o_id) AS early,
       EXISTS (SELECT 1 FROM inventory_orders AS o WHERE o.order_id = k.o_id) AS known
FROM unnest(CAST(:o_ids AS text[])) AS k(o_id)
""")
# new orders as their first attempt left them (status, stamps, each line's shortfall), in order
_ADD_ORDERS = Statement("""
WITH new_orders AS (
    INSERT INTO inventory_orders (order_id, status, priority, destination_province, order_json,
                                  filled_first_attempt, backordered_at, reserved_at, expires_at)
    SELECT o_id, status, priority, province, CAST(order_json AS jsonb), first_attempt,
           backordered_at, reserved_at, expires_at
    FROM unnest(CAST(:o_ids AS text[]), CAST(:statuses AS text[]), CAST(:priorities AS text[]),
                CAST(:provinces AS text[]), CAST(:jsons AS text[]), CAST(:firsts AS boolean[]),
                CAST(:backordered_ats AS timestamptz[]), CAST(:reserved_ats AS timestamptz[]),
                CAST(:expires_ats AS timestamptz[]))
        WITH ORDINALITY AS t(o_id, status, priority, province, order_json, first_attempt,
                             backordered_at, reserved_at, expires_at, n)
    ORDER BY n
)
INSERT INTO inventory_order_lines (order_id, sku, ordered, short)
SELECT * FROM unnest(CAST(:l_o_ids AS text[]), CAST(:l_skus AS text[]),
                     CAST(:l_ordered AS integer[]), CAST(:l_short AS integer[]))
""")
_LOCK_ORDERS = Statement("""
SELECT o.order_id, o.status, o.priority, o.destination_province,
       CAST(o.order_json AS text) AS order_json, o.filled_first_attempt
FROM (SELECT id FROM unnest(CAST(:o_ids AS text[])) AS u(id) GROUP BY id ORDER BY id COLLATE "C") AS k
CROSS JOIN LATERAL (
    SELECT * FROM inventory_orders AS x WHERE x.order_id = k.id OFFSET 0) AS o
ORDER BY o.order_id COLLATE "C" FOR UPDATE OF o
""")
_LINES_OF = Statement("""
SELECT l.order_id, l.sku, l.ordered, l.short
FROM (SELECT id FROM unnest(CAST(:o_ids AS text[])) AS u(id) GROUP BY id) AS k
CROSS JOIN LATERAL (
    SELECT * FROM inventory_order_lines AS x WHERE x.order_id = k.id OFFSET 0) AS l
""")
# what orders hold and have not shipped, by warehouse and SKU
_HOLDS_OF = Statement("""
SELECT h.order_id, h.warehouse_id, h.sku, h.quantity
FROM (SELECT id FROM unnest(CAST(:o_ids AS text[])) AS u(id) GROUP BY id) AS k
CROSS JOIN LATERAL (
    SELECT * FROM inventory_reservations AS x WHERE x.order_id = k.id AND x.quantity > 0
    OFFSET 0) AS h
ORDER BY h.order_id, h.warehouse_id, h.sku
""")


class OrderRows(StockRows):
    """Orders, their lines and holds, cancellations, early revisions, returns."""

    async def lock_order_keys(self, order_ids: Iterable[str]) -> None:
        """Serialise everything about these orders (approvals, cancellations, changes) in this
        transaction, in one sorted order: one round trip."""
        keys = sorted(set(order_ids))
        if keys:
            await _LOCK_ORDER_KEYS.run(self.session, {"o_ids": keys})

    async def approval_contexts(self, order_ids: Iterable[str]) -> dict[str, ApprovalContext]:
        """Whether each order was cancelled here, its newer revision if a change came before its
        approval, and whether it is known here (their key locks held): one round trip."""
        keys = sorted(set(order_ids))
        if not keys:
            return {}
        rows = await _APPROVAL_CONTEXTS.fetch(self.session, {"o_ids": keys})
        return {order_id: ApprovalContext(
            bool(cancelled),
            CanonicalOrder.model_validate_json(early) if early is not None else None,
            bool(known)) for order_id, cancelled, early, known in rows}

    async def add_orders(self, attempts: Sequence[FirstAttempt]) -> None:
        """Record newly approved orders (not known here: the caller holds their keys' locks and
        read that) as their first attempt left them, with their lines: one statement. Their
        holds are ``hold``'s."""
        if not attempts:
            return
        lines = [(a.order_id, sku, q, a.short.get(sku, 0))
                 for a in attempts for sku, q in sorted(a.ordered.items())]
        await _ADD_ORDERS.run(self.session, {
            "o_ids": [a.order_id for a in attempts],
            "statuses": ["reserved" if a.reserved_at is not None else "backordered"
                         for a in attempts],
            "priorities": [a.order.priority for a in attempts],
            "provinces": [a.order.shipping_address.province for a in attempts],
            "jsons": [a.order.model_dump_json() for a in attempts],
            "firsts": [a.reserved_at is not None for a in attempts],
            "backordered_ats": [a.backordered_at for a in attempts],
            "reserved_ats": [a.reserved_at for a in attempts],
            "expires_ats": [a.expires_at for a in attempts],
            "l_o_ids": [x[0] for x in lines], "l_skus": [x[1] for x in lines],
            "l_ordered": [x[2] for x in lines], "l_short": [x[3] for x in lines]})

    async def lock_orders(self, order_ids: Iterable[str]) -> dict[str, OrderRecord]:
        """The orders known here, their rows locked in sorted order, with their lines."""
        keys = sorted(set(order_ids))
        if not keys:
            return {}
        rows = await _LOCK_ORDERS.fetch(self.session, {"o_ids": keys})
        if not rows:
            return {}
        ordered: dict[str, dict[str, int]] = {r[0]: {} for r in rows}
        short: dict[str, dict[str, int]] = {r[0]: {} for r in rows}
        for order_id, sku, q, s in await _LINES_OF.fetch(self.session, {"o_ids": list(ordered)}):
            ordered[order_id][sku], short[order_id][sku] = int(q), int(s)
        return {r[0]: OrderRecord(
            order_id=r[0], status=r[1], priority=r[2], destination_province=r[3],
            order=CanonicalOrder.model_validate_json(r[4]), filled_first_attempt=r[5],
            ordered=ordered[r[0]], short=short[r[0]]) for r in rows}

    async def lock_order(self, order_id: str) -> OrderRecord | None:
        return (await self.lock_orders([order_id])).get(order_id)

    async def holds_of(self, order_ids: Iterable[str]) -> dict[str, list[Pick]]:
        """What each order has reserved and not shipped yet (orders holding nothing left out)."""
        keys = sorted(set(order_ids))
        out: dict[str, list[Pick]] = {}
        for order_id, warehouse_id, sku, quantity in (
                await _HOLDS_OF.fetch(self.session, {"o_ids": keys}) if keys else []):
            out.setdefault(order_id, []).append(Pick(warehouse_id, sku, int(quantity)))
        return out

    async def holds(self, order_id: str) -> list[Pick]:
        return (await self.holds_of([order_id])).get(order_id, [])

    async def release_holds(self, order_id: str, reason: str) -> list[Pick]:
        """Give the order's reserved units back to available stock."""
        released = await self.holds(order_id)
        await self.release_picks(order_id, released, reason)  # every held unit: quantity 0
        return released

    async def set_short(self, order_id: str, short: Mapping[str, int]) -> None:
        """Every line's shortfall at once (a line not in ``short`` is short of nothing)."""
        await self.session.execute(_SET_SHORT, {"o_id": order_id, "shorts": dict(short)})

    async def mark_reserved(self, order_id: str, at: datetime, expires: datetime) -> None:
        """A backordered order reserved in full (after its first attempt)."""
        await self.session.execute(_MARK_RESERVED, {"o_id": order_id, "v_reserved_at": at,
                                                    "v_expires_at": expires})

    async def mark_released(self, order_id: str, reason: str) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(status="released", release_reason=reason,
                                           expires_at=None, updated_at=sa.func.now()))

    async def waiting_orders(self, skus: Iterable[str], limit: int) -> list[WaitingOrder]:
        """Backordered orders short of any of ``skus``, locked; the caller puts them in queue
        order (the SQL already returns the head of the queue: rush first, then the oldest)."""
        wanted = sorted(set(skus))
        if not wanted:
            return []
        short_of = (sa.select(order_lines.c.order_id)
                    .where(order_lines.c.sku.in_(wanted), order_lines.c.short > 0))
        rush_first = sa.case((orders.c.priority == "rush", 0), else_=1)
        rows = (await self.session.execute(
            sa.select(orders.c.order_id, orders.c.priority, orders.c.backordered_at,
                      orders.c.sequence)
            .where(orders.c.status == "backordered", orders.c.order_id.in_(short_of))
            .order_by(rush_first, orders.c.backordered_at, orders.c.sequence)
            .limit(limit).with_for_update(of=orders)
        )).all()
        return [WaitingOrder(r.order_id, r.priority, r.backordered_at, r.sequence) for r in rows]

    async def expired_orders(self, now: datetime, limit: int) -> list[str]:
        """Fully reserved orders past their expiry; rows another transaction holds are skipped."""
        rows = (await self.session.execute(
            sa.select(orders.c.order_id)
            .where(orders.c.status == "reserved", orders.c.expires_at <= now)
            .order_by(orders.c.expires_at).limit(limit)
            .with_for_update(skip_locked=True)
        )).scalars()
        return list(rows)

    async def order_view(self, order_id: str) -> dict[str, Any] | None:
        row = (await self.session.execute(
            sa.select(orders.c.order_id, orders.c.status, orders.c.priority,
                      orders.c.filled_first_attempt, orders.c.backordered_at,
                      orders.c.reserved_at, orders.c.expires_at, orders.c.release_reason)
            .where(orders.c.order_id == order_id))).first()
        if row is None:
            return None
        lines = (await self.session.execute(
            sa.select(order_lines.c.sku, order_lines.c.ordered, order_lines.c.short)
            .where(order_lines.c.order_id == order_id).order_by(order_lines.c.sku))).all()
        held = (await self.session.execute(
            sa.select(reservations.c.warehouse_id, reservations.c.sku, reservations.c.quantity,
                      reservations.c.shipped)
            .where(reservations.c.order_id == order_id)
            .order_by(reservations.c.warehouse_id, reservations.c.sku))).all()
        view = dict(row._mapping)
        view["lines"] = [dict(r._mapping) for r in lines]
        view["reservations"] = [dict(r._mapping) for r in held]
        return view

    # -- cancellations, returns, changes --------------------------------------------------------
    async def add_cancelled(self, order_id: str, reason: str) -> bool:
        """Keep the order's tombstone; False when it was already cancelled."""
        row = (await self.session.execute(
            pg_insert(cancelled_orders).values(order_id=order_id, reason=reason)
            .on_conflict_do_nothing().returning(cancelled_orders.c.order_id))).first()
        return row is not None

    async def add_return(self, rma_id: str, order_id: str, warehouse_id: str, restocked: int,
                         scrapped: int) -> bool:
        """Record a received return; False when this RMA was already taken back."""
        row = (await self.session.execute(
            pg_insert(returns).values(rma_id=rma_id, order_id=order_id, warehouse_id=warehouse_id,
                                      restocked=restocked, scrapped=scrapped)
            .on_conflict_do_nothing().returning(returns.c.rma_id))).first()
        return row is not None

    async def save_early_revision(self, order_id: str, order: CanonicalOrder) -> None:
        """A change of an order not approved here yet: kept (the newest) for its approval."""
        stmt = pg_insert(order_revisions).values(order_id=order_id, revision=order.revision,
                                                 order_json=order.model_dump(mode="json"),
                                                 updated_at=sa.func.now())
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[order_revisions.c.order_id],
            where=order_revisions.c.revision < stmt.excluded.revision,
            set_={"revision": stmt.excluded.revision, "order_json": stmt.excluded.order_json,
                  "updated_at": sa.func.now()}))

    async def change_order(self, order_id: str, order: CanonicalOrder,
                           ordered: Mapping[str, int], short: Mapping[str, int]) -> None:
        """The order's new content and lines (a removed line's row goes: 0 units ordered)."""
        await self.session.execute(orders.update().where(orders.c.order_id == order_id).values(
            priority=order.priority, destination_province=order.shipping_address.province,
            order_json=order.model_dump(mode="json"), updated_at=sa.func.now()))
        gone = sorted(sku for sku, q in ordered.items() if q <= 0)
        if gone:
            await self.session.execute(order_lines.delete().where(
                order_lines.c.order_id == order_id, order_lines.c.sku.in_(gone)))
        for sku in sorted(sku for sku, q in ordered.items() if q > 0):
            stmt = pg_insert(order_lines).values(order_id=order_id, sku=sku, ordered=ordered[sku],
                                                 short=short.get(sku, 0))
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=[order_lines.c.order_id, order_lines.c.sku],
                set_={"ordered": stmt.excluded.ordered, "short": stmt.excluded.short}))
