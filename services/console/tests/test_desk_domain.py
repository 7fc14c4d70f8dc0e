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


def test_an_accepted_desk_submission_says_on_the_timeline_who_entered_it() -> None:
    from orderflow.console.worklists import activity_said

    audited = [
        {"action": "desk_submit", "outcome": "accepted", "user_name": "clerk", "at": NOW,
         "detail": {"external_id": "DESK-20261120-ABC123", "revision": 2, "intake_status": 202,
                    "reasons": []}},
        {"action": "desk_submit", "outcome": "refused_422", "user_name": "rita", "at": NOW,
         "detail": {"external_id": "DESK-20261120-ABC123", "revision": 3, "intake_status": 422,
                    "reasons": ["unknown_sku"]}},
    ]
    (entered, said), (_, refused_said) = activity_said(audited)
    assert entered.event_type == "console.desk_submit" and entered.service == "console"
    assert said.text("en") == "entered at the desk by clerk (revision 2)"
    assert said.text("zh-CN") == "由 clerk 在录单台录入（第 2 版）"
    assert entered.summary == said.text("en")
    assert "entered at the desk" not in refused_said.text("en")  # refused: said as refused
    assert "refused_422" in refused_said.text("en")
