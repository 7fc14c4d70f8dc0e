"""The marketplace simulator: orders from every channel at a set rate, with a configurable share
of bad, duplicate, rush and large orders (used by the demo and the benchmark).

Each channel's orders are produced in that platform's own format (see ``CHANNEL_FORMATS``):
``shopify`` as the ``orders/create`` webhook payload (prices without tax, ``taxes_included``
false), ``douyin`` as the 抖店 order-detail ``shop_order_detail`` (amounts in fen, including VAT),
``csv`` as an order sheet's rows grouped by order number. Bad orders stay bad in every format.
The marketplace channels' orders belong to one store each (``STORES``), pushed with it."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any, Literal

from orderflow.connector import external_id_of
from orderflow.contracts.order import order_id_for
from orderflow.devstack.catalogue import (
    ADDRESSES,
    canonical_order,
    customers,
    products,
    stated_total,
    stock_totals,
)

Outcome = Literal["rejected", "held", "fulfilled"]


@dataclass(frozen=True)
class Expected:
    """What the simulator meant an order to come to: ``rejected`` by intake with ``code`` among
    its reasons, ``held`` by review with ``code`` among its hold reasons, or ``fulfilled``
    (approved, then reserved and dispatched, or backordered as stock allows)."""

    outcome: Outcome
    code: str | None = None

    def __str__(self) -> str:
        return f"{self.outcome}:{self.code}" if self.code else self.outcome


FULFILLED = Expected("fulfilled")


@dataclass(frozen=True)
class SimulatedOrder:
    channel: str
    external_id: str
    payload: Any
    kind: str  # valid | bad | held | duplicate | rush | large
    expected: Expected = field(default=FULFILLED)
    store: str | None = None  # the marketplace channels' store (``STORES``)

    @cached_property
    def order_id(self) -> str:
        """The id intake gives the order (computed once)."""
        return order_id_for(self.channel, self.external_id, self.store)

    def submission(self) -> tuple[str, str, Any, str | None]:
        """What ``OrderPusher.push_many`` takes."""
        return self.channel, self.external_id, self.payload, self.store


@dataclass(frozen=True)
class Mix:
    bad: float = 0.05
    duplicate: float = 0.03
    rush: float = 0.10
    large: float = 0.05
    held: float = 0.05  # seeded holds: blocked, overdue, over the credit limit, prepayment due


# the store (shop) of each marketplace channel's simulated orders: the Shopify shop of the
# webhook URL, the 抖店 shop_id the douyin payloads carry
DOUYIN_SHOP_ID = 77977
STORES: dict[str, str] = {"shopify": "orderflow-demo", "douyin": str(DOUYIN_SHOP_ID)}


def _to_canonical(order: dict[str, Any]) -> dict[str, Any]:
    return order


def _platform_number(text: str, digits: int) -> int:
    """A stable platform-style numeric id for one of our ids."""
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return int(10 ** (digits - 1) + digest % (9 * 10 ** (digits - 1)))


def _epoch(iso: Any) -> int:
    return int(datetime.fromisoformat(str(iso)).timestamp())


def _to_shopify(order: dict[str, Any]) -> dict[str, Any]:
    """The Shopify ``orders/create`` webhook payload of a canonical order."""
    customer: dict[str, Any] = order.get("customer") or {}
    terms = str(order.get("payment_terms") or "prepaid")
    lines = []
    for i, line in enumerate(order.get("lines") or []):
        discount = str(line.get("discount", "0.00"))
        lines.append({
            "id": _platform_number(f"{order['external_id']}/{i}", 14), "sku": line["sku"],
            "title": line["sku"], "quantity": line["quantity"], "price": line["unit_price"],
            "total_discount": discount, "taxable": True, "requires_shipping": True,
            "discount_allocations": [{"amount": discount, "discount_application_index": 0}]
            if Decimal(discount) else [],
        })
    payload: dict[str, Any] = {
        "id": _platform_number(str(order["external_id"]), 13),
        "name": f"#{order['external_id']}", "created_at": order["placed_at"],
        "updated_at": order["placed_at"], "processed_at": order["placed_at"],
        "currency": order["currency"], "email": customer.get("email"),
        "financial_status": "pending" if terms != "prepaid" else "paid",
        "taxes_included": False, "line_items": lines,
        "shipping_lines": [{"code": "SF-STANDARD", "title": "顺丰标快", "source": "shopify",
                            "price": order.get("shipping_fee", "0.00"),
                            "discounted_price": order.get("shipping_fee", "0.00")}],
        "tags": "rush" if order.get("priority") == "rush" else "",
        "note": order.get("notes") or None,
        "customer": {"id": _platform_number(str(customer.get("id")), 12),
                     "email": customer.get("email"), "first_name": customer.get("name", ""),
                     "last_name": "", "phone": customer.get("phone"),
                     "tags": f"orderflow:{customer.get('id')}"},
        "payment_gateway_names": ["Cash on Delivery (COD)"] if terms == "cod" else ["shopify_payments"],
        "note_attributes": [{"name": "requested_delivery_date",
                             "value": order["requested_delivery_date"]}]
        if order.get("requested_delivery_date") else [],
        "discount_codes": [{"code": order["promo_code"], "amount": "0.00", "type": "fixed_amount"}]
        if order.get("promo_code") else [],
    }
    if terms.startswith("net"):
        payload["payment_terms"] = {"payment_terms_name": f"Net {terms[3:]}",
                                    "payment_terms_type": "net", "due_in_days": int(terms[3:])}
    if order.get("stated_total") is not None:
        payload["total_price"] = payload["current_total_price"] = order["stated_total"]
    address = order.get("shipping_address")
    if address:
        payload["shipping_address"] = {
            "name": address.get("name", ""), "first_name": address.get("name", ""), "last_name": "",
            "phone": address.get("phone"), "country_code": address.get("country", "CN"),
            "province": address.get("province"), "city": address.get("city"),
            "address1": " ".join(p for p in (address.get("district"), address.get("line1")) if p),
            "address2": "", "zip": address.get("postal_code", ""),
        }
    return payload


def _fen(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _to_douyin(order: dict[str, Any]) -> dict[str, Any]:
    """The 抖店 ``shop_order_detail`` of a canonical order: consumer prices including VAT."""
    catalogue = products()
    customer: dict[str, Any] = order.get("customer") or {}
    shop_order_id = str(_platform_number(str(order["external_id"]), 19))
    created = _epoch(order["placed_at"])
    sku_orders, goods_fen = [], 0
    for i, line in enumerate(order.get("lines") or []):
        product = catalogue.get(line["sku"])
        rate = product.tax_rate if product else Decimal(0)
        unit_fen = _fen(Decimal(str(line["unit_price"])) * (1 + rate))
        promotion_fen = _fen(Decimal(str(line.get("discount", "0"))) * (1 + rate))
        quantity = line["quantity"]
        sum_fen = unit_fen * quantity if isinstance(quantity, int) else 0
        goods_fen += sum_fen - promotion_fen
        sku_orders.append({
            "order_id": f"{shop_order_id}{i}", "parent_order_id": shop_order_id, "order_level": 3,
            "code": line["sku"], "out_sku_id": "", "product_name": product.name if product else line["sku"],
            "item_num": quantity, "origin_amount": unit_fen, "sum_amount": sum_fen,
            "promotion_amount": promotion_fen, "modify_amount": 0, "has_tax": False,
            "order_status": 2, "order_status_desc": "备货中",
        })
    post_fen = _fen(Decimal(str(order.get("shipping_fee", "0"))))
    stated = order.get("stated_total")
    priced = [(ln["sku"], ln["quantity"], Decimal(str(ln["unit_price"])),
               Decimal(str(ln.get("discount", "0"))))
              for ln in order.get("lines") or [] if isinstance(ln["quantity"], int)]
    # a stated total that does not match the lines (a bad order) is carried over as it is
    broken_total = stated is not None and Decimal(str(stated)) != stated_total(
        priced, Decimal(str(order.get("shipping_fee", "0"))))
    payload: dict[str, Any] = {
        "shop_id": DOUYIN_SHOP_ID, "shop_name": "OrderFlow 旗舰店", "order_id": shop_order_id,
        "order_level": 2, "order_status": 2, "order_status_desc": "备货中", "main_status": 2,
        "create_time": created, "pay_time": created + 30, "update_time": created + 60,
        "pay_type": 0 if order.get("payment_terms") == "cod" else 1,
        "order_amount": _fen(Decimal(str(stated))) if broken_total else goods_fen + post_fen,
        "post_amount": post_fen, "modify_post_amount": 0,
        "seller_words": f"orderflow:{customer.get('id')}",
        "seller_remark_stars": 5 if order.get("priority") == "rush" else 0,
        "buyer_words": order.get("notes") or "",
        "doudian_open_id": f"1@#{hashlib.sha256(str(customer.get('id')).encode()).hexdigest()[:40]}",
        "sku_order_list": sku_orders,
    }
    payload["pay_amount"] = payload["order_amount"]
    address = order.get("shipping_address")
    if address:
        payload["post_receiver"] = address.get("name", "")
        payload["post_tel"] = address.get("phone", "")
        payload["post_addr"] = {"province": {"name": address.get("province"), "id": ""},
                                "city": {"name": address.get("city"), "id": ""},
                                "town": {"name": address.get("district", ""), "id": ""},
                                "street": {"name": "", "id": ""},
                                "detail": address.get("line1", "")}
    return payload


def _to_csv(order: dict[str, Any]) -> dict[str, Any]:
    """An order sheet's rows (as ``read_order_sheet`` groups them): order cells on the first row."""
    customer: dict[str, Any] = order.get("customer") or {}
    address: dict[str, Any] = order.get("shipping_address") or {}
    first = {
        "order_number": str(order["external_id"]), "order_date": str(order["placed_at"]),
        "customer_id": str(customer.get("id", "")), "customer_name": customer.get("name", ""),
        "customer_email": customer.get("email") or "", "customer_phone": customer.get("phone") or "",
        "currency": order.get("currency", "CNY"), "recipient_name": address.get("name", ""),
        "recipient_phone": address.get("phone", ""), "province": address.get("province", ""),
        "city": address.get("city", ""), "district": address.get("district", ""),
        "address": address.get("line1", ""), "postal_code": address.get("postal_code", ""),
        "country": address.get("country", "") if address else "",
        "requested_delivery_date": order.get("requested_delivery_date") or "",
        "priority": order.get("priority", "normal"), "payment_terms": order.get("payment_terms") or "",
        "promo_code": order.get("promo_code") or "", "shipping_fee": order.get("shipping_fee", ""),
        "order_total": order.get("stated_total") or "", "notes": order.get("notes") or "",
    }
    rows = []
    for i, line in enumerate(order.get("lines") or []):
        row: dict[str, Any] = {"row": i + 2, "order_number": first["order_number"]}
        if i == 0:
            row.update(first)
        row.update({"sku": line["sku"], "quantity": str(line["quantity"]),
                    "unit_price": str(line["unit_price"]), "line_discount": str(line.get("discount", ""))})
        rows.append(row)
    return {"order_number": first["order_number"], "source": "simulated.csv", "rows": rows}


