"""The read model's projection, without a broker or a database."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from console_factories import T0, OrderStory, projection_stories

from orderflow.console.domain import (
    OrderView,
    TimelineEntry,
    _Draft,
    advance,
    order_of,
    project,
)
from orderflow.contracts import events as ev
from orderflow.contracts.order import OrderState, order_id_for

pytestmark = pytest.mark.unit


def test_a_delivered_order_has_every_fact_and_a_timeline_with_services() -> None:
    story = OrderStory("SO-HAPPY", lines=[("TEA-001", 2)]).happy()
    view = project(story.order_id, story.entries)
    assert view.state == OrderState.DELIVERED
    assert (view.channel, view.external_id, view.customer_id) == ("canonical", "SO-HAPPY", "C0002")
    assert view.grand_total == story.totals.grand_total
    assert view.currency == "CNY" and view.priority == "normal"
    assert [(s.shipment_id, s.tracking_number, s.status) for s in view.shipments] == [
        ("S1", "SFS1", "delivered")]
    assert view.tracking_numbers == ["SFS1"]
    assert view.on_time is True and view.filled_in_full_first_attempt is True
    assert str(view.promised_date) == "2026-11-22"
    assert [n.status for n in view.notifications] == ["sent"]
    assert [t.event_type for t in view.timeline] == [
        "OrderSubmitted", "OrderReceived", "NotificationRecorded", "OrderApproved",
        "StockReserved", "ShipmentDispatched", "ShipmentDelivered"]
    assert [t.service for t in view.timeline][:3] == ["connector", "intake", "notify"]
    assert "accepted by intake" in view.timeline[1].summary
    assert view.state_since == T0 + timedelta(minutes=100)


def test_time_per_stage_runs_from_one_milestone_to_the_next() -> None:
    story = OrderStory().happy()
    view = project(story.order_id, story.entries)
    seconds = {s.stage: s.seconds for s in view.stage_times}
    assert seconds == {"intake": 6.0, "review": 114.0, "allocation": 120.0, "fulfilment": 360.0,
                       "transit": 5400.0}


def test_a_stage_still_open_has_no_duration() -> None:
    story = OrderStory().submitted().received().held()
    view = project(story.order_id, story.entries)
    review = next(s for s in view.stage_times if s.stage == "review")
    assert review.seconds is None and review.ended_at is None


def test_holds_keep_their_reasons_and_approval_moves_the_order_on() -> None:
    story = OrderStory().submitted().received().held(code="overdue")
    held = project(story.order_id, story.entries)
    assert held.state == OrderState.HELD and held.hold_codes == ["overdue"]
    assert held.holds[0].message == "overdue breached"
    approved = project(story.order_id, story.approved(by="rita").entries)
    assert approved.state == OrderState.APPROVED and approved.approved_by == "rita"
    assert [h.code for h in approved.holds] == ["overdue"]  # the history stays


def test_rejection_reasons_with_who_decided() -> None:
    story = OrderStory().received().held().rejected()
    view = project(story.order_id, story.entries)
    assert view.state == OrderState.REJECTED
    (rejection,) = view.rejections
    assert (rejection.stage, rejection.code, rejection.decided_by, rejection.comment) == (
        "review", "credit_limit", "rita", "over limit")


def test_backorder_then_reservation_records_the_first_attempt_shortage() -> None:
    story = OrderStory(lines=[("TEA-001", 3)]).received().approved().backordered(short=2)
    assert project(story.order_id, story.entries).state == OrderState.BACKORDERED
    view = project(story.order_id, story.reserved(minutes=30, in_full=False,
                                                  from_backorder=True).entries)
    assert view.state == OrderState.RESERVED
    assert [(s.sku, s.short) for s in view.first_attempt_short] == [("TEA-001", 2)]
    assert view.filled_in_full_first_attempt is False


def test_an_order_is_dispatched_only_when_every_shipment_left() -> None:
    story = OrderStory().received().approved().reserved().dispatched(shipment="S1", count=2)
    assert project(story.order_id, story.entries).state == OrderState.RESERVED
    story.dispatched(minutes=12, shipment="S2", count=2)
    view = project(story.order_id, story.entries)
    assert view.state == OrderState.DISPATCHED and view.shipment_count == 2


def test_delays_and_carrier_exceptions_are_kept_per_shipment() -> None:
    story = OrderStory().received().approved().reserved().dispatched().delayed()
    view = project(story.order_id, story.entries)
    assert view.shipments[0].status == "delayed" and view.shipments[0].delay_reason == "weather"
    story.carrier_exception()
    view = project(story.order_id, story.entries)
    assert view.shipments[0].status == "exception" and view.shipments[0].exception_code == "damaged"
    view = project(story.order_id, story.delivered(on_time=False).entries)
    assert view.shipments[0].status == "delivered" and view.on_time is False


def test_the_same_events_in_any_order_and_redelivered_give_the_same_view() -> None:
    """What makes the read model rebuildable: a view is a function of the set of events."""
    story = (OrderStory(lines=[("TEA-001", 3), ("FAN-030", 1)]).submitted().received().notified()
             .held().approved(by="rita").backordered().reserved(in_full=False, from_backorder=True)
             .dispatched(shipment="S1", count=2).dispatched(minutes=11, shipment="S2", count=2)
             .delayed().delivered(shipment="S1", whole=False).delivered(minutes=120, shipment="S2"))
    expected = project(story.order_id, story.entries).model_dump()
    rnd = random.Random(3)
    for _ in range(20):
        shuffled = story.entries + rnd.sample(story.entries, 3)  # some redelivered
        rnd.shuffle(shuffled)
        assert project(story.order_id, shuffled).model_dump() == expected


def test_the_stored_view_is_the_view_without_its_timeline() -> None:
    """The console stores ``timeline=False`` views and makes the timeline when an order is read:
    every other fact must be the same as the full projection's."""
    story = (OrderStory(lines=[("TEA-001", 3), ("FAN-030", 1)]).submitted().received().notified()
             .held().approved(by="rita").backordered().reserved(in_full=False, from_backorder=True)
             .dispatched(shipment="S1", count=2).delivered(shipment="S1", whole=False))
    full = project(story.order_id, story.entries)
    stored = project(story.order_id, story.entries, timeline=False)
    assert len(full.timeline) == len(story.entries) and stored.timeline == []
    assert stored.model_dump() == {**full.model_dump(), "timeline": []}


