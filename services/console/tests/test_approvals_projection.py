"""Approval levels and send-backs in the read model, without broker or database: the hold of an
order awaiting a director, its queue item offering the director's approval, an order sent back
for rework on its channel's worklist (its author's: test_worklist) until its next revision is
reviewed; a rejected order stays rejected until its next revision goes on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from console_factories import OrderStory

from orderflow.console import exception_queue, i18n
from orderflow.console.domain import advance, project, timeline_said
from orderflow.console.settings import DEFAULT_SLA_MINUTES
from orderflow.contracts import events as ev
from orderflow.contracts.order import OrderState

pytestmark = pytest.mark.unit

NOW = datetime(2027, 1, 1, tzinfo=UTC)


def awaiting_director(story: OrderStory, minutes: float = 1.5) -> OrderStory:
    return story.add(ev.OrderHeld(order_id=story.order_id, reasons=(ev.HoldReason(
        code="director_approval", message="approved by wang.li; its total is above 50000.00",
        figures={"approved_by": "wang.li"}),)), minutes, "review")


def sent_back(story: OrderStory, minutes: float = 2) -> OrderStory:
    return story.add(ev.OrderRejected(
        order_id=story.order_id, channel=story.channel, external_id=story.external_id,
        stage="review", reasons=(ev.Reason(code="rework", message="sent back for rework: split"),),
        decided_by="wang.li", comment="split"), minutes, "review")


def queue_items(story: OrderStory) -> list[exception_queue.ExceptionItem]:
    return exception_queue.order_exceptions(project(story.order_id, story.entries), NOW,
                                            DEFAULT_SLA_MINUTES)


def test_an_order_awaiting_a_director_offers_the_directors_approval() -> None:
    story = OrderStory("SO-DIR").received().held(code="manager_approval")
    assert queue_items(story)[0].actions == ["approve", "reject", "send_back", "cancel"]
    awaiting_director(story)
    view = project(story.order_id, story.entries)
    assert (view.state, view.hold_codes) == (OrderState.HELD, ["director_approval"])
    (item,) = queue_items(story)
    assert item.actions == ["director_approve", "reject", "send_back", "cancel"]
    lines = [said.text("en") for _, said in timeline_said(story.order_id, story.entries)]
    assert "approved by wang.li; awaiting a director's approval" in lines
    story.approved(minutes=3, by="chen.jie")
    lines = [said.text("zh-CN") for _, said in timeline_said(story.order_id, story.entries)]
    assert "已由 wang.li 批准，待总监批准" in lines and "由 chen.jie 批准" in lines
    assert project(story.order_id, story.entries).state == OrderState.APPROVED


def test_an_order_sent_back_is_on_its_channels_worklist_until_reviewed_again() -> None:
    story = sent_back(OrderStory("SO-BACK", channel="desk").received().held(code="manager_approval"))
    view = project(story.order_id, story.entries, timeline=False)
    assert view.state == OrderState.REJECTED
    assert view.rework is not None and view.rework.comment == "split"
    (item,) = queue_items(story)  # rework, not also a rejected order
    assert (item.kind, item.reason_codes, item.actions) == ("rework", ["rework"], ["resubmit"])
    assert item.details == {"channel": story.channel, "sent_back_by": "wang.li",
                            "comment": "split", "contact": None, "entered_by": None}
    lines = [said.text("en") for _, said in timeline_said(story.order_id, story.entries)]
    assert "sent back for rework by wang.li: split" in lines

    # its next revision is reviewed: held again, off the worklist, back in the queue
    before = len(story.entries)
    story.held(minutes=5, code="credit_limit")
    again = project(story.order_id, story.entries)
    assert (again.state, again.rework) == (OrderState.HELD, None)
    assert [i.kind for i in queue_items(story)] == ["held"]
    # moved on by the new events alone, the view is the same
    moved = advance(view, story.entries[before:])
    assert moved is not None
    assert moved.model_dump() == project(story.order_id, story.entries, timeline=False).model_dump()
    story.approved(minutes=6, by="chen.jie")
    assert project(story.order_id, story.entries).state == OrderState.APPROVED


def test_a_rejected_order_stays_rejected_until_its_fixed_revision_goes_on() -> None:
    story = OrderStory("SO-REJ").received().held().rejected(minutes=2)
    view = project(story.order_id, story.entries, timeline=False)
    assert (view.state, view.rework) == (OrderState.REJECTED, None)
    assert [i.kind for i in queue_items(story)] == ["rejected"]
    # a late event of the rejected revision does not move it on
    assert project(story.order_id, [*story.entries, *OrderStory("SO-REJ").approved(
        minutes=3).entries]).state == OrderState.REJECTED
    # its next revision, fixed at the desk (a change), approved by review: off the rejected list
    before = len(story.entries)
    fixed = story.order.model_copy(update={"revision": 2})
    story.add(ev.OrderChangeRequested(
        order_id=story.order_id, change_id=f"{story.order_id}:2", channel=story.channel,
        external_id=story.external_id, previous_revision=1, order=fixed, totals=story.totals,
        requested_by="desk"), 3, "intake")
    story.approved(minutes=4)
    assert project(story.order_id, story.entries).state == OrderState.APPROVED
    assert [i.kind for i in queue_items(story)] == []
    moved = advance(view, story.entries[before:])
    assert moved is not None
    assert moved.model_dump() == project(story.order_id, story.entries, timeline=False).model_dump()


def test_a_rejected_orders_revision_goes_on_as_intake_publishes_it() -> None:
    """Intake publishes a newer revision as ``order.revision-received`` and then its change
    request, at the same instant: the revision received first does not hide the fix."""
    story = OrderStory("SO-REJ-REV").received().held().rejected(minutes=2)
    view = project(story.order_id, story.entries, timeline=False)
    before = len(story.entries)
    fixed = story.order.model_copy(update={"revision": 2})
    story.add(ev.OrderRevisionReceived(
        order_id=story.order_id, channel=story.channel, external_id=story.external_id,
        previous_revision=1, revision=2, order=fixed), 3, "intake")
    story.add(ev.OrderChangeRequested(
        order_id=story.order_id, change_id=f"{story.order_id}:2", channel=story.channel,
        external_id=story.external_id, previous_revision=1, order=fixed, totals=story.totals,
        requested_by="connector:desk"), 3, "intake")
    story.approved(minutes=4)
    assert project(story.order_id, story.entries).state == OrderState.APPROVED
    assert [i.kind for i in queue_items(story)] == []
    moved = advance(view, story.entries[before:])
    assert moved is not None and moved.state == OrderState.APPROVED


def test_the_labels_have_both_languages() -> None:
    for key in ("reason.director_approval", "reason.rework", "kind.rework",
                "order.director_approve", "order.send_back", "verb.send_back",
                "verb.director_approve"):
        assert i18n.translate(key, "zh-CN") != key and i18n.translate(key, "en") != key
