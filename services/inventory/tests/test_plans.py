"""Inventory's dispatch path reads an order's holds through its primary key whatever the
statistics say: on a reservations table that grew since its last ANALYZE (a fresh database, a
burst: autovacuum analyzes a table a minute or more after it grew) ``order_id = ANY(...)`` was
planned as a sequential scan of the whole table (0.9-1.7 million rows read per 20,000 orders)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.inventory import app
from orderflow.inventory.repository.stock import _LOCK_HOLDS_OF, _LOCK_STOCK_AHEAD
from orderflow.runtime.sqlalchemy_bridge import Statement
from orderflow.testing.infra import Infra
from orderflow.testing.plans import plans_before_and_after_analyze
from orderflow.testing.records import migrated_schema

pytestmark = pytest.mark.service

# 20,000 orders' holds, two lines each, on a table analyzed while empty
FILL = ("WITH o AS (INSERT INTO inventory_orders (order_id, status, priority, "
        "destination_province, order_json) SELECT 'o' || i, 'reserved', 'normal', 'P', '{}' "
        "FROM generate_series(0, 19999) AS i RETURNING order_id) "
        "INSERT INTO inventory_reservations (order_id, warehouse_id, sku, quantity) "
        "SELECT o.order_id, 'WH-' || w, 'SKU-' || (length(o.order_id) + w), 1 "
        "FROM o CROSS JOIN generate_series(0, 1) AS w")
IDS = [f"o{n}" for n in range(0, 20000, 80)]


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    async with migrated_schema(infra.database_url, "inventory_plans",
                               app.create_service().migrations) as engine:
        yield engine


@pytest.mark.parametrize("statement", [_LOCK_HOLDS_OF, _LOCK_STOCK_AHEAD],
                         ids=["holds", "stock ahead"])
async def test_holds_are_read_by_the_order_index_before_and_after_analyze(
        engine: AsyncEngine, statement: Statement) -> None:
    params = {"o_ids": IDS, "skus": ["SKU-1"]}
    for plan in await plans_before_and_after_analyze(
            engine, "inventory_reservations", FILL, statement.text, params):
        assert "Seq Scan on inventory_reservations" not in plan, plan
        assert "inventory_reservations_pkey" in plan, plan
        if statement is _LOCK_HOLDS_OF:  # locked order by order, in the sorted order of every path
            assert 'Sort Key: u.id COLLATE "C"' in plan, plan
            assert 'Sort Key: h.warehouse_id COLLATE "C", h.sku COLLATE "C"' in plan, plan