def test_the_projected_view_holds_what_validating_it_would() -> None:
    """The projection builds its view without validating it (as setting the fields of an
    ``OrderView`` did): each value must already be of its field's type, so validating the view's
    own values changes nothing, and a stored view read back is the same view."""
    story = (OrderStory(lines=[("TEA-001", 3), ("FAN-030", 1)]).submitted().received().notified()
             .held().approved(by="rita").backordered().reserved(in_full=False, from_backorder=True)
             .dispatched(shipment="S1", count=2).delivered(shipment="S1", whole=False))
    assert vars(_Draft("SO-1")) == dict(OrderView(order_id="SO-1"))  # starts as the view does
    assert _Draft("SO-1").lines is not _Draft("SO-2").lines
    for timeline in (True, False):
        view = project(story.order_id, story.entries, timeline=timeline)
        assert type(view) is OrderView
        assert OrderView.model_validate(dict(view)) == view
        assert OrderView.model_validate(view.model_dump(mode="python")).model_dump() == view.model_dump()
        assert OrderView.model_validate_json(view.model_dump_json()) == view


def _stored(view: OrderView) -> OrderView:
    return OrderView.model_validate_json(view.model_dump_json())  # as the console reads it back


def test_a_stored_view_moved_on_by_later_entries_is_the_view_of_all_of_them() -> None:
    """``advance`` is what the console runs on nearly every event: for every split of an order's
    entries into those a stored view was made from and the later ones (one or several at once,
    some redelivered), it gives what projecting all of them gives."""
    rnd = random.Random(7)
    for story in projection_stories():
        expected = project(story.order_id, story.entries, timeline=False).model_dump_json()
        for cut in range(1, len(story.entries)):
            before, after = story.entries[:cut], story.entries[cut:]
            later = after + rnd.sample(after, min(2, len(after)))
            rnd.shuffle(later)
            stored = _stored(project(story.order_id, before, timeline=False))
            moved = advance(stored, later)
            assert moved is not None, (story.order_id, cut)
            assert moved.model_dump_json() == expected, (story.order_id, cut)
            # one entry at a time, each through the database's round trip, as events arrive
            view = _stored(project(story.order_id, before, timeline=False))
            for entry in after:
                step = advance(view, [entry])
                assert step is not None
                view = _stored(step)
            assert view.model_dump_json() == expected, (story.order_id, cut)


def test_a_view_does_not_move_on_by_an_entry_no_later_than_its_last() -> None:
    """An entry consumed out of order (or stamped at the same instant as the view's last) could
    change what the view's earlier entries decided: only projecting everything again is right."""
    story = OrderStory().happy()
    entries = story.entries
    without_notified = [e for e in entries if e.event_type != "NotificationRecorded"]
    notified = next(e for e in entries if e.event_type == "NotificationRecorded")
    stored = _stored(project(story.order_id, without_notified, timeline=False))
    assert advance(stored, [notified]) is None
    assert advance(_stored(stored), [entries[-1], notified]) is None
    same_instant = TimelineEntry(**{**dict(entries[-1]), "event_id": "other",
                                    "event_type": "TrackingUpdated",
                                    "payload": {"shipment_id": "S1", "status": "in_transit"}})
    assert advance(_stored(stored), [same_instant]) is None
    assert advance(_stored(stored), []) == stored  # nothing new: the view as it is
    other_order = TimelineEntry(**{**dict(entries[-1]), "order_id": "someone-else"})
    assert advance(_stored(stored), [other_order]) == stored


