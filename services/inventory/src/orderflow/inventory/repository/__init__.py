"""Inventory's repository: SQL only, by table group.

- ``tables``: the tables;
- ``stock``: stock rows, the movement ledger, holds, warehouses and reorder points;
- ``orders``: orders, their lines and holds, cancellations, early revisions, returns;
- ``invariants``: the conservation invariant (``check_invariants``).

A reservation is a conditional take of the units a plan chose (``take``): it changes nothing
unless every row still has them, so two transactions can never reserve the same unit; the
database's CHECK constraints are the backstop. Every change of a stock row writes a row of the
movement ledger in the same transaction."""

from __future__ import annotations

from orderflow.inventory.repository.invariants import INVARIANT_QUERIES, check_invariants
from orderflow.inventory.repository.orders import OrderRows


class InventoryRepository(OrderRows):
    """Every table of inventory, in the session's transaction."""


__all__ = ["INVARIANT_QUERIES", "InventoryRepository", "check_invariants"]
