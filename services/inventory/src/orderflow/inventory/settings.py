"""The company's inventory policy: settings with the prefix ``ORDERFLOW_INVENTORY_``.

The rules these settings steer (and the province distance table) live in ``domain``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.inventory.domain import AllocationPolicy


class InventoryPolicy(BaseSettings):
    """What the company allows when stock is short, and how long a reservation may wait.

    Every field is read from ``ORDERFLOW_INVENTORY_<FIELD>``, e.g.
    ``ORDERFLOW_INVENTORY_SPLIT_SHIPMENTS=false``; a bad value fails at start naming the variable."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_INVENTORY_", extra="ignore")

    split_shipments: bool = Field(
        default=True,
        description="An order no single warehouse can fill may be split across warehouses; "
                    "false: it waits (backordered whole) until one warehouse can ship it complete",
    )
    partial_reservation: bool = Field(
        default=True,
        description="Reserve what exists now and backorder the rest; false: backorder the whole "
                    "order and reserve nothing until all of it can be reserved",
    )
    reservation_ttl_s: float = Field(
        default=72 * 3600, gt=0,
        description="A fully reserved order not dispatched within this many seconds has its "
                    "reservation released (stock.released, reason 'expired')",
    )
    expiry_scan_interval_s: float = Field(default=5.0, gt=0, le=3600,
                                          description="How often the expiry job looks")
    expiry_batch_size: int = Field(default=200, ge=1, le=10_000,
                                   description="Reservations expired per transaction at most")
    backorder_scan_limit: int = Field(
        default=1000, ge=1, le=100_000,
        description="Waiting orders considered per stock arrival (the head of the queue)",
    )

    def allocation(self) -> AllocationPolicy:
        return AllocationPolicy(split_shipments=self.split_shipments,
                                partial_reservation=self.partial_reservation)


def load_policy() -> InventoryPolicy:
    return InventoryPolicy()
