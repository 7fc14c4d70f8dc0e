"""Inventory's tables and queries.

Stock is a row per (warehouse, SKU) with ``on_hand`` and ``reserved`` (``available`` is a generated
column, ``on_hand - reserved``); the database refuses a negative figure or ``reserved > on_hand``
(CHECK constraints). A reservation is a conditional UPDATE that only succeeds while enough units
are available, so two transactions can never reserve the same unit. Every change of a stock row
writes a row of the movement ledger (``inventory_movements``) in the same transaction, so each unit
is accounted for by a receipt, an adjustment, a reservation, a release or a shipment.
``check_invariants`` proves it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import WarehouseUpdated
from orderflow.contracts.order import CanonicalOrder
from orderflow.inventory.domain import Pick, WaitingOrder, Warehouse, merge_picks
from orderflow.runtime.sqlalchemy_bridge import Statement

metadata = sa.MetaData()
warehouses = sa.Table(
    "inventory_warehouses", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("province", sa.Text, nullable=False),
    sa.Column("city", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
products = sa.Table(
    "inventory_products", metadata,
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("reorder_point", sa.Integer, nullable=False),
    sa.Column("low_flagged", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
stock = sa.Table(
    "inventory_stock", metadata,
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("on_hand", sa.Integer, nullable=False),
    sa.Column("reserved", sa.Integer, nullable=False),
    sa.Column("available", sa.Integer, sa.Computed("on_hand - reserved")),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
movements = sa.Table(
    "inventory_movements", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("sku", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("on_hand_delta", sa.Integer, nullable=False),
    sa.Column("reserved_delta", sa.Integer, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("reference", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True)),
)
orders = sa.Table(
    "inventory_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("sequence", sa.BigInteger),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("priority", sa.Text, nullable=False),
    sa.Column("destination_province", sa.Text, nullable=False),
    sa.Column("order_json", sa.JSON, nullable=False),
    sa.Column("filled_first_attempt", sa.Boolean),
    sa.Column("backordered_at", sa.DateTime(timezone=True)),
    sa.Column("reserved_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("release_reason", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
order_lines = sa.Table(
    "inventory_order_lines", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("ordered", sa.Integer, nullable=False),
    sa.Column("short", sa.Integer, nullable=False),
)
cancelled_orders = sa.Table(
    "inventory_cancelled_orders", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("cancelled_at", sa.DateTime(timezone=True)),
)
returns = sa.Table(
    "inventory_returns", metadata,
    sa.Column("rma_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("warehouse_id", sa.Text, nullable=False),
    sa.Column("restocked", sa.Integer, nullable=False),
    sa.Column("scrapped", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)
order_revisions = sa.Table(
    "inventory_order_revisions", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("order_json", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)
reservations = sa.Table(
    "inventory_reservations", metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("warehouse_id", sa.Text, primary_key=True),
    sa.Column("sku", sa.Text, primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("shipped", sa.Integer, nullable=False),
)


# -- the statements of the reservation and dispatch paths, built once (bind parameters only) --
_B = sa.bindparam
_SKUS = _B("skus", type_=ARRAY(sa.Text))
_LOCK_ORDER_KEY = sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(
    sa.literal("inventory-order:") + _B("o_id", type_=sa.Text), 0)))
_APPROVAL_CONTEXT = sa.select(
    sa.exists().where(cancelled_orders.c.order_id == _B("o_id")).label("cancelled"),
    sa.select(order_revisions.c.order_json).where(order_revisions.c.order_id == _B("o_id"))
    .scalar_subquery().label("early"))
_WAREHOUSES = Statement("SELECT warehouse_id, province FROM inventory_warehouses")
_AVAILABILITY = sa.select(stock.c.warehouse_id, stock.c.sku, stock.c.available).where(
    stock.c.sku == sa.any_(_SKUS), stock.c.available > 0)
_TAKE = (stock.update()
         .where(stock.c.warehouse_id == _B("w_id"), stock.c.sku == _B("s_sku"),
                stock.c.on_hand - stock.c.reserved >= _B("qty", type_=sa.Integer))
         .values(reserved=stock.c.reserved + _B("qty", type_=sa.Integer), updated_at=sa.func.now())
         .returning(stock.c.sku))
_HOLD_INSERT = pg_insert(reservations)
_HOLD = _HOLD_INSERT.on_conflict_do_update(
    index_elements=[reservations.c.order_id, reservations.c.warehouse_id, reservations.c.sku],
    set_={"quantity": reservations.c.quantity + _HOLD_INSERT.excluded.quantity})
_HOLDS = (sa.select(reservations.c.warehouse_id, reservations.c.sku, reservations.c.quantity)
          .where(reservations.c.order_id == _B("o_id"), reservations.c.quantity > 0)
          .order_by(reservations.c.warehouse_id, reservations.c.sku))
_LEDGER = movements.insert()
_SET_SHORT = order_lines.update().where(order_lines.c.order_id == _B("o_id")).values(
    short=sa.func.coalesce(sa.cast(_B("shorts", type_=JSONB).op("->>")(order_lines.c.sku),
                                   sa.Integer), 0))
_STOCK_LEVELS = (
    sa.select(stock.c.sku, sa.func.coalesce(products.c.reorder_point, 0).label("rp"),
              sa.func.coalesce(products.c.low_flagged, False).label("flagged"),
              sa.func.sum(stock.c.available).label("available"))
    .select_from(stock.outerjoin(products, products.c.sku == stock.c.sku))
    .where(stock.c.sku == sa.any_(_SKUS))
    .group_by(stock.c.sku, products.c.reorder_point, products.c.low_flagged))
_ORDER_STATUS = sa.select(orders.c.status).where(orders.c.order_id == _B("o_id")).with_for_update()
# one shipped line, one round trip: the order's hold on it locked, the units taken from the hold
# first and from free stock for the rest (only if there are enough), the hold moved to shipped,
# the ledger line written; no row when the units are not there (nothing changed then)
_SHIP_LINE = sa.text("""
WITH held AS (
    SELECT quantity FROM inventory_reservations
    WHERE order_id = :o_id AND warehouse_id = :w_id AND sku = :s_sku FOR UPDATE
), take AS (
    SELECT LEAST(CAST(:qty AS integer), COALESCE((SELECT quantity FROM held), 0)) AS from_res
), moved AS (
    UPDATE inventory_stock AS s
    SET on_hand = s.on_hand - CAST(:qty AS integer), reserved = s.reserved - take.from_res,
        updated_at = now()
    FROM take
    WHERE s.warehouse_id = :w_id AND s.sku = :s_sku
      AND s.on_hand - s.reserved >= CAST(:qty AS integer) - take.from_res
    RETURNING take.from_res
), released AS (
    UPDATE inventory_reservations AS r
    SET quantity = r.quantity - moved.from_res, shipped = r.shipped + moved.from_res
    FROM moved
    WHERE r.order_id = :o_id AND r.warehouse_id = :w_id AND r.sku = :s_sku AND moved.from_res > 0
), ledger AS (
    INSERT INTO inventory_movements
        (warehouse_id, sku, kind, on_hand_delta, reserved_delta, order_id, reference)
    SELECT :w_id, :s_sku, 'shipment', -CAST(:qty AS integer), -moved.from_res, :o_id, :ref
    FROM moved
)
SELECT from_res FROM moved
""")

# -- the set-based approval path (a run of order.approved events): one statement per step ------
# (these and the dispatch path's run on asyncpg directly: ``Statement``)
# every key of the run, in one sorted order (the same key as _LOCK_ORDER_KEY)
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
# every stock row of the SKUs with the SKU's reorder point and low-stock flag (stock_levels'
# figures are the sums of these rows)
_STOCK_ROWS = Statement("""
SELECT s.warehouse_id, s.sku, s.available, COALESCE(p.reorder_point, 0) AS rp,
       COALESCE(p.low_flagged, false) AS flagged
