"""Worklists, bulk decisions and customer cases through the console's API against the real broker
and PostgreSQL: claim, assign and unassign, one of two concurrent claims wins, "my work", a case
overdue by its date, a bulk approve where one order is refused, cases with their rights and CSRF,
and every action audited and on the order's activity."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from console_factories import OrderStory
from console_helpers import admin_token, held_order, new_id, sign_in, until

from orderflow.contracts import events as ev
from orderflow.contracts.order import Customer
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


@pytest.fixture
async def admin(console_base: str, pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as client:
        yield client


async def session_of(console_base: str, user: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    client = httpx.AsyncClient(base_url=console_base, timeout=30)
    csrf = await sign_in(client, user)
    return client, {"X-CSRF-Token": csrf}


@contextlib.asynccontextmanager
async def closing(*clients: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for client in clients:
            await client.aclose()


async def rejected_order(pipeline: Pipeline, external_id: str) -> str:
    """A desk order intake refused, naming the customer's contact."""
    story = OrderStory(external_id, channel="desk").received()
    story.add(ev.OrderRejected(
        order_id=story.order_id, channel="desk", external_id=external_id, stage="intake",
        reasons=(ev.Reason(code="unknown_sku", message="no such SKU"),),
        customer=Customer(id="C0002", name="Li Lei", email="li@example.com",
                          phone="13800000000")), 1, "intake")
    await pipeline.publish_and_wait(story.events)
    return story.order_id


async def item(client: httpx.AsyncClient, key: str, **query: Any) -> dict[str, Any] | None:
    r = await client.get("/api/worklist", params=query)
    assert r.status_code == 200, r.text
    return next((i for i in r.json()["items"] if i["key"] == key), None)


async def test_claim_assign_unassign_my_work_and_a_concurrent_claim(
        pipeline: Pipeline, console_base: str, admin: httpx.AsyncClient) -> None:
    order_id = await rejected_order(pipeline, new_id("REJ"))
    key = f"rejected:{order_id}"
    found = await until(lambda: item(admin, key), what="the rejected order in the worklist")
    assert found["reason_codes"] == ["unknown_sku"]
    assert found["details"]["contact"] == {"name": "Li Lei", "email": "li@example.com",
                                           "phone": "13800000000"}
    clerk, clerk_h = await session_of(console_base, "clerk")
    reviewer, reviewer_h = await session_of(console_base, "reviewer")
    viewer, viewer_h = await session_of(console_base, "viewer")
    async with closing(clerk, reviewer, viewer):
        # of two claims at once, one wins; the other is told who holds it
        answers = await asyncio.gather(
            clerk.post("/api/worklist/claim", json={"key": key}, headers=clerk_h),
            reviewer.post("/api/worklist/claim", json={"key": key}, headers=reviewer_h))
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        winner = "clerk" if answers[0].status_code == 200 else "reviewer"
        assert winner in answers[1 if winner == "clerk" else 0].json()["detail"]
        # assigned to the clerk: it is the clerk's work, not the reviewer's
        r = await reviewer.post("/api/worklist/assign", json={"key": key, "assignee": "clerk"},
                                headers=reviewer_h)
        assert r.status_code == 200 and r.json()["assignee"] == "clerk"
        assert (await item(clerk, key, mine=True)) is not None
        assert (await item(reviewer, key, mine=True)) is None
        assert (await item(clerk, key))["assignee"] == "clerk"  # type: ignore[index]
        # someone else's item is not claimed over them
        assert (await reviewer.post("/api/worklist/claim", json={"key": key},
                                    headers=reviewer_h)).status_code == 409
        bad = await clerk.post("/api/worklist/assign", json={"key": key, "assignee": "viewer"},
                               headers=clerk_h)
        assert bad.status_code == 422  # a viewer works no items
        # a viewer may read the worklist but not work it; no CSRF token, no action
        assert (await viewer.post("/api/worklist/claim", json={"key": key},
                                  headers=viewer_h)).status_code == 403
        assert (await clerk.post("/api/worklist/unassign", json={"key": key})).status_code == 403
        r = await clerk.post("/api/worklist/unassign", json={"key": key}, headers=clerk_h)
        assert r.status_code == 200 and r.json()["assignee"] is None
        assert (await item(clerk, key, unassigned=True)) is not None
        # done: it leaves the worklists
        assert (await clerk.post("/api/worklist/done", json={"key": key},
                                 headers=clerk_h)).status_code == 200
        assert (await item(clerk, key)) is None
    actions = (await admin.get(f"/api/orders/{order_id}/activity")).json()["actions"]
    seen = [(a["user_name"], a["action"], a["outcome"]) for a in actions]
    assert ("reviewer", "assign", "done") in seen and ("clerk", "done", "done") in seen
    assert ("clerk", "unassign", "done") in seen
    assert any(a == "claim" and o == "refused_409" for _, a, o in seen)
    # the viewer's refused claim is audited under the rights a claim takes, not one of them
    refusals = [(e["user_name"], e["action"], e["outcome"]) for e in (await admin.get(
        "/api/audit", params={"limit": 1000})).json()["entries"]
        if e["target"] == "/api/worklist/claim"]
    assert ("viewer", "case|amend|decide", "forbidden") in refusals
    assert ("viewer", "case", "forbidden") not in refusals


