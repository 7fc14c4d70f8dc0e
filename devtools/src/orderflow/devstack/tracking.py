"""Follow orders through the event stream: each order's state in the one vocabulary of
``OrderState``, and effects that were applied twice. Used by the demo, the benchmark and the
fault suite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orderflow.contracts import topics
from orderflow.contracts.order import SETTLED_STATES, OrderState
from orderflow.devstack.eventlog import SeenEvent
from orderflow.devstack.simulator import Expected

# the furthest state an event proves; the highest rank wins (events of one order are causal)
_RANK = {
    OrderState.RECEIVED: 1, OrderState.HELD: 2, OrderState.APPROVED: 3,
    OrderState.BACKORDERED: 4, OrderState.RESERVED: 5, OrderState.DISPATCHED: 6,
    OrderState.DELIVERED: 7, OrderState.REJECTED: 8, OrderState.CANCELLED: 9,
    OrderState.RETURNED: 10,
}


@dataclass
class OrderTrack:
    state: OrderState | None = None
    shipments_dispatched: set[str] = field(default_factory=set)
    shipment_count: int = 0
    first_seen: float | None = None
    settled_at: float | None = None

    def advance(self, state: OrderState) -> None:
        if self.state is None or _RANK[state] > _RANK[self.state]:
            self.state = state


@dataclass
class Tracker:
    orders: dict[str, OrderTrack] = field(default_factory=lambda: defaultdict(OrderTrack))
    effects: dict[tuple[Any, ...], set[str]] = field(default_factory=lambda: defaultdict(set))
    _seen: int = 0

    def feed(self, events: Iterable[SeenEvent]) -> None:
        for e in events:
            self._apply(e)

    def feed_new(self, log: list[SeenEvent]) -> None:
        """Feed the events appended to ``log`` since the last call."""
        new = log[self._seen:]
        self._seen = len(log)
        self.feed(new)

    def _effect(self, key: tuple[Any, ...], event_id: str) -> None:
        self.effects[key].add(event_id)

    def _apply(self, e: SeenEvent) -> None:
        ev = e.event
        if ev is None:
            return
        oid = getattr(ev, "order_id", None)
        if oid is None:
            return
        track = self.orders[oid]
        t = e.topic
        if t == "order.received":
            track.advance(OrderState.RECEIVED)
            self._effect(("received", oid), e.event_id)
        elif t == "order.rejected":
            track.advance(OrderState.REJECTED)
            self._effect(("rejected", oid), e.event_id)
        elif t == "order.held":
            track.advance(OrderState.HELD)
        elif t == "order.approved":
            track.advance(OrderState.APPROVED)
            self._effect(("approved", oid), e.event_id)
        elif t == "stock.backordered":
            track.advance(OrderState.BACKORDERED)
        elif t == "stock.reserved":
            track.advance(OrderState.RESERVED)
            lines = tuple(sorted((r.sku, r.warehouse_id, r.quantity) for r in ev.reservations))
            self._effect(("reserved", oid, lines), e.event_id)
        elif t == "shipment.dispatched":
            self._effect(("dispatched", ev.shipment_id), e.event_id)
            track.shipments_dispatched.add(ev.shipment_id)
            track.shipment_count = max(track.shipment_count, ev.shipment_count)
            if len(track.shipments_dispatched) >= track.shipment_count:
                track.advance(OrderState.DISPATCHED)
        elif t == "shipment.delivered":
            self._effect(("delivered", ev.shipment_id), e.event_id)
            if ev.order_delivered:
                track.advance(OrderState.DELIVERED)
        elif t == "order.cancelled":
            track.advance(OrderState.CANCELLED)
            self._effect(("cancelled", oid), e.event_id)
        elif t == "refund.issued":
            track.advance(OrderState.RETURNED)
            self._effect(("refunded", ev.rma_id), e.event_id)
        elif t == "notification.recorded":
            self._effect(("notified", ev.source_event_id, ev.channel), e.event_id)

    def state_of(self, order_id: str) -> OrderState | None:
        track = self.orders.get(order_id)
        return track.state if track else None

    def settled(self, order_id: str) -> bool:
        state = self.state_of(order_id)
        return state is not None and state in SETTLED_STATES

    def duplicates(self) -> dict[str, int]:
        """Effects applied more than once (distinct event ids for the same effect), by kind."""
        out: dict[str, int] = defaultdict(int)
        for key, ids in self.effects.items():
            if len(ids) > 1:
                out[str(key[0])] += len(ids) - 1
        return dict(out)


# --- what each order was meant to come to, and whether every customer was told ------------------

# the customer-facing events: the topics notify consumes to tell the customer (notify/app.py);
# each gets a ``notification.recorded`` naming it (``source_event_id``) per channel it used
CUSTOMER_FACING: frozenset[str] = frozenset(t.name for t in (
    topics.ORDER_RECEIVED, topics.ORDER_REJECTED, topics.ORDER_HELD, topics.ORDER_APPROVED,
    topics.STOCK_BACKORDERED, topics.SHIPMENT_DISPATCHED, topics.SHIPMENT_DELAYED,
    topics.SHIPMENT_DELIVERED, topics.SHIPMENT_EXCEPTION, topics.ORDER_CANCELLED,
    topics.ORDER_CANCEL_REFUSED, topics.ORDER_CHANGED, topics.ORDER_CHANGE_REJECTED,
    topics.RETURN_APPROVED, topics.RETURN_REFUSED, topics.REFUND_ISSUED))
# a recorded outcome that tells (or decides, with a stated reason, not to tell) the customer;
# ``failed`` (retries given up) leaves the customer untold
NOTIFIED_STATUSES: frozenset[str] = frozenset({"sent", "recorded", "suppressed"})
FULFILLED_STATES: frozenset[OrderState] = frozenset(
    {OrderState.BACKORDERED, OrderState.DISPATCHED, OrderState.DELIVERED})


def _last_reason_codes(events: Iterable[SeenEvent], topic: str) -> dict[str, set[str]]:
    """The reason codes of each order's latest event on ``topic`` (events in log order)."""
    out: dict[str, set[str]] = {}
    for e in events:
        if e.topic == topic and e.event is not None:
            out[e.event.order_id] = {r.code for r in e.event.reasons}
    return out


