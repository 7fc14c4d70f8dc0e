"""Logistics' rules for order changes: admitted until dispatch, one at a time, newer only."""

from __future__ import annotations

import pytest

from orderflow.logistics import domain

pytestmark = pytest.mark.unit


def decide(**overrides: object) -> domain.ChangeDecision:
    args: dict[str, object] = {"order_status": "open", "dispatched_shipment_ids": [],
                               "pending_change_id": None, "known_revision": 1,
                               "change_id": "c2", "revision": 2}
    args.update(overrides)
    return domain.decide_change(**args)  # type: ignore[arg-type]


def test_a_newer_revision_of_an_order_not_dispatched_is_admitted() -> None:
    assert decide() == domain.ChangeDecision(True)
    assert decide(known_revision=None).admitted  # logistics never saw the order yet


def test_refusals_name_their_reason() -> None:
    assert decide(dispatched_shipment_ids=["S1"]).code == "already_dispatched"
    assert decide(order_status="cancelled").code == "order_cancelled"
    assert decide(pending_change_id="c9").code == "change_in_progress"
    assert decide(revision=1).code == "stale_revision"
    assert not any(decide(**o).admitted for o in (
        {"dispatched_shipment_ids": ["S1"]}, {"order_status": "cancelled"},
        {"pending_change_id": "c9"}, {"revision": 1}))


def test_dispatch_wins_over_everything_but_a_duplicate() -> None:
    assert decide(dispatched_shipment_ids=["S1"], pending_change_id="c9").code == \
        "already_dispatched"
    assert decide(pending_change_id="c2").code == "duplicate"


def test_what_is_dispatched_when_a_change_is_settled() -> None:
    # a reservation parked with the new content: dispatch it
    assert domain.dispatch_after_change(parked_revision=2, change_revision=2,
                                        stock_status="backordered") == "parked"
    # parked before the change (old content): the change's own reservations replace it
    assert domain.dispatch_after_change(parked_revision=1, change_revision=2,
                                        stock_status="reserved") == "change"
    assert domain.dispatch_after_change(parked_revision=None, change_revision=2,
                                        stock_status="reserved") == "change"
    # still waiting for stock or for its approval
    for status in ("backordered", "not_allocated"):
        assert domain.dispatch_after_change(parked_revision=None, change_revision=2,
                                            stock_status=status) == "none"


def test_a_change_settled_after_a_cancel_is_refused_and_a_refusal_releases_the_parked_one(
        ) -> None:
    def settle(order_status: str) -> domain.Settlement:
        return domain.settle_change(order_status=order_status, parked_revision=2,
                                    change_revision=2, stock_status="reserved")
    assert settle("cancelled") == "refused"
    assert settle("open") == "parked"
    assert domain.release_parked(order_status="open", parked=True)
    assert not domain.release_parked(order_status="cancelled", parked=True)
    assert not domain.release_parked(order_status="open", parked=False)
