"""The console's set-based projection against the real PostgreSQL, through the runtime's batch
consumer (inbox, batch handler) without a broker: whatever batches an order's events come in, in
order or not, redelivered or not, the stored view is the pure projection of all of them; events
that follow the stored view move it on without reading the order's earlier events again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from console_factories import OrderStory, projection_stories
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow.console import app, domain
from orderflow.console.repository import _ENTRIES_OF, ConsoleRepository
from orderflow.contracts.headers import EventHeaders
from orderflow.runtime.consumer import BatchProcessor
from orderflow.testing.infra import Infra
from orderflow.testing.plans import plans_before_and_after_analyze
from orderflow.testing.records import Rec, migrated_schema

pytestmark = pytest.mark.component

PROJECT = domain.project  # the pure projection (the handler's is spied on)


@pytest.fixture
async def engine(infra: Infra) -> AsyncIterator[AsyncEngine]:
    definition = app.create_service()
    async with migrated_schema(infra.database_url, "console_batch", definition.migrations) as engine:
        yield engine


@pytest.fixture
def projections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The orders the handler projected from all their stored entries (not moved on)."""
    seen: list[str] = []

    def spy(order_id: str, entries: Any, **kwargs: Any) -> domain.OrderView:
        seen.append(order_id)
        return PROJECT(order_id, entries, **kwargs)

    monkeypatch.setattr(domain, "project", spy)
    return seen


def as_records(story: OrderStory, first_offset: int) -> list[Rec]:
    """The story's events as consumed records, with the headers its entries were made with."""
    recs = []
    for n, (entry, event) in enumerate(zip(story.entries, story.events, strict=True)):
        headers = EventHeaders(event_id=entry.event_id, event_type=entry.event_type,
                               schema_version=1, occurred_at=entry.occurred_at,
                               producer=entry.producer, correlation_id=story.order_id)
        recs.append(Rec(entry.topic, 0, first_offset + n, event.key().encode(),
                        event.model_dump_json().encode(), list(headers.to_kafka())))
    return recs


async def process(engine: AsyncEngine, batches: list[list[Rec]]) -> None:
    definition = app.create_service()
    processor = BatchProcessor(service="console", subscriptions=definition.subscriptions,
                               engine=engine, max_bytes=1_000_000)
    for batch in batches:
        await processor.process(batch, None)  # type: ignore[arg-type]


async def stored_views(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT order_id, CAST(view AS text) FROM console_orders"))).all()
    return {order_id: domain.OrderView.model_validate_json(text).model_dump_json()
            for order_id, text in rows}


def expected(all_stories: list[OrderStory]) -> dict[str, str]:
    return {s.order_id: PROJECT(s.order_id, s.entries, timeline=False).model_dump_json()
            for s in all_stories}


def by_step(all_stories: list[OrderStory], *, reverse: bool = False) -> list[list[Rec]]:
    """One batch per step of the stories (the n-th event of every order together), as a consumer
    behind on every topic gets them; ``reverse``: the last steps first."""
    recs = [as_records(s, 100 * i) for i, s in enumerate(all_stories)]
    steps = max(len(r) for r in recs)
    batches = [[r[n] for r in recs if n < len(r)] for n in range(steps)]
    return batches[::-1] if reverse else batches


async def test_events_in_order_move_the_stored_views_on(
        engine: AsyncEngine, projections: list[str]) -> None:
    all_stories = projection_stories()
    await process(engine, by_step(all_stories))
    assert await stored_views(engine) == expected(all_stories)
    # each order projected from its stored entries once: at its first event (no view yet)
    assert sorted(projections) == sorted(s.order_id for s in all_stories)


async def test_events_out_of_order_and_redelivered_give_the_same_views(
        engine: AsyncEngine, projections: list[str]) -> None:
    all_stories = projection_stories()
    batches = by_step(all_stories, reverse=True)
    await process(engine, batches + batches[:3])  # the last steps first, then some again
    assert await stored_views(engine) == expected(all_stories)
    # every later batch came before what the views were made from: projected from everything
    assert len(projections) > len(all_stories)


async def test_a_batch_with_an_order_from_its_start_to_its_end(
        engine: AsyncEngine, projections: list[str]) -> None:
    all_stories = projection_stories()
    recs = [r for i, s in enumerate(all_stories) for r in as_records(s, 100 * i)]
    await process(engine, [recs[:5], recs[5:], recs[3:9]])
    assert await stored_views(engine) == expected(all_stories)


async def test_an_orders_entries_are_read_through_the_order_index_whatever_the_statistics(
        engine: AsyncEngine) -> None:
    """The console reads the stored entries of the orders it projects from all of them (out of
    order, as it does while catching up): by the order index, also when the table grew since its
    last ANALYZE. ``order_id = ANY(:ids)`` read the whole table then (PostgreSQL guesses 0.5 % of
    the rows for each id without statistics): tens of millions of rows read while the console
    caught up after the benchmark's 20,000 orders."""
    fill = ("INSERT INTO console_events (event_id, order_id, topic, event_type, producer, "
            "occurred_at, payload) SELECT 'e' || i, 'o' || (i / 8), 'order.received', "
            "'OrderReceived', 'intake', now(), '{}' FROM generate_series(1, 20000) AS i")
    params = {"ids": [f"o{n}" for n in range(0, 2500, 10)]}
    for plan in await plans_before_and_after_analyze(engine, "console_events", fill,
                                                     _ENTRIES_OF.text, params):
        assert "Seq Scan on console_events" not in plan, plan
        assert "console_events_order" in plan, plan


async def test_an_orders_entries_are_all_read_once_each(engine: AsyncEngine) -> None:
    """Every stored entry of each asked-for order, once, whatever the ids' order or repeats."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO console_events (event_id, order_id, topic, event_type, producer, "
            "occurred_at, payload) SELECT 'x' || i, 'ox' || (i % 3), 'order.received', "
            "'OrderReceived', 'intake', now(), json_build_object('n', i) "
            "FROM generate_series(1, 9) AS i"))
    async with engine.connect() as conn:
        await conn.begin()
        async with AsyncSession(bind=conn) as session:
            found = await ConsoleRepository(session).entries_of(["ox2", "ox0", "ox2", "nope"])
        await conn.rollback()
    assert sorted(found) == ["nope", "ox0", "ox2"]
    assert found["nope"] == []
    assert sorted(e.event_id for e in found["ox0"]) == ["x3", "x6", "x9"]
    assert sorted(e.event_id for e in found["ox2"]) == ["x2", "x5", "x8"]
    assert {e.payload["n"] for e in found["ox2"]} == {2, 5, 8}
