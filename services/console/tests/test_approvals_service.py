"""Approval levels and send-backs through the console's API, against the real review service:
a reviewer's approval above the director threshold leaves the order awaiting a director, a
director's approval passes it, a clerk is refused; a send-back puts the order on its channel's
worklist, and its next revision (re-pushed through intake, a change request) is reviewed again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from console_helpers import admin_token, console_view, new_id, sign_in, until

from orderflow.connector import OrderPusher
from orderflow.console.domain import OrderView
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service

# about 70 000 CNY: above review's director threshold (50 000); customer C0042 is blocked, so the
# order is held first
HUGE = [("TEA-007", 100)]


@pytest.fixture
async def admin(console_base: str, pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as client:
        yield client


def needs_review(pipeline: Pipeline, review_standin: Any) -> None:
    if review_standin is not None or "intake" not in pipeline.services:
        pytest.skip("approval levels are review's: the test needs intake and review running")


async def pushed_and_held(pipeline: Pipeline, admin: httpx.AsyncClient,
                          payload: dict[str, Any]) -> str:
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", payload)
    order_id = order_id_for("canonical", str(payload["external_id"]))
    await state_is(admin, order_id, "held")
    return order_id


async def state_is(admin: httpx.AsyncClient, order_id: str, state: str,
                   codes: list[str] | None = None) -> OrderView:
    async def reached() -> OrderView | None:
        view = await console_view(admin, order_id)
        if view is None or view.state is None or view.state.value != state:
            return None
        return view if codes is None or view.hold_codes == codes else None
    found: OrderView = await until(reached, timeout=90, what=f"{order_id} {state} {codes or ''}")
    return found


class Operator:
    """A signed-in operator's client, its CSRF token sent with every write."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client, self.csrf = client, csrf

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(path, json=body, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture
async def operators(console_base: str) -> AsyncIterator[dict[str, Operator]]:
    clients = {name: httpx.AsyncClient(base_url=console_base, timeout=30)
               for name in ("clerk", "reviewer", "director")}
    try:
        yield {name: Operator(c, await sign_in(c, name)) for name, c in clients.items()}
    finally:
        for c in clients.values():
            await c.aclose()


async def test_a_reviewer_then_a_director_approve_and_a_clerk_is_refused(
        pipeline: Pipeline, review_standin: Any, admin: httpx.AsyncClient,
        operators: dict[str, Operator]) -> None:
    needs_review(pipeline, review_standin)
    clerk, reviewer, director = operators["clerk"], operators["reviewer"], operators["director"]
    order_id = await pushed_and_held(pipeline, admin, canonical_order(
        new_id("DIR"), customer_id="C0042", lines=HUGE))
    path = f"/api/orders/{order_id}"

    refused = await clerk.post(f"{path}/approve", {"comment": "looks fine"})
    assert refused.status_code == 403
    first = await reviewer.post(f"{path}/approve", {"comment": "credit checked"})
    assert first.status_code == 200, first.text
    assert first.json()["review"]["decided_by"] == "reviewer"
    assert (first.json()["review"]["status"], first.json()["review"]["awaiting"]) == (
        "held", "director")
    view = await state_is(admin, order_id, "held", ["director_approval"])
    assert view.holds[-1].figures["approved_by"] == "reviewer"
    queue = (await admin.get("/api/exceptions", params={"kind": "held"})).json()["items"]
    (item,) = [i for i in queue if i["order_id"] == order_id]
    assert item["actions"][0] == "director_approve"

    # the reviewer cannot give the second approval: the console has no right for it, review
    # refuses a plain approval of an order awaiting a director
    assert (await reviewer.post(f"{path}/director-approve", {})).status_code == 403
    again = await reviewer.post(f"{path}/approve", {})
    assert again.status_code == 409 and "awaits a director" in again.json()["message"]

    second = await director.post(f"{path}/director-approve", {"comment": "year-end stock-up"})
    assert second.status_code == 200, second.text
    assert second.json()["review"]["status"] == "approved"

    async def approved() -> OrderView | None:
        v = await console_view(admin, order_id)
        return v if v is not None and v.approved_by == "director" else None
    await until(approved, timeout=90, what="the director's approval")
    entries = (await admin.get("/api/audit", params={"limit": 500})).json()["entries"]
    mine = [(e["user_name"], e["action"], e["outcome"]) for e in entries
            if e["target"] in (order_id, f"{path}/approve", f"{path}/director-approve")]
    assert ("clerk", "decide", "forbidden") in mine
    assert ("reviewer", "approve", "accepted") in mine
    assert ("reviewer", "direct", "forbidden") in mine
    assert ("reviewer", "approve", "refused_409") in mine
    assert ("director", "director-approve", "accepted") in mine


async def test_an_order_sent_back_is_reviewed_again_when_its_next_revision_comes(
        pipeline: Pipeline, review_standin: Any, admin: httpx.AsyncClient,
        operators: dict[str, Operator]) -> None:
    needs_review(pipeline, review_standin)
    if "logistics" not in pipeline.services:
        pytest.skip("a new revision is a change request, which logistics admits first")
    eid = new_id("BACK")
    payload = canonical_order(eid, customer_id="C0042", lines=[("TEA-001", 2)])
    order_id = await pushed_and_held(pipeline, admin, payload)
    path = f"/api/orders/{order_id}"

    assert (await operators["clerk"].post(f"{path}/send-back", {})).status_code == 403
    bare = await operators["reviewer"].post(f"{path}/send-back", {"comment": ""})
    assert bare.status_code == 422 and "what to rework" in bare.json()["message"], bare.text
    back = await operators["reviewer"].post(f"{path}/send-back",
                                            {"comment": "wrong delivery address"})
    assert back.status_code == 200, back.text
    view = await state_is(admin, order_id, "rejected")
    assert view.rework is not None
    assert (view.rework.code, view.rework.decided_by, view.rework.comment) == (
        "rework", "reviewer", "wrong delivery address")
    worklist = (await admin.get("/api/exceptions", params={"kind": "rework"})).json()["items"]
    (item,) = [i for i in worklist if i["order_id"] == order_id]
    assert item["details"]["channel"] == "canonical"

    # whoever entered it pushes its next revision: intake makes it a change request, logistics
    # admits it, review reviews it again (the customer is still blocked: held again)
    revised = canonical_order(eid, customer_id="C0042", lines=[("TEA-001", 3)], address_index=1)
    revised["revision"] = 2
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher.push("canonical", revised)
    again = await state_is(admin, order_id, "held")
    assert again.rework is None and again.revision == 2
    worklist = (await admin.get("/api/exceptions", params={"kind": "rework"})).json()["items"]
    assert order_id not in {i["order_id"] for i in worklist}
    approved = await operators["reviewer"].post(f"{path}/approve", {"comment": "fixed"})
    assert approved.status_code == 200, approved.text
