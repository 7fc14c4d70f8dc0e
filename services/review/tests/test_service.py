"""Review through the real broker and PostgreSQL, as its own process behind intake.

Every test makes its own customers (``customer.updated`` with a unique id), so the credit
figures it asserts cannot be moved by other tests' orders in the same session."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.connector import OrderPusher
from orderflow.contracts.events import (
    CustomerUpdated,
    InvoiceIssued,
    OrderChangeAdmitted,
    OrderChangeRejected,
    OrderReceived,
    PaymentReceived,
    Reason,
)
from orderflow.contracts.headers import EventHeaders
from orderflow.contracts.order import CanonicalOrder, OrderLine, OrderTotals, order_id_for
from orderflow.devstack.catalogue import canonical_order, products, stated_total
from orderflow.devstack.processes import free_port, stop, wait_until
from orderflow.devstack.stack import ServiceProcess
from orderflow.review.domain import ReviewPolicy
from orderflow.review.handlers import ReviewHandlers
from orderflow.runtime.db import make_engine
from orderflow.runtime.settings import DatabaseSettings
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork
from orderflow.testing.events import EventLog, SeenEvent
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.service_auth import operator

pytestmark = pytest.mark.service

D = Decimal
DECISION_TOPICS = ("order.approved", "order.held", "order.rejected")


def new_id(prefix: str = "RV") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def new_customer(pipeline: Pipeline, *, limit: str = "100000", terms: str = "net30",
                       receivables: str = "1000", overdue_days: int = 0,
                       overdue_amount: str = "0", blocked: bool = False) -> str:
    """A customer of this test only, its profile consumed by review before this returns."""
    customer_id = new_id("CT")
    await pipeline.publish_and_wait([CustomerUpdated(
        customer_id=customer_id, name="测试客户", credit_limit=D(limit), currency="CNY",
        payment_terms=terms, open_receivables=D(receivables), overdue_amount=D(overdue_amount),
        overdue_days=overdue_days, blocked=blocked)])
    return customer_id


def order_for(customer_id: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """A valid canonical order (demo SKUs at list prices) for ``customer_id``."""
    mutate = kwargs.pop("mutate", None)
    eid = new_id()
    payload = canonical_order(eid, **kwargs)
    payload["customer"]["id"] = customer_id  # type: ignore[index]
    if mutate:
        mutate(payload)
    return eid, payload


async def push(pipeline: Pipeline, *orders: tuple[str, dict[str, Any]]) -> list[str]:
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push_many([("canonical", eid, payload) for eid, payload in orders])
    return [order_id_for("canonical", eid) for eid, _ in orders]


def decisions_of(events: EventLog, order_id: str) -> list[SeenEvent]:
    return [e for topic in DECISION_TOPICS for e in events.of(topic, order_id)]


async def decision(events: EventLog, order_id: str, timeout: float = 90) -> SeenEvent:
    found = await events.wait_for(lambda: decisions_of(events, order_id), timeout=timeout,
                                  what=f"review's decision on {order_id}")
    assert isinstance(found, list)
    first: SeenEvent = found[0]
    return first


def review_api(pipeline: Pipeline) -> httpx.AsyncClient:
    """Review's API; its writes signed as the console signs them, for reviewer wang.li."""
    port = pipeline.stack.find("review").port
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                             auth=operator(pipeline, "review", "wang.li", "reviewer"))


