"""The outcomes logistics' handlers carry out, decided without a broker or a database: a run of
reservations sorted by fate, what a dispatch announces, a change admitted, settled or refused
downstream, a cancel request, a carrier's update (refused for another parcel, a delivery, an
exception, a step forward), a return request and its receipt."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from orderflow.contracts.events import (
    InspectedUnits,
    OrderCancelled,
    OrderCancelRefused,
    OrderCancelRequested,
    OrderChangeAdmitted,
    OrderChanged,
    OrderChangeRejected,
    OrderChangeRequested,
    OrderChangeReserved,
    Reason,
    RefundIssued,
    ReservedLine,
    ReturnApproved,
    ReturnReceived,
    ReturnRefused,
    ReturnRequested,
    ReturnRequestLine,
    ShipmentDelayed,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentException,
    StockReserved,
    TrackingStatus,
    TrackingUpdated,
)
from orderflow.contracts.order import CanonicalOrder, OrderTotals
from orderflow.devstack.catalogue import canonical_order
from orderflow.logistics import domain
from orderflow.logistics.domain.carriers import DEFAULT_CATALOGUE

pytestmark = pytest.mark.unit

TZ = ZoneInfo("Asia/Shanghai")
AT = datetime(2026, 11, 20, 10, 0, tzinfo=TZ)
SITES = {"WH-SH": domain.WarehouseSite("WH-SH", "上海青浦仓", "上海", "上海")}
ZERO = Decimal("0.00")


def order(external_id: str = "SO-1", revision: int = 1, **kwargs: object) -> CanonicalOrder:
    return CanonicalOrder.model_validate(canonical_order(external_id, **kwargs)).model_copy(  # type: ignore[arg-type]
        update={"revision": revision})


def reserved(order_id: str, revision: int = 1, sku: str = "TEA-001") -> StockReserved:
    return StockReserved(order_id=order_id, order=order(order_id, revision),
                         reservations=(ReservedLine(sku=sku, warehouse_id="WH-SH", quantity=1),),
                         filled_in_full_first_attempt=True)


def lock(order_id: str = "o1", *, status: str = "open", kept_revision: int | None = 1,
         pending: str | None = None, parked_event_id: str | None = None) -> domain.OrderLock:
    return domain.OrderLock(order_id, status, kept_revision, None, pending,
                            parked_event_id is not None, parked_event_id)


def shipment(shipment_id: str = "S1", tracking_number: str | None = "SF1",
             status: str = "in_transit") -> domain.OrderShipment:
    return domain.OrderShipment(shipment_id, "WH-SH", status, tracking_number,
                                (("TEA-001", 2),), AT, None)


# --- a run of reservations -----------------------------------------------------------------------


def test_a_run_is_sorted_by_fate_and_the_last_parked_reservation_of_an_order_stays() -> None:
    run = [(reserved("o1"), "e1"), (reserved("o2"), "e2"), (reserved("o2", sku="RICE-002"), "e3"),
           (reserved("o3"), "e4"), (reserved("o4", revision=1), "e5")]
    locks = {"o1": lock("o1"), "o2": lock("o2", pending="c1"),
             "o3": lock("o3", status="cancelled"), "o4": lock("o4", kept_revision=2)}
    sorted_run = domain.sort_reservations(run, locks)
    assert [(order_id, r.reservations[0].sku, event_id)
            for order_id, r, event_id in sorted_run.parked] == [("o2", "RICE-002", "e3")]
    assert [(p, event_id) for p, _, event_id in sorted_run.dispatching] == [(0, "e1"), (4, "e5")]
    assert sorted_run.newer == {"o4"}  # its kept content (a settled change) is newer
    assert [[n.message for n in notes] for notes in sorted_run.notes] == [
        [], ["change pending; reservation parked"], ["change pending; reservation parked"],
        ["order cancelled before dispatch; reservation not dispatched"], []]
    changed = order("o4", revision=2, address_index=2)
    requests = sorted_run.requests({"o4": changed})
    assert [(p, r.order_id, r.source_event_id) for p, r in requests] == [(0, "o1", "e1"),
                                                                        (4, "o4", "e5")]
    assert requests[0][1].order is run[0][0].order and requests[1][1].order is changed


# --- what a dispatch announces -------------------------------------------------------------------


def plans(*reservations: tuple[str, str, int]) -> list[domain.PlannedShipment]:
    return domain.plan_shipments(
        order_id="o1", source_event_id="e1", order=order(),
        reservations=[ReservedLine(sku=sku, warehouse_id=wh, quantity=q)
                      for wh, sku, q in reservations],
        warehouses=SITES, products={}, catalogue=DEFAULT_CATALOGUE, dispatched_at=AT, tz=TZ)


def test_a_dispatch_announces_each_shipment_with_the_orders_count() -> None:
    sh, unknown = plans(("WH-SH", "TEA-001", 1), ("WH-XX", "TEA-001", 1))
    outcome = domain.announce_dispatch("o1", [(sh, "SF100"), (unknown, "SF200")])
    assert [type(e) for e in outcome.events] == [ShipmentDispatched, ShipmentDispatched]
    first = outcome.events[0]
    assert isinstance(first, ShipmentDispatched)
    assert (first.tracking_number, first.shipment_count, first.shipment_id) == (
        "SF100", 2, sh.shipment_id)
    assert [(n.level, n.message) for n in outcome.notes] == [
        ("warning", "warehouse location unknown; zone taken as national"),
        ("debug", "order dispatched")]


def test_a_shipment_no_carrier_takes_is_an_exception_and_an_order_dispatched_already_says_so(
        ) -> None:
    (heavy,) = plans(("WH-SH", "UNKNOWN-SKU", 2000))
    assert isinstance(heavy.choice, domain.NoCarrier)
    outcome = domain.announce_dispatch("o1", [(heavy, None)])
    (event,) = outcome.events
    assert isinstance(event, ShipmentException)
    assert (event.code, event.detail) == ("no_carrier", heavy.choice.reason)
    assert "no carrier can take the shipment" in [n.message for n in outcome.notes]
    again = domain.announce_dispatch("o1", None)
    assert not again.events
    assert [n.message for n in again.notes] == ["order already dispatched; reservation ignored"]


# --- changes -------------------------------------------------------------------------------------


def change_request(change_id: str = "c2", revision: int = 2) -> OrderChangeRequested:
    totals = OrderTotals(subtotal=ZERO, discount=ZERO, tax=ZERO, shipping=ZERO, grand_total=ZERO)
    return OrderChangeRequested(order_id="o1", change_id=change_id, channel="canonical",
                                external_id="SO-1", previous_revision=revision - 1,
                                order=order(revision=revision, address_index=2), totals=totals,
                                requested_by="tests")


def change_reserved(stock_status: str = "reserved") -> OrderChangeReserved:
    return OrderChangeReserved(**change_request().model_dump(exclude={"reason"}),
                               review_status="approved", stock_status=stock_status,
                               reservations=reserved("o1", 2).reservations)


def test_a_change_is_admitted_refused_or_ignored_as_a_duplicate() -> None:
    admitted = domain.admit_change(change_request(), lock(), [])
    assert admitted.pending and [type(e) for e in admitted.events] == [OrderChangeAdmitted]
    refused = domain.admit_change(change_request(), lock(), [shipment()])
    assert not refused.pending
    (event,) = refused.events
    assert isinstance(event, OrderChangeRejected)
    assert (event.stage, event.reasons[0].code) == ("logistics", "already_dispatched")
    duplicate = domain.admit_change(change_request(), lock(pending="c2"), [])
    assert not duplicate.pending and not duplicate.events
    assert duplicate.notes[0].message == "change already pending; request ignored"


def test_a_settled_change_is_announced_and_dispatches_the_parked_or_its_own_reservations(
        ) -> None:
    step = change_reserved()
    own = domain.settle_reserved_change(step, lock(pending="c2"), None, "e-step")
    assert own.settle and own.content == step.order
    assert [type(e) for e in own.events] == [OrderChanged]
    assert own.dispatch is not None
    assert (own.dispatch.source_event_id, own.dispatch.reservations) == ("e-step",
                                                                         step.reservations)
    parked = domain.OrderContent(order(), reserved("o1", 2, sku="RICE-002"))
    from_parked = domain.settle_reserved_change(step, lock(pending="c2", parked_event_id="e-p"),
                                                parked, "e-step")
    assert from_parked.dispatch is not None
    assert from_parked.dispatch.source_event_id == "e-p"
    assert from_parked.dispatch.order == step.order  # the new content ships
    assert from_parked.dispatch.reservations[0].sku == "RICE-002"
    waiting = domain.settle_reserved_change(change_reserved("backordered"), lock(pending="c2"),
                                            None, "e-step")
    assert waiting.settle and waiting.dispatch is None and waiting.events


def test_a_change_settled_after_a_cancel_is_refused_and_a_stray_step_ignored() -> None:
    refused = domain.settle_reserved_change(change_reserved(),
                                            lock(status="cancelled", pending="c2"), None, "e")
    assert refused.settle and refused.content is None and refused.dispatch is None
    (event,) = refused.events
    assert isinstance(event, OrderChangeRejected) and event.reasons[0].code == "order_cancelled"
    stray = domain.settle_reserved_change(change_reserved(), lock(pending="c9"), None, "e")
    assert not stray.settle and not stray.events and stray.dispatch is None


def test_a_change_refused_downstream_clears_the_mark_and_releases_the_parked_reservation(
        ) -> None:
    refusal = OrderChangeRejected(order_id="o1", change_id="c2", revision=2, stage="inventory",
                                  reasons=(Reason(code="out_of_stock", message="none left"),),
                                  requested_by="tests")
    kept = order(revision=1)
    parked = reserved("o1", 1)
    released = domain.settle_refused_change(
        refusal, lock(pending="c2", parked_event_id="e-p"), domain.OrderContent(kept, parked))
    assert released.settle and released.content is None and not released.events
    assert released.dispatch is not None
    assert (released.dispatch.source_event_id, released.dispatch.order) == ("e-p", parked.order)
    cancelled = domain.settle_refused_change(
        refusal, lock(status="cancelled", pending="c2", parked_event_id="e-p"),
        domain.OrderContent(kept, parked))
    assert cancelled.settle and cancelled.dispatch is None
    nothing_parked = domain.settle_refused_change(refusal, lock(pending="c2"), None)
    assert nothing_parked.settle and nothing_parked.dispatch is None
    not_pending = domain.settle_refused_change(refusal, lock(), None)
    assert not not_pending.settle and not not_pending.notes


# --- cancellation --------------------------------------------------------------------------------


def test_a_cancel_is_announced_with_the_kept_customer_refused_after_dispatch_and_said_once(
        ) -> None:
    request = OrderCancelRequested(order_id="o1", reason="no longer", requested_by="tests")
    kept = order()
    honoured = domain.cancel_order(request, lock(), [shipment(tracking_number=None)], kept)
    assert honoured.cancel
    (event,) = honoured.events
    assert isinstance(event, OrderCancelled) and event.customer == kept.customer
    assert honoured.notes[0].fields["reserved_before"] is True
    refused = domain.cancel_order(request, lock(), [shipment("S2"), shipment("S1")], kept)
    assert not refused.cancel
    (event,) = refused.events
    assert isinstance(event, OrderCancelRefused) and event.shipment_ids == ("S1", "S2")
    again = domain.cancel_order(request, lock(status="cancelled"), [], None)
    assert not again.cancel and not again.events


# --- tracking ------------------------------------------------------------------------------------


def record(status: domain.ShipmentStatus = "in_transit",
           promised: date | None = date(2026, 11, 22)) -> domain.ShipmentRecord:
    return domain.ShipmentRecord("S1", "o1", "SO-1", "WH-SH", status, AT, "SF", "standard",
                                 "SF1", date(2026, 11, 20), promised)


def scan(status: TrackingStatus, at: datetime, **kwargs: str) -> TrackingUpdated:
    fields = {"order_id": "o1", "shipment_id": "S1", "tracking_number": "SF1", "carrier": "SF"}
    fields.update(kwargs)
    return TrackingUpdated(status=status, occurred_at=at, **fields)  # type: ignore[arg-type]


def test_an_update_of_an_unknown_or_other_parcel_is_refused_and_naive_times_are_company_time(
        ) -> None:
    with pytest.raises(domain.UnknownShipment):
        domain.accept_update(None, scan("in_transit", AT), TZ)
    with pytest.raises(domain.TrackingMismatch, match="order o2"):
        domain.accept_update(record(), scan("in_transit", AT, order_id="o2"), TZ)
    found, at = domain.accept_update(record(), scan("in_transit", AT.replace(tzinfo=None)), TZ)
    assert found == record() and at == AT


def test_a_delivery_moves_the_shipment_and_is_announced_with_the_order() -> None:
    at = AT + timedelta(days=1)
    step = domain.track_update(record(), scan("delivered", at), at, domain.DelayPolicy(TZ))
    assert (step.outcome, step.on_time, step.events) == ("delivered", True, ())
    assert step.move is not None
    assert step.move.columns() == {"delivered_at": at, "on_time": True}
    announced = domain.announce_delivery(record(), step, [shipment(status="delivered"),
                                                          shipment("S2", status="in_transit")])
    (event,) = announced.events
    assert isinstance(event, ShipmentDelivered)
    assert (event.delivered_at, event.on_time, event.order_delivered) == (at, True, False)


def test_an_exception_is_published_with_its_code_and_a_short_detail() -> None:
    at = AT + timedelta(hours=1)
    detail = "damaged: " + "x" * 600
    step = domain.track_update(record(), scan("exception", at, detail=detail), at,
                               domain.DelayPolicy(TZ))
    assert step.move is not None and step.move.exception_code == "damaged"
    assert step.move.exception_detail == detail[:domain.EXCEPTION_DETAIL_LENGTH]
    (event,) = step.events
    assert isinstance(event, ShipmentException) and event.code == "damaged"
    assert event.detail == step.move.exception_detail


def test_a_step_forward_moves_on_and_a_stale_one_stays_in_the_history() -> None:
    at = AT + timedelta(hours=1)
    forward = domain.track_update(record(), scan("out_for_delivery", at), at,
                                  domain.DelayPolicy(TZ))
    assert forward.move is not None and forward.move.state.status == "out_for_delivery"
    assert forward.move.columns() == {} and not forward.events
    stale = domain.track_update(record(), scan("picked_up", at), at, domain.DelayPolicy(TZ))
    assert (stale.outcome, stale.move, stale.findings) == ("stale", None, ())
    assert stale.notes[0].message == "tracking update kept in the history only"
    # a repeated "in transit" on the promised afternoon says the shipment will be late
    late = datetime(2026, 11, 22, 15, 0, tzinfo=TZ)
    repeated = domain.track_update(record(), scan("in_transit", late), late,
                                   domain.DelayPolicy(TZ))
    assert repeated.move is None
    assert [f.reason for f in repeated.findings] == ["not_out_for_delivery_on_promised_day"]


def test_a_delay_is_published_against_the_shipments_promise() -> None:
    event = domain.delay_event(record(), domain.DelayFinding("promised_date_missed",
                                                             date(2026, 11, 24)))
    assert isinstance(event, ShipmentDelayed)
    assert (event.reason, event.promised_date, event.expected_date, event.carrier) == (
        "promised_date_missed", date(2026, 11, 22), date(2026, 11, 24), "SF")


# --- returns -------------------------------------------------------------------------------------


def return_request(*lines: tuple[str, int], resolution: str = "refund") -> ReturnRequested:
    return ReturnRequested(order_id="o1", rma_id="RMA-1", resolution=resolution,  # type: ignore[arg-type]
                           requested_at=(AT + timedelta(days=2)).replace(tzinfo=None),
                           lines=tuple(ReturnRequestLine(sku=s, quantity=q) for s, q in lines))


def ask(request: ReturnRequested, *, stored: domain.ReturnRecord | None = None,
        kept: CanonicalOrder | None = None) -> domain.ReturnOutcome:
    return domain.request_return(
        request, stored=stored, order=kept, shipments=[shipment()], earlier=[],
        tax_rates={"TEA-001": Decimal("0.13")}, policy=domain.ReturnPolicy(), tz=TZ,
        carrier="SF")


def test_a_return_request_is_approved_with_its_record_refused_or_ignored_once_decided() -> None:
    kept = order()
    approved = ask(return_request(("TEA-001", 1)), kept=kept)
    assert approved.record is not None and approved.record.status == "approved"
    (event,) = approved.events
    assert isinstance(event, ReturnApproved)
    assert event.tracking_number == domain.return_tracking_number("RMA-1", "SF")
    assert approved.record.tracking_number == event.tracking_number
    assert approved.record.refund_amount == event.refund_amount > 0
    assert approved.record.lines == event.lines and approved.record.currency == kept.currency
    refused = ask(return_request(("TEA-001", 3)), kept=kept)
    assert refused.record is not None and refused.record.status == "refused"
    (event,) = refused.events
    assert isinstance(event, ReturnRefused) and event.reasons[0].code == "more_than_shipped"
    assert refused.record.reasons == event.reasons
    decided = ask(return_request(("TEA-001", 1)), kept=kept,
                  stored=domain.ReturnRecord("RMA-1", "o1", "approved", "refund", (), "CNY"))
    assert decided.record is None and not decided.events


def receipt(*lines: tuple[str, int], order_id: str = "o1") -> ReturnReceived:
    return ReturnReceived(order_id=order_id, rma_id="RMA-1", warehouse_id="WH-SH",
                          received_at=AT, inspections=tuple(
                              InspectedUnits(sku=s, quantity=q, outcome="restock")
                              for s, q in lines))


def approved_rma(status: str = "approved", resolution: str = "refund") -> domain.ReturnRecord:
    return domain.ReturnRecord("RMA-1", "o1", status, resolution,
                               (domain.ReturnedLine("TEA-001", 2, "WH-SH", Decimal("40.00")),),
                               "CNY")


def test_a_receipt_is_refused_for_an_rma_never_approved_another_order_or_more_units() -> None:
    with pytest.raises(domain.UnknownReturn, match="never requested"):
        domain.receive_return(receipt(("TEA-001", 1)), None, order(), AT)
    with pytest.raises(domain.UnknownReturn, match="refused"):
        domain.receive_return(receipt(("TEA-001", 1)), approved_rma("refused"), order(), AT)
    with pytest.raises(domain.ReturnMismatch, match="belongs to order o1"):
        domain.receive_return(receipt(("TEA-001", 1), order_id="o2"), approved_rma(), order(), AT)
    with pytest.raises(domain.ReturnMismatch, match="received"):
        domain.receive_return(receipt(("TEA-001", 3)), approved_rma(), order(), AT)
    again = domain.receive_return(receipt(("TEA-001", 1)), approved_rma("received"), order(), AT)
    assert again.refund_id is None and not again.events


def test_a_receipt_refunds_once_per_rma_and_an_exchange_pushes_a_new_order() -> None:
    refund = domain.receive_return(receipt(("TEA-001", 1)), approved_rma(), order(), AT)
    assert refund.refund_id == domain.refund_id_for("RMA-1") and refund.exchange is None
    (event,) = refund.events
    assert isinstance(event, RefundIssued)
    assert (event.refund_id, event.amount, event.exchange_order_external_id) == (
        refund.refund_id, Decimal("20.00"), None)
    exchange = domain.receive_return(receipt(("TEA-001", 1)),
                                     approved_rma(resolution="exchange"), order(), AT)
    assert exchange.exchange is not None
    assert exchange.exchange.external_id == domain.exchange_external_id("SO-1", "RMA-1")
    assert exchange.exchange.received_at == AT
    (event,) = exchange.events
    assert isinstance(event, RefundIssued)
    assert event.exchange_order_external_id == exchange.exchange.external_id
