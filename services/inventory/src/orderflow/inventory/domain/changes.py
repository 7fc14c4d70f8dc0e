"""Changes of an order inventory holds stock for: whether a change can move its stock at all
(``change_gate``), how only the difference moves (``plan_change``), and the policy for more units
(``change_outcome``). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from orderflow.inventory.domain.allocation import Allocation, Pick
from orderflow.inventory.domain.orders import OPEN_STATUSES, OrderRecord

# --- whether a change moves the stock ----------------------------------------------------------


@dataclass(frozen=True)
class ChangeGate:
    """What a change review accepted does here: ``refuse`` (with ``code`` and ``message``);
    ``keep_early``: the order is not approved here yet, its approval reserves the new content;
    ``confirm``: its approval already brought this content; ``apply``: move the difference."""

    step: Literal["refuse", "keep_early", "confirm", "apply"]
    code: str = ""
    message: str = ""


def change_gate(cancelled: bool, record: OrderRecord | None, revision: int) -> ChangeGate:
    if cancelled:
        return ChangeGate("refuse", "order_cancelled", "the order is cancelled")
    if record is None:
        return ChangeGate("keep_early")
    if record.order.revision >= revision:
        return ChangeGate("confirm")
    if record.status not in OPEN_STATUSES:
        return ChangeGate("refuse",
                          "already_dispatched" if record.status == "shipped" else "order_released",
                          f"the order's stock is {record.status}; it can no longer change")
    return ChangeGate("apply")


# --- only the difference moves ------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePlan:
    """How a change of an order's quantities or lines moves its stock: units to give back, and
    the new ordered and still-to-reserve units per SKU (0 ordered: a removed line)."""

    release: tuple[Pick, ...]
    ordered: Mapping[str, int]
    short: Mapping[str, int]


def plan_change(need: Mapping[str, int], holds: Iterable[Pick],
                ordered: Mapping[str, int], ranking: Sequence[str]) -> ChangePlan:
    """Only the difference moves: fewer units (or a removed line) release what the order holds
    beyond its new need, the farthest warehouse's units first; more units (or a new line) are
    still to reserve; units held and still wanted stay where they are."""
    order_of = {w: i for i, w in enumerate(ranking)}
    by_sku: dict[str, list[Pick]] = {}
    for pick in holds:
        by_sku.setdefault(pick.sku, []).append(pick)
    release: list[Pick] = []
    short: dict[str, int] = {}
    for sku in sorted(set(ordered) | set(need) | set(by_sku)):
        picks = sorted(by_sku.get(sku, []), key=lambda p: (-order_of.get(p.warehouse_id, -1),
                                                            p.warehouse_id))
        held = sum(p.quantity for p in picks)
        excess = max(0, held - need.get(sku, 0))
        for pick in picks:
            if excess <= 0:
                break
            take = min(excess, pick.quantity)
            release.append(Pick(pick.warehouse_id, sku, take))
            excess -= take
        short[sku] = max(0, need.get(sku, 0) - held)
    new_ordered = {sku: need.get(sku, 0) for sku in set(ordered) | set(need)}
    return ChangePlan(tuple(sorted(release)), new_ordered, short)


ChangeOutcome = Literal["reserved", "backordered", "refused"]


def change_outcome(status: str, short: Mapping[str, int]) -> ChangeOutcome:
    """The policy for more units: a fully reserved order changes only if the extra units can be
    reserved now, all of them (else the change is refused, ``insufficient_stock``, and the order
    ships as it was); a backordered order was waiting anyway, and the extra units join its
    backorder. Every unit reserved: reserved."""
    if not any(short.values()):
        return "reserved"
    return "refused" if status == "reserved" else "backordered"


def short_after(short: Mapping[str, int], allocation: Allocation) -> dict[str, int]:
    """What a change's order is short of once the extra units (``short``'s, those above zero)
    were allocated: what the allocation could not place."""
    return {**short, **{sku: 0 for sku, q in short.items() if q > 0}, **allocation.short}