@pytest.fixture
async def api(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with review_api(pipeline) as client:
        yield client


LARGE = [("TEA-002", 8), ("TEA-004", 8), ("TEA-001", 8)]  # about 12 000 CNY: above 10 000


# --- automatic decisions ------------------------------------------------------------------------


async def test_an_ordinary_order_is_approved_automatically_with_its_rules(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    (order_id,) = await push(pipeline, order_for(customer, lines=[("TEA-001", 2)],
                                                 requested_delivery_date="2026-12-20"))
    seen = await decision(events, order_id)
    assert seen.topic == "order.approved"
    approved = seen.event
    assert approved.approved_by == "auto"
    assert approved.order.customer.id == customer
    assert approved.totals.grand_total > 0
    assert len(approved.rules) == 14
    assert all(r.passed for r in approved.rules)
    credit = next(r for r in approved.rules if r.rule == "credit_limit")
    assert credit.figures["exposure"] == "1000.00"
    assert seen.headers["producer"] == "review"
    received = await events.wait_for_event("order.received", order_id)
    assert seen.headers["causation_id"] == received.event_id

    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == approved.totals.grand_total
    assert account["approved_orders"] == 1
    trail = (await api.get(f"/api/orders/{order_id}")).json()
    assert trail["status"] == "approved"
    assert [d["decision"] for d in trail["decisions"]] == ["approved"]


def _price_cut(order: dict[str, Any]) -> None:
    line = order["lines"][0]
    line["unit_price"] = f"{D(line['unit_price']) * D('0.85'):.2f}"
    order["stated_total"] = None  # intake would refuse the demo's total for the new price


@pytest.mark.parametrize(("profile", "order_kwargs", "code"), [
    ({"limit": "5000", "receivables": "4800"}, {}, "credit_limit"),
    ({"overdue_days": 45, "overdue_amount": "2500"}, {}, "overdue"),
    ({"blocked": True}, {}, "blocked_customer"),
    ({"terms": "prepaid"}, {}, "prepayment_due"),
    ({}, {"mutate": _price_cut}, "price_deviation"),
    ({}, {"discount": "400.00", "lines": [("TEA-001", 2)]}, "price_deviation"),
    ({}, {"promo_code": "DOUBLE11"}, "promo_invalid"),
    ({}, {"promo_code": "NO-SUCH-PROMO"}, "promo_invalid"),
    ({}, {"requested_delivery_date": "2026-11-21"}, "date_infeasible"),
    ({}, {"lines": LARGE}, "manager_approval"),
    ({"receivables": "0"}, {"lines": LARGE[:2]}, "manager_approval"),  # new customer's first
])
async def test_each_hold_reason(pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient,
                                profile: dict[str, Any], order_kwargs: dict[str, Any],
                                code: str) -> None:
    customer = await new_customer(pipeline, **profile)
    (order_id,) = await push(pipeline, order_for(customer, **order_kwargs))
    seen = await decision(events, order_id)
    assert seen.topic == "order.held", seen.event
    held = seen.event
    assert {r.code for r in held.reasons} == {code}
    assert held.customer.id == customer
    failed = [r for r in held.rules if not r.passed]
    assert failed, "a hold names the rule that failed"
    assert all(r.figures for r in failed)
    if code == "prepayment_due":
        received = await events.wait_for_event("order.received", order_id)
        assert held.amount_due == received.event.totals.grand_total
    queue = (await api.get("/api/review-queue", params={"reason": code})).json()
    entry = next(o for o in queue["orders"] if o["order_id"] == order_id)
    assert entry["reasons"][0]["code"] == code
    assert entry["age_seconds"] >= 0
    other = "overdue" if code != "overdue" else "credit_limit"
    queue = (await api.get("/api/review-queue", params={"reason": other})).json()
    assert order_id not in {o["order_id"] for o in queue["orders"]}


async def test_cod_orders_are_held_over_their_own_limit(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline, terms="cod", limit="0")
    cod = {"lines": LARGE[:2], "payment_terms": "cod"}  # about 8 600 each; COD limit 10 000
    (first,) = await push(pipeline, order_for(customer, **cod))
    approved = await decision(events, first)
    assert approved.topic == "order.approved", approved.event
    (second,) = await push(pipeline, order_for(customer, **cod))
    held = (await decision(events, second)).event
    assert [r.code for r in held.reasons] == ["credit_limit"]
    cod_rule = next(r for r in held.rules if r.rule == "cod_limit")
    assert not cod_rule.passed
    assert D(cod_rule.figures["open_cod"]) == approved.event.totals.grand_total
    assert next(r for r in held.rules if r.rule == "credit_limit").passed  # COD: not credit
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["open_cod"]) == approved.event.totals.grand_total


async def test_an_unknown_customer_is_held_for_a_manager(
        pipeline: Pipeline, events: EventLog) -> None:
    (order_id,) = await push(pipeline, order_for(new_id("NOPROFILE")))
    held = (await decision(events, order_id)).event
    assert {r.code for r in held.reasons} == {"manager_approval", "credit_limit"}
    profile_rule = next(r for r in held.rules if r.rule == "customer_profile")
    assert not profile_rule.passed


# --- prepayment, invoices and payments -----------------------------------------------------------


async def test_a_prepaid_order_is_released_when_payment_covers_it(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline, terms="prepaid", receivables="0")
    (order_id,) = await push(pipeline, order_for(customer, lines=[("TEA-001", 1)]))
    held = (await decision(events, order_id)).event
    assert [r.code for r in held.reasons] == ["prepayment_due"]
    due = held.amount_due
    assert due is not None and due > 0

    # part of it: still held, less due
    await pipeline.publish_and_wait([PaymentReceived(
        payment_id=new_id("PAY"), customer_id=customer, order_id=order_id, amount=D("100.00"),
        currency="CNY")])
    state = (await api.get(f"/api/orders/{order_id}")).json()
    assert state["status"] == "held"
    assert D(state["amount_due"]) == due - D("100.00")
    assert not events.of("order.approved", order_id)

    # the rest (sent twice by the finance connector: counted once)
    rest = PaymentReceived(payment_id=new_id("PAY"), customer_id=customer, order_id=order_id,
                           amount=due - D("100.00"), currency="CNY")
    await pipeline.publish_and_wait([rest, rest])
    approved = (await events.wait_for_event("order.approved", order_id)).event
    assert approved.approved_by == "auto"
    assert approved.comment == "released: prepayment received"
    prepayment = next(r for r in approved.rules if r.rule == "prepayment")
    assert prepayment.passed and prepayment.figures["amount_due"] == "0.00"
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["open_receivables"]) == 0  # a prepayment is not a receivable
    assert D(account["approved_not_invoiced"]) == 0
    trail = (await api.get(f"/api/orders/{order_id}")).json()
    assert [d["decision"] for d in trail["decisions"]] == ["held", "approved"]
    assert len(events.of("order.approved", order_id)) == 1