# channel -> function turning a canonical order dict into that channel's payload
CHANNEL_FORMATS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "canonical": _to_canonical,
    "shopify": _to_shopify,
    "douyin": _to_douyin,
    "csv": _to_csv,
}

def external_id_in(channel: str, payload: Any, default: str) -> str:
    """The external id a channel's payload carries (the platform's own order id, where the
    installed channel keeps it: ``orderflow.connector.external_id_of``), else ``default``."""
    try:
        return external_id_of(channel, payload)
    except ValueError:
        return default


def _plentiful_skus() -> list[str]:
    totals = stock_totals()
    return [sku for sku, p in products().items()
            if p.active and totals.get(sku, 0) >= 500 and not sku.startswith("SERV")]


# intake's rejection code for each way the simulator breaks an order, per channel where the
# channel's adapter reads the breakage differently (intake/domain.py, intake/adapters/)
BREAKAGES = ("negative_quantity", "unknown_sku", "total", "missing_address")
_REJECTION_CODES: dict[str, str] = {
    "negative_quantity": "quantity_not_positive", "unknown_sku": "unknown_sku",
    "total": "total_mismatch", "missing_address": "missing_field",
}
_REJECTION_CODES_BY_CHANNEL: dict[tuple[str, str], str] = {}

# review's rules (review/domain.py) and review's policy defaults the seeded holds rely on
MANAGER_APPROVAL_ABOVE = Decimal("10000")  # rule_order_value
NEW_CUSTOMER_FIRST_ORDER_ABOVE = Decimal("5000")  # rule_new_customer
OVERDUE_TOLERANCE_DAYS = 30  # rule_overdue (with any overdue amount)
_MARGIN = Decimal("0.95")  # tax and rounding of the channels' formats stay below the thresholds
# the holds a seeded order can be made to trigger, and the channels where it triggers: douyin
# orders are paid on the platform (prepaid, paid), so neither the credit limit nor an unpaid
# prepayment can hold them; a shopify prepaid order is paid at checkout
HOLDS: dict[str, tuple[str, ...]] = {
    "blocked_customer": ("canonical", "shopify", "douyin", "csv"),
    "overdue": ("canonical", "shopify", "douyin", "csv"),
    "credit_limit": ("canonical", "shopify", "csv"),
    "prepayment_due": ("canonical", "csv"),
}


