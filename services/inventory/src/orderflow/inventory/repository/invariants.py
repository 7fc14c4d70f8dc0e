"""The conservation invariant: every unit of stock accounted for, in SQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

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
