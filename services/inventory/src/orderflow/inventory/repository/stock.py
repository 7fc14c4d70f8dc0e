"""Stock rows, the movement ledger, holds, warehouses and reorder points.

Stock rows are always locked in one sorted order (warehouse, then SKU, byte order: COLLATE "C"
in SQL and Python's sort agree), so two transactions cannot lock them crosswise. A take of units
is conditional: it changes nothing unless every row still has them, so two transactions can
never reserve the same unit. The hot statements run on asyncpg directly (``Statement``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderflow.contracts.events import WarehouseUpdated
from orderflow.inventory.domain import Pick, ShippedLine, StockRow, Warehouse, merge_picks
from orderflow.inventory.repository.tables import (
    Rows,
    movements,
    products,
    reservations,
    stock,
    warehouses,
)
from orderflow.runtime.sqlalchemy_bridge import Statement

_WAREHOUSES = Statement("SELECT warehouse_id, province FROM inventory_warehouses")
_LEDGER = movements.insert()
# every stock row of the SKUs with the SKU's reorder point and low-stock flag
_STOCK_ROWS_SQL = """
SELECT s.warehouse_id, s.sku, s.available, COALESCE(p.reorder_point, 0) AS rp,
       COALESCE(p.low_flagged, false) AS flagged
FROM inventory_stock AS s LEFT JOIN inventory_products AS p ON p.sku = s.sku
WHERE s.sku = ANY(CAST(:skus AS text[]))
"""
_STOCK_ROWS = Statement(_STOCK_ROWS_SQL)
_LOCK_STOCK_ROWS = Statement(_STOCK_ROWS_SQL + """
ORDER BY s.warehouse_id COLLATE "C", s.sku COLLATE "C" FOR UPDATE OF s
""")
# units per stock row, every row locked in sorted order and taken only if every one of them
# still has the units; else nothing changes (the caller rolls back to its savepoint, which lets
# go of the locks)
_TAKE = Statement("""
WITH want AS (
    SELECT * FROM unnest(CAST(:w_ids AS text[]), CAST(:skus AS text[]), CAST(:qtys AS integer[]))
        AS t(warehouse_id, sku, qty)
), locked AS MATERIALIZED (
    SELECT s.warehouse_id, s.sku, s.on_hand - s.reserved >= want.qty AS enough
    FROM inventory_stock AS s
    JOIN want ON want.warehouse_id = s.warehouse_id AND want.sku = s.sku
    ORDER BY s.warehouse_id COLLATE "C", s.sku COLLATE "C"
    FOR UPDATE OF s
), verdict AS MATERIALIZED (
    SELECT count(*) = cardinality(CAST(:skus AS text[])) AND COALESCE(bool_and(enough), false)
        AS ok
    FROM locked
), taken AS (
    UPDATE inventory_stock AS s SET reserved = s.reserved + want.qty, updated_at = now()
    FROM want, verdict
    WHERE verdict.ok AND s.warehouse_id = want.warehouse_id AND s.sku = want.sku
    RETURNING s.sku
)
SELECT verdict.ok, (SELECT count(*) FROM taken) AS rows FROM verdict
""")
# units taken for orders held by them (added to what they hold), and a ledger line per pick, in
# the order given
_HOLD = Statement("""
WITH held AS (
    INSERT INTO inventory_reservations (order_id, warehouse_id, sku, quantity, shipped)
    SELECT o_id, warehouse_id, sku, quantity, 0
    FROM unnest(CAST(:h_o_ids AS text[]), CAST(:h_w_ids AS text[]), CAST(:h_skus AS text[]),
                CAST(:h_qtys AS integer[])) AS t(o_id, warehouse_id, sku, quantity)
    ON CONFLICT (order_id, warehouse_id, sku)
    DO UPDATE SET quantity = inventory_reservations.quantity + excluded.quantity
)
INSERT INTO inventory_movements
    (warehouse_id, sku, kind, on_hand_delta, reserved_delta, order_id, reference)
SELECT warehouse_id, sku, 'reservation', 0, quantity, o_id, ''
FROM unnest(CAST(:m_o_ids AS text[]), CAST(:m_w_ids AS text[]), CAST(:m_skus AS text[]),
            CAST(:m_qtys AS integer[])) WITH ORDINALITY AS t(o_id, warehouse_id, sku, quantity, n)