def rejection_code(channel: str, breakage: str) -> str:
    """The code intake rejects an order broken this way with, on this channel."""
    return _REJECTION_CODES_BY_CHANNEL.get((channel, breakage), _REJECTION_CODES[breakage])


def _hold_customers() -> dict[str, list[str]]:
    """Customers whose every order review holds for the code, whatever else it decided before."""
    out: dict[str, list[str]] = {code: [] for code in HOLDS}
    for c in customers().values():
        if c.blocked:
            out["blocked_customer"].append(c.customer_id)
        elif c.overdue_days > OVERDUE_TOLERANCE_DAYS:
            out["overdue"].append(c.customer_id)
        elif c.payment_terms.startswith("net") and c.open_receivables >= c.credit_limit:
            out["credit_limit"].append(c.customer_id)  # exposure only grows while the demo runs
        elif c.payment_terms == "prepaid":
            out["prepayment_due"].append(c.customer_id)
    return {code: sorted(ids) for code, ids in out.items()}


def _good_customers() -> list[str]:
    """Customers whose orders review approves while their credit lasts: known, not blocked,
    nothing overdue beyond the tolerance, on credit terms (no COD limit, no prepayment)."""
    return sorted(c.customer_id for c in customers().values()
                  if not c.blocked and c.overdue_days <= OVERDUE_TOLERANCE_DAYS
                  and c.payment_terms.startswith("net")
                  and c.credit_limit - c.open_receivables >= Decimal("1000"))


