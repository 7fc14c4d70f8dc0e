"""Logistics' SQL, by table group: ``orders`` (the order records whose lock arbitrates dispatch,
cancel and change), ``shipments`` (shipments, their tracking and delays), ``returns`` and
``master_data`` (warehouses, products); the tables in ``tables``. Statements only: what to write
is decided in ``domain`` (which also defines the records they load: ``OrderLock``,
``OrderContent``, ``ShipmentRecord``, ``ReturnRecord``)."""

from __future__ import annotations

from orderflow.logistics.repository.master_data import MasterData
from orderflow.logistics.repository.orders import OrderRecords
from orderflow.logistics.repository.returns import Returns
from orderflow.logistics.repository.shipments import (
    NewShipment,
    Shipments,
    TrackingNumbersExhausted,
)

__all__ = ["MasterData", "NewShipment", "OrderRecords", "Returns", "Shipments",
           "TrackingNumbersExhausted"]
