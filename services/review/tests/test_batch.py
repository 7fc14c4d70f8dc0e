"""Review's set-based path (``order.received`` as a batch handler) through the runtime's
``BatchProcessor`` against the real PostgreSQL, each test in schemas of its own (no relay reads
them, so what the handlers staged stays in the outbox to be read): a run of orders is decided as
if its orders had come one after another (credit, promotions' uses, duplicates, cancellations),
a run gives the same tables and events as the same events one batch each, a redelivered batch
applies nothing twice, and concurrent runs on one account let exactly as many through as the
limit allows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow.contracts import topics
from orderflow.contracts.events import CustomerUpdated, OrderCancelled, OrderReceived
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder, OrderTotals, order_id_for
from orderflow.devstack.catalogue import canonical_order, products, stated_total
from orderflow.devstack.masterdata import DEMO_DATA, parse_file
from orderflow.review.app import create_service
from orderflow.review.domain import Promotion, ReviewPolicy
from orderflow.review.handlers import ReviewHandlers
from orderflow.runtime.consumer import BatchProcessor
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork
from orderflow.testing.infra import Infra
from orderflow.testing.records import Rec, Records, Schemas, outbox

pytestmark = pytest.mark.component

D = Decimal
MIGRATIONS = Path(create_service().migrations)
POLICY = ReviewPolicy(promotions=(Promotion(code="TWICE", valid_from=date(2026, 1, 1),
                                            valid_to=date(2026, 12, 31), usage_limit=2),))
# what each table is compared by (its columns but the clock's)
TABLES = {
    "review_credit_accounts": "customer_id",
    "review_orders": "order_id",
    "review_decisions": "id",
    "review_promotions": "code",
    "review_promotion_uses": "code, order_id",
    "review_cancelled_orders": "order_id",
}
CLOCK_COLUMNS = {"updated_at", "reviewed_at", "decided_at", "used_at", "cancelled_at"}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unit_total() -> Decimal:
    """The grand total of one TEA-001 x 2 order with the demo's shipping."""
    price = products()["TEA-001"].unit_price
    return stated_total([("TEA-001", 2, price, D(0))], D("10.00"))


def received(customer_id: str, *, promo_code: str | None = None) -> OrderReceived:
    """A TEA-001 x 2 order of ``customer_id`` as intake would publish it."""
    eid = new_id("RB")
    payload = canonical_order(eid, lines=[("TEA-001", 2)], promo_code=promo_code)
    payload["customer"]["id"] = customer_id  # type: ignore[index]
    order = CanonicalOrder.model_validate(payload)
    unit = unit_total()
    subtotal = order.lines[0].unit_price * 2
    return OrderReceived(
        order_id=order_id_for("canonical", eid), channel="canonical", external_id=eid,
        order=order, totals=OrderTotals(subtotal=subtotal, discount=D("0.00"),
                                        tax=unit - subtotal - D("10.00"), shipping=D("10.00"),
                                        grand_total=unit))


def customer(customer_id: str, limit: Decimal) -> CustomerUpdated:
    return CustomerUpdated(customer_id=customer_id, name="测试客户", credit_limit=limit,
                           currency="CNY", payment_terms="net30", open_receivables=D(1000),
                           overdue_amount=D(0), overdue_days=0, blocked=False)


def price_list(feed: Records) -> list[Rec]:
    """The demo's products (``product.updated``): the prices review checks against."""
    return [feed.record(e) for e in parse_file("products", DEMO_DATA / "products.csv").events]


Schema = Callable[[], Awaitable[AsyncEngine]]


@pytest.fixture
async def schema(infra: Infra) -> AsyncIterator[Schema]:
    """Makes review's tables in a new schema of their own; dropped afterwards."""
    async with Schemas(infra.database_url, "rvbatch", MIGRATIONS) as schemas:
        yield schemas.make


def processor(engine: AsyncEngine) -> BatchProcessor:
    return BatchProcessor(service="review", subscriptions=create_service(POLICY).subscriptions,
                          engine=engine, max_bytes=1_000_000)