def wrong_outcomes(expected: Mapping[str, Expected], tracker: Tracker,
                   events: Iterable[SeenEvent]) -> list[dict[str, Any]]:
    """Orders whose final state (and reasons) is not the one meant: a rejection must be in state
    rejected with the code among the latest ``order.rejected`` 's reasons, a hold in state held
    with the code among the latest ``order.held`` 's, a fulfilled order backordered, dispatched
    or delivered. One entry per wrong order: its id, what was expected and what it got."""
    seen = list(events)
    held = _last_reason_codes(seen, topics.ORDER_HELD.name)
    rejected = _last_reason_codes(seen, topics.ORDER_REJECTED.name)
    wrong = []
    for order_id, want in expected.items():
        state = tracker.state_of(order_id)
        if state == OrderState.HELD:
            codes = held.get(order_id, set())
        elif state == OrderState.REJECTED:
            codes = rejected.get(order_id, set())
        else:
            codes = set()
        if want.outcome == "fulfilled":
            right = state in FULFILLED_STATES
        elif want.outcome == "held":
            right = state == OrderState.HELD and want.code in codes
        else:
            right = state == OrderState.REJECTED and want.code in codes
        if not right:
            wrong.append({"order_id": order_id, "expected": str(want),
                          "got": str(state or "unseen") + (f":{','.join(sorted(codes))}"
                                                           if codes else "")})
    return wrong


def unnotified_events(events: Iterable[SeenEvent]) -> list[dict[str, str]]:
    """Customer-facing events with no notification recorded (sent, recorded, or suppressed for
    a stated reason) for their event id: the customer was never told, nor was it decided not to."""
    seen = list(events)
    notified = {e.event.source_event_id for e in seen
                if e.topic == topics.NOTIFICATION_RECORDED.name and e.event is not None
                and e.event.status in NOTIFIED_STATUSES}
    out: dict[str, dict[str, str]] = {}
    for e in seen:
        if e.topic in CUSTOMER_FACING and e.event is not None and e.event_id not in notified:
            out[e.event_id] = {"event_id": e.event_id, "topic": e.topic,
                               "order_id": str(getattr(e.event, "order_id", e.key))}
    return list(out.values())
