"""The console's handler: every event of every topic into the read model, set-based. The events
of a run (consecutive events of a batch) are stored once each (their event ids) with one
statement, then the view of each order that got a new event moves on by its new events (or, when
they came out of order, is projected again from all its events). A return an operator entered
gets its warehouse receipt once logistics approves it (``order_actions.receipt_for``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orderflow.console import domain
from orderflow.console.actions_repository import ActionsRepository
from orderflow.console.order_actions import receipt_for
from orderflow.console.repository import ConsoleRepository
from orderflow.contracts.events import CustomerUpdated, ProductUpdated, ReturnApproved
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

PROJECT_AT_ONCE = 50


async def on_events(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
    repo = ConsoleRepository(uow.session)
    customers: dict[str, CustomerUpdated] = {}  # the last update of each wins, as one by one
    products: dict[str, ProductUpdated] = {}
    entries: list[domain.TimelineEntry] = []
    for incoming in run:
        event = incoming.event
        if isinstance(event, CustomerUpdated):
            customers.pop(event.customer_id, None)
            customers[event.customer_id] = event
        elif isinstance(event, ProductUpdated):
            products.pop(event.sku, None)
            products[event.sku] = event
        else:
            entry = domain.entry_for(incoming.topic, incoming.headers, event)
            if entry is not None:  # stock counts, warehouses, invoices: counted by topic only
                entries.append(entry)
    # one statement each, in key order (concurrent replicas lock the rows in the same order)
    await repo.upsert_customers([customers[k] for k in sorted(customers)])
    await repo.upsert_products([products[k] for k in sorted(products)])
    await _receive_entered_returns(uow, [i for i in run if isinstance(i.event, ReturnApproved)])
    if not entries:
        return
    await repo.lock_orders([e.order_id for e in entries])
    stored_now = await repo.add_entries(entries)
    new: dict[str, list[domain.TimelineEntry]] = {}
    for e in entries:
        if e.event_id in stored_now:
            new.setdefault(e.order_id, []).append(e)
    changed = sorted(new)
    # a slice of orders at a time (a whole batch's views and entries at once would cost the
    # process tens of MB more at its peak). An order's stored view moves on by its new entries
    # when they follow what it was made from (``domain.advance``); the others are projected
    # again from every stored entry. The views are stored without their timelines (made from the
    # stored entries when an order is read): written on every event of an order, the timeline
    # was most of each write
    for start in range(0, len(changed), PROJECT_AT_ONCE):
        chunk = changed[start:start + PROJECT_AT_ONCE]
        views = await repo.stored_views(chunk)
        moved: list[domain.OrderView] = []
        again: list[str] = []
        for order_id in chunk:
            view = views.get(order_id)
            advanced = domain.advance(view, new[order_id]) if view is not None else None
            if advanced is None:
                again.append(order_id)
            else:
                moved.append(advanced)
        if again:
            stored = await repo.entries_of(again)
            moved += [domain.project(order_id, stored[order_id], timeline=False)
                      for order_id in again]
        await repo.save_views(moved)


async def _receive_entered_returns(uow: UnitOfWork,
                                   approvals: list[IncomingEvent[ReturnApproved]]) -> None:
    """The receipt of each approved return an operator entered, with their inspection."""
    if not approvals:
        return
    now = datetime.now(UTC)
    taken = await ActionsRepository(uow.session).take_inspections(
        [a.event.rma_id for a in approvals], now)
    for approval in approvals:
        if approval.event.rma_id in taken:
            uow.emit(receipt_for(approval.event, taken.pop(approval.event.rma_id), now),
                     cause=approval)
