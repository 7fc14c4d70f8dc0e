"""Worklists, pure: the kinds the queue adds (rejected with the contact, refused changes and
cancels, open returns), items' keys, assignments, "my work", SLA against an injected clock, cases
due by their date, and who may work items."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from console_factories import T0, OrderStory

from orderflow.console import exception_queue
from orderflow.console.auth import Operator
from orderflow.console.domain import advance, project
from orderflow.console.settings import DEFAULT_SLA_MINUTES
from orderflow.console.worklist import Assignment, Case, due_at, may_work, order_of_key, worklist
from orderflow.contracts import events as ev
from orderflow.contracts.order import Customer

pytestmark = pytest.mark.unit


def rejected_with_contact(external_id: str = "SO-REJ", channel: str = "desk") -> OrderStory:
    story = OrderStory(external_id, channel=channel).received()
    return story.add(ev.OrderRejected(
        order_id=story.order_id, channel=story.channel, external_id=external_id, stage="intake",
        reasons=(ev.Reason(code="unknown_sku", message="no such SKU", field="lines[0].sku"),),
        customer=Customer(id="C0002", name="Li Lei", email="li@example.com",
                          phone="13800000000")), 1, "intake")


def test_a_rejected_order_is_queued_with_its_reason_and_the_contact() -> None:
    story = rejected_with_contact()
    view = project(story.order_id, story.entries)
    (item,) = exception_queue.order_exceptions(view, T0 + timedelta(hours=9), DEFAULT_SLA_MINUTES)
    assert (item.kind, item.reason_codes, item.actions) == ("rejected", ["unknown_sku"], ["resubmit"])
    assert item.details["contact"] == {"name": "Li Lei", "email": "li@example.com",
                                       "phone": "13800000000"}
    assert item.breached  # 8 h for a rejected order, 9 h since


def test_another_channels_rejected_order_is_queued_without_the_desks_resubmit() -> None:
    """The desk's revision of a connector's order would be another order: its channel
    resubmits it."""
    story = rejected_with_contact("SO-REJ-SHOP", channel="canonical")
    view = project(story.order_id, story.entries)
    (item,) = exception_queue.order_exceptions(view, T0 + timedelta(hours=1), DEFAULT_SLA_MINUTES)
    assert (item.kind, item.actions) == ("rejected", [])


def test_refused_changes_and_cancels_stay_open_until_asked_again() -> None:
    story = OrderStory("SO-CHG").received().approved()
    story.add(ev.OrderChangeRejected(order_id=story.order_id, change_id="CH1", revision=2,
                                     stage="review", requested_by="shop",
                                     reasons=(ev.Reason(code="credit_limit", message="no"),)), 3)
    story.add(ev.OrderCancelRefused(order_id=story.order_id, requested_by="clerk",
                                    reasons=(ev.Reason(code="already_dispatched", message="no"),)), 4)
    view = project(story.order_id, story.entries)
    kinds = {i.kind: i for i in exception_queue.order_exceptions(view, T0 + timedelta(hours=1),
                                                                 DEFAULT_SLA_MINUTES)}
    assert set(kinds) == {"change_refused", "cancel_refused"}
    assert kinds["change_refused"].reason_codes == ["credit_limit"]
    assert kinds["change_refused"].details["ref"] == "CH1"
    # asking to cancel again closes the refused cancel; the view moved on equals the projection
    again = ev.OrderCancelRequested(order_id=story.order_id, reason="again", requested_by="clerk")
    before = len(story.entries)
    story.add(again, 5)
    moved = advance(project(story.order_id, story.entries[:before], timeline=False),
                    story.entries[before:])
    assert moved == project(story.order_id, story.entries, timeline=False)
    assert {i.kind for i in exception_queue.order_exceptions(moved, T0, DEFAULT_SLA_MINUTES)} == \
        {"change_refused"}


def test_a_return_is_open_until_its_outcome() -> None:
    story = OrderStory("SO-RET").received().approved()
    story.add(ev.ReturnRequested(order_id=story.order_id, rma_id="RMA1", requested_at=T0,
                                 lines=(ev.ReturnRequestLine(sku="TEA-001", quantity=1,
                                                             condition="unopened"),)), 20)
    now = T0 + timedelta(minutes=20 + 24 * 60 + 1)
    (item,) = exception_queue.order_exceptions(project(story.order_id, story.entries), now,
                                               DEFAULT_SLA_MINUTES)
    assert (item.kind, item.details["rma_id"], item.breached) == ("return_open", "RMA1", True)
    story.add(ev.ReturnRefused(order_id=story.order_id, rma_id="RMA1",
                               reasons=(ev.Reason(code="too_late", message="late"),)), 30)
    assert exception_queue.order_exceptions(project(story.order_id, story.entries), now,
                                            DEFAULT_SLA_MINUTES) == []


def test_assignments_my_work_overdue_and_done_with_an_injected_clock() -> None:
    held = project(*(lambda s: (s.order_id, s.entries))(OrderStory("SO-H").received().held()))
    rejected = project(*(lambda s: (s.order_id, s.entries))(rejected_with_contact("SO-R")))
    case = Case(id=7, customer_id="C0002", order_id=None, type="complaint", text="late",
                status="open", due_at=T0 + timedelta(hours=2), created_by="clerk", created_at=T0)
    now = T0 + timedelta(hours=1)
    queue = exception_queue.queue([held, rejected], [], now, DEFAULT_SLA_MINUTES)
    keys = {f"held:{held.order_id}", f"rejected:{rejected.order_id}", "case:7"}
    everything = worklist(queue, [case], {}, now)
    assert {w.key for w in everything} == keys and not any(w.breached for w in everything)
    mine = {f"held:{held.order_id}": Assignment(key=f"held:{held.order_id}", assignee="clerk"),
            "case:7": Assignment(key="case:7", assignee="rita")}
    assert [w.key for w in worklist(queue, [case], mine, now, assignee="clerk")] == \
        [f"held:{held.order_id}"]
    assert {w.key for w in worklist(queue, [case], mine, now, unassigned=True)} == \
        {f"rejected:{rejected.order_id}"}
    later = T0 + timedelta(hours=5)  # held 4 h, the case due at 2 h; rejected 8 h
    late = exception_queue.queue([held, rejected], [], later, DEFAULT_SLA_MINUTES)
    assert {w.key for w in worklist(late, [case], mine, later, overdue=True)} == \
        {f"held:{held.order_id}", "case:7"}
    done = {**mine, "case:7": Assignment(key="case:7"),
            f"rejected:{rejected.order_id}": Assignment(key=f"rejected:{rejected.order_id}",
                                                        done_by="clerk", done_at=later)}
    closed = case.model_copy(update={"status": "closed"})
    assert [w.key for w in worklist(late, [closed], done, later)] == [f"held:{held.order_id}"]


def test_keys_name_their_order_and_a_case_is_due_by_its_date() -> None:
    assert order_of_key("return_open:abc:RMA1") == "abc"
    assert order_of_key("dlq:order.inbound:3") is None and order_of_key("case:3") is None
    created = datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert due_at(date(2026, 3, 2), created, DEFAULT_SLA_MINUTES) == \
        datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
    assert due_at(None, created, DEFAULT_SLA_MINUTES) == created + timedelta(hours=24)


@pytest.mark.parametrize(("role", "works"), [("viewer", False), ("clerk", True),
                                             ("reviewer", True), ("director", True),
                                             ("admin", True)])
def test_who_may_work_items(role: str, works: bool) -> None:
    assert may_work(Operator(name="x", role=role, via="session")) is works


def test_an_order_sent_back_goes_to_whoever_entered_it_until_assigned_otherwise() -> None:
    story = OrderStory("SO-BACK", channel="desk").received(author="clerk").held()
    story.add(ev.OrderRejected(
        order_id=story.order_id, channel="desk", external_id="SO-BACK", stage="review",
        reasons=(ev.Reason(code="rework", message="sent back for rework: split"),),
        decided_by="wang.li", comment="split"), 2, "review")
    view = project(story.order_id, story.entries)
    assert view.entered_by == "clerk"
    now = T0 + timedelta(hours=1)
    items = exception_queue.order_exceptions(view, now, DEFAULT_SLA_MINUTES)
    (back,) = worklist(items, [], {}, now, assignee="clerk")
    assert (back.kind, back.assignee, back.assigned_by) == ("rework", "clerk", "wang.li")
    assert back.actions == ["resubmit"]
    # assigned to someone else, it is theirs and no longer the clerk's
    key = back.key
    moved = {key: Assignment(key=key, assignee="rita", assigned_by="admin")}
    assert worklist(items, [], moved, now, assignee="clerk") == []
    assert [w.assignee for w in worklist(items, [], moved, now)] == ["rita"]
    # a connector's order sent back has no author: it waits unassigned on the channel's worklist
    other = OrderStory("SO-BACK-2").received().held()
    other.add(ev.OrderRejected(
        order_id=other.order_id, channel="canonical", external_id="SO-BACK-2", stage="review",
        reasons=(ev.Reason(code="rework", message="sent back for rework"),), decided_by="wang.li",
        comment="split"), 2, "review")
    (unassigned,) = worklist(exception_queue.order_exceptions(
        project(other.order_id, other.entries), now, DEFAULT_SLA_MINUTES), [], {}, now)
    assert unassigned.assignee is None
