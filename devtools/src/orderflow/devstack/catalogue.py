"""The demo catalogue and customers, read from the shipped demo data (for the simulator, the
demo and tests)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from orderflow.contracts.money import round_money
from orderflow.contracts.order import Address
from orderflow.devstack.masterdata import DEMO_DATA, delivery_address


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    unit_price: Decimal
    tax_rate: Decimal
    weight_kg: Decimal
    active: bool


@dataclass(frozen=True)
class DemoCustomer:
    customer_id: str
    name: str
    email: str
    phone: str
    language: str
    payment_terms: str
    credit_limit: Decimal
    open_receivables: Decimal
    overdue_days: int
    blocked: bool
    delivery_address: Address | None = None


@cache
def products() -> dict[str, DemoProduct]:
    with (DEMO_DATA / "products.csv").open(encoding="utf-8") as f:
        return {r["sku"]: DemoProduct(r["sku"], r["name"], Decimal(r["unit_price"]),
                                      Decimal(r["tax_rate"]), Decimal(r["weight_kg"]),
                                      r["active"] == "true") for r in csv.DictReader(f)}


@cache
def customers() -> dict[str, DemoCustomer]:
    with (DEMO_DATA / "customers.csv").open(encoding="utf-8") as f:
        return {r["customer_id"]: DemoCustomer(
            r["customer_id"], r["name"], r["email"], r["phone"], r["language"],
            r["payment_terms"], Decimal(r["credit_limit"]), Decimal(r["open_receivables"]),
            int(r["overdue_days"]), r["blocked"] == "true", delivery_address(r))
            for r in csv.DictReader(f)}


@cache
def stock_totals() -> dict[str, int]:
    totals: dict[str, int] = {}
    with (DEMO_DATA / "stock.csv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f):
            totals[r["sku"]] = totals.get(r["sku"], 0) + int(r["quantity"])
    return totals


def stated_total(lines: list[tuple[str, int, Decimal, Decimal]], shipping: Decimal) -> Decimal:
    """What intake will compute for these (sku, quantity, unit price, discount) lines."""
    cat = products()
    subtotal = sum((price * qty for _, qty, price, _ in lines), Decimal(0))
    discount = sum((d for *_, d in lines), Decimal(0))
    tax = sum((round_money((price * qty - d) * (cat[sku].tax_rate if sku in cat else 0))
               for sku, qty, price, d in lines), Decimal(0))
    return round_money(round_money(subtotal) - round_money(discount) + tax + round_money(shipping))


ADDRESSES = [
    ("上海", "上海", "浦东新区", "世纪大道 100 号", "200120"),
    ("广东", "广州", "天河区", "天河路 385 号", "510620"),
    ("北京", "北京", "朝阳区", "建国路 88 号", "100022"),
    ("四川", "成都", "锦江区", "春熙路 19 号", "610021"),
    ("湖北", "武汉", "江汉区", "解放大道 690 号", "430022"),
    ("浙江", "杭州", "西湖区", "文三路 478 号", "310013"),
    ("江苏", "南京", "鼓楼区", "中山北路 30 号", "210008"),
    ("陕西", "西安", "雁塔区", "长安南路 88 号", "710061"),
]


def canonical_order(external_id: str, *, customer_id: str = "C0002",
                    lines: list[tuple[str, int]] | None = None, priority: str = "normal",
                    address_index: int = 0, shipping_fee: str = "10.00",
                    requested_delivery_date: str | None = None, payment_terms: str | None = None,
                    promo_code: str | None = None, discount: str = "0.00",
                    placed_at: str = "2026-11-20T10:00:00+08:00") -> dict[str, object]:
    """A valid canonical order JSON for the demo catalogue, with a correct stated total."""
    cat = products()
    customer = customers()[customer_id]
    chosen = lines or [("TEA-001", 2)]
    priced = [(sku, qty, cat[sku].unit_price if sku in cat else Decimal("1.00"),
               Decimal(discount) if i == 0 else Decimal(0))
              for i, (sku, qty) in enumerate(chosen)]
    province, city, district, line1, postal = ADDRESSES[address_index % len(ADDRESSES)]
    return {
        "external_id": external_id,
        "placed_at": placed_at,
        "customer": {"id": customer.customer_id, "name": customer.name, "email": customer.email,
                     "phone": customer.phone},
        "currency": "CNY",
        "lines": [{"sku": sku, "quantity": qty, "unit_price": f"{price:.2f}",
                   "discount": f"{d:.2f}"} for sku, qty, price, d in priced],
        "shipping_address": {"name": customer.name, "phone": customer.phone, "country": "CN",
                             "province": province, "city": city, "district": district,
                             "line1": line1, "postal_code": postal},
        "requested_delivery_date": requested_delivery_date,
        "priority": priority,
        "payment_terms": payment_terms or customer.payment_terms,
        "promo_code": promo_code,
        "shipping_fee": shipping_fee,
        "stated_total": f"{stated_total(priced, Decimal(shipping_fee)):.2f}",
        "notes": "",
    }