ORDER BY n
""")
# the stock rows of these SKUs in every warehouse and those the orders hold, locked in sorted
# order (the orders' holds read by the order index, as _LOCK_HOLDS_OF)
_LOCK_STOCK_AHEAD = Statement("""
SELECT 1 FROM inventory_stock AS s
WHERE s.sku = ANY(CAST(:skus AS text[]))
   OR s.sku IN (SELECT r.sku FROM unnest(CAST(:o_ids AS text[])) AS k(id) CROSS JOIN LATERAL (
                    SELECT h.sku FROM inventory_reservations AS h WHERE h.order_id = k.id
                    OFFSET 0) AS r)
ORDER BY s.warehouse_id COLLATE "C", s.sku COLLATE "C" FOR UPDATE OF s
""")
# the orders' rows, the holds of those orders and the shipped lines' stock rows, each locked in
# one sorted order (the order rows first, as every path that moves holds takes them)
_LOCK_ORDER_STATUSES = Statement("""
SELECT order_id, status FROM inventory_orders WHERE order_id = ANY(CAST(:o_ids AS text[]))
ORDER BY order_id COLLATE "C" FOR UPDATE
""")
# an order's holds by the primary key, one lookup per order (LATERAL ... OFFSET 0), whatever the
# statistics: ``order_id = ANY(...)`` was planned as a scan of the whole table while it had grown
# since its last ANALYZE (a fresh database, a burst). The lock goes into each lookup: the orders
# taken in sorted order and each one's holds sorted, the rows are locked in the sorted order of
# every other path
_LOCK_HOLDS_OF = Statement("""
SELECT r.order_id, r.warehouse_id, r.sku, r.quantity
FROM (SELECT id FROM unnest(CAST(:o_ids AS text[])) AS u(id) GROUP BY id ORDER BY id COLLATE "C") AS k
CROSS JOIN LATERAL (
    SELECT * FROM inventory_reservations AS h WHERE h.order_id = k.id
    ORDER BY h.warehouse_id COLLATE "C", h.sku COLLATE "C" OFFSET 0) AS r
ORDER BY r.order_id COLLATE "C", r.warehouse_id COLLATE "C", r.sku COLLATE "C" FOR UPDATE OF r
""")
_LOCK_STOCK = Statement("""
SELECT s.warehouse_id, s.sku, s.available
FROM inventory_stock AS s
JOIN unnest(CAST(:w_ids AS text[]), CAST(:skus AS text[])) AS v(warehouse_id, sku)
  ON v.warehouse_id = s.warehouse_id AND v.sku = s.sku
ORDER BY s.warehouse_id COLLATE "C", s.sku COLLATE "C" FOR UPDATE OF s
""")
# what shipped lines move, summed per stock row and per hold, the orders that shipped in full,
# and a ledger line per shipped line in order
_SHIP = Statement("""
WITH stock_moves AS (
    UPDATE inventory_stock AS s
    SET on_hand = s.on_hand - v.qty, reserved = s.reserved - v.from_res, updated_at = now()
    FROM unnest(CAST(:s_w_ids AS text[]), CAST(:s_skus AS text[]), CAST(:s_qtys AS integer[]),
                CAST(:s_from_res AS integer[])) AS v(warehouse_id, sku, qty, from_res)
    WHERE s.warehouse_id = v.warehouse_id AND s.sku = v.sku
), hold_moves AS (
    UPDATE inventory_reservations AS r
    SET quantity = r.quantity - v.from_res, shipped = r.shipped + v.from_res
    FROM unnest(CAST(:h_o_ids AS text[]), CAST(:h_w_ids AS text[]), CAST(:h_skus AS text[]),
                CAST(:h_from_res AS integer[])) AS v(order_id, warehouse_id, sku, from_res)
    WHERE r.order_id = v.order_id AND r.warehouse_id = v.warehouse_id AND r.sku = v.sku
), shipped_orders AS (
    UPDATE inventory_orders SET status = 'shipped', expires_at = NULL, updated_at = now()
    WHERE order_id = ANY(CAST(:shipped AS text[]))
)
INSERT INTO inventory_movements
    (warehouse_id, sku, kind, on_hand_delta, reserved_delta, order_id, reference)