FROM inventory_stock AS s LEFT JOIN inventory_products AS p ON p.sku = s.sku
WHERE s.sku = ANY(CAST(:skus AS text[]))
""")
# the run's picks summed per stock row: every row locked in one sorted order (the order of
# reserve()'s picks), and taken only if every one of them still has the units; else nothing
# changes (the caller rolls back to its savepoint, which lets go of the locks)
_TAKE_ALL = Statement("""
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
# the run's new orders as they stand after their first attempt (status, stamps, each line's
# shortfall), their holds and the reservations' ledger lines, in the run's order
_WRITE_APPROVALS = Statement("""
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
), new_lines AS (
    INSERT INTO inventory_order_lines (order_id, sku, ordered, short)
    SELECT * FROM unnest(CAST(:l_o_ids AS text[]), CAST(:l_skus AS text[]),
                         CAST(:l_ordered AS integer[]), CAST(:l_short AS integer[]))
), new_holds AS (
    INSERT INTO inventory_reservations (order_id, warehouse_id, sku, quantity, shipped)
    SELECT o_id, warehouse_id, sku, quantity, 0
    FROM unnest(CAST(:h_o_ids AS text[]), CAST(:h_w_ids AS text[]), CAST(:h_skus AS text[]),
                CAST(:h_qtys AS integer[])) AS t(o_id, warehouse_id, sku, quantity)
)
INSERT INTO inventory_movements
    (warehouse_id, sku, kind, on_hand_delta, reserved_delta, order_id, reference)
SELECT warehouse_id, sku, 'reservation', 0, quantity, o_id, ''
FROM unnest(CAST(:m_o_ids AS text[]), CAST(:m_w_ids AS text[]), CAST(:m_skus AS text[]),
            CAST(:m_qtys AS integer[])) WITH ORDINALITY AS t(o_id, warehouse_id, sku, quantity, n)
ORDER BY n
""")
# low-stock flags set to what the run's checks left them at; the SKUs whose flag this flipped
_FLAG_LOW_ALL = Statement("""
UPDATE inventory_products AS p SET low_flagged = v.flagged
FROM unnest(CAST(:skus AS text[]), CAST(:flags AS boolean[])) AS v(sku, flagged)
WHERE p.sku = v.sku AND p.low_flagged <> v.flagged
RETURNING p.sku
""")


