"""Notify's set-based recording path against the real PostgreSQL, through the runtime's batch
consumer (inbox, batch handler, outbox) without a broker: a run of events is one call; several
events of one order in one run see each other's effect as one after another would; events of
several orders are told apart; dispatches coalesce inside one run as across runs; a redelivered
batch, or a run handled twice, applies nothing twice."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from orderflow.contracts.events import (
    CustomerUpdated,
    HoldReason,
    OrderApproved,
    OrderCancelled,
    OrderHeld,
    OrderReceived,
    ReservedLine,
    ShipmentDelayed,
    ShipmentDispatched,
)
from orderflow.contracts.order import CanonicalOrder, Customer, OrderTotals, order_id_for
from orderflow.devstack.catalogue import canonical_order
from orderflow.notify import app
from orderflow.notify.channels import Delivered
from orderflow.notify.channels.email import RecordingEmailDriver
from orderflow.notify.handlers import Notifier
from orderflow.notify.repository import SenderRepository
from orderflow.notify.repository.delivery import _DUE, _WAITING_OF_KEYS
from orderflow.notify.sender import ChannelSender
from orderflow.notify.settings import NotifySettings
from orderflow.runtime.consumer import BatchProcessor, Subscription, decode
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork, UnitOfWorkFactory
from orderflow.testing.infra import Infra
from orderflow.testing.plans import plans_before_and_after_analyze
from orderflow.testing.records import Rec, Records, event_id, migrated_schema

pytestmark = pytest.mark.component

WINDOW_S = 60.0
TOTALS = OrderTotals(subtotal=Decimal("200.00"), discount=Decimal("0.00"), tax=Decimal("18.00"),
                     shipping=Decimal("10.00"), grand_total=Decimal("228.00"))


@dataclass
class Notify:
    engine: AsyncEngine
    notifier: Notifier
    processor: BatchProcessor
    runs: list[list[str]]  # the event types of each call of the batch handler

    async def process(self, records: list[Rec]) -> set[str]:
        """Apply one batch; the channels whose senders its commit wakes."""
        await self.processor.process(records, None)  # type: ignore[arg-type]
        return self.notifier.take_staged_channels()

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql), params)).mappings())

    async def notifications(self, order_id: str) -> list[Any]:
        return await self.rows("SELECT * FROM notify_notifications WHERE order_id = :o ORDER BY id",
                               o=order_id)

    async def order(self, order_id: str) -> Any:
        [row] = await self.rows("SELECT * FROM notify_orders WHERE order_id = :o", o=order_id)
        return row

    async def recorded(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        rows = await self.rows("SELECT value, headers FROM outbox WHERE topic = 'notification.recorded' "
                               "ORDER BY id")
        return [(json.loads(bytes(r["value"])), dict(r["headers"] if isinstance(r["headers"], list)
                                                     else json.loads(r["headers"]))) for r in rows]


@pytest.fixture
async def notify(infra: Infra) -> AsyncIterator[Notify]:
    settings = NotifySettings(webhook_urls={"shopify": "http://127.0.0.1:9/ok"},
                              webhook_secret="secret", coalesce_window_s=WINDOW_S,
                              default_language="zh-CN")
    notifier = Notifier(settings)
    runs: list[list[str]] = []

    async def on_events(uow: UnitOfWork, run: list[IncomingEvent[Any]]) -> None:
        runs.append([i.headers.event_type for i in run])
        await notifier.on_events(uow, run)

    # the service's own subscriptions, the batch handler spied on
    subscriptions = [
        Subscription(s.topic, batch_handler=on_events) if s.batch_handler is not None
        else Subscription(s.topic, getattr(notifier, s.handler.__name__))  # type: ignore[union-attr]
        for s in app.create_service().subscriptions]
    async with migrated_schema(infra.database_url, "notify_batch",
                               Path(app.__file__).parent / "migrations" / "versions") as engine:
        processor = BatchProcessor(service="notify", subscriptions=subscriptions, engine=engine,
                                   max_bytes=1_000_000)
        yield Notify(engine, notifier, processor, runs)


# --- building the source events ----------------------------------------------------------------


def customer_updated(customer_id: str, *, language: str = "en", channel: str = "email",
                     opt_out: bool = False) -> CustomerUpdated:
    return CustomerUpdated(customer_id=customer_id, name=f"Customer {customer_id}",
                           email=f"{customer_id.lower()}@buyer.example", phone="13800001234",
                           language=language, credit_limit=Decimal("100000"), currency="CNY",
                           payment_terms="net30", preferred_channel=channel,
                           opt_out_marketing=opt_out)


def an_order(external_id: str, customer_id: str, *, name: str = "Anna") -> CanonicalOrder:
    data = canonical_order(external_id, lines=[("TEA-001", 2)])
    data["customer"] = {"id": customer_id, "name": name,
                        "email": f"{customer_id.lower()}@buyer.example", "phone": "13800001234"}
    return CanonicalOrder.model_validate(data)


def received(channel: str, order: CanonicalOrder) -> OrderReceived:
    return OrderReceived(order_id=order_id_for(channel, order.external_id), channel=channel,
                         external_id=order.external_id, order=order, totals=TOTALS)


def approved(channel: str, order: CanonicalOrder) -> OrderApproved:
    return OrderApproved(order_id=order_id_for(channel, order.external_id), channel=channel,
                         external_id=order.external_id, order=order, totals=TOTALS,
                         approved_by="auto")


def held(order_id: str, code: str = "credit_limit") -> OrderHeld:
    return OrderHeld(order_id=order_id, reasons=(HoldReason(code=code, message="m"),))  # type: ignore[arg-type]


def dispatched(order_id: str, shipment: str, *, count: int) -> ShipmentDispatched:
    return ShipmentDispatched(
        order_id=order_id, shipment_id=shipment, warehouse_id="WH-SH", carrier="SF",
        service="express", tracking_number=f"T-{shipment}",
        lines=(ReservedLine(sku="TEA-001", warehouse_id="WH-SH", quantity=1),),
        weight_kg=Decimal("1.0"), dispatched_at=datetime(2026, 11, 21, 2, tzinfo=UTC),
        promised_date=date(2026, 11, 23), shipment_count=count)


def tag() -> str:
    return uuid.uuid4().hex[:8].upper()


# --- the tests -----------------------------------------------------------------------------------


async def test_several_events_of_one_order_in_one_run_see_each_other(notify: Notify) -> None:
    records = Records()
    customer = f"B{tag()}"
    await notify.process(records(customer_updated(customer, language="en")))
    order = an_order(f"A-{tag()}", customer)
    first = received("shopify", order)
    run = records(first, held(first.order_id), held(first.order_id, "overdue"),
                  approved("shopify", order))

    woken = await notify.process(run)

    assert notify.runs[-1] == ["OrderReceived", "OrderHeld", "OrderHeld", "OrderApproved"]
    assert woken == {"email", "webhook"}
    rows = await notify.notifications(first.order_id)
    assert [(r["kind"], r["channel"], r["status"]) for r in rows] == [
        ("order_received", "webhook", "pending"), ("order_received", "email", "pending"),
        ("order_held", "webhook", "pending"), ("order_held", "email", "pending"),
        ("order_held", "webhook", "pending"), ("order_held", "email", "suppressed"),
        ("order_approved", "webhook", "pending"), ("order_approved", "email", "pending")]
    # the second hold found the review notice the first had just sent
    assert rows[5]["detail"] == "the customer was already told this order is being reviewed"
    assert rows[5]["finished_at"] is not None
    assert [str(r["source_event_id"]) for r in rows[::2]] == [event_id(r) for r in run]
    # the hold's message knew the order's contact and language from the received before it
    assert rows[3]["recipient"] == f"{customer.lower()}@buyer.example"
    assert rows[3]["language"] == "en"
    assert rows[3]["context"]["customer_name"] == "Anna"
    assert rows[3]["context"]["event"]["notice"] == "under_review"
    # ... and its lines and totals: a hold carries none and must not wipe what is known
    assert rows[3]["context"]["order"]["lines"][0]["sku"] == "TEA-001"
    assert rows[5]["context"]["order"]["totals"]["grand_total"] == "228.00"
    # the approval's message shows the order's lines again
    assert rows[7]["context"]["order"]["lines"][0]["sku"] == "TEA-001"
    assert rows[7]["context"]["order"]["totals"]["grand_total"] == "228.00"
    saved = await notify.order(first.order_id)
    assert saved["review_notice_sent"] is True
    assert saved["channel"] == "shopify" and saved["customer_id"] == customer
    # the suppressed one is recorded at once, answering the event that caused it
    [(event, headers)] = await notify.recorded()
    assert event["status"] == "suppressed" and event["source_event_id"] == event_id(run[2])
    assert headers["causation_id"] == event_id(run[2])


async def test_events_of_several_orders_in_one_run(notify: Notify) -> None:
    records = Records()
    en, zh, sms, quiet = (f"E{tag()}", f"Z{tag()}", f"S{tag()}", f"Q{tag()}")
    await notify.process(records(customer_updated(en), customer_updated(zh, language="zh-CN"),
                                 customer_updated(sms, channel="sms"),
                                 customer_updated(quiet, opt_out=True)))
    a, b, c, q = (received("shopify", an_order(f"A-{tag()}", en)),
                  received("canonical", an_order(f"B-{tag()}", zh, name="王芳")),
                  received("canonical", an_order(f"C-{tag()}", sms)),
                  received("canonical", an_order(f"Q-{tag()}", quiet)))
    unknown = order_id_for("canonical", f"U-{tag()}")
    lost = Customer(id=f"L{tag()}", name="Lee", email="lee@buyer.example")
    run = records(a, b, c, q, approved("canonical", q.order),
                  ShipmentDelayed(order_id=unknown, shipment_id="S1", reason="weather",
                                  promised_date=date(2026, 11, 23)),
                  OrderCancelled(order_id=order_id_for("canonical", f"K-{tag()}"), reason="r",
                                 requested_by="customer", customer=lost),
                  approved("shopify", a.order))

    woken = await notify.process(run)

    assert len(notify.runs[-1]) == 8
    assert woken == {"email", "sms", "webhook"}

    def told(rows: list[Any]) -> list[tuple[str, str, str, str, str]]:
        return [(r["kind"], r["channel"], r["status"], r["recipient"], r["language"]) for r in rows]

    assert told(await notify.notifications(a.order_id)) == [
        ("order_received", "webhook", "pending", "shopify", "en"),
        ("order_received", "email", "pending", f"{en.lower()}@buyer.example", "en"),
        ("order_approved", "webhook", "pending", "shopify", "en"),
        ("order_approved", "email", "pending", f"{en.lower()}@buyer.example", "en")]
    assert told(await notify.notifications(b.order_id)) == [
        ("order_received", "email", "pending", f"{zh.lower()}@buyer.example", "zh-CN")]
    assert told(await notify.notifications(c.order_id)) == [
        ("order_received", "sms", "pending", "13800001234", "en")]
    quiet_rows = await notify.notifications(q.order_id)
    assert [(r["kind"], r["status"]) for r in quiet_rows] == [
        ("order_received", "pending"), ("order_approved", "suppressed")]
    assert "opted out" in quiet_rows[1]["detail"]
    [delayed] = await notify.notifications(unknown)
    assert (delayed["status"], delayed["language"]) == ("suppressed", "zh-CN")
    assert "no contact is known" in delayed["detail"]
    # a cancel of an order notify never saw uses the customer it carries
    [cancelled] = [r for r in await notify.rows(
        "SELECT * FROM notify_notifications WHERE kind = 'order_cancelled'")]
    assert (cancelled["recipient"], cancelled["status"]) == ("lee@buyer.example", "pending")
    assert cancelled["context"]["customer_name"] == "Lee"
    recorded = [(e["source_event_id"], e["status"]) for e, _ in await notify.recorded()]
    assert recorded == [(event_id(run[4]), "suppressed"), (event_id(run[5]), "suppressed")]


async def test_dispatches_coalesce_inside_one_run_as_across_runs(notify: Notify) -> None:
    records = Records()
    customer = f"D{tag()}"
    await notify.process(records(customer_updated(customer)))
    x, y, z = (received("canonical", an_order(f"{n}-{tag()}", customer)) for n in "XYZ")
    await notify.process(records(x, y, z))

    # x: three shipments, the first alone, the other two in one run; y: both in one run;
    # z: one of two (it waits for its sibling)
    await notify.process(records(dispatched(x.order_id, "X1", count=3)))
    [x1] = [r for r in await notify.notifications(x.order_id) if r["kind"] == "shipment_dispatched"]
    assert x1["next_attempt_at"] - x1["created_at"] >= timedelta(seconds=WINDOW_S - 5)

    woken = await notify.process(records(
        dispatched(y.order_id, "Y1", count=2), dispatched(x.order_id, "X2", count=3),
        dispatched(z.order_id, "Z1", count=2), dispatched(y.order_id, "Y2", count=2),
        dispatched(x.order_id, "X3", count=3)))
    assert len(notify.runs[-1]) == 5 and woken == {"email"}

    def dispatches(rows: list[Any]) -> list[Any]:
        return [r for r in rows if r["kind"] == "shipment_dispatched"]

    x_rows = dispatches(await notify.notifications(x.order_id))
    y_rows = dispatches(await notify.notifications(y.order_id))
    [z1] = dispatches(await notify.notifications(z.order_id))
    committed = y_rows[0]["created_at"]  # the second run's transaction time
    # the last shipment of x released the two before it (the first from an earlier run) ...
    assert [r["next_attempt_at"] == committed for r in x_rows] == [True, True, False]
    assert x_rows[2]["next_attempt_at"] - committed < timedelta(seconds=5)
    # ... and y's second its first, in the same run
    assert [r["next_attempt_at"] == committed for r in y_rows] == [True, False]
    assert y_rows[1]["next_attempt_at"] - committed < timedelta(seconds=5)
    assert z1["next_attempt_at"] - z1["created_at"] >= timedelta(seconds=WINDOW_S - 5)
    assert {r["coalesce_key"] for r in x_rows} == {f"{x.order_id}:shipment_dispatched"}
    assert all(r["status"] == "pending" for r in x_rows + y_rows + [z1])
    # each order kept its shipments, for later messages about them
    assert set((await notify.order(x.order_id))["shipments"]) == {"X1", "X2", "X3"}
    assert set((await notify.order(y.order_id))["shipments"]) == {"Y1", "Y2"}
    # a delay of a known shipment finds its tracking number in the order
    await notify.process(records(ShipmentDelayed(order_id=y.order_id, shipment_id="Y2", reason="w",
                                                 promised_date=date(2026, 11, 23))))
    [delay] = [r for r in await notify.notifications(y.order_id) if r["kind"] == "shipment_delayed"]
    assert delay["context"]["event"]["tracking_number"] == "T-Y2"


async def test_a_redelivered_batch_or_a_run_handled_twice_applies_nothing_twice(
        notify: Notify) -> None:
    records = Records()
    customer = f"R{tag()}"
    await notify.process(records(customer_updated(customer, opt_out=True)))
    order = an_order(f"R-{tag()}", customer)
    first = received("shopify", order)
    batch = records(first, held(first.order_id), approved("shopify", order),
                    dispatched(first.order_id, "R1", count=2))
    assert await notify.process(batch) == {"email", "webhook"}
    before = await notify.notifications(first.order_id)
    state = await notify.order(first.order_id)
    outbox = await notify.recorded()
    assert len(before) == 8 and len(outbox) == 1

    # redelivered: the inbox skips every event, the handler is not called
    calls = len(notify.runs)
    assert await notify.process(batch) == set()
    assert len(notify.runs) == calls
    assert await notify.notifications(first.order_id) == before
    assert await notify.recorded() == outbox

    # the same run handled again past the inbox: nothing staged, recorded or woken twice
    decoded = [decode(r, notify.processor.subscriptions[r.topic], 1_000_000)  # type: ignore[arg-type]
               for r in batch]
    async with AsyncSession(notify.engine) as session, session.begin():
        uow = UnitOfWork(session, "notify")
        await notify.notifier.on_events(uow, decoded)  # type: ignore[arg-type]
        assert uow.outgoing == []
    assert notify.notifier.take_staged_channels() == set()
    after = await notify.notifications(first.order_id)

    def kept(rows: list[Any]) -> list[tuple[Any, ...]]:
        return [(r["id"], r["status"], r["recipient"], r["context"]) for r in rows]

    assert kept(after) == kept(before)
    again = await notify.order(first.order_id)
    assert (again["facts"], again["shipments"], again["review_notice_sent"]) == (
        state["facts"], state["shipments"], state["review_notice_sent"])


async def test_deliveries_are_marked_together_and_a_row_taken_over_is_left_alone(
        notify: Notify) -> None:
    """The sender marks a round of deliveries in one statement: each row it still holds (same
    attempt) is finished with its own status and detail and recorded once; a row another sender
    took over after the lease ran out (its attempt moved on) is neither marked nor recorded."""
    records = Records()
    customer = f"D{tag()}"
    await notify.process(records(customer_updated(customer, language="en")))
    orders = [an_order(f"M-{tag()}", customer) for _ in range(3)]
    await notify.process(records(*(received("shopify", o) for o in orders)))
    settings = NotifySettings(webhook_urls={"shopify": "http://127.0.0.1:9/ok"},
                              webhook_secret="secret")
    driver = RecordingEmailDriver()
    sender = ChannelSender(driver, settings, renderer=None,  # type: ignore[arg-type]
                           send_timeout_s=5)
    assert sender.in_flight_limit == settings.record_only_concurrency
    units = UnitOfWorkFactory(notify.engine, "notify")
    ctx = SimpleNamespace(units=units, stopping=asyncio.Event())
    async with units() as uow:
        claimed = await SenderRepository(uow.session).claim_due("email", 10, lease_s=60)
    mine = [r for r in claimed if r.order_id in {order_id_for("shopify", o.external_id)
                                                  for o in orders}]
    assert len(mine) == 3
    taken_over = mine[1]
    async with notify.engine.begin() as conn:  # another sender's attempt after the lease
        await conn.execute(sa.text("UPDATE notify_notifications SET attempts = attempts + 1 "
                                   "WHERE id = :id"), {"id": taken_over.id})
    before = len(await notify.recorded())

    await sender._mark(ctx, [(mine[0], Delivered("recorded", "first")),  # type: ignore[arg-type]
                             (taken_over, Delivered("sent", "too late")),
                             (mine[2], Delivered("sent", "third"))])

    rows = {r["id"]: r for r in await notify.rows(
        "SELECT * FROM notify_notifications WHERE id = ANY(:ids)", ids=[r.id for r in mine])}
    assert (rows[mine[0].id]["status"], rows[mine[0].id]["detail"]) == ("recorded", "first")
    assert (rows[mine[2].id]["status"], rows[mine[2].id]["detail"]) == ("sent", "third")
    assert rows[mine[0].id]["finished_at"] is not None and rows[mine[0].id]["lease_until"] is None
    assert rows[taken_over.id]["status"] == "sending"
    assert rows[taken_over.id]["finished_at"] is None
    recorded = (await notify.recorded())[before:]
    assert sorted((e["source_event_id"], e["status"]) for e, _ in recorded) == sorted(
        [(mine[0].source_event_id, "recorded"), (mine[2].source_event_id, "sent")])
    # each answers the event that caused it
    assert {h["causation_id"] for _, h in recorded} == {mine[0].source_event_id,
                                                        mine[2].source_event_id}


async def _plans_before_and_after_analyze(notify: Notify, statement: str,
                                          params: dict[str, Any], *, due: bool) -> list[str]:
    """The plan of ``statement`` on 5,000 waiting rows (due now, or in a minute) added after the
    table's last ANALYZE (a fresh database, a backlog: the statistics say the table is small),
    then again once analyzed. Rolled back."""
    fill = ("INSERT INTO notify_notifications (notification_id, source_event_id, source_topic, "
            "source_event_type, kind, order_id, channel, recipient, language, context, status, "
            "detail, attempts, next_attempt_at, coalesce_key, raw_value, raw_headers) "
            "SELECT gen_random_uuid(), gen_random_uuid(), 'shipment.dispatched', "
            "'ShipmentDispatched', 'shipment_dispatched', 'o' || i, 'email', 'r@example.com', "
            "'en', '{}', 'pending', '', 0, "
            f"now() {'-' if due else '+'} interval '1 minute' + i * interval '1 ms', "
            "'key-' || i, '\\x00', '[]' FROM generate_series(1, 5000) AS i")
    return await plans_before_and_after_analyze(notify.engine, "notify_notifications", fill,
                                                statement, params)


async def test_the_fold_reads_only_the_claims_keys_and_rows(notify: Notify) -> None:
    """The fold runs on every claim: its rows are the waiting ones of the claim's coalesce keys
    or the claimed ones, and it must read only those, however many others wait (thousands under
    load: each dispatch waits out its coalescing window), whether or not PostgreSQL's statistics
    know how many. The old forms read every waiting row of the channel on every claim: ``status =
    'pending' OR id = ANY(...)`` (no index on the keys covers the claimed ones), then, with an
    index for each arm of the OR, still when the table had grown since its last ANALYZE."""
    params = {"keys": ["key-3"], "channel": "email"}
    for plan in await _plans_before_and_after_analyze(notify, _WAITING_OF_KEYS.text, params,
                                                      due=False):
        assert "Seq Scan on notify_notifications" not in plan, plan
        # the waiting rows found by their keys (the waiting rows' index on coalesce key and
        # channel), not by reading the channel's waiting rows (the due rows' index)
        assert "notify_notifications_waiting" in plan, plan
        assert "notify_notifications_due" not in plan, plan


async def test_the_claim_reads_the_due_rows_in_its_order_and_stops_at_the_first_not_due(
        notify: Notify) -> None:
    """The claim takes a channel's due rows by ``(next_attempt_at, id)`` up to its limit: the due
    rows' index gives them in that order (nothing sorted) and its range ends at the first row
    not yet due, with or without statistics, however many rows wait out their coalescing window
    (5,000 here). Before, PostgreSQL read and sorted every waiting row of the channel on each
    claim that found fewer due rows than its limit: 11 ms a claim in the benchmark."""
    claim = _DUE.params(n_channel="email", n_limit=100, held=[7]).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    for due in (False, True):
        for plan in await _plans_before_and_after_analyze(notify, str(claim), {}, due=due):
            assert "Index Scan using notify_notifications_due" in plan, plan
            assert "Sort" not in plan, plan
            assert "Index Cond: ((channel = 'email'::text) AND (next_attempt_at <= now()))" \
                in plan, plan


async def test_one_claim_folds_each_orders_dispatches_into_its_first(notify: Notify) -> None:
    """A claim that takes dispatches of several orders folds, for each order, every other
    dispatch of it into the first claimed one, whether that other was claimed with it or is
    still waiting; a lone dispatch stays as it is; each folded one is recorded as suppressed."""
    records = Records()
    customer = f"F{tag()}"
    await notify.process(records(customer_updated(customer)))
    x, y, z = (received("canonical", an_order(f"{n}-{tag()}", customer)) for n in "XYZ")
    await notify.process(records(x, y, z))
    # x: two of three shipments (both waiting, the first made due); y: both (released, due);
    # z: one of one (due)
    await notify.process(records(
        dispatched(x.order_id, "X1", count=3), dispatched(x.order_id, "X2", count=3),
        dispatched(y.order_id, "Y1", count=2), dispatched(y.order_id, "Y2", count=2),
        dispatched(z.order_id, "Z1", count=1)))

    def dispatches(rows: list[Any]) -> list[Any]:
        return [r for r in rows if r["kind"] == "shipment_dispatched"]

    x1, x2 = dispatches(await notify.notifications(x.order_id))
    y1, y2 = dispatches(await notify.notifications(y.order_id))
    [z1] = dispatches(await notify.notifications(z.order_id))
    async with notify.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE notify_notifications SET next_attempt_at = now() "
                                   "WHERE id = :id"), {"id": x1["id"]})
    async with notify.engine.begin() as conn:  # only these dispatches are due
        await conn.execute(sa.text(
            "UPDATE notify_notifications SET status = 'recorded' WHERE status = 'pending' "
            "AND NOT (id = ANY(:ids))"), {"ids": [x1["id"], y1["id"], y2["id"], z1["id"], x2["id"]]})
    before = len(await notify.recorded())
    sender = ChannelSender(RecordingEmailDriver(), NotifySettings(),
                           renderer=None, send_timeout_s=5)  # type: ignore[arg-type]
    ctx = SimpleNamespace(units=UnitOfWorkFactory(notify.engine, "notify"),
                          stopping=asyncio.Event())

    ready, _ = await sender._claim(ctx, 10)  # type: ignore[arg-type]

    assert [r.id for r in ready] == sorted([x1["id"], y1["id"], z1["id"]])
    shipments = {r.id: sorted(s["shipment_id"] for s in r.context["event"]["shipments"])
                 for r in ready}
    assert shipments == {x1["id"]: ["X1", "X2"], y1["id"]: ["Y1", "Y2"], z1["id"]: ["Z1"]}
    rows = {r["id"]: r for r in await notify.rows(
        "SELECT * FROM notify_notifications WHERE id = ANY(:ids)",
        ids=[x1["id"], x2["id"], y1["id"], y2["id"], z1["id"]])}
    assert (rows[x2["id"]]["status"], rows[x2["id"]]["coalesced_into"]) == ("coalesced", x1["id"])
    assert (rows[y2["id"]]["status"], rows[y2["id"]]["coalesced_into"]) == ("coalesced", y1["id"])
    assert rows[y2["id"]]["detail"] == f"told together with notification {rows[y1['id']]['notification_id']}"
    assert {rows[i]["status"] for i in (x1["id"], y1["id"], z1["id"])} == {"sending"}
    # the carrying rows keep the merged shipments for a retry
    assert len(rows[x1["id"]]["context"]["event"]["shipments"]) == 2
    recorded = (await notify.recorded())[before:]
    assert sorted((e["source_event_id"], e["status"]) for e, _ in recorded) == sorted(
        [(str(rows[x2["id"]]["source_event_id"]), "suppressed"),
         (str(rows[y2["id"]]["source_event_id"]), "suppressed")])


async def test_finished_notifications_past_the_retention_are_purged_and_the_rest_kept(
        notify: Notify) -> None:
    """Finished rows created before the retention go, a chunk at a time, a row folded into
    another before it; unfinished old rows, recent ones, and an old row a recent one was folded
    into stay."""
    async def add(tag_: str, status: str, days_ago: int, into: int | None = None) -> int:
        async with notify.engine.begin() as conn:
            return int((await conn.execute(sa.text(
                "INSERT INTO notify_notifications (notification_id, source_event_id, source_topic, "
                "source_event_type, kind, order_id, channel, recipient, language, context, status, "
                "coalesced_into, raw_value, raw_headers, created_at) "
                "VALUES (gen_random_uuid(), gen_random_uuid(), 'shipment.dispatched', "
                "'ShipmentDispatched', 'shipment_dispatched', :o, 'email', 'r@example.com', 'en', "
                "'{}', :status, :into, '\\x00', '[]', now() - make_interval(days => :days)) "
                "RETURNING id"), {"o": tag_, "status": status, "into": into, "days": days_ago}))
                .scalar())

    await add("old-sent", "sent", 100)
    carrier = await add("old-carrier", "recorded", 95)
    await add("old-folded", "coalesced", 95, into=carrier)
    await add("old-failed", "failed", 120)
    await add("old-suppressed", "suppressed", 91)
    await add("old-pending", "pending", 100)
    await add("recent-sent", "sent", 10)
    kept_carrier = await add("old-kept-carrier", "sent", 100)
    await add("recent-folded", "coalesced", 1, into=kept_carrier)
    units = UnitOfWorkFactory(notify.engine, "notify")

    deleted = await app.purge_round(units, 90 * 86_400, chunk=2)
    assert deleted == 5  # sent, carrier, folded, failed, suppressed
    left = {r["order_id"] for r in await notify.rows("SELECT order_id FROM notify_notifications")}
    assert left == {"old-pending", "recent-sent", "old-kept-carrier", "recent-folded"}
    assert await app.purge_round(units, 90 * 86_400) == 0


async def test_a_row_the_sender_still_holds_is_not_claimed_again_when_its_lease_ran_out(
        notify: Notify) -> None:
    """A row sent and waiting for its mark while the database was away longer than its lease:
    the claims of the process holding it skip it (sent once); any other claim takes it over (a
    dead sender's row)."""
    records = Records()
    customer = f"H{tag()}"
    await notify.process(records(customer_updated(customer, language="en")))
    order = an_order(f"H-{tag()}", customer)
    await notify.process(records(received("shopify", order)))
    units = UnitOfWorkFactory(notify.engine, "notify")
    order_id = order_id_for("shopify", order.external_id)

    async def claim(held: set[int]) -> list[int]:
        async with units() as uow:
            claimed = await SenderRepository(uow.session).claim_due("email", 100, lease_s=0.0,
                                                                    held=held)
        return [r.id for r in claimed if r.order_id == order_id]

    first = await claim(set())
    assert len(first) == 1  # claimed with a lease that has already run out
    assert await claim(set(first)) == []  # its holder does not take it again
    assert await claim(set()) == first  # another sender takes it over
