"""A rejected order fixed and resubmitted as its next revision, end to end, every service as its
own process against the real broker and PostgreSQL: one rejected by review (a reviewer refused
it over its credit limit) goes through review again as a change and on to dispatch; one
rejected by intake (an unknown SKU) is checked afresh and goes on as an order. After each: the
stock, the exposure and the stock invariant.

Run: ORDERFLOW_TEST_SERVICES=intake,review,inventory,logistics,notify timeout 900 \
    .venv/bin/pytest tests/e2e/test_resubmit.py -q -x
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline
from orderflow.testing.service_auth import operator

from . import sagas
from .test_changes import (
    Order,
    T,
    available_is,
    changed,
    dispatched_units,
    exposure_is,
    new_customer,
    new_sku,
    stock_invariants_hold,
    total_of,
    url,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("order_services")]


@pytest.fixture
def order_services(pipeline: Pipeline) -> None:
    sagas.require_order_services(pipeline, "resubmissions")


async def reviewer_rejects(pipeline: Pipeline, events: EventLog, order_id: str) -> None:
    """A reviewer rejects the held order (review's decision API): ``order.rejected``, stage
    review."""
    async with httpx.AsyncClient(base_url=url(pipeline, "review"), timeout=10,
                                 auth=operator(pipeline, "review", "li.na", "reviewer")) as api:
        response = await api.post(f"/api/orders/{order_id}/reject",
                                  json={"comment": "over the credit limit"})
        assert response.status_code == 200, response.text
    rejected = await events.wait_for_event("order.rejected", order_id, timeout=T)
    assert rejected.event.stage == "review"


async def test_an_order_review_rejected_over_its_credit_limit_is_fixed_and_dispatched(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline, limit="1200")  # owes 1000: room for 200
    sku = await new_sku(pipeline, stock=5)
    order = Order(customer, [(sku, 3)])  # 349.00: over the limit
    oid = await order.push(pipeline)
    held = await events.wait_for_event("order.held", oid, timeout=T)
    assert "credit_limit" in [r.code for r in held.event.reasons]
    await reviewer_rejects(pipeline, events, oid)
    await exposure_is(pipeline, customer, Decimal(0))
    await available_is(pipeline, sku, 5)  # nothing reserved for a rejected order

    await order.revised(lines=[(sku, 1)]).push(pipeline)  # 123.00: fits
    done = await changed(events, oid, 2)
    assert done.event.review_status == "approved"
    approved = await events.wait_for_event("order.approved", oid, timeout=T)
    assert approved.event.order.revision == 2
    await dispatched_units(events, oid, {sku: 1})
    await available_is(pipeline, sku, 4)
    await exposure_is(pipeline, customer, total_of(1))
    assert not events.of("order.change-rejected", oid)
    await stock_invariants_hold(pipeline)


async def test_an_order_review_rejected_whose_fix_still_fails_is_held_again(
        pipeline: Pipeline, events: EventLog) -> None:
    """A revision that still fails a rule holds the order again for a person: back in the
    queue with the new reasons, nothing reserved until approved."""
    customer = await new_customer(pipeline, limit="1200")
    sku = await new_sku(pipeline, stock=5)
    order = Order(customer, [(sku, 3)])
    oid = await order.push(pipeline)
    await events.wait_for_event("order.held", oid, timeout=T)
    await reviewer_rejects(pipeline, events, oid)

    await order.revised(lines=[(sku, 2)]).push(pipeline)  # 236.00: still over
    done = await changed(events, oid, 2)
    assert done.event.review_status == "held" and done.event.stock_status == "not_allocated"
    await events.wait_for(lambda: len(events.of("order.held", oid)) == 2, timeout=T,
                          what=f"{oid} held again")
    assert "credit_limit" in [r.code for r in events.of("order.held", oid)[-1].event.reasons]
    assert not events.of("shipment.dispatched", oid)
    await available_is(pipeline, sku, 5)
    await stock_invariants_hold(pipeline)


async def test_an_order_intake_rejected_for_an_unknown_sku_is_fixed_and_dispatched(
        pipeline: Pipeline, events: EventLog) -> None:
    customer = await new_customer(pipeline)
    sku = await new_sku(pipeline, stock=5)
    order = Order(customer, [(sku, 2), ("NO-SUCH-SKU-0000", 1)])
    oid = await order.push(pipeline)
    rejected = await events.wait_for_event("order.rejected", oid, timeout=T)
    assert rejected.event.stage == "intake"
    assert "unknown_sku" in [r.code for r in rejected.event.reasons]

    await order.revised(lines=[(sku, 2)]).push(pipeline)
    received = await events.wait_for_event("order.received", oid, timeout=T)
    assert received.event.order.revision == 2
    await dispatched_units(events, oid, {sku: 2})
    await available_is(pipeline, sku, 3)
    await exposure_is(pipeline, customer, total_of(2))
    assert not events.of("order.change-requested", oid)  # a retry is an order, not a change
    await stock_invariants_hold(pipeline)
