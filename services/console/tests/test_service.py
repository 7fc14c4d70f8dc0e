"""The console through the real broker and PostgreSQL, as its own process: the read model against
the pure projection of the topics, the API with its roles, CSRF and audit, decisions forwarded to
review, the topic dashboard, reports and exports, and the rebuild."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from console_factories import OrderStory
from console_helpers import (
    admin_token,
    caught_up,
    console_view,
    held_order,
    new_id,
    sign_in,
    until,
)
from openpyxl import load_workbook

from orderflow.connector import OrderPusher
from orderflow.console.api import MAX_PAGE
from orderflow.console.domain import STATE_RANK
from orderflow.contracts.order import OrderState
from orderflow.contracts.topics import CATALOGUE
from orderflow.devstack.processes import stop, wait_until
from orderflow.runtime.db import make_engine
from orderflow.runtime.settings import DatabaseSettings
from orderflow.testing.events import EventLog
from orderflow.testing.pipeline import Pipeline

pytestmark = pytest.mark.service


@pytest.fixture
async def admin(console_base: str, pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_base, timeout=30, headers={
            "Authorization": f"Bearer {admin_token(pipeline)}"}) as client:
        yield client


async def story_published(pipeline: Pipeline, story: OrderStory) -> OrderStory:
    await pipeline.publish_and_wait(story.events)
    return story


async def test_health_and_metrics_are_open_everything_else_needs_a_session_or_token(
        console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert "orderflow_messages_consumed_total" in (await anonymous.get("/metrics")).text
        for path in ("/api/orders", "/api/orders/x", "/api/review-queue", "/api/topics",
                     "/api/reports/summary", "/api/exceptions", "/api/dashboard", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 401, path
        for path in ("/docs", "/redoc"):  # no unauthenticated API browser either
            assert (await anonymous.get(path)).status_code in {401, 404}, path
        assert (await anonymous.post("/api/orders/x/approve", json={})).status_code == 401
        wrong = await anonymous.get("/api/orders", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        page = await anonymous.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_the_read_model_equals_the_projection_of_the_topics(
        pipeline: Pipeline, events: EventLog, admin: httpx.AsyncClient) -> None:
    story = OrderStory(new_id(), channel="testkit", lines=[("TEA-001", 3), ("FAN-030", 1)])
    story.received().notified().approved().backordered(short=1).reserved(
        minutes=30, in_full=False, from_backorder=True).dispatched(shipment="S1", count=2) \
        .dispatched(minutes=11, shipment="S2", count=2).delayed(shipment="S2") \
        .delivered(shipment="S1", whole=False)
    await story_published(pipeline, story)
    view = await caught_up(admin, events, story.order_id)
    # other services running in the same session react to these events too (review approves the
    # order, logistics ships it...): assert on what this test published
    assert view.state is not None and STATE_RANK[view.state] >= STATE_RANK[OrderState.DISPATCHED]
    assert view.channel == "testkit" and view.external_id == story.external_id
    assert {"SFS1", "SFS2"} <= set(view.tracking_numbers)
    shipments = {s.shipment_id: s.status for s in view.shipments}
    assert (shipments["S1"], shipments["S2"]) == ("delivered", "delayed")
    assert [(s.sku, s.short) for s in view.first_attempt_short] == [("TEA-001", 1)]
    types = [t.event_type for t in view.timeline]
    for expected in ("OrderReceived", "NotificationRecorded", "OrderApproved", "StockBackordered",
                     "StockReserved", "ShipmentDispatched", "ShipmentDelayed", "ShipmentDelivered"):
        assert expected in types
    # the service of each entry is its producer header (here the test's publisher)
    assert "devstack" in {t.service for t in view.timeline} and all(t.service for t in view.timeline)
    assert {s.stage for s in view.stage_times} >= {"review", "allocation", "fulfilment"}


async def test_an_order_pushed_through_intake_shows_its_timeline(
        pipeline: Pipeline, events: EventLog, admin: httpx.AsyncClient) -> None:
    if "intake" not in pipeline.services:
        pytest.skip("intake is not among ORDERFLOW_TEST_SERVICES")
    eid = new_id()
    async with OrderPusher(pipeline.kafka) as pusher:
        result = await pusher.push("canonical", {"external_id": eid, **_order(eid)})
    assert result.external_id == eid
    from orderflow.contracts.order import order_id_for

    order_id = order_id_for("canonical", eid)
    await events.wait_for_event("order.received", order_id, timeout=60)
    view = await caught_up(admin, events, order_id)
    assert [t.service for t in view.timeline][:2] == ["connector", "intake"]
    assert view.grand_total is not None and view.lines


def _order(eid: str) -> dict[str, Any]:
    from orderflow.devstack.catalogue import canonical_order

    return canonical_order(eid, lines=[("TEA-001", 1)])


async def test_orders_search_and_filters(pipeline: Pipeline, admin: httpx.AsyncClient) -> None:
    # C0042 is blocked: when review runs it holds the order too, so the state stays held
    customer = "C0042"
    a = OrderStory(new_id(), channel="testkit", customer_id=customer).received().approved() \
        .reserved().dispatched(shipment=new_id("S"))
    b = OrderStory(new_id(), channel="testkit", customer_id=customer).received().held(
        code="blocked_customer")
    await pipeline.publish_and_wait(a.events + b.events)
    await until(lambda: console_view(admin, b.order_id), what="order b")
    await until(lambda: console_view(admin, a.order_id), what="order a")

    async def ids(**params: Any) -> set[str]:
        r = await admin.get("/api/orders", params=params)
        assert r.status_code == 200, r.text
        return {o["order_id"] for o in r.json()["orders"]}

    assert await ids(external_id=a.external_id) == {a.order_id}
    assert await ids(q=a.external_id[-8:]) == {a.order_id}
    tracking = (await console_view(admin, a.order_id)).tracking_numbers[0]  # type: ignore[union-attr]
    assert await ids(q=tracking) == {a.order_id}
    assert await ids(q=b.order_id) == {b.order_id}
    assert b.order_id in await ids(state="held", channel="testkit", customer=customer)
    assert b.order_id not in await ids(state="delivered", channel="testkit")
    assert (await admin.get("/api/orders", params={"state": "lost"})).status_code == 422
    page = (await admin.get("/api/orders", params={"page": 1})).json()
    assert page["total"] >= 2 and page["page_size"] >= 1
    assert await ids(page=MAX_PAGE) == set()  # far past the last page: nothing, not an error
    assert (await admin.get("/api/orders", params={"page": MAX_PAGE + 1})).status_code == 422
    assert (await admin.get("/api/orders/no-such-order")).status_code == 404
    held = (await admin.get("/api/review-queue", params={"reason": "blocked_customer"})).json()
    assert b.order_id in {o["order_id"] for o in held["orders"]}
    other = (await admin.get("/api/review-queue", params={"reason": "promo_invalid"})).json()
    assert b.order_id not in {o["order_id"] for o in other["orders"]}


async def test_roles_csrf_and_audit_on_decisions(
        pipeline: Pipeline, console_base: str, review_standin: Any,
        admin: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as viewer, \
            httpx.AsyncClient(base_url=console_base, timeout=30) as reviewer:
        viewer_csrf = await sign_in(viewer, "viewer")
        reviewer_csrf = await sign_in(reviewer, "reviewer")
        order_id = await held_order(pipeline, review_standin, admin, new_id())
        body = {"comment": "checked with sales"}

        # a viewer reads but may not decide
        assert (await viewer.get(f"/api/orders/{order_id}")).status_code == 200
        denied = await viewer.post(f"/api/orders/{order_id}/approve", json=body,
                                   headers={"X-CSRF-Token": viewer_csrf})
        assert denied.status_code == 403
        # a session call without the CSRF token is refused, whatever the role
        no_csrf = await reviewer.post(f"/api/orders/{order_id}/approve", json=body)
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
        # a reviewer decides; review's answer is relayed
        ok = await reviewer.post(f"/api/orders/{order_id}/approve", json=body,
                                 headers={"X-CSRF-Token": reviewer_csrf})
        assert ok.status_code == 200, ok.text
        assert ok.json()["decision"] == "approve"

        async def approved() -> bool:
            view = await console_view(admin, order_id)
            return view is not None and view.approved_by == "reviewer"
        await until(approved, timeout=90, what="the approval on the order's timeline")
        view = await console_view(admin, order_id)
        assert view is not None and view.state is not None and view.state.value != "held"
        # deciding again: review says the order is not held (409), relayed as such
        again = await reviewer.post(f"/api/orders/{order_id}/reject", json=body,
                                    headers={"X-CSRF-Token": reviewer_csrf})
        assert again.status_code == 409, again.text
        assert again.json()["message"]

        # only admins read the audit log; it names who did what
        assert (await reviewer.get("/api/audit")).status_code == 403
        entries = (await admin.get("/api/audit", params={"limit": 500})).json()["entries"]
        mine = [(e["user_name"], e["action"], e["outcome"]) for e in entries
                if e["target"] == order_id or e["target"] == f"/api/orders/{order_id}/approve"]
        assert ("reviewer", "approve", "accepted") in mine
        assert ("reviewer", "reject", "refused_409") in mine
        assert ("viewer", "decide", "forbidden") in mine
        assert any(e["user_name"] == "viewer" and e["action"] == "login" for e in entries)


async def test_a_reviewer_requests_a_cancel_a_viewer_may_not(
        pipeline: Pipeline, events: EventLog, console_base: str, admin: httpx.AsyncClient) -> None:
    story = OrderStory(new_id(), channel="testkit", customer_id="C0042").received().held(
        code="blocked_customer")
    await pipeline.publish_and_wait(story.events)
    await until(lambda: console_view(admin, story.order_id), what="the order")
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as viewer, \
            httpx.AsyncClient(base_url=console_base, timeout=30) as reviewer:
        viewer_csrf = await sign_in(viewer, "viewer")
        reviewer_csrf = await sign_in(reviewer, "reviewer")
        body = {"reason": "customer called to cancel"}
        denied = await viewer.post(f"/api/orders/{story.order_id}/cancel", json=body,
                                   headers={"X-CSRF-Token": viewer_csrf})
        assert denied.status_code == 403
        unknown = await reviewer.post("/api/orders/no-such-order/cancel", json=body,
                                      headers={"X-CSRF-Token": reviewer_csrf})
        assert unknown.status_code == 404
        asked = await reviewer.post(f"/api/orders/{story.order_id}/cancel", json=body,
                                    headers={"X-CSRF-Token": reviewer_csrf})
        assert asked.status_code == 202, asked.text
    requested = await events.wait_for_event("order.cancel-requested", story.order_id, timeout=60)
    assert requested.event.requested_by == "reviewer"
    assert requested.headers["producer"] == "console"
    view = await caught_up(admin, events, story.order_id)
    assert any(t.event_type == "OrderCancelRequested" and t.service == "console"
               for t in view.timeline)


async def test_sign_in_failures_and_expired_sessions(pipeline: Pipeline, console_base: str) -> None:
    async with httpx.AsyncClient(base_url=console_base, timeout=30) as client:
        page = await client.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        wrong = await client.post("/login", data={"username": "viewer", "password": "guess",
                                                  "csrf_token": csrf})
        assert wrong.status_code == 401
        forged = await client.post("/login", data={"username": "viewer", "password": "viewer-dev",
                                                   "csrf_token": "forged"})
        assert forged.status_code == 403
        await sign_in(client, "viewer")
        assert (await client.get("/api/me")).json()["role"] == "viewer"
        database = DatabaseSettings(url=pipeline.infra.database_url)  # type: ignore[call-arg]
        engine = make_engine(database, "console")
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.text(
                    "UPDATE console_sessions SET expires_at = now() - interval '1 second' "
                    "WHERE user_name = 'viewer'"))
        finally:
            await engine.dispose()
        assert (await client.get("/api/me")).status_code == 401


async def test_topic_dashboard_offsets_lag_dlq_and_services(
        pipeline: Pipeline, admin: httpx.AsyncClient) -> None:
    async def sampled() -> dict[str, Any] | None:
        snap = (await admin.get("/api/topics")).json()
        return snap if snap["at"] else None
    before = {t["topic"]: t["end_offset"] for t in (await until(sampled))["topics"]}
    assert set(before) == {t.name for t in CATALOGUE}

    key = new_id("POISON")
    async with OrderPusher(pipeline.kafka) as pusher:
        await pusher._producer.send_and_wait("stock.low", b"{not json", key=key.encode())
    stories = [OrderStory(new_id(), channel="testkit").received() for _ in range(3)]
    await pipeline.publish_and_wait([e for s in stories for e in s.events])

    async def moved() -> dict[str, Any] | None:
        snap = (await admin.get("/api/topics")).json()
        ends = {t["topic"]: t["end_offset"] for t in snap["topics"]}
        dead = [d for q in snap["dlq"] if q["topic"] == "stock.low" for d in q["newest"]
                if d["key"] == key]
        return snap if ends["order.received"] >= before["order.received"] + 3 and dead else None
    # the console consumes every topic: behind a busy session's backlog this takes a while
    snap = await until(moved, timeout=180, what="the new offsets and the dead letter")
    received = next(t for t in snap["topics"] if t["topic"] == "order.received")
    assert received["partitions"] == 6 and received["rate_hour"] is not None
    groups = {g["group"]: g for g in snap["groups"]}
    assert "orderflow.console" in groups and groups["orderflow.console"]["lag"] is not None
    console_topics = {t["topic"] for t in groups["orderflow.console"]["topics"]}
    assert {"order.received", "stock.low"} <= console_topics
    dlq = next(q for q in snap["dlq"] if q["topic"] == "stock.low")
    dead = next(d for d in dlq["newest"] if d["key"] == key)
    assert dlq["depth"] >= 1 and dead["reason"] == "bad_headers" and dead["service"] == "console"
    for name in pipeline.services:  # one process per service in the test pipeline
        group = groups[f"orderflow.{name}"]
        assert group["replicas"] == 1, (group, group.get("members_error"))
    services = {s["service"]: s for s in snap["services"]}
    assert services["console"]["up"] is True
    for name in pipeline.services:
        if name != "console":
            assert services[name]["up"] is True, services[name]
    # the dead letter is in the exception queue, with the replay action
    queue = (await admin.get("/api/exceptions", params={"kind": "dlq"})).json()
    assert any(i["details"]["key"] == key and i["actions"] == ["replay"] for i in queue["items"])
    assert queue["counts"]["dlq"]["open"] >= 1


async def test_reports_summary_and_exports(pipeline: Pipeline, admin: httpx.AsyncClient) -> None:
    story = OrderStory(new_id(), channel="testkit", customer_id="C0009").received().approved() \
        .reserved().dispatched(shipment=new_id("S")).delivered()
    await story_published(pipeline, story)
    await until(lambda: console_view(admin, story.order_id), what="the delivered order")

    async def counted() -> dict[str, Any] | None:
        s = (await admin.get("/api/reports/summary")).json()
        return s if s["on_time_orders"]["denominator"] >= 1 else None
    summary = await until(counted, what="a delivered order in the report")
    assert summary["orders"] >= 1 and summary["fill_rate_orders"]["denominator"] >= 1
    assert any(v["channel"] == "testkit" for v in summary["volumes"])
    stages = {c["stage"] for c in summary["cycle_times"]}
    assert {"review", "allocation", "fulfilment", "transit"} <= stages
    assert (await admin.get("/api/reports/summary", params={"from": "yesterday"})).status_code == 422
    empty = (await admin.get("/api/reports/summary", params={"from": "2001-01-01",
                                                             "to": "2001-01-02"})).json()
    assert empty["orders"] == 0 and empty["fill_rate_orders"]["rate"] is None

    as_csv = await admin.get("/api/reports/summary.csv")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert any(r[:2] == ["kpis", "on-time delivery (orders)"] for r in rows)
    as_xlsx = await admin.get("/api/reports/summary.xlsx")
    assert as_xlsx.status_code == 200
    book = load_workbook(io.BytesIO(as_xlsx.content))
    assert "kpis" in book.sheetnames and book["kpis"].cell(1, 1).value == "metric"
    assert (await admin.get("/api/reports/summary.pdf")).status_code == 404


async def test_openapi_documents_the_api(admin: httpx.AsyncClient) -> None:
    paths = (await admin.get("/openapi.json")).json()["paths"]
    for path in ("/api/orders", "/api/orders/{order_id}", "/api/review-queue",
                 "/api/orders/{order_id}/approve", "/api/orders/{order_id}/reject", "/api/topics",
                 "/api/reports/summary"):
        assert path in paths, path


async def test_rebuild_replays_the_topics_into_the_same_read_model(
        pipeline: Pipeline, events: EventLog, admin: httpx.AsyncClient) -> None:
    stories = [
        OrderStory(new_id(), channel="testkit").received().held(code="overdue"),
        OrderStory(new_id(), channel="testkit", lines=[("TEA-001", 2), ("FAN-030", 3)])
        .received().approved().backordered().reserved(in_full=False).dispatched(shipment=new_id("S"))
        .delivered(on_time=False),
        OrderStory(new_id(), channel="testkit").received().rejected(stage="intake", code="unknown_sku"),
    ]
    await pipeline.publish_and_wait([e for s in stories for e in s.events])
    before = {s.order_id: (await caught_up(admin, events, s.order_id)).model_dump(mode="json")
              for s in stories}

    console = pipeline.stack.find("console")
    await asyncio.to_thread(stop, console.proc, timeout=30)
    # damage the read model: the rebuild must not keep anything of it
    database = DatabaseSettings(url=pipeline.infra.database_url)  # type: ignore[call-arg]
    engine = make_engine(database, "console")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE console_orders SET state = 'lost', "
                                       "view = jsonb_set(view::jsonb, '{state}', '\"returned\"')::json"))
            await conn.execute(sa.text("DELETE FROM console_events WHERE order_id = :o"),
                               {"o": stories[1].order_id})
    finally:
        await engine.dispose()

    rebuild = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orderflow.console", "rebuild", env=pipeline.stack.service_env(console),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(rebuild.communicate(), 240)
    assert rebuild.returncode == 0, err.decode()[-3000:]
    assert "read model rebuilt" in out.decode()

    pipeline.stack.launch(console)
    await asyncio.to_thread(wait_until, lambda: pipeline.stack.healthy(console), timeout=90,
                            what="the console to be healthy again")
    for s in stories:
        after = (await caught_up(admin, events, s.order_id, timeout=180)).model_dump(mode="json")
        # the same as before, unless other services added events to the order meanwhile
        if after["event_count"] == before[s.order_id]["event_count"]:
            assert after == before[s.order_id]
        else:
            assert after["event_count"] > before[s.order_id]["event_count"]
    engine = make_engine(database, "console")
    try:
        async with engine.connect() as conn:
            damaged = (await conn.execute(sa.text(
                "SELECT count(*) FROM console_orders WHERE state = 'lost'"))).scalar()
    finally:
        await engine.dispose()
    assert damaged == 0


async def test_the_dashboard_counts_a_second_replica_of_a_group_and_its_leaving(
        pipeline: Pipeline, admin: httpx.AsyncClient) -> None:
    """A second member joins the console's own group (as a second console replica would), is
    counted, leaves, and the count goes back."""
    async def replicas(want: int) -> dict[str, Any] | None:
        snap = (await admin.get("/api/topics")).json()
        group = next((g for g in snap["groups"] if g["group"] == "orderflow.console"), None)
        return group if group and group["replicas"] == want and group["state"] == "Stable" else None

    await until(lambda: replicas(1), timeout=120, what="one console replica")
    extra = AIOKafkaConsumer("stock.low", **pipeline.kafka.client_kwargs(),
                             group_id="orderflow.console", client_id="second-console",
                             enable_auto_commit=False)
    await extra.start()
    try:
        async def joined() -> dict[str, Any] | None:
            await extra.getmany(timeout_ms=200)  # takes part in the rebalance
            return await replicas(2)
        group = await until(joined, timeout=120, what="two console replicas")
        assert len(group["members"]) == 2
    finally:
        await extra.stop()  # leaves the group: the remaining member rebalances alone
    await until(lambda: replicas(1), timeout=120, what="one console replica again")