def _total(lines: list[tuple[str, int]]) -> Decimal:
    cat = products()
    return stated_total([(sku, qty, cat[sku].unit_price, Decimal(0)) for sku, qty in lines],
                        Decimal("10.00"))


def _approvable(lines: list[tuple[str, int]], cap: Decimal) -> list[tuple[str, int]]:
    """The lines made small enough that the order stays under ``cap``: quantities lowered,
    then lines dropped (the cheapest line alone is far below every cap)."""
    lines = list(lines)
    while _total(lines) > cap:
        sku, qty = max(lines, key=lambda ln: ln[1])
        if qty > 1:
            lines[lines.index((sku, qty))] = (sku, qty - 1)
        elif len(lines) > 1:
            lines.remove(max(lines, key=lambda ln: products()[ln[0]].unit_price))
        else:
            break
    return lines


def generate_orders(count: int, *, seed: int = 7, mix: Mix = Mix(),
                    channels: tuple[str, ...] | None = None,
                    prefix: str = "SIM") -> list[SimulatedOrder]:
    """``count`` distinct orders (duplicates are extra re-pushes of earlier ones), each with the
    outcome it is meant to come to (``expected``): a bad order rejected for its breakage, a
    seeded hold held for its reason, a large order (above the manager-approval threshold) held
    for ``manager_approval``, every other order fulfilled. Orders meant to be fulfilled go to
    customers in good standing, within their credit: the sum of every such order of a customer
    stays within its headroom, whatever order review sees them in."""
    rnd = random.Random(seed)
    chosen_channels = channels or tuple(CHANNEL_FORMATS)
    skus = _plentiful_skus()
    all_skus = [sku for sku, p in products().items() if p.active]
    catalogue_customers = customers()
    customer_ids = sorted(catalogue_customers)
    good = _good_customers()
    holds = _hold_customers()
    headroom = {cid: (catalogue_customers[cid].credit_limit
                      - catalogue_customers[cid].open_receivables) * _MARGIN for cid in good}
    out: list[SimulatedOrder] = []
    for i in range(count):
        channel = chosen_channels[i % len(chosen_channels)]
        external_id = f"{prefix}-{seed}-{i:06d}"
        roll = rnd.random()
        kind = "valid"
        n_lines = rnd.choice([1, 1, 2, 3])
        qty_max = 3
        if roll < mix.large:
            kind, n_lines, qty_max = "large", rnd.randint(6, 12), 8
        elif roll < mix.large + mix.rush:
            kind = "rush"
        pool = all_skus if rnd.random() < 0.1 else skus
        lines = [(sku, rnd.randint(1, qty_max)) for sku in rnd.sample(pool, n_lines)]
        bad = rnd.random() < mix.bad
        hold = not bad and rnd.random() < mix.held
        customer_id = rnd.choice(customer_ids)
        expected = FULFILLED
        if bad:
            pass  # intake rejects it before anyone looks at the customer
        elif hold:
            kind = "held"
            code = rnd.choice(sorted(c for c, where in HOLDS.items()
                                     if channel in where and holds[c]))
            customer_id = rnd.choice(holds[code])
            expected = Expected("held", code)
        elif kind == "large" and _total(lines) > MANAGER_APPROVAL_ABOVE / _MARGIN:
            customer_id = rnd.choice(good)
            expected = Expected("held", "manager_approval")
        else:
            customer_id = rnd.choice(good)
            account = catalogue_customers[customer_id]
            new = account.open_receivables == 0  # its first approved order is "new customer"
            cap = min(NEW_CUSTOMER_FIRST_ORDER_ABOVE if new else MANAGER_APPROVAL_ABOVE,
                      headroom[customer_id] / _MARGIN) * _MARGIN
            lines = _approvable(lines, cap)
            if _total(lines) > cap:  # this customer's credit is used up: the roomiest one
                customer_id = max(good, key=lambda c: (headroom[c], c))
                lines = _approvable(lines, min(MANAGER_APPROVAL_ABOVE, headroom[customer_id])
                                    * _MARGIN)
            headroom[customer_id] -= _total(lines)
        order = canonical_order(
            external_id, customer_id=customer_id, lines=lines,
            priority="rush" if kind == "rush" else "normal",
            address_index=rnd.randrange(len(ADDRESSES)),
            requested_delivery_date=None if rnd.random() < 0.5 else "2026-12-20",
        )
        if bad:
            kind = "bad"
            breakage = rnd.choice(BREAKAGES)
            if breakage == "negative_quantity":
                order["lines"][0]["quantity"] = -1  # type: ignore[index]
            elif breakage == "unknown_sku":
                order["lines"][0]["sku"] = "NO-SUCH-SKU"  # type: ignore[index]
            elif breakage == "total":
                order["stated_total"] = "1.00"
            else:
                del order["shipping_address"]
            expected = Expected("rejected", rejection_code(channel, breakage))
        payload = CHANNEL_FORMATS[channel](order)
        out.append(SimulatedOrder(channel, external_id_in(channel, payload, external_id), payload,
                                  kind, expected, STORES.get(channel)))
    duplicates = [replace(o, kind="duplicate")
                  for o in rnd.sample(out, int(count * mix.duplicate))] if out else []
    for dup in duplicates:
        out.insert(rnd.randrange(len(out) + 1), dup)
    return out