async def test_bulk_approve_goes_on_when_one_order_is_refused(
        pipeline: Pipeline, console_base: str, review_standin: Any,
        admin: httpx.AsyncClient) -> None:
    first = await held_order(pipeline, review_standin, admin, new_id("BULK"))
    second = await held_order(pipeline, review_standin, admin, new_id("BULK"))
    not_held = await rejected_order(pipeline, new_id("BULKREJ"))
    reviewer, headers = await session_of(console_base, "reviewer")
    clerk, clerk_h = await session_of(console_base, "clerk")
    async with closing(reviewer, clerk):
        body = {"order_ids": [first, not_held, second], "decision": "approve",
                "comment": "paid in advance"}
        assert (await clerk.post("/api/worklist/decide", json=body,
                                 headers=clerk_h)).status_code == 403  # a clerk decides nothing
        r = await reviewer.post("/api/worklist/decide", json=body, headers=headers)
        assert r.status_code == 200, r.text
        results = {x["order_id"]: x["status"] for x in r.json()["results"]}
        assert results == {first: 200, not_held: 409, second: 200}
        assert (r.json()["accepted"], r.json()["refused"]) == (2, 1)
    audit = (await admin.get("/api/audit", params={"action": "approve"})).json()["entries"]
    mine = {e["target"]: e for e in audit if e["target"] in {first, second, not_held}}
    assert mine[first]["outcome"] == "accepted" and mine[not_held]["outcome"] == "refused_409"
    assert mine[second]["detail"]["comment"] == "paid in advance"


async def test_cases_recorded_worked_and_refused_without_the_right(
        pipeline: Pipeline, console_base: str, admin: httpx.AsyncClient) -> None:
    story = OrderStory(new_id("CASE"), channel="testkit").received()
    await pipeline.publish_and_wait(story.events)
    await until(lambda: _known(admin, story.order_id), what="the order in the console")
    clerk, headers = await session_of(console_base, "clerk")
    reviewer, reviewer_h = await session_of(console_base, "reviewer")
    viewer, viewer_h = await session_of(console_base, "viewer")
    async with closing(clerk, reviewer, viewer):
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        body = {"customer_id": "C0002", "order_id": story.order_id, "type": "complaint",
                "text": "the parcel came late", "due_date": yesterday}
        for refused, h in ((viewer, viewer_h), (reviewer, reviewer_h)):
            assert (await refused.post("/api/cases", json=body, headers=h)).status_code == 403
        assert (await clerk.post("/api/cases", json=body)).status_code == 403  # no CSRF token
        bad = await clerk.post("/api/cases", json={**body, "type": "praise"}, headers=headers)
        assert bad.status_code == 422 and "type" in bad.text
        unknown = await clerk.post("/api/cases", json={**body, "order_id": "no-such-order"},
                                   headers=headers)
        assert unknown.status_code == 422
        r = await clerk.post("/api/cases", json=body, headers=headers)
        assert r.status_code == 201, r.text
        case = r.json()
        assert (case["status"], case["created_by"]) == ("open", "clerk")
        listed = (await viewer.get("/api/cases", params={"order_id": story.order_id})).json()
        assert [c["id"] for c in listed["cases"]] == [case["id"]]
        # in the worklists, overdue (due yesterday), assignable like the rest
        key = f"case:{case['id']}"
        work = await item(viewer, key, overdue=True)
        assert work is not None and work["kind"] == "case" and work["breached"]
        assert (await clerk.post("/api/worklist/claim", json={"key": key},
                                 headers=headers)).status_code == 200
        assert (await item(clerk, key, mine=True)) is not None
        status = f"/api/cases/{case['id']}/status"
        assert (await reviewer.post(status, json={"status": "closed"},
                                    headers=reviewer_h)).status_code == 403
        assert (await clerk.post(status, json={"status": "later"},
                                 headers=headers)).status_code == 422
        r = await clerk.post(status, json={"status": "answered"}, headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "answered"
        assert (await item(clerk, key)) is not None  # answered: still open work
        assert (await clerk.post(status, json={"status": "closed"},
                                 headers=headers)).status_code == 200
        assert (await item(clerk, key)) is None
        assert (await clerk.post("/api/cases/999999999/status", json={"status": "closed"},
                                 headers=headers)).status_code == 404
        # on the order's timeline, in the reader's language
        timeline = (await clerk.get(f"/orders/{story.order_id}/timeline")).text
        assert "recorded case" in timeline and "the parcel came late" in timeline
        assert "set case" in timeline and "closed" in timeline
    actions = (await admin.get(f"/api/orders/{story.order_id}/activity")).json()
    assert [a["action"] for a in actions["actions"]] == \
        ["case_open", "claim", "case_status", "case_status"]


async def _known(client: httpx.AsyncClient, order_id: str) -> bool:
    return (await client.get(f"/api/orders/{order_id}")).status_code == 200