def test_no_personal_data_is_stored() -> None:
    story = OrderStory().submitted().received()
    stored = repr([e.payload for e in story.entries])
    assert "@" not in stored  # e-mail
    assert "phone" not in stored and "line1" not in stored
    assert "payload" not in story.entries[0].payload  # the channel's raw order is not kept


def test_amounts_stay_decimal() -> None:
    story = OrderStory(lines=[("TEA-001", 3)]).received()
    view = project(story.order_id, story.entries)
    assert isinstance(view.grand_total, Decimal)
    assert view.lines[0].amount == view.lines[0].unit_price * 3


def test_cancellation_and_returns_end_the_order() -> None:
    from orderflow.contracts import events as ev

    story = OrderStory().received().approved()
    story.add(ev.OrderCancelRequested(order_id=story.order_id, reason="changed mind",
                                      requested_by="rita"), 3, "console")
    story.add(ev.OrderCancelled(order_id=story.order_id, reason="changed mind",
                                requested_by="rita"), 4, "logistics")
    view = project(story.order_id, story.entries)
    assert view.state == OrderState.CANCELLED and view.cancellation == "changed mind (by rita)"
    assert view.timeline[-2].summary == "cancel requested by rita: changed mind"


def test_a_warehouse_receipt_says_what_was_restocked_and_what_scrapped() -> None:
    story = OrderStory(lines=[("TEA-001", 3), ("TEA-002", 1)]).happy()
    story.add(ev.ReturnReceived(
        order_id=story.order_id, rma_id="RMA-1", warehouse_id="WH-SH", received_at=T0,
        inspections=(ev.InspectedUnits(sku="TEA-001", quantity=2, outcome="restock"),
                     ev.InspectedUnits(sku="TEA-002", quantity=1, outcome="scrap"))),
        200, "logistics")
    view = project(story.order_id, story.entries)
    assert view.state == OrderState.RETURNED
    assert view.timeline[-1].summary == "return RMA-1 received at WH-SH: 2 restocked, 1 scrapped"


def test_a_change_shows_in_the_timeline_and_the_order_takes_its_new_content() -> None:
    from orderflow.contracts import events as ev

    story = OrderStory("SO-CHG", lines=[("TEA-001", 2)]).submitted().received().approved() \
        .backordered()
    new = story.order.model_copy(update={"revision": 2, "lines": (
        story.order.lines[0].model_copy(update={"quantity": 5}),)})
    totals = story.totals.model_copy(update={"grand_total": Decimal("999.00")})
    common = {"order_id": story.order_id, "change_id": "CHG-1", "channel": "canonical",
              "external_id": "SO-CHG", "order": new, "totals": totals}
    story.add(ev.OrderChangeRequested(**common, previous_revision=1), 5, "intake")
    story.add(ev.OrderChanged(**common, revision=2, previous_revision=1,
                              changes=("quantity_increased",), review_status="approved",
                              stock_status="backordered", requested_by="connector:canonical"),
              6, "logistics")
    story.add(ev.OrderChangeRejected(order_id=story.order_id, change_id="CHG-2", revision=3,
                                     stage="logistics", requested_by="customer", reasons=(
                                         ev.Reason(code="already_dispatched", message="gone"),)),
              7, "logistics")
    view = project(story.order_id, story.entries)
    assert view.revision == 2 and view.grand_total == Decimal("999.00")
    assert [(line.sku, line.quantity) for line in view.lines] == [("TEA-001", 5)]
    assert view.state == OrderState.BACKORDERED
    summaries = [t.summary for t in view.timeline]
    assert "change to revision 2 requested by customer" in summaries
    assert "changed to revision 2: quantity_increased" in summaries
    assert "change to revision 3 refused by logistics: already_dispatched" in summaries


def test_a_push_is_filed_under_the_id_intake_gives_its_store() -> None:
    def submitted(channel: str, payload: object, store: str | None = None) -> ev.OrderSubmitted:
        return ev.OrderSubmitted(channel=channel, external_id="1001", store=store, received_at=T0,
                                 payload=payload)

    assert order_of(submitted("shopify", {"id": 1001}, "shop-a")) == order_id_for(
        "shopify", "1001", "shop-a")
    # a Douyin order's store is its payload's shop_id when the push names none
    assert order_of(submitted("douyin", {"data": {"order_id": "1001", "shop_id": 77977}})) == \
        order_id_for("douyin", "1001", "77977")
    # refused for its store: under the store it named, else the empty one, as intake rejects it
    assert order_of(submitted("shopify", {"id": 1001})) == order_id_for("shopify", "1001", "")
    assert order_of(submitted("douyin", {"shop_id": 77977}, "4463798")) == order_id_for(
        "douyin", "1001", "4463798")
    assert order_of(submitted("canonical", {})) == order_id_for("canonical", "1001")