async def test_invoices_and_payments_move_the_exposure(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline, receivables="1000")
    (order_id,) = await push(pipeline, order_for(customer, lines=[("TEA-001", 2)]))
    total = (await decision(events, order_id)).event.totals.grand_total

    async def account() -> dict[str, Any]:
        return dict((await api.get(f"/api/credit-accounts/{customer}")).json())

    before = await account()
    assert (D(before["open_receivables"]), D(before["approved_not_invoiced"])) == (D(1000), total)
    invoice = InvoiceIssued(invoice_id=new_id("INV"), customer_id=customer, order_id=order_id,
                            amount=total, currency="CNY")
    await pipeline.publish_and_wait([invoice, invoice])  # a re-push counts once
    invoiced = await account()
    assert D(invoiced["approved_not_invoiced"]) == 0
    assert D(invoiced["open_receivables"]) == D(1000) + total
    assert D(invoiced["exposure"]) == D(before["exposure"])
    await pipeline.publish_and_wait([PaymentReceived(
        payment_id=new_id("PAY"), customer_id=customer, amount=D("1000.00"), currency="CNY")])
    paid = await account()
    assert D(paid["open_receivables"]) == total


# --- the manual queue ---------------------------------------------------------------------------


async def test_a_reviewer_approves_a_held_order_and_a_second_decision_is_refused(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    (order_id,) = await push(pipeline, order_for(customer, lines=LARGE))
    held = (await decision(events, order_id)).event
    assert [r.code for r in held.reasons] == ["manager_approval"]
    queue = (await api.get("/api/review-queue", params={"reason": "manager_approval"})).json()
    assert order_id in {o["order_id"] for o in queue["orders"]}
    assert queue["held_by_reason"]["manager_approval"] >= 1

    body = {"comment": "long-standing customer, year-end stock-up"}
    answer = await api.post(f"/api/orders/{order_id}/approve", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "approved"
    approved = (await events.wait_for_event("order.approved", order_id)).event
    assert (approved.approved_by, approved.comment) == ("wang.li", body["comment"])
    assert not next(r for r in approved.rules if r.rule == "order_value").passed

    again = await api.post(f"/api/orders/{order_id}/approve", json=body)
    assert again.status_code == 409
    assert again.json()["detail"] == (f"order {order_id} is approved, not held: "
                                      "it cannot be approved any more")
    late_reject = await api.post(f"/api/orders/{order_id}/reject", json=body)
    assert late_reject.status_code == 409
    queue = (await api.get("/api/review-queue", params={"reason": "manager_approval"})).json()
    assert order_id not in {o["order_id"] for o in queue["orders"]}

    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == approved.totals.grand_total
    trail = (await api.get(f"/api/orders/{order_id}")).json()
    assert [(d["decision"], d["decided_by"]) for d in trail["decisions"]] == \
        [("held", "auto"), ("approved", "wang.li")]
    assert trail["decisions"][1]["comment"] == body["comment"]
    assert trail["decisions"][1]["reasons"][0]["code"] == "manager_approval"
    assert len(events.of("order.approved", order_id)) == 1


async def test_a_reviewer_rejects_a_held_order(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline, overdue_days=90, overdue_amount="5000")
    (order_id,) = await push(pipeline, order_for(customer))
    assert (await decision(events, order_id)).topic == "order.held"
    body = {"comment": "overdue since August; ask for payment first"}
    answer = await api.post(f"/api/orders/{order_id}/reject", json=body,
                            auth=operator(pipeline, "review", "zhao.min", "reviewer"))
    assert answer.status_code == 200, answer.text
    rejected = (await events.wait_for_event("order.rejected", order_id)).event
    assert rejected.stage == "review"
    assert (rejected.decided_by, rejected.comment) == ("zhao.min", body["comment"])
    assert [r.code for r in rejected.reasons] == ["overdue"]
    assert rejected.customer is not None and rejected.customer.id == customer
    again = await api.post(f"/api/orders/{order_id}/approve", json=body)
    assert again.status_code == 409
    assert "rejected, not held" in again.json()["detail"]
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == 0
    assert not events.of("order.approved", order_id)


async def test_the_api_refuses_what_it_cannot_do(
        pipeline: Pipeline, api: httpx.AsyncClient) -> None:
    body = {"comment": ""}
    missing = await api.post(f"/api/orders/{uuid.uuid4()}/approve", json=body)
    assert missing.status_code == 404
    assert "not known to review" in missing.json()["detail"]
    # the reviewer is the credential's operator: a body naming one is refused
    assert (await api.post(f"/api/orders/{uuid.uuid4()}/approve",
                           json={"reviewer": "someone.else"})).status_code == 422
    # no credential, or one of a role below reviewer: refused before anything is looked at
    assert (await api.post(f"/api/orders/{uuid.uuid4()}/approve", json=body,
                           auth=None)).status_code == 401
    assert (await api.post(f"/api/orders/{uuid.uuid4()}/approve", json=body,
                           auth=operator(pipeline, "review", "v", "viewer"))).status_code == 403
    bad_reason = await api.get("/api/review-queue", params={"reason": "sunspots"})
    assert bad_reason.status_code == 422
    assert "credit_limit" in bad_reason.json()["detail"]
    policy = (await api.get("/api/review-policy")).json()
    assert policy["manager_approval_above"] == "10000"


# --- exposure under concurrency -----------------------------------------------------------------

ORDERS_AT_ONCE = 12


def _unit_total() -> Decimal:
    """The grand total intake computes for one TEA-001 x 2 order with the demo's shipping."""
    price = products()["TEA-001"].unit_price
    return stated_total([("TEA-001", 2, price, D(0))], D("10.00"))


async def test_many_orders_of_one_customer_at_once_do_not_jointly_pass_the_limit(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    """Through the broker, with a second review replica in the consumer group, so orders of one
    customer on different partitions are reviewed by two processes at the same time."""
    unit = _unit_total()
    fits = 5
    limit = D(1000) + unit * fits + unit / 2  # room for 5 orders and a half
    customer = await new_customer(pipeline, limit=str(limit), receivables="1000")
    replica = ServiceProcess("review", 1, free_port())
    pipeline.stack.processes.append(replica)
    pipeline.stack.launch(replica)
    try:
        await asyncio.to_thread(wait_until, lambda: pipeline.stack.healthy(replica), timeout=90,
                                what="a second review replica")
        orders = [order_for(customer, lines=[("TEA-001", 2)]) for _ in range(ORDERS_AT_ONCE)]
        order_ids = await push(pipeline, *orders)
        await events.wait_for(lambda: all(decisions_of(events, o) for o in order_ids),
                              timeout=120, what="a decision on every order")
    finally:
        await asyncio.to_thread(stop, replica.proc, timeout=30)
        pipeline.stack.processes.remove(replica)
    outcomes = {o: decisions_of(events, o) for o in order_ids}
    assert all(len(seen) == 1 for seen in outcomes.values()), "one decision per order"
    approved = [s[0] for s in outcomes.values() if s[0].topic == "order.approved"]
    held = [s[0] for s in outcomes.values() if s[0].topic == "order.held"]
    assert len(approved) == fits
    assert len(held) == ORDERS_AT_ONCE - fits
    assert all([r.code for r in h.event.reasons] == ["credit_limit"] for h in held)
    approved_total = sum((a.event.totals.grand_total for a in approved), D(0))
    assert D(1000) + approved_total <= limit
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == approved_total
    assert D(account["exposure"]) <= limit


async def test_concurrent_transactions_on_one_credit_account_serialise(
        pipeline: Pipeline, api: httpx.AsyncClient) -> None:
    """The handler itself, in many truly concurrent database transactions against the real
    PostgreSQL (what many replicas would do at once): the row lock lets exactly as many orders
    through as the limit allows. The transactions write no outbox rows, so nothing is published."""
    unit = _unit_total()
    fits = 4
    limit = D(1000) + unit * fits + unit / 3
    customer = await new_customer(pipeline, limit=str(limit), receivables="1000")
    engine = make_engine(DatabaseSettings(url=pipeline.infra.database_url), "review")
    handlers = ReviewHandlers(ReviewPolicy())
    start = asyncio.Event()

    async def review_one(index: int) -> None:
        eid = new_id("CONC")
        _, payload = order_for(customer, lines=[("TEA-001", 2)])
        payload["external_id"] = eid
        order = CanonicalOrder.model_validate(payload)
        shipping = D("10.00")
        tax = unit - order.lines[0].unit_price * 2 - shipping
        received = OrderReceived(
            order_id=order_id_for("canonical", eid), channel="canonical", external_id=eid,
            order=order, totals=OrderTotals(subtotal=order.lines[0].unit_price * 2,
                                            discount=D("0.00"), tax=tax, shipping=shipping,
                                            grand_total=unit))
        headers = EventHeaders.new(event_type="OrderReceived", schema_version=1,
                                   producer="tests", correlation_id=received.order_id)
        incoming = IncomingEvent("order.received", 0, index, received.order_id, headers, received,
                                 b"")
        await start.wait()
        async with engine.connect() as conn, conn.begin():
            session = AsyncSession(bind=conn)
            uow = UnitOfWork(session, "review")
            uow.current = incoming  # type: ignore[assignment]
            await handlers.on_orders_received(uow, [incoming])
            await session.flush()
            assert uow.outgoing  # staged, never written to the outbox

    try:
        tasks = [asyncio.create_task(review_one(i)) for i in range(10)]
        start.set()
        await asyncio.gather(*tasks)
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                "SELECT status, count(*) AS n, sum(grand_total) AS total FROM review_orders "
                "WHERE customer_id = :c GROUP BY status"), {"c": customer})).all()
    finally:
        await engine.dispose()
    by_status = {r.status: (r.n, r.total) for r in rows}
    assert by_status["approved"][0] == fits
    assert by_status["held"][0] == 10 - fits
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == by_status["approved"][1]
    assert D(account["exposure"]) <= limit


