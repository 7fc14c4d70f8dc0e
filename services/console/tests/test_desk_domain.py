"""The order desk's pure decisions: the order it posts, a sheet's order, a stored order as the
next revision's form, pasted rows."""

from datetime import UTC, datetime

import pytest
from console_factories import OrderStory

from orderflow.connector.spreadsheet import group_order_rows
from orderflow.console import desk_domain

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)


def test_a_typed_order_gets_an_external_id_a_time_and_its_author_and_loses_its_blanks() -> None:
    order = desk_domain.desk_order(
        {"external_id": "", "customer": {"id": "C0002", "email": ""}, "promo_code": " ",
         "notes": "call first", "lines": [{"sku": "TEA-001", "quantity": "zero"}]},
        "clerk", NOW)
    assert order["external_id"].startswith("DESK-20261120-") and len(order["external_id"]) == 20
    assert order["placed_at"] == NOW.isoformat()
    assert order["notes"] == "call first\n[desk: clerk]"
    assert order["customer"] == {"id": "C0002"} and "promo_code" not in order
    assert order["lines"] == [{"sku": "TEA-001", "quantity": "zero"}]  # intake answers for it
    again = desk_domain.desk_order({**order, "notes": order["notes"]}, "rita", NOW)
    assert again["external_id"] == order["external_id"]
    assert again["notes"] == "call first\n[desk: rita]"  # one author line, the last one's


def test_a_sheets_order_is_placed_now_unless_dated_and_names_its_author() -> None:
    rows = [["order_number", "sku", "quantity", "notes"], ["S-1", "TEA-001", "1", ""],
            ["", "TEA-002", "2", ""], ["S-2", "TEA-001", "1", "fragile"],
            ["S-2", "TEA-003", "1", "fragile"]]
    first, second = group_order_rows(rows, "pasted")
    one = desk_domain.sheet_order(first, "clerk", NOW)
    assert one["rows"][0]["order_date"] == "2026-11-20 02:30+00:00"
    assert one["rows"][0]["notes"] == "[desk: clerk]" and one["rows"][1]["notes"] == ""
    two = desk_domain.sheet_order(second, "clerk", NOW)
    assert [r["notes"] for r in two["rows"]] == ["fragile\n[desk: clerk]"] * 2
    assert first["rows"][0]["notes"] == ""  # the sheet's own rows are left as read


def test_a_stored_order_prefills_its_next_revision() -> None:
    story = OrderStory("SO-DESK-1", lines=[("TEA-001", 2)]).received()
    form = desk_domain.prefill(story.order_id, story.entries)
    assert form is not None
    order = form["order"]
    assert order["external_id"] == "SO-DESK-1" and order["revision"] == 2
    assert [line["sku"] for line in order["lines"]] == ["TEA-001"]
    assert set(order["shipping_address"]) == {"province", "city"}
    assert desk_domain.prefill("other", []) is None


def test_pasted_rows_are_split_on_tabs_and_blank_lines_dropped() -> None:
    assert desk_domain.pasted_rows("a\tb\n\n  \nc\t\n") == [["a", "b"], ["c", ""]]


def test_the_timeline_says_who_entered_an_order_and_its_revision_at_the_desk() -> None:
    """Who entered a desk order is the author its events carry (intake's order.received and
    order.revision-received); the audit log's accepted submission is not told twice, a refused
    one (no event tells it) stays on the timeline as refused."""
    from orderflow.console.domain import timeline_said
    from orderflow.console.worklists import activity_said
    from orderflow.contracts import events as ev

    story = OrderStory("DESK-20261120-ABC123", channel="desk")
    story.add(ev.OrderReceived(order_id=story.order_id, channel="desk",
                               external_id=story.external_id, order=story.order,
                               totals=story.totals, author="clerk"), 0.1, "intake")
    story.add(ev.OrderRevisionReceived(
        order_id=story.order_id, channel="desk", external_id=story.external_id,
        previous_revision=1, revision=2, order=story.order.model_copy(update={"revision": 2}),
        author="rita"), 5, "intake")
    (received, said), (revised, revised_said) = timeline_said(story.order_id, story.entries)
    assert revised.event_type == "OrderRevisionReceived"
    assert received.event_type == "OrderReceived" and received.service == "intake"
    assert said.text("en").startswith("entered at the desk by clerk, accepted by intake: 1 line")
    assert said.text("zh-CN").startswith("由 clerk 在录单台录入，接单已接受：1 行")
    assert received.summary == said.text("en")
    assert revised_said.text("en") == "revision 2 entered at the desk by rita (was 1)"
    assert revised_said.text("zh-CN") == "由 rita 在录单台录入第 2 版（原为第 1 版）"
    # an order no one entered at the desk says nothing of an author
    connector = OrderStory("SO-DESK-2").received()
    (other, other_said), = timeline_said(connector.order_id, connector.entries)
    assert other_said.text("en").startswith("accepted by intake:") and "desk" not in other.summary

    audited = [
        {"action": "desk_submit", "outcome": "accepted", "user_name": "clerk", "at": NOW,
         "detail": {"external_id": "DESK-20261120-ABC123", "revision": 2, "intake_status": 202,
                    "reasons": []}},
        {"action": "desk_submit", "outcome": "refused_422", "user_name": "rita", "at": NOW,
         "detail": {"external_id": "DESK-20261120-ABC123", "revision": 3, "intake_status": 422,
                    "reasons": ["unknown_sku"]}},
    ]
    (refused, refused_said), = activity_said(audited)  # the accepted one: the events tell it
    assert refused.event_type == "console.desk_submit" and refused.service == "console"
    assert "refused_422" in refused_said.text("en")
