"""Logistics' rules without a broker or a database: shipments from a reservation, tracking moving a
shipment on, an order's delivery, and the delays worth flagging."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from orderflow.contracts.events import ReservedLine, TrackingStatus
from orderflow.contracts.order import CanonicalOrder
from orderflow.devstack.catalogue import canonical_order
from orderflow.logistics import domain
from orderflow.logistics.domain import (
    DelayPolicy,
    ProductInfo,
    TrackingState,
    WarehouseSite,
    apply_tracking,
    assess_delays,
)
from orderflow.logistics.domain.carriers import DEFAULT_CATALOGUE, CarrierChoice, NoCarrier

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
SITES = {"WH-SH": WarehouseSite("WH-SH", "上海青浦仓", "上海", "上海"),
         "WH-BJ": WarehouseSite("WH-BJ", "北京大兴仓", "北京", "北京")}
PRODUCTS = {"TEA-001": ProductInfo("TEA-001", "茶叶礼盒 01", Decimal("0.645")),
            "RICE-002": ProductInfo("RICE-002", "东北大米 02", Decimal("6.936"))}


def order(**kwargs: object) -> CanonicalOrder:
    return CanonicalOrder.model_validate(canonical_order("SO-1", **kwargs))  # type: ignore[arg-type]


def plan(reservations: list[ReservedLine], o: CanonicalOrder | None = None,
         sites: dict[str, WarehouseSite] = SITES) -> list[domain.PlannedShipment]:
    return domain.plan_shipments(order_id="order-1", source_event_id="event-1", order=o or order(),
                                 reservations=reservations, warehouses=sites, products=PRODUCTS,
                                 catalogue=DEFAULT_CATALOGUE, dispatched_at=AT, tz=TZ)


# --- shipments ---------------------------------------------------------------------------------------


def test_one_shipment_per_warehouse_with_its_lines_and_weight() -> None:
    shipments = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=2),
                      ReservedLine(sku="RICE-002", warehouse_id="WH-BJ", quantity=1),
                      ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1),
                      ReservedLine(sku="RICE-002", warehouse_id="WH-SH", quantity=2)])
    assert [s.warehouse_id for s in shipments] == ["WH-SH", "WH-BJ"]
    shanghai, beijing = shipments
    assert [(line.sku, line.quantity) for line in shanghai.lines] == [("TEA-001", 3), ("RICE-002", 2)]
    # 3 x 0.645 + 2 x 6.936 + 0.2 packaging
    assert shanghai.weight_kg == Decimal("16.007")
    assert beijing.weight_kg == Decimal("7.136")
    assert not shanghai.weight_estimated
    assert shanghai.reserved_lines[0] == ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=3)
    assert shanghai.shipment_id != beijing.shipment_id
    # the order goes to Shanghai (address 0): same province from WH-SH, national from WH-BJ
    assert isinstance(shanghai.choice, CarrierChoice) and isinstance(beijing.choice, CarrierChoice)
    assert shanghai.choice.option.zone == "same_province"
    assert beijing.choice.option.zone == "national"


def test_shipment_ids_are_stable_per_reservation_event_and_warehouse() -> None:
    first = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1)])
    again = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1)])
    assert first[0].shipment_id == again[0].shipment_id
    assert domain.shipment_id_for("event-2", "WH-SH") != first[0].shipment_id


def test_an_unknown_sku_weighs_the_default_and_the_weight_is_marked_estimated() -> None:
    (shipment,) = plan([ReservedLine(sku="NEW-1", warehouse_id="WH-SH", quantity=2)])
    assert shipment.weight_kg == Decimal("2.200")
    assert shipment.weight_estimated
    assert shipment.lines[0].unit_weight_kg is None


def test_an_unknown_warehouse_ships_as_national() -> None:
    (shipment,) = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-XX", quantity=1)])
    assert shipment.warehouse is None
    assert isinstance(shipment.choice, CarrierChoice)
    assert shipment.choice.option.zone == "national"


def test_rush_and_requested_date_come_from_the_order() -> None:
    (rush,) = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-BJ", quantity=1)],
                   order(priority="rush"))
    assert isinstance(rush.choice, CarrierChoice) and rush.choice.rule == "rush_fastest"
    (late,) = plan([ReservedLine(sku="TEA-001", warehouse_id="WH-BJ", quantity=1)],
                   order(requested_delivery_date="2026-11-20"))
    assert late.misses_requested_date
    assert late.requested_date == date(2026, 11, 20)


def test_a_shipment_no_carrier_can_take_says_why() -> None:
    (shipment,) = plan([ReservedLine(sku="RICE-002", warehouse_id="WH-BJ", quantity=200)])
    assert isinstance(shipment.choice, NoCarrier)
    assert "kg" in shipment.choice.reason
    assert not shipment.misses_requested_date




def request(order_id: str, event_id: str, *lines: tuple[str, str, int],
            o: CanonicalOrder | None = None) -> domain.DispatchRequest:
    return domain.DispatchRequest(order_id, o or order(), tuple(
        ReservedLine(sku=sku, warehouse_id=wh, quantity=q) for wh, sku, q in lines), event_id)


def test_reservations_are_dispatched_once_per_order_one_after_another() -> None:
    planned = domain.plan_dispatches(
        [request("o1", "e1", ("WH-SH", "TEA-001", 1), ("WH-BJ", "TEA-001", 1)),
         request("o2", "e2", ("WH-SH", "TEA-001", 1)),
         request("o1", "e3", ("WH-SH", "TEA-001", 1)),  # o1 planned by e1 just before
         request("o3", "e4", ("WH-SH", "TEA-001", 1))],  # o3 has a shipment already
        shipped={"o3": 1}, warehouses=SITES, products=PRODUCTS, catalogue=DEFAULT_CATALOGUE,
        dispatched_at=AT, tz=TZ)
    assert [None if p is None else [(s.order_id, s.warehouse_id) for s in p] for p in planned] == [
        [("o1", "WH-SH"), ("o1", "WH-BJ")], [("o2", "WH-SH")], None, None]
    first = planned[0]
    assert first is not None and first[0].shipment_id == domain.shipment_id_for("e1", "WH-SH")


def test_a_reservation_is_not_dispatched_once_cancelled_and_parked_while_a_change_is_pending(
        ) -> None:
    assert domain.reservation_fate(order_status="open", pending_change_id=None) == "dispatch"
    assert domain.reservation_fate(order_status="open", pending_change_id="c1") == "parked"
    assert domain.reservation_fate(order_status="cancelled", pending_change_id="c1") == "cancelled"


def test_a_settled_changes_newer_content_is_what_ships() -> None:
    reserved, changed = order(), order(address_index=2).model_copy(update={"revision": 2})
    assert domain.content_to_ship(changed, reserved) is changed
    assert domain.content_to_ship(reserved.model_copy(update={"revision": 1}), changed) is changed
    assert domain.content_to_ship(None, reserved) is reserved
    assert domain.kept_is_newer(2, 1) and not domain.kept_is_newer(None, 1)
    assert not domain.kept_is_newer(1, 1)


def test_what_an_orders_shipments_say_about_cancelling_and_returning() -> None:
    sent, delivered = AT, AT + timedelta(days=2)
    shipments = [
        domain.OrderShipment("S2", "WH-BJ", "delivered", "SF2", (("TEA-001", 1),), sent, delivered),
        domain.OrderShipment("S1", "WH-SH", "in_transit", "SF1",
                             (("TEA-001", 2), ("RICE-002", 1)), sent + timedelta(hours=1), None),
        domain.OrderShipment("S3", "WH-GZ", "no_carrier", None, (("TEA-001", 5),), sent, None)]
    assert domain.dispatched_shipment_ids(shipments) == ["S1", "S2"]
    assert domain.shipped_units(shipments) == {"TEA-001": {"WH-BJ": 1, "WH-SH": 2},
                                               "RICE-002": {"WH-SH": 1}}
    assert domain.return_window_start(shipments) == delivered
    assert domain.return_window_start(shipments[2:]) is None

# --- tracking ----------------------------------------------------------------------------------------


def t(hours: float) -> datetime:
    return AT + timedelta(hours=hours)


def run(updates: list[tuple[TrackingStatus, float]]) -> list[str]:
    state = TrackingState("dispatched", AT)
    outcomes = []
    for status, hours in updates:
        decision = apply_tracking(state, status, t(hours))
        outcomes.append(decision.outcome)
        state = decision.state
    return [*outcomes, state.status]


def test_tracking_moves_a_shipment_to_delivery() -> None:
    assert run([("picked_up", 1), ("in_transit", 3), ("out_for_delivery", 24), ("delivered", 27)]) \
        == ["advanced", "advanced", "advanced", "delivered", "delivered"]


def test_skipped_scans_still_move_forward() -> None:
    assert run([("in_transit", 3), ("delivered", 27)]) == ["advanced", "delivered", "delivered"]


def test_late_and_repeated_updates_do_not_move_a_shipment_back() -> None:
    assert run([("in_transit", 3), ("picked_up", 1), ("in_transit", 4)]) \
        == ["advanced", "stale", "repeated", "in_transit"]


def test_delivered_is_final() -> None:
    assert run([("delivered", 27), ("in_transit", 3), ("exception", 30), ("delivered", 31)]) \
        == ["delivered", "after_delivery", "after_delivery", "after_delivery", "delivered"]


def test_an_exception_stops_the_shipment_until_a_later_update_resumes_it() -> None:
    assert run([("out_for_delivery", 24), ("exception", 26), ("out_for_delivery", 48),
                ("delivered", 50)]) == ["advanced", "exception", "resumed", "delivered", "delivered"]


def test_an_update_older_than_the_exception_does_not_resume_it() -> None:
    assert run([("exception", 26), ("in_transit", 20), ("exception", 10)]) \
        == ["exception", "stale", "stale", "exception"]


def test_a_delivery_scan_resolves_an_exception() -> None:
    assert run([("exception", 26), ("delivered", 30)]) == ["exception", "delivered", "delivered"]


def test_the_delivered_state_keeps_the_delivery_time() -> None:
    decision = apply_tracking(TrackingState("in_transit", t(3)), "delivered", t(27))
    assert decision.state == TrackingState("delivered", t(27))
    assert decision.changed


@pytest.mark.parametrize(
    ("detail", "code"),
    [
        ("damaged: 外包装破损", "damaged"),
        ("快件丢失", "lost"),
        ("Parcel refused by customer", "refused"),
        ("地址不详", "address_unknown"),
        ("lost", "lost"),
        ("typhoon warning", "weather"),
        ("unknown_code: 外包装破损", "damaged"),
        ("something odd", "carrier_exception"),
        ("", "carrier_exception"),
    ],
)
def test_exception_codes(detail: str, code: str) -> None:
    assert domain.exception_code(detail) == code


def test_on_time_is_judged_by_the_company_day() -> None:
    promised = date(2026, 11, 22)
    assert domain.delivered_on_time(datetime(2026, 11, 22, 23, 30, tzinfo=TZ), promised, TZ)
    # 16:30 UTC is 00:30 the next day in Shanghai
    assert not domain.delivered_on_time(datetime.fromisoformat("2026-11-22T16:30:00+00:00"),
                                        promised, TZ)


def test_naive_carrier_times_are_company_time() -> None:
    assert domain.as_aware(datetime(2026, 11, 22, 9, 0), TZ) == datetime(2026, 11, 22, 9, 0, tzinfo=TZ)


def test_an_order_is_delivered_when_every_shipment_is() -> None:
    assert domain.order_delivered(["delivered", "delivered"])
    assert not domain.order_delivered(["delivered", "in_transit"])
    assert not domain.order_delivered(["delivered", "no_carrier"])
    assert not domain.order_delivered([])


# --- delays --------------------------------------------------------------------------------------------

POLICY = DelayPolicy(tz=TZ, out_for_delivery_deadline_hour=12, exception_grace_hours=12)
PICKUP = date(2026, 11, 20)
PROMISED = date(2026, 11, 22)


def reasons(status: str, now: datetime, status_at: datetime | None = None) -> list[tuple[str, date | None]]:
    return [(f.reason, f.expected_date) for f in assess_delays(
        status=status, pickup_date=PICKUP, promised_date=PROMISED, status_at=status_at or AT,
        now=now, policy=POLICY)]


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=TZ)


def test_a_shipment_on_its_way_in_time_is_not_delayed() -> None:
    assert reasons("in_transit", local(21, 18)) == []
    assert reasons("in_transit", local(22, 11, 59)) == []
    assert reasons("out_for_delivery", local(22, 15)) == []
    assert reasons("picked_up", local(20, 23)) == []


def test_not_out_for_delivery_on_the_promised_afternoon_will_miss() -> None:
    assert reasons("in_transit", local(22, 12)) == [
        ("not_out_for_delivery_on_promised_day", date(2026, 11, 23))]


def test_a_missed_promised_date_is_flagged_alone() -> None:
    assert reasons("out_for_delivery", local(23, 0, 1)) == [("promised_date_missed", date(2026, 11, 24))]
    assert reasons("exception", local(25, 9)) == [("promised_date_missed", date(2026, 11, 26))]


def test_not_collected_on_the_collection_day_will_miss() -> None:
    assert reasons("dispatched", local(20, 23)) == []
    assert reasons("dispatched", local(21, 8)) == [("not_picked_up", date(2026, 11, 23))]


def test_an_exception_still_open_after_the_grace_period_will_miss() -> None:
    reported = local(21, 9)
    assert reasons("exception", local(21, 20), reported) == []
    assert reasons("exception", local(21, 21), reported) == [("carrier_exception", None)]


def test_delivered_and_carrierless_shipments_are_never_delayed() -> None:
    assert reasons("delivered", local(28, 9)) == []
    assert assess_delays(status="no_carrier", pickup_date=None, promised_date=None, status_at=None,
                         now=local(28, 9), policy=POLICY) == []


def test_delays_use_the_company_day_whatever_the_clocks_zone() -> None:
    # 04:30 UTC on the 22nd is 12:30 in Shanghai: past the deadline
    assert reasons("in_transit", datetime.fromisoformat("2026-11-22T04:30:00+00:00")) == [
        ("not_out_for_delivery_on_promised_day", date(2026, 11, 23))]



def test_a_tracking_step_says_on_time_the_exception_code_and_the_delays_it_reveals() -> None:
    state = TrackingState("in_transit", local(21, 9))
    delivered = domain.track(state, status="delivered", occurred_at=local(22, 10), detail="",
                             pickup_date=PICKUP, promised_date=PROMISED, policy=POLICY)
    assert delivered.decision.outcome == "delivered" and delivered.on_time
    broken = domain.track(state, status="exception", occurred_at=local(21, 10),
                          detail="damaged: 破损", pickup_date=PICKUP, promised_date=PROMISED,
                          policy=POLICY)
    assert broken.exception_code == "damaged" and broken.on_time is None
    repeated = domain.track(state, status="in_transit", occurred_at=local(22, 14), detail="",
                            pickup_date=PICKUP, promised_date=PROMISED, policy=POLICY)
    assert repeated.decision.outcome == "repeated"
    assert [f.reason for f in repeated.findings] == ["not_out_for_delivery_on_promised_day"]
    stale = domain.track(state, status="picked_up", occurred_at=local(22, 14), detail="",
                         pickup_date=PICKUP, promised_date=PROMISED, policy=POLICY)
    assert stale.decision.outcome == "stale" and stale.findings == ()


def test_the_watch_list_is_what_the_delay_rules_might_flag() -> None:
    watch = domain.watch_list(date(2026, 11, 22))
    assert "delivered" not in watch.statuses and "no_carrier" not in watch.statuses
    assert (watch.promised_by, watch.collection_before) == (date(2026, 11, 22),
                                                            date(2026, 11, 22))
    assert watch.final_reason == "promised_date_missed"


# --- cancellation and returns -------------------------------------------------------------------


def test_a_cancel_is_honoured_until_something_is_dispatched() -> None:
    assert domain.decide_cancel(order_status="open", dispatched_shipment_ids=[]).honoured
    again = domain.decide_cancel(order_status="cancelled", dispatched_shipment_ids=[])
    assert again.honoured and again.code == "already_cancelled"
    late = domain.decide_cancel(order_status="open", dispatched_shipment_ids=["S1"])
    assert not late.honoured and late.code == "already_dispatched"


RETURN_POLICY = domain.ReturnPolicy(window_days=7, non_returnable_skus=frozenset({"GIFT-1"}))
SHIPPED_AT = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)


def _ask(*lines: tuple[str, int, str], days: float = 1,
         shipped: dict[str, dict[str, int]] | None = None,
         returned: dict[str, int] | None = None,
         start: datetime | None = SHIPPED_AT) -> domain.ReturnDecision:
    return domain.decide_return(
        requested=[domain.RequestedReturn(s, q, c) for s, q, c in lines],
        shipped=shipped if shipped is not None else {"TEA-1": {"WH-SH": 2, "WH-GZ": 3},
                                                     "GIFT-1": {"WH-SH": 1}},
        already_returned=returned or {}, delivered_or_dispatched_at=start,
        requested_at=SHIPPED_AT + timedelta(days=days), policy=RETURN_POLICY,
        refunds={"TEA-1": Decimal("113.005"), "GIFT-1": Decimal("10")})


def test_a_return_within_the_window_is_approved_with_its_refund_per_warehouse() -> None:
    decision = _ask(("TEA-1", 3, "opened"), days=6.9)
    assert decision.approved
    assert [(x.warehouse_id, x.quantity, x.refund) for x in decision.lines] == [
        ("WH-GZ", 3, Decimal("339.02"))]
    assert decision.refund_amount == Decimal("339.02")


def test_a_later_return_takes_the_units_earlier_returns_left() -> None:
    decision = _ask(("TEA-1", 2, "unopened"), returned={"TEA-1": 2})
    assert [(x.warehouse_id, x.quantity) for x in decision.lines] == [("WH-GZ", 1), ("WH-SH", 1)]
    assert not _ask(("TEA-1", 4, "unopened"), returned={"TEA-1": 2}).approved


@pytest.mark.parametrize(("lines", "days", "codes"), [
    ([("TEA-1", 1, "unopened")], 7.5, ["return_window_passed"]),
    ([("GIFT-1", 1, "unopened")], 1, ["sku_not_returnable"]),
    ([("TEA-1", 1, "damaged_by_customer")], 1, ["condition_not_accepted"]),
    ([("TEA-1", 6, "unopened")], 1, ["more_than_shipped"]),
    ([("OTHER", 1, "unopened"), ("GIFT-1", 1, "opened")], 30,
     ["return_window_passed", "sku_not_returnable", "more_than_shipped"]),
])
def test_a_return_is_refused_as_a_whole_with_every_reason(
        lines: list[tuple[str, int, str]], days: float, codes: list[str]) -> None:
    decision = _ask(*lines, days=days)
    assert not decision.approved and not decision.lines
    assert [r[0] for r in decision.reasons] == codes


def test_nothing_dispatched_cannot_be_returned() -> None:
    decision = _ask(("TEA-1", 1, "unopened"), shipped={}, start=None)
    assert [r[0] for r in decision.reasons] == ["not_dispatched", "more_than_shipped"]


def test_a_unit_refunds_its_price_net_of_discount_with_tax() -> None:
    order = CanonicalOrder.model_validate(canonical_order(
        "R-1", lines=[("TEA-002", 4)], discount="40.00"))
    refunds = domain.unit_refunds(order, {"TEA-002": Decimal("0.09")})
    price = order.lines[0].unit_price
    assert refunds["TEA-002"] == (price * 4 - Decimal("40.00")) / 4 * Decimal("1.09")


def test_return_tracking_numbers_and_exchange_ids_are_derived_and_stable() -> None:
    number = domain.return_tracking_number("RMA-1", "SF")
    assert number == domain.return_tracking_number("RMA-1", "SF")
    assert number.startswith("SFR") and len(number) == 15
    assert number != domain.return_tracking_number("RMA-2", "SF")
    assert domain.exchange_external_id("SO-1", "RMA-1") == "SO-1-X-RMA-1"



def test_earlier_returns_count_once_approved() -> None:
    line = domain.ReturnedLine("TEA-1", 2, "WH-SH", Decimal("10"))
    stored = [domain.ReturnRecord(f"R{i}", "o1", status, "refund", (line,), "CNY")
              for i, status in enumerate(("approved", "received", "refused"))]
    assert domain.already_returned(stored) == {"TEA-1": 4}


def test_a_receipt_settles_only_an_approved_return_of_its_order() -> None:
    def stored(status: str, order_id: str = "o1") -> domain.ReturnRecord:
        return domain.ReturnRecord("R1", order_id, status, "refund", (), "CNY")
    assert domain.check_receipt(None, "o1") == "never_requested"
    assert domain.check_receipt(stored("refused"), "o1") == "refused"
    assert domain.check_receipt(stored("approved", "o2"), "o1") == "other_order"
    assert domain.check_receipt(stored("received"), "o1") == "received"
    assert domain.check_receipt(stored("approved"), "o1") == "open"


def test_a_receipt_refunds_the_received_units_share_and_refuses_more_than_approved() -> None:
    approved = [domain.ReturnedLine("TEA-1", 2, "WH-SH", Decimal("100.01")),
                domain.ReturnedLine("TEA-1", 1, "WH-GZ", Decimal("50.00")),
                domain.ReturnedLine("RICE-2", 1, "WH-SH", Decimal("20.00"))]
    decision = domain.decide_receipt(approved, [("TEA-1", 1), ("TEA-1", 1)], "WH-GZ")
    assert [(x.sku, x.warehouse_id, x.quantity, x.refund) for x in decision.lines] == [
        ("TEA-1", "WH-GZ", 2, Decimal("100.01"))]  # 150.01 x 2 / 3, half up
    assert decision.refund_amount == Decimal("100.01") and not decision.over
    too_many = domain.decide_receipt(approved, [("RICE-2", 2)], "WH-SH")
    assert too_many.over == {"RICE-2": 2} and not too_many.lines


def test_an_exchange_is_a_new_order_of_the_received_units_at_their_prices() -> None:
    original = CanonicalOrder.model_validate(canonical_order(
        "SO-9", lines=[("TEA-002", 3), ("TEA-001", 1)], discount="5.00"))
    exchange = domain.exchange_order(original, {"TEA-002": 1, "GONE": 1}, "RMA-1", AT)
    assert exchange.external_id == domain.exchange_external_id("SO-9", "RMA-1")
    (line,) = exchange.lines
    assert (line.sku, line.quantity, line.discount) == ("TEA-002", 1, Decimal("0.00"))
    assert line.unit_price == original.lines[0].unit_price
    assert (exchange.revision, exchange.placed_at, exchange.shipping_fee, exchange.amount_paid) == (
        1, AT, Decimal("0.00"), Decimal("0.00"))