SELECT warehouse_id, sku, 'shipment', -qty, -from_res, order_id, reference
FROM unnest(CAST(:m_w_ids AS text[]), CAST(:m_skus AS text[]), CAST(:m_qtys AS integer[]),
            CAST(:m_from_res AS integer[]), CAST(:m_o_ids AS text[]), CAST(:m_refs AS text[]))
    WITH ORDINALITY AS t(warehouse_id, sku, qty, from_res, order_id, reference, n)
ORDER BY n
""")
# low-stock flags set as given; the SKUs whose flag this flipped
_SET_LOW_FLAGS = Statement("""
UPDATE inventory_products AS p SET low_flagged = v.flagged
FROM unnest(CAST(:skus AS text[]), CAST(:flags AS boolean[])) AS v(sku, flagged)
WHERE p.sku = v.sku AND p.low_flagged <> v.flagged
RETURNING p.sku
""")


class StockRows(Rows):
    """Stock rows, holds, the ledger, warehouses and reorder points."""

    # -- master data --------------------------------------------------------------------------
    async def upsert_warehouse(self, w: WarehouseUpdated) -> None:
        values = {"warehouse_id": w.warehouse_id, "name": w.name, "province": w.province,
                  "city": w.city}
        stmt = pg_insert(warehouses).values(**values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[warehouses.c.warehouse_id],
            set_={"name": stmt.excluded.name, "province": stmt.excluded.province,
                  "city": stmt.excluded.city, "updated_at": sa.func.now()},
        ))

    async def upsert_product(self, sku: str, reorder_point: int) -> int | None:
        """Record the SKU's reorder point; returns the previous one (None for a new SKU)."""
        previous = (await self.session.execute(
            sa.select(products.c.reorder_point).where(products.c.sku == sku).with_for_update()
        )).scalar_one_or_none()
        stmt = pg_insert(products).values(sku=sku, reorder_point=reorder_point, low_flagged=False)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[products.c.sku],
            set_={"reorder_point": stmt.excluded.reorder_point, "updated_at": sa.func.now()},
        ))
        return None if previous is None else int(previous)

    async def warehouses(self) -> list[Warehouse]:
        return [Warehouse(r[0], r[1]) for r in await _WAREHOUSES.fetch(self.session)]

    # -- reading and locking stock ------------------------------------------------------------
    async def stock_rows(self, skus: Iterable[str]) -> list[StockRow]:
        """Every stock row of ``skus`` (none available included) with the SKU's reorder point
        and low-stock flag, as committed now."""
        return await self._stock_rows(_STOCK_ROWS, skus)

    async def lock_stock_rows(self, skus: Iterable[str]) -> list[StockRow]:
        """``stock_rows``, the rows locked (in sorted order) until the transaction ends."""
        return await self._stock_rows(_LOCK_STOCK_ROWS, skus)

    async def _stock_rows(self, statement: Statement, skus: Iterable[str]) -> list[StockRow]:
        wanted = sorted(set(skus))
        if not wanted:
            return []
        rows = await statement.fetch(self.session, {"skus": wanted})
        return [StockRow(r[0], r[1], int(r[2]), int(r[3]), bool(r[4])) for r in rows]

    async def lock_stock_ahead(self, skus: Iterable[str], holds_of: Iterable[str]) -> None:
        """Lock, in the one sorted order every statement here takes them, the stock rows of these
        SKUs in every warehouse and those the orders ``holds_of`` hold: all a batch's runs may
        touch, taken before the first, so two batches cannot lock them crosswise."""
        skus, holders = sorted(set(skus)), sorted(set(holds_of))
        if skus or holders:
            await _LOCK_STOCK_AHEAD.run(self.session, {"skus": skus, "o_ids": holders})

    async def free_units(self, warehouse_id: str, sku: str) -> int:
        value = (await self.session.execute(
            sa.select(stock.c.available).where(stock.c.warehouse_id == warehouse_id,
                                               stock.c.sku == sku))).scalar_one_or_none()
        return int(value or 0)

    async def stock_of(self, sku: str) -> list[dict[str, Any]]:
        rows = (await self.session.execute(
            sa.select(stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved, stock.c.available)
            .where(stock.c.sku == sku).order_by(stock.c.warehouse_id))).all()
        return [dict(r._mapping) for r in rows]

    # -- reserving ----------------------------------------------------------------------------
    async def take(self, units: Mapping[tuple[str, str], int]) -> bool:
        """Reserve ``units`` per (warehouse, SKU), all or none, in one statement: every row
        locked in sorted order and taken only if all still have the units. In a savepoint, so
        that rows locked by a take that failed (a concurrent writer took units meanwhile) are
        let go at once. False: nothing changed."""
        if not units:
            return True
        keys = sorted(units)
        savepoint = await self.session.begin_nested()
        try:
            (row,) = await _TAKE.fetch(self.session, {
                "w_ids": [w for w, _ in keys], "skus": [s for _, s in keys],
                "qtys": [units[k] for k in keys]})
        except BaseException:
            await savepoint.rollback()
            raise
        if not row["ok"]:
            await savepoint.rollback()
            return False
        await savepoint.commit()
        return True

    async def hold(self, holds: Sequence[tuple[str, Pick]]) -> None:
        """Units ``take`` took, held by their orders, as (order id, pick): added to what each
        order holds, with a ledger line per pick in the order given. One statement."""
        if not holds:
            return
        by_order: dict[str, list[Pick]] = defaultdict(list)
        for order_id, pick in holds:
            by_order[order_id].append(pick)
        held = [(order_id, p) for order_id, picks in by_order.items() for p in merge_picks(picks)]
        await _HOLD.run(self.session, {
            "h_o_ids": [o for o, _ in held], "h_w_ids": [p.warehouse_id for _, p in held],
            "h_skus": [p.sku for _, p in held], "h_qtys": [p.quantity for _, p in held],
            "m_o_ids": [o for o, _ in holds], "m_w_ids": [p.warehouse_id for _, p in holds],
            "m_skus": [p.sku for _, p in holds], "m_qtys": [p.quantity for _, p in holds]})

    async def release_picks(self, order_id: str, picks: Sequence[Pick], reason: str) -> None:
        """Give back some of the order's reserved units (a change to fewer units, a release)."""
        for pick in sorted(picks):  # the same lock order as every other path
            await self.session.execute(
                stock.update()
                .where(stock.c.warehouse_id == pick.warehouse_id, stock.c.sku == pick.sku)
                .values(reserved=stock.c.reserved - pick.quantity, updated_at=sa.func.now()))
            await self.session.execute(
                reservations.update()
                .where(reservations.c.order_id == order_id,
                       reservations.c.warehouse_id == pick.warehouse_id,
                       reservations.c.sku == pick.sku)
                .values(quantity=reservations.c.quantity - pick.quantity))
            await self._ledger(pick.warehouse_id, pick.sku, "release", 0, -pick.quantity,
                               order_id=order_id, reference=reason)

    # -- receipts and adjustments -------------------------------------------------------------
    async def _ledger(self, warehouse_id: str, sku: str, kind: str, on_hand_delta: int,
                      reserved_delta: int, *, order_id: str | None = None,
                      reference: str = "") -> None:
        await self.session.execute(_LEDGER, {
            "warehouse_id": warehouse_id, "sku": sku, "kind": kind, "on_hand_delta": on_hand_delta,
            "reserved_delta": reserved_delta, "order_id": order_id, "reference": reference[:500]})

    async def receive(self, warehouse_id: str, sku: str, quantity: int, reference: str) -> None:
        stmt = pg_insert(stock).values(warehouse_id=warehouse_id, sku=sku, on_hand=quantity,
                                       reserved=0)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[stock.c.warehouse_id, stock.c.sku],
            set_={"on_hand": stock.c.on_hand + quantity, "updated_at": sa.func.now()},
        ))
        await self._ledger(warehouse_id, sku, "receipt", quantity, 0, reference=reference)

    async def adjust(self, warehouse_id: str, sku: str, delta: int, reason: str) -> int | None:
        """Change on-hand by ``delta``; a decrease may only take free (unreserved) units.
        Returns the new on-hand, or None if there are not enough free units."""
        if delta >= 0:
            stmt = pg_insert(stock).values(warehouse_id=warehouse_id, sku=sku, on_hand=delta,
                                           reserved=0)
            new = (await self.session.execute(stmt.on_conflict_do_update(
                index_elements=[stock.c.warehouse_id, stock.c.sku],
                set_={"on_hand": stock.c.on_hand + delta, "updated_at": sa.func.now()},
            ).returning(stock.c.on_hand))).scalar_one()
        else:
            new = (await self.session.execute(
                stock.update()
                .where(stock.c.warehouse_id == warehouse_id, stock.c.sku == sku,
                       stock.c.on_hand - stock.c.reserved >= -delta)
                .values(on_hand=stock.c.on_hand + delta, updated_at=sa.func.now())
                .returning(stock.c.on_hand)
            )).scalar_one_or_none()
            if new is None:
                return None
        await self._ledger(warehouse_id, sku, "adjustment", delta, 0, reference=reason)
        return int(new)

    # -- shipping -----------------------------------------------------------------------------
    async def lock_for_shipping(self, order_ids: Iterable[str],
                                stock_rows: Iterable[tuple[str, str]]) -> tuple[
            dict[str, str], dict[tuple[str, str, str], int], dict[tuple[str, str], int]]:
        """For a run of shipments: the orders' statuses, every hold of those orders and the
        available units of the stock rows named, each locked (in that order, each sorted)."""
        ids = sorted(set(order_ids))
        statuses: dict[str, str] = {}
        holds: dict[tuple[str, str, str], int] = {}
        if ids:
            for order_id, status in await _LOCK_ORDER_STATUSES.fetch(self.session, {"o_ids": ids}):
                statuses[order_id] = status
            for order_id, warehouse_id, sku, quantity in await _LOCK_HOLDS_OF.fetch(
                    self.session, {"o_ids": ids}):
                holds[(order_id, warehouse_id, sku)] = int(quantity)
        pairs = sorted(set(stock_rows))
        free: dict[tuple[str, str], int] = {}
        if pairs:
            for warehouse_id, sku, available in await _LOCK_STOCK.fetch(self.session, {
                    "w_ids": [w for w, _ in pairs], "skus": [sku for _, sku in pairs]}):
                free[(warehouse_id, sku)] = int(available)
        return statuses, holds, free

    async def ship(self, lines: Sequence[ShippedLine], shipped_orders: Sequence[str]) -> None:
        """Carry out shipped lines as they are planned (``domain.plan_shipments``, on rows
        ``lock_for_shipping`` locked): each line's units off the stock, its ``from_reservation``
        off its order's hold (summed per stock row and per hold), a ledger line each in order,
        and ``shipped_orders`` shipped. One statement."""
        if not lines and not shipped_orders:
            return
        stock_moves: dict[tuple[str, str], list[int]] = {}
        hold_moves: dict[tuple[str, str, str], int] = defaultdict(int)
        for line in lines:
            move = stock_moves.setdefault((line.warehouse_id, line.sku), [0, 0])
            move[0] += line.quantity
            move[1] += line.from_reservation
            if line.from_reservation > 0:
                hold_moves[(line.order_id, line.warehouse_id, line.sku)] += line.from_reservation
        s_keys, h_keys = sorted(stock_moves), sorted(hold_moves)
        await _SHIP.run(self.session, {
            "s_w_ids": [w for w, _ in s_keys], "s_skus": [sku for _, sku in s_keys],
            "s_qtys": [stock_moves[k][0] for k in s_keys],
            "s_from_res": [stock_moves[k][1] for k in s_keys],
            "h_o_ids": [k[0] for k in h_keys], "h_w_ids": [k[1] for k in h_keys],
            "h_skus": [k[2] for k in h_keys], "h_from_res": [hold_moves[k] for k in h_keys],
            "shipped": list(shipped_orders),
            "m_w_ids": [x.warehouse_id for x in lines], "m_skus": [x.sku for x in lines],
            "m_qtys": [x.quantity for x in lines],
            "m_from_res": [x.from_reservation for x in lines],
            "m_o_ids": [x.order_id for x in lines], "m_refs": [x.reference[:500] for x in lines]})

    # -- low stock ----------------------------------------------------------------------------
    async def set_low_flags(self, flags: Mapping[str, bool]) -> set[str]:
        """Set each SKU's low-stock flag; the SKUs whose flag this changed (the others had that
        value already: another transaction crossed first)."""
        if not flags:
            return set()
        skus = sorted(flags)
        rows = await _SET_LOW_FLAGS.fetch(self.session, {
            "skus": skus, "flags": [flags[s] for s in skus]})
        return {str(r[0]) for r in rows}
