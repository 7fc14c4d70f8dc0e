"""What shipments take from the stock: each line's units from its order's hold first, then from
free stock for the rest (a dispatch whose reservation expired), never more than is there; an
order whose holds are all shipped is shipped. Pure: a plan the repository carries out as it is.

A single shipment is a run of one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from orderflow.contracts.events import ShipmentDispatched
from orderflow.inventory.domain.allocation import StockRow
from orderflow.inventory.domain.stock import ImpossibleStockMovement, LowStock


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

    @property
    def from_free_stock(self) -> int:
        return self.quantity - self.from_reservation


@dataclass(frozen=True)
class ShipmentPlan:
    """A run of shipments' lines in order, the orders they ship in full, the lines of each
    shipment that took free stock, and the low-stock checks after each (tagged by the
    shipment's place in the run)."""

    lines: list[ShippedLine]
    shipped_orders: list[str]
    from_free_stock: list[list[ShippedLine]]
    lows: LowStock = field(repr=False)


def plan_shipments(shipments: Sequence[ShipmentDispatched], statuses: Mapping[str, str],
                   holds: Mapping[tuple[str, str, str], int], free: Mapping[tuple[str, str], int],
                   rows: Iterable[StockRow]) -> ShipmentPlan:
    """The run's shipments one after another: ``statuses`` of their orders, ``holds`` (units per
    order, warehouse and SKU) and ``free`` units per (warehouse, SKU) as the run starts, with the
    rows they name locked; ``rows``, every stock row of their SKUs, for the low-stock checks.
    Raises ``ImpossibleStockMovement`` for a line whose units are not there."""
    statuses, holds, free = dict(statuses), dict(holds), dict(free)
    holding: dict[str, int] = defaultdict(int)  # the units each order still holds
    for (order_id, _, _), units in holds.items():
        holding[order_id] += units
    lows = LowStock(rows)
    lines: list[ShippedLine] = []
    shipped_orders: list[str] = []
    from_free: list[list[ShippedLine]] = []
    for tag, shipment in enumerate(shipments):
        order_id = shipment.order_id
        took_free: list[ShippedLine] = []
        for line in sorted(shipment.lines, key=lambda x: (x.warehouse_id, x.sku)):
            row = (line.warehouse_id, line.sku)
            hold = (order_id, line.warehouse_id, line.sku)
            shipped = ShippedLine(order_id, line.warehouse_id, line.sku, line.quantity,
                                  min(line.quantity, holds.get(hold, 0)), shipment.shipment_id)
            if row not in free or free[row] < shipped.from_free_stock:
                raise ImpossibleStockMovement(
                    f"shipment {shipment.shipment_id} takes {line.quantity} x {line.sku} from "
                    f"{line.warehouse_id}, more than the order's reservation plus "
                    f"{free.get(row, 0)} free units")
            free[row] -= shipped.from_free_stock
            if shipped.from_reservation:
                holds[hold] -= shipped.from_reservation
                holding[order_id] -= shipped.from_reservation
            lines.append(shipped)
            if shipped.from_free_stock:
                lows.took(line.sku, shipped.from_free_stock)
                took_free.append(shipped)
        if statuses.get(order_id) == "reserved" and holding[order_id] <= 0:
            statuses[order_id] = "shipped"
            shipped_orders.append(order_id)
        lows.check(tag, {line.sku for line in shipment.lines}, decreased=True)
        from_free.append(took_free)
    return ShipmentPlan(lines, shipped_orders, from_free, lows)
