"""The console's handlers: every event of every topic into the read model. An event of an order
is stored once (its event id), then the order's view is re-projected from all its events."""

from __future__ import annotations

from typing import Any

from orderflow.console import readmodel
from orderflow.console.repository import ConsoleRepository
from orderflow.contracts.events import CustomerUpdated, ProductUpdated
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork


async def on_event(uow: UnitOfWork, incoming: IncomingEvent[Any]) -> None:
    repo = ConsoleRepository(uow.session)
    event = incoming.event
    if isinstance(event, CustomerUpdated):
        await repo.upsert_customer(event)
        return
    if isinstance(event, ProductUpdated):
        await repo.upsert_product(event)
        return
    entry = readmodel.entry_for(incoming.topic, incoming.headers, event)
    if entry is None:  # stock counts, warehouses, invoices without an order: counted by topic only
        return
    await repo.lock_order(entry.order_id)
    if not await repo.add_entry(entry):
        return
    view = readmodel.project(entry.order_id, await repo.entries_of(entry.order_id))
    await repo.save_view(view)