# --- two approvals, and sending back ------------------------------------------------------------

HUGE = [("TEA-007", 100)]  # about 70 000 CNY: above the director threshold (50 000)


def decider_api(pipeline: Pipeline, name: str, role: str) -> httpx.AsyncClient:
    port = pipeline.stack.find("review").port
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                             auth=operator(pipeline, "review", name, role))


async def test_above_the_director_threshold_a_reviewer_approves_first_and_a_director_second(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline, limit="1000000")
    (order_id,) = await push(pipeline, order_for(customer, lines=HUGE))
    assert (await decision(events, order_id)).topic == "order.held"

    first = await api.post(f"/api/orders/{order_id}/approve", json={"comment": "credit fine"})
    assert first.status_code == 200, first.text
    assert first.json() == {
        "order_id": order_id, "status": "held", "decision": "first_approval",
        "decided_by": "wang.li", "comment": "credit fine", "awaiting": "director"}
    held = await events.wait_for(
        lambda: [e for e in events.of("order.held", order_id)
                 if e.event.reasons[0].code == "director_approval"], what="the director hold")
    (hold,) = held[0].event.reasons
    assert hold.figures["approved_by"] == "wang.li"
    queue = (await api.get("/api/review-queue", params={"reason": "director_approval"})).json()
    assert order_id in {o["order_id"] for o in queue["orders"]}
    assert not events.of("order.approved", order_id)

    # the reviewer cannot give the second approval, by either route
    again = await api.post(f"/api/orders/{order_id}/approve", json={})
    assert again.status_code == 409 and "awaits a director" in again.json()["detail"]
    refused = await api.post(f"/api/orders/{order_id}/director-approve", json={})
    assert refused.status_code == 403

    async with decider_api(pipeline, "chen.jie", "director") as director:
        second = await director.post(f"/api/orders/{order_id}/director-approve",
                                     json={"comment": "year-end stock-up"})
    assert second.status_code == 200, second.text
    assert (second.json()["status"], second.json()["awaiting"]) == ("approved", None)
    approved = (await events.wait_for_event("order.approved", order_id)).event
    assert (approved.approved_by, approved.comment) == ("chen.jie", "year-end stock-up")
    trail = (await api.get(f"/api/orders/{order_id}")).json()
    assert [(d["decision"], d["decided_by"]) for d in trail["decisions"]] == [
        ("held", "auto"), ("first_approval", "wang.li"), ("approved", "chen.jie")]
    assert (trail["status"], trail["decided_by"]) == ("approved", "chen.jie")
    account = (await api.get(f"/api/credit-accounts/{customer}")).json()
    assert D(account["approved_not_invoiced"]) == approved.totals.grand_total