# -- the set-based dispatch path (a run of shipment.dispatched events) ---------------------------
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
_LOCK_STOCK_AHEAD = Statement("""
SELECT 1 FROM inventory_stock AS s
WHERE s.sku = ANY(CAST(:skus AS text[]))
   OR s.sku IN (SELECT r.sku FROM unnest(CAST(:o_ids AS text[])) AS k(id) CROSS JOIN LATERAL (
                    SELECT h.sku FROM inventory_reservations AS h WHERE h.order_id = k.id
                    OFFSET 0) AS r)  -- by the order index, as _LOCK_HOLDS_OF
ORDER BY s.warehouse_id COLLATE "C", s.sku COLLATE "C" FOR UPDATE OF s
""")
# what a run's shipped lines move, summed per stock row and per hold, the orders that shipped in
# full, and a ledger line per shipped line in the run's order
_WRITE_SHIPMENTS = Statement("""
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



def _mark(status: str, *stamps: str, first_attempt: bool | None = None) -> sa.Update:
    values: dict[str, Any] = {"status": status, "updated_at": sa.func.now(),
                              **{name: _B(f"v_{name}") for name in stamps}}
    if first_attempt is not None:
        values["filled_first_attempt"] = first_attempt
    return orders.update().where(orders.c.order_id == _B("o_id")).values(**values)


_MARK_RESERVED = {first: _mark("reserved", "reserved_at", "expires_at", first_attempt=first or None)
                  for first in (True, False)}
_MARK_BACKORDERED = {first: _mark("backordered", "backordered_at",
                                  first_attempt=False if first else None)
                     for first in (True, False)}


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    status: str
    priority: str
    destination_province: str
    order: CanonicalOrder
    filled_first_attempt: bool | None
    ordered: Mapping[str, int]
    short: Mapping[str, int]


@dataclass(frozen=True)
class StockLevel:
    sku: str
    reorder_point: int
    low_flagged: bool
    available: int


@dataclass(frozen=True)
class Shipped:
    from_reservation: int
    from_free_stock: int


@dataclass(frozen=True)
class ApprovalContext:
    """What an approval needs to know of its order before reserving it."""

    cancelled: bool
    early: CanonicalOrder | None  # a change's newer revision that came before the approval
    known: bool  # approved here already


@dataclass(frozen=True)
class StockRow:
    warehouse_id: str
    sku: str
    available: int
    reorder_point: int
    low_flagged: bool


@dataclass(frozen=True)
class FirstAttempt:
    """A newly approved order as its first attempt leaves it: what it holds, what it is short
    of, and its status with that status's stamps."""

    order_id: str
    order: CanonicalOrder
    ordered: Mapping[str, int]
    short: Mapping[str, int]
    picks: Sequence[Pick]
    reserved_at: datetime | None  # set: reserved in full; None: backordered at backordered_at
    expires_at: datetime | None
    backordered_at: datetime | None



@dataclass(frozen=True)
class ShippedLine:
    """One line of a shipment as it moves the stock: ``from_reservation`` of its units come
    from the order's hold, the rest from free stock."""

    order_id: str
    warehouse_id: str
    sku: str
    quantity: int
    from_reservation: int
    reference: str



class InventoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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

    # -- stock --------------------------------------------------------------------------------
    async def availability(self, skus: Iterable[str]) -> dict[str, dict[str, int]]:
        """Available units per warehouse and SKU, as committed now (READ COMMITTED)."""
        wanted = sorted(set(skus))
        rows = (await self.session.execute(_AVAILABILITY, {"skus": wanted})).all() if wanted else []
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for r in rows:
            out[r.warehouse_id][r.sku] = r.available
        return dict(out)

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

    async def free_units(self, warehouse_id: str, sku: str) -> int:
        value = (await self.session.execute(
            sa.select(stock.c.available).where(stock.c.warehouse_id == warehouse_id,
                                               stock.c.sku == sku))).scalar_one_or_none()
        return int(value or 0)

    async def reserve(self, order_id: str, picks: Sequence[Pick]) -> bool:
        """Reserve every pick or none (a savepoint): each is a conditional UPDATE that succeeds
        only while ``on_hand - reserved >= quantity``; rows are taken in a fixed order so that
        concurrent reservations cannot deadlock each other. False: someone was faster."""
        ordered_picks = sorted(p for p in picks if p.quantity > 0)
        if not ordered_picks:
            return True
        # always in a savepoint, even for one pick: an UPDATE that waited for a concurrent one and
        # then found too few units keeps the row locked until the savepoint or the transaction
        # ends; kept, that lock deadlocks the next attempt against the transaction that waits
        # for it (seen in the concurrent-reservations test)
        savepoint = await self.session.begin_nested()
        try:
            taken = await self._take_and_hold(order_id, ordered_picks)
        except BaseException:
            await savepoint.rollback()
            raise
        if not taken:  # undo the picks taken before the one that failed
            await savepoint.rollback()
            return False
        await savepoint.commit()
        return True

    async def _take_and_hold(self, order_id: str, picks: Sequence[Pick]) -> bool:
        """Take each pick in order; False at the first that is not there (the caller undoes
        the ones before it). Then the holds and the ledger lines, one statement each."""
        for pick in picks:
            done = (await self.session.execute(_TAKE, {
                "w_id": pick.warehouse_id, "s_sku": pick.sku, "qty": pick.quantity})).first()
            if done is None:
                return False
        await self.session.execute(_HOLD, [
            {"order_id": order_id, "warehouse_id": p.warehouse_id, "sku": p.sku,
             "quantity": p.quantity, "shipped": 0} for p in picks])
        await self.session.execute(_LEDGER, [
            {"warehouse_id": p.warehouse_id, "sku": p.sku, "kind": "reservation",
             "on_hand_delta": 0, "reserved_delta": p.quantity, "order_id": order_id,
             "reference": ""} for p in picks])
        return True

    async def take_all(self, units: Mapping[tuple[str, str], int]) -> bool:
        """Reserve ``units`` per (warehouse, SKU) for a run of orders, all or none, in one
        statement: every row locked in the order reserve() takes them and taken only if all still
        have the units. In a savepoint, so that rows locked by a take that failed (a concurrent
        writer took units meanwhile) are let go at once. False: nothing changed."""
        if not units:
            return True
        keys = sorted(units)
        savepoint = await self.session.begin_nested()
        try:
            (row,) = await _TAKE_ALL.fetch(self.session, {
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

    async def holds(self, order_id: str) -> list[Pick]:
        """What the order has reserved and not shipped yet."""
        rows = (await self.session.execute(_HOLDS, {"o_id": order_id})).all()
        return [Pick(r.warehouse_id, r.sku, r.quantity) for r in rows]

    async def release_holds(self, order_id: str, reason: str) -> list[Pick]:
        """Give the order's reserved units back to available stock."""
        released = await self.holds(order_id)
        await self.release_picks(order_id, released, reason)  # every held unit: quantity 0
        return released

    async def ship(self, order_id: str, warehouse_id: str, sku: str, quantity: int,
                   reference: str) -> Shipped | None:
        """Units leave the warehouse: first the order's reserved units, then free ones (a dispatch
        after its reservation expired). None if the units are not there at all."""
        from_reservation = (await self.session.execute(_SHIP_LINE, {
            "o_id": order_id, "w_id": warehouse_id, "s_sku": sku, "qty": quantity,
            "ref": reference[:500]})).scalar_one_or_none()
        if from_reservation is None:
            return None
        return Shipped(int(from_reservation), quantity - int(from_reservation))

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

    async def ship_all(self, lines: Sequence[ShippedLine], shipped_orders: Sequence[str]) -> None:
        """Write what ship() writes for each line (summed per stock row and per hold; a ledger
        line each, in order) and mark_shipped for ``shipped_orders``: one statement. The caller
        checked, on rows it locked, that every line's units are there."""
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
        await _WRITE_SHIPMENTS.run(self.session, {
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

    async def stock_levels(self, skus: Iterable[str]) -> list[StockLevel]:
        """Per SKU with stock rows: reorder point, whether stock.low was reported, available."""
        wanted = sorted(set(skus))
        if not wanted:
            return []
        rows = (await self.session.execute(_STOCK_LEVELS, {"skus": wanted})).all()
        return [StockLevel(r.sku, int(r.rp), bool(r.flagged), int(r.available)) for r in rows]

    async def flag_low(self, sku: str, flagged: bool) -> bool:
        """Flip the SKU's low-stock flag; False if it already had that value (another
        transaction crossed first), so each crossing is reported once."""
        done = (await self.session.execute(
            products.update().where(products.c.sku == sku, products.c.low_flagged != flagged)
            .values(low_flagged=flagged).returning(products.c.sku))).first()
        return done is not None

    async def stock_rows(self, skus: Iterable[str]) -> list[StockRow]:
        """Every stock row of ``skus`` (none available included) with the SKU's reorder point
        and low-stock flag."""
        wanted = sorted(set(skus))
        if not wanted:
            return []
        rows = await _STOCK_ROWS.fetch(self.session, {"skus": wanted})
        return [StockRow(r[0], r[1], int(r[2]), int(r[3]), bool(r[4])) for r in rows]

    async def set_low_flags(self, flags: Mapping[str, bool]) -> set[str]:
        """Set each SKU's low-stock flag; the SKUs whose flag this changed (the others had that
        value already: another transaction crossed first)."""
        if not flags:
            return set()
        skus = sorted(flags)
        rows = await _FLAG_LOW_ALL.fetch(self.session, {
            "skus": skus, "flags": [flags[s] for s in skus]})
        return {str(r[0]) for r in rows}

    async def stock_of(self, sku: str) -> list[dict[str, Any]]:
        rows = (await self.session.execute(
            sa.select(stock.c.warehouse_id, stock.c.on_hand, stock.c.reserved, stock.c.available)
            .where(stock.c.sku == sku).order_by(stock.c.warehouse_id))).all()
        return [dict(r._mapping) for r in rows]

    # -- orders -------------------------------------------------------------------------------
    async def lock_order_key(self, order_id: str) -> None:
        """Serialise everything about one order (its approval, its cancellation) in this
        transaction, whichever replica and topic partition they arrive on."""
        await self.session.execute(_LOCK_ORDER_KEY, {"o_id": order_id})

    async def add_cancelled(self, order_id: str, reason: str) -> bool:
        """Keep the order's tombstone; False when it was already cancelled."""
        row = (await self.session.execute(
            pg_insert(cancelled_orders).values(order_id=order_id, reason=reason)
            .on_conflict_do_nothing().returning(cancelled_orders.c.order_id))).first()
        return row is not None

    async def approval_context(self, order_id: str) -> tuple[bool, CanonicalOrder | None]:
        """Whether the order was cancelled here already, and its newer revision if a change
        came before its approval: one round trip."""
        row = (await self.session.execute(_APPROVAL_CONTEXT, {"o_id": order_id})).one()
        return bool(row.cancelled), (CanonicalOrder.model_validate(row.early)
                                     if row.early is not None else None)

    async def lock_stock_ahead(self, skus: Iterable[str], holds_of: Iterable[str]) -> None:
        """Lock, in the one sorted order every statement here takes them, the stock rows of these
        SKUs in every warehouse and those the orders ``holds_of`` hold: all a batch's runs may
        touch, taken before the first, so two batches cannot lock them crosswise."""
        skus, holders = sorted(set(skus)), sorted(set(holds_of))
        if skus or holders:
            await _LOCK_STOCK_AHEAD.run(self.session, {"skus": skus, "o_ids": holders})

    async def lock_order_keys(self, order_ids: Iterable[str]) -> None:
        """lock_order_key for several orders at once, in one sorted order."""
        keys = sorted(set(order_ids))
        if keys:
            await _LOCK_ORDER_KEYS.run(self.session, {"o_ids": keys})

    async def approval_contexts(self, order_ids: Iterable[str]) -> dict[str, ApprovalContext]:
        """approval_context for several orders at once, and whether each is known here."""
        keys = sorted(set(order_ids))
        if not keys:
            return {}
        rows = await _APPROVAL_CONTEXTS.fetch(self.session, {"o_ids": keys})
        return {order_id: ApprovalContext(
            bool(cancelled),
            CanonicalOrder.model_validate_json(early) if early is not None else None,
            bool(known)) for order_id, cancelled, early, known in rows}

    async def add_first_attempts(self, attempts: Sequence[FirstAttempt]) -> None:
        """Record newly approved orders (not known here: the caller holds their keys' locks and
        read that) as their first attempt left them, with their holds and the reservations'
        ledger lines: one statement. The stock was taken by take_all."""
        if not attempts:
            return
        lines = [(a.order_id, sku, q, a.short.get(sku, 0))
                 for a in attempts for sku, q in sorted(a.ordered.items())]
        holds = [(a.order_id, p) for a in attempts for p in merge_picks(a.picks)]
        moves = [(a.order_id, p) for a in attempts for p in sorted(a.picks) if p.quantity > 0]
        await _WRITE_APPROVALS.run(self.session, {
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
            "l_ordered": [x[2] for x in lines], "l_short": [x[3] for x in lines],
            "h_o_ids": [o for o, _ in holds], "h_w_ids": [p.warehouse_id for _, p in holds],
            "h_skus": [p.sku for _, p in holds], "h_qtys": [p.quantity for _, p in holds],
            "m_o_ids": [o for o, _ in moves], "m_w_ids": [p.warehouse_id for _, p in moves],
            "m_skus": [p.sku for _, p in moves], "m_qtys": [p.quantity for _, p in moves]})

    async def order_status(self, order_id: str) -> str | None:
        """The order's status, its row locked (None: not known here)."""
        status = (await self.session.execute(_ORDER_STATUS, {"o_id": order_id})).scalar_one_or_none()
        return None if status is None else str(status)

    async def is_cancelled(self, order_id: str) -> bool:
        return (await self.session.execute(
            sa.select(cancelled_orders.c.order_id)
            .where(cancelled_orders.c.order_id == order_id))).first() is not None

    async def add_return(self, rma_id: str, order_id: str, warehouse_id: str, restocked: int,
                         scrapped: int) -> bool:
        """Record a received return; False when this RMA was already taken back."""
        row = (await self.session.execute(
            pg_insert(returns).values(rma_id=rma_id, order_id=order_id, warehouse_id=warehouse_id,
                                      restocked=restocked, scrapped=scrapped)
            .on_conflict_do_nothing().returning(returns.c.rma_id))).first()
        return row is not None

    async def add_order(self, order_id: str, order: CanonicalOrder, need: Mapping[str, int]) -> bool:
        """Record a newly approved order with every line short; False if already known."""
        added = (await self.session.execute(
            pg_insert(orders).values(
                order_id=order_id, status="backordered", priority=order.priority,
                destination_province=order.shipping_address.province,
                order_json=order.model_dump(mode="json"))
            .on_conflict_do_nothing().returning(orders.c.order_id)
        )).first()
        if added is None:
            return False
        await self.session.execute(order_lines.insert(), [
            {"order_id": order_id, "sku": sku, "ordered": q, "short": q}
            for sku, q in sorted(need.items())])
        return True

    async def lock_order(self, order_id: str) -> OrderRecord | None:
        row = (await self.session.execute(
            sa.select(orders).where(orders.c.order_id == order_id).with_for_update()
        )).first()
        if row is None:
            return None
        lines = (await self.session.execute(
            sa.select(order_lines.c.sku, order_lines.c.ordered, order_lines.c.short)
            .where(order_lines.c.order_id == order_id))).all()
        return OrderRecord(
            order_id=row.order_id, status=row.status, priority=row.priority,
            destination_province=row.destination_province,
            order=CanonicalOrder.model_validate(row.order_json),
            filled_first_attempt=row.filled_first_attempt,
            ordered={r.sku: r.ordered for r in lines}, short={r.sku: r.short for r in lines})

    # -- changes ------------------------------------------------------------------------------
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

    async def release_picks(self, order_id: str, picks: Sequence[Pick], reason: str) -> None:
        """Give back some of the order's reserved units (a change to fewer units)."""
        for pick in sorted(picks):  # the same lock order as reserve()
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

    async def set_short(self, order_id: str, short: Mapping[str, int]) -> None:
        """Every line's shortfall at once (a line not in ``short`` is short of nothing)."""
        await self.session.execute(_SET_SHORT, {"o_id": order_id, "shorts": dict(short)})

    async def mark_backordered(self, order_id: str, at: datetime, first_attempt: bool) -> None:
        await self.session.execute(_MARK_BACKORDERED[first_attempt],
                                   {"o_id": order_id, "v_backordered_at": at})

    async def mark_reserved(self, order_id: str, at: datetime, expires: datetime,
                            first_attempt: bool) -> None:
        await self.session.execute(_MARK_RESERVED[first_attempt],
                                   {"o_id": order_id, "v_reserved_at": at, "v_expires_at": expires})

    async def mark_shipped(self, order_id: str) -> None:
        await self.session.execute(orders.update().where(orders.c.order_id == order_id)
                                   .values(status="shipped", expires_at=None,
                                           updated_at=sa.func.now()))

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


# --- the conservation invariant ----------------------------------------------------------------

INVARIANT_QUERIES: dict[str, str] = {
    "stock figures are negative or oversold": """
        SELECT warehouse_id, sku, on_hand, reserved, available FROM inventory_stock
        WHERE on_hand < 0 OR reserved < 0 OR available < 0 OR available <> on_hand - reserved
    """,
    "the movement ledger does not add up to the stock": """
        SELECT coalesce(s.warehouse_id, m.warehouse_id) AS warehouse_id,
               coalesce(s.sku, m.sku) AS sku, s.on_hand, s.reserved, m.on_hand_sum, m.reserved_sum
        FROM inventory_stock s
        FULL JOIN (SELECT warehouse_id, sku, sum(on_hand_delta) AS on_hand_sum,
                          sum(reserved_delta) AS reserved_sum
                   FROM inventory_movements GROUP BY warehouse_id, sku) m
          ON m.warehouse_id = s.warehouse_id AND m.sku = s.sku
        WHERE coalesce(s.on_hand, 0) <> coalesce(m.on_hand_sum, 0)
           OR coalesce(s.reserved, 0) <> coalesce(m.reserved_sum, 0)
    """,
    "reserved stock is not held by orders": """
        SELECT coalesce(s.warehouse_id, r.warehouse_id) AS warehouse_id,
               coalesce(s.sku, r.sku) AS sku, s.reserved, r.held
        FROM inventory_stock s
        FULL JOIN (SELECT warehouse_id, sku, sum(quantity) AS held
                   FROM inventory_reservations GROUP BY warehouse_id, sku) r
          ON r.warehouse_id = s.warehouse_id AND r.sku = s.sku
        WHERE coalesce(s.reserved, 0) <> coalesce(r.held, 0)
    """,
    "an order's lines are not reserved + shipped + backordered": """
        SELECT l.order_id, l.sku, o.status, l.ordered, l.short,
               coalesce(r.held, 0) AS held, coalesce(r.shipped, 0) AS shipped
        FROM inventory_order_lines l
        JOIN inventory_orders o ON o.order_id = l.order_id
        LEFT JOIN (SELECT order_id, sku, sum(quantity) AS held, sum(shipped) AS shipped
                   FROM inventory_reservations GROUP BY order_id, sku) r
          ON r.order_id = l.order_id AND r.sku = l.sku
        WHERE (o.status IN ('backordered', 'reserved', 'shipped')
               AND l.ordered <> l.short + coalesce(r.held, 0) + coalesce(r.shipped, 0))
           OR (o.status = 'reserved' AND l.short <> 0)
           OR (o.status = 'released' AND (l.short <> 0 OR coalesce(r.held, 0) <> 0))
    """,
}


async def check_invariants(session: AsyncSession) -> list[str]:
    """Every violation of the conservation invariant, in words; empty when all holds:

    - on hand = available + reserved per warehouse and SKU, none negative;
    - the ledger's movements sum to each row's on hand and reserved;
    - reserved stock equals the units orders hold;
    - each active order line is fully accounted for: reserved + shipped + backordered = ordered.

    The session must use the ``inventory`` schema as its search path (an engine from
    ``orderflow.runtime.db.make_engine(settings, "inventory")``). Each check is one SQL statement,
    so it sees one consistent snapshot even while the service keeps working."""
    problems: list[str] = []
    for what, query in INVARIANT_QUERIES.items():
        rows = (await session.execute(sa.text(query))).all()
        problems += [f"{what}: {dict(r._mapping)}" for r in rows[:20]]
        if len(rows) > 20:
            problems.append(f"{what}: ... and {len(rows) - 20} more")
    return problems