async def tables(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    found = {}
    async with engine.connect() as conn:
        for table, order in TABLES.items():
            rows = (await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {order}"))).all()
            found[table] = [{k: v for k, v in r._mapping.items() if k not in CLOCK_COLUMNS}
                            | {"decided": r._mapping.get("decided_at") is not None}
                            for r in rows]
    return found


async def test_a_run_is_decided_as_one_order_after_another_and_as_one_batch_each(
        schema: Schema) -> None:
    unit = unit_total()
    tight, rich, cancelled_customer = new_id("CT"), new_id("CT"), new_id("CT")
    feed = Records()
    master = [*price_list(feed),
              feed.record(customer(tight, D(1000) + unit * 3 + unit / 2)),  # room for 3 orders
              feed.record(customer(rich, D(100000))),
              feed.record(customer(cancelled_customer, D(100000)))]
    gone = received(cancelled_customer)
    master.append(feed.record(OrderCancelled(order_id=gone.order_id, reason="changed my mind",
                                             requested_by="tests")))
    tight_orders = [received(tight) for _ in range(5)]
    promo_orders = [received(rich, promo_code="twice") for _ in range(3)]
    stranger = received(new_id("NEW"))  # no profile: the default account, held for a manager
    run = [feed.record(tight_orders[0]), feed.record(promo_orders[0]),
           feed.record(tight_orders[1]), feed.record(gone), feed.record(tight_orders[2])]
    run.append(feed.again(run[0]))  # the first order again, under another event id
    run += [feed.record(promo_orders[1]), feed.record(stranger), feed.record(tight_orders[3]),
            feed.record(promo_orders[2]), feed.record(tight_orders[4])]

    engine = await schema()
    together = processor(engine)
    await together.process(master, None)
    await together.process(run, None)
    staged = await outbox(engine)
    by_order = {key: (topic, event) for topic, key, event, _ in staged}
    assert len(staged) == len(by_order) == 9  # one decision per order; none for the cancelled
    assert [by_order[o.order_id][0] for o in tight_orders] == ["order.approved"] * 3 + [
        "order.held"] * 2
    for late in tight_orders[3:]:
        assert [r["code"] for r in by_order[late.order_id][1]["reasons"]] == ["credit_limit"]
    assert [by_order[o.order_id][0] for o in promo_orders] == ["order.approved"] * 2 + [
        "order.held"]
    assert [r["code"] for r in by_order[promo_orders[2].order_id][1]["reasons"]] == [
        "promo_invalid"]
    assert by_order[stranger.order_id][0] == "order.held"
    assert gone.order_id not in by_order
    # each event answers its own order's event, in the run's order
    answered = {dict(r.headers)["event_id"].decode() for r in run}
    assert all(cause in answered for *_, cause in staged)
    assert [key for _, key, _, _ in staged] == list(dict.fromkeys(
        json.loads(r.value)["order_id"] for r in run if json.loads(r.value)["order_id"]
        != gone.order_id))

    state = await tables(engine)
    accounts = {a["customer_id"]: a for a in state["review_credit_accounts"]}
    assert accounts[tight]["approved_not_invoiced"] == unit * 3
    assert accounts[tight]["approved_orders"] == 3
    assert accounts[stranger.order.customer.id]["known"] is False
    assert cancelled_customer in accounts and accounts[cancelled_customer]["approved_orders"] == 0
    assert [(p["code"], p["used"]) for p in state["review_promotions"]] == [("TWICE", 2)]
    assert {u["order_id"] for u in state["review_promotion_uses"]} == {
        o.order_id for o in promo_orders[:2]}
    assert [d["order_id"] for d in state["review_decisions"]] == [key for _, key, _, _ in staged]

    # the same events one batch each (runs of one) in schemas of their own: the same outcome
    alone_engine = await schema()
    alone = processor(alone_engine)
    await alone.process(master, None)
    for rec in run:
        await alone.process([rec], None)
    assert await tables(alone_engine) == state
    assert await outbox(alone_engine) == staged

    # the batch redelivered: the inbox skips every event, nothing is applied twice
    await together.process(run, None)
    assert await outbox(engine) == staged
    assert await tables(engine) == state


async def test_concurrent_runs_on_one_account_let_exactly_the_limit_through(
        schema: Schema) -> None:
    """Several runs of orders of one customer, each in its own transaction at the same time (what
    replicas would do): the account's lock serialises them, and within a run each order sees
    the credit the earlier ones took."""
    unit = unit_total()
    fits, runs, per_run = 5, 4, 3
    who = new_id("CT")
    feed = Records()
    engine = await schema()
    limit = D(1000) + unit * fits + unit / 3
    await processor(engine).process([*price_list(feed), feed.record(customer(who, limit))], None)
    handlers = ReviewHandlers(POLICY)
    start = asyncio.Event()

    async def review_run(index: int) -> int:
        run = []
        for n in range(per_run):
            event = received(who)
            headers = EventHeaders.new(event_type="OrderReceived", schema_version=1,
                                       producer="tests", correlation_id=event.order_id)
            run.append(IncomingEvent(topics.ORDER_RECEIVED.name, 0, index * per_run + n,
                                     event.order_id, headers, event, b""))
        await start.wait()
        async with engine.connect() as conn, conn.begin():
            uow = UnitOfWork(AsyncSession(bind=conn), "review")
            await handlers.on_orders_received(uow, run)
            return len(uow.outgoing)

    tasks = [asyncio.create_task(review_run(i)) for i in range(runs)]
    start.set()
    assert await asyncio.gather(*tasks) == [per_run] * runs
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT status, count(*) AS n, sum(grand_total) AS total FROM review_orders "
            "GROUP BY status"))).all()
        account = (await conn.execute(sa.text(
            "SELECT approved_not_invoiced, approved_orders FROM review_credit_accounts "
            "WHERE customer_id = :c"), {"c": who})).one()
    by_status = {r.status: (r.n, r.total) for r in rows}
    assert by_status["approved"] == (fits, unit * fits)
    assert by_status["held"][0] == runs * per_run - fits
    assert (account.approved_not_invoiced, account.approved_orders) == (unit * fits, fits)