async def test_one_director_cannot_give_both_approvals(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline, limit="1000000")
    (order_id,) = await push(pipeline, order_for(customer, lines=HUGE))
    assert (await decision(events, order_id)).topic == "order.held"
    async with decider_api(pipeline, "chen.jie", "director") as director:
        alone = await director.post(f"/api/orders/{order_id}/director-approve", json={})
        assert alone.status_code == 409 and "reviewer's approval before" in alone.json()["detail"]
        first = await director.post(f"/api/orders/{order_id}/approve", json={})
        assert first.json()["decision"] == "first_approval"
        twice = await director.post(f"/api/orders/{order_id}/director-approve", json={})
        assert twice.status_code == 409 and "another person" in twice.json()["detail"]
    assert not events.of("order.approved", order_id)


async def test_a_held_order_sent_back_is_reviewed_again_on_its_next_revision(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    (order_id,) = await push(pipeline, order_for(customer, lines=LARGE))  # above 10 000: held
    assert (await decision(events, order_id)).topic == "order.held"
    bare = await api.post(f"/api/orders/{order_id}/send-back", json={"comment": "  "})
    assert bare.status_code == 422 and "what to rework" in bare.json()["detail"], bare.text
    back = await api.post(f"/api/orders/{order_id}/send-back",
                          json={"comment": "split it into two orders"})
    assert back.status_code == 200, back.text
    assert (back.json()["status"], back.json()["decision"]) == ("sent_back", "sent_back")
    rejected = (await events.wait_for_event("order.rejected", order_id)).event
    assert (rejected.stage, rejected.decided_by) == ("review", "wang.li")
    assert [(r.code, r.message) for r in rejected.reasons] == [
        ("rework", "sent back for rework: split it into two orders")]
    late = await api.post(f"/api/orders/{order_id}/approve", json={})
    assert late.status_code == 409 and "sent back for rework" in late.json()["detail"]

    # the reworked revision passes every rule: approved with its new content
    received = (await events.wait_for_event("order.received", order_id)).event
    small = admitted_change(received, [("TEA-001", 1)],
                            str(products()["TEA-001"].unit_price + D("10.00")))
    await pipeline.publish_and_wait([small])
    approved = (await events.wait_for_event("order.approved", order_id)).event
    assert approved.order.revision == 2
    step = await events.wait_for_event("order.change-approved", order_id)
    assert step.event.review_status == "approved"
    trail = (await api.get(f"/api/orders/{order_id}")).json()
    assert [d["decision"] for d in trail["decisions"]] == [
        "held", "sent_back", "approved", "changed"]
    await exposure_reaches(api, customer, small.totals.grand_total)


# --- changes ------------------------------------------------------------------------------------


def admitted_change(received: OrderReceived, lines: list[tuple[str, int]], grand_total: str, *,
                    revision: int = 2) -> OrderChangeAdmitted:
    """A change as logistics admits it: the order's new lines and (given) totals."""
    cat = products()
    new = received.order.model_copy(update={"revision": revision, "lines": tuple(
        OrderLine(sku=sku, quantity=q, unit_price=cat[sku].unit_price) for sku, q in lines)})
    totals = received.totals.model_copy(update={"grand_total": D(grand_total)})
    return OrderChangeAdmitted(
        order_id=received.order_id, change_id=new_id("CHG"), channel=received.channel,
        external_id=received.external_id, previous_revision=revision - 1, order=new,
        totals=totals, requested_by="tests")


async def approved_not_invoiced(api: httpx.AsyncClient, customer_id: str) -> Decimal:
    return D((await api.get(f"/api/credit-accounts/{customer_id}")).json()["approved_not_invoiced"])


async def exposure_reaches(api: httpx.AsyncClient, customer_id: str, expected: Decimal) -> None:
    deadline = asyncio.get_running_loop().time() + 60
    while (now := await approved_not_invoiced(api, customer_id)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{now}, expected {expected}"
        await asyncio.sleep(0.2)


async def test_a_change_moves_the_exposure_by_the_difference_and_is_undone_when_refused_later(
        saga_step: tuple[Pipeline, EventLog]) -> None:
    pipeline, events = saga_step
    async with review_api(pipeline) as api:
        await _a_change_moves_the_exposure_and_is_undone(pipeline, events, api)


async def _a_change_moves_the_exposure_and_is_undone(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    (order_id,) = await push(pipeline, order_for(customer, lines=[("TEA-001", 2)]))
    seen = await decision(events, order_id)
    assert seen.topic == "order.approved"
    received = (await events.wait_for_event("order.received", order_id)).event
    total = received.totals.grand_total
    await exposure_reaches(api, customer, total)

    change = admitted_change(received, [("TEA-001", 3)], str(total + D("500.00")))
    await pipeline.publish_and_wait([change])
    step = await events.wait_for_event("order.change-approved", order_id)
    assert step.event.review_status == "approved"
    assert step.event.exposure_delta == D("500.00")
    assert step.event.changes == ("quantity_increased",)
    assert step.event.previous_totals == received.totals
    await exposure_reaches(api, customer, total + D("500.00"))
    assert (await api.get(f"/api/orders/{order_id}")).json()["grand_total"] == str(total + 500)

    # inventory refused it: review gives the difference back and restores the order
    await pipeline.publish_and_wait([OrderChangeRejected(
        order_id=order_id, change_id=change.change_id, revision=2, stage="inventory",
        reasons=(Reason(code="insufficient_stock", message="not in stock"),),
        requested_by="tests")])
    await exposure_reaches(api, customer, total)
    assert (await api.get(f"/api/orders/{order_id}")).json()["grand_total"] == str(total)
    # the same change id again is not decided twice
    await pipeline.publish_and_wait([change])
    assert len(events.of("order.change-approved", order_id)) == 1
    assert len(events.of("order.change-rejected", order_id)) == 1


async def test_a_change_seen_before_the_order_is_reviewed_as_the_order(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    eid, payload = order_for(customer, lines=[("TEA-001", 1)])
    order_id = order_id_for("canonical", eid)
    order = CanonicalOrder.model_validate(payload)
    cat = products()
    first = OrderReceived(order_id=order_id, channel="canonical", external_id=eid, order=order,
                          totals=OrderTotals(subtotal=cat["TEA-001"].unit_price, discount=D(0),
                                             tax=D(0), shipping=D(0),
                                             grand_total=cat["TEA-001"].unit_price))
    change = admitted_change(first, [("TEA-001", 2)], str(2 * cat["TEA-001"].unit_price))
    await pipeline.publish_and_wait([change])
    step = await events.wait_for_event("order.change-approved", order_id)
    assert step.event.review_status == "not_reviewed"
    await pipeline.publish_and_wait([first])  # the order itself, late
    seen = await decision(events, order_id)
    assert seen.topic == "order.approved"
    assert seen.event.order.revision == 2
    assert [(x.sku, x.quantity) for x in seen.event.order.lines] == [("TEA-001", 2)]
    await exposure_reaches(api, customer, 2 * cat["TEA-001"].unit_price)


async def test_a_held_order_changed_to_pass_every_rule_is_approved_with_its_new_content(
        pipeline: Pipeline, events: EventLog, api: httpx.AsyncClient) -> None:
    customer = await new_customer(pipeline)
    (order_id,) = await push(pipeline, order_for(customer, lines=LARGE))  # above 10 000: held
    seen = await decision(events, order_id)
    assert seen.topic == "order.held"
    received = (await events.wait_for_event("order.received", order_id)).event
    small = admitted_change(received, [("TEA-001", 1)],
                            str(products()["TEA-001"].unit_price + D("10.00")))
    await pipeline.publish_and_wait([small])
    step = await events.wait_for_event("order.change-approved", order_id)
    assert step.event.review_status == "approved" and step.event.exposure_delta == 0
    assert set(step.event.changes) == {"line_removed", "quantity_decreased"}
    approved = await events.wait_for_event("order.approved", order_id)
    assert approved.event.order.revision == 2
    assert [(x.sku, x.quantity) for x in approved.event.order.lines] == [("TEA-001", 1)]
    await exposure_reaches(api, customer, small.totals.grand_total)
    queue = (await api.get("/api/review-queue")).json()
    assert order_id not in {o["order_id"] for o in queue["orders"]}
