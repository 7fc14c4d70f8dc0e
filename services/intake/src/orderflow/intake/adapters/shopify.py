"""Channel ``shopify``: the ``orders/create`` (and ``orders/updated``) webhook payload, i.e. the
REST Admin API Order resource as Shopify documents it. Amounts are strings in the shop currency.

Mapping (README, "Shopify"):

- ``id`` → external id; ``updated_at`` (else ``created_at``) → revision (its Unix time);
  ``created_at`` → placed_at.
- ``line_items[]``: ``sku``, ``current_quantity`` (after order edits; else ``quantity``),
  ``price`` → unit price, line discount = the sum of ``discount_allocations[].amount`` (order-level
  codes allocated to the line) or, without allocations, ``total_discount``. Lines edited down to
  zero are left out.
- ``shipping_lines[]``: the sum of ``discounted_price`` (else ``price``) → shipping fee.
- ``current_total_price`` (else ``total_price``) → the stated total intake checks;
  ``taxes_included`` → whether prices include VAT. ``tax_lines`` are the platform's own tax
  figures: intake recomputes tax from its product data instead.
- ``shipping_address`` → address (``province``, ``city``, ``address1`` + ``address2``, ``zip``,
  ``country_code``, ``phone``, falling back to the customer's or the order's phone).
- ``customer``: the master-data customer id is the customer tag ``orderflow:<id>`` when the shop
  has bound one, else ``shopify-<customer.id>``.
- ``payment_terms`` (B2B) ``net`` with ``due_in_days`` → ``net<days>``; a cash-on-delivery
  gateway → ``cod``; anything else was paid at checkout → ``prepaid``.
- ``tags`` containing ``rush`` → priority rush; ``note_attributes`` ``requested_delivery_date`` →
  requested delivery date; first ``discount_codes[].code`` → promo code; ``note`` → notes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from orderflow.channels import AdapterError, Channel, ChannelOrder
from orderflow.intake.adapters.reading import (
    iso_timestamp,
    mapping,
    object_list,
    optional_mapping,
    revision_from,
    text,
)

_BOUND_CUSTOMER = re.compile(r"^orderflow:(\S{1,64})$", re.IGNORECASE)
_DELIVERY_DATE_ATTRIBUTES = {"requested_delivery_date", "delivery_date", "delivery date"}
_COD_GATEWAYS = ("cash on delivery", "cod")


def to_canonical(payload: Any) -> ChannelOrder:
    order = mapping(payload, None)
    order_id = text(order.get("id"), "id")
    if not order_id:
        raise AdapterError("a Shopify order needs its id", "id")
    created = iso_timestamp(order.get("created_at"), "created_at")
    updated = (iso_timestamp(order["updated_at"], "updated_at")
               if order.get("updated_at") else created)
    customer = optional_mapping(order.get("customer"), "customer")
    data: dict[str, Any] = {
        "external_id": order_id,
        "placed_at": created.isoformat(),
        "revision": revision_from(updated),
        "currency": text(order.get("currency"), "currency"),
        "lines": _lines(order.get("line_items")),
        "shipping_fee": _shipping(order.get("shipping_lines")),
        "priority": "rush" if "rush" in _tags(order.get("tags"), "tags") else "normal",
        "payment_terms": _payment_terms(order),
        "notes": text(order.get("note"), "note"),
    }
    if customer:
        data["customer"] = _customer(order, customer)
    address = optional_mapping(order.get("shipping_address"), "shipping_address")
    if address:
        data["shipping_address"] = _address(address, order, customer)
    stated = order.get("current_total_price", order.get("total_price"))
    if stated is not None:
        data["stated_total"] = stated
        if order.get("financial_status") == "paid" and data["payment_terms"] == "prepaid":
            data["amount_paid"] = stated  # paid at checkout
    codes = order.get("discount_codes") or []
    if codes:
        data["promo_code"] = text(object_list(codes, "discount_codes")[0].get("code"),
                                  "discount_codes.0.code") or None
    delivery = _requested_delivery_date(order.get("note_attributes"))
    if delivery:
        data["requested_delivery_date"] = delivery
    taxes_included = order.get("taxes_included", False)
    if not isinstance(taxes_included, bool):
        raise AdapterError("taxes_included must be true or false", "taxes_included")
    return ChannelOrder(data, prices_include_tax=taxes_included)


def _lines(value: Any) -> list[dict[str, Any]]:
    lines = []
    for i, item in enumerate(object_list(value, "line_items")):
        where = f"line_items.{i}"
        quantity = item.get("current_quantity", item.get("quantity"))
        if "current_quantity" in item and quantity == 0 and item.get("quantity"):
            continue  # removed by an order edit
        allocations = object_list(item.get("discount_allocations") or [],
                                  f"{where}.discount_allocations")
        if allocations:
            discount: Any = _sum_amounts((a.get("amount") for a in allocations),
                                         f"{where}.discount_allocations")
        else:
            discount = item.get("total_discount", "0.00")
        lines.append({"sku": text(item.get("sku"), f"{where}.sku"), "quantity": quantity,
                      "unit_price": item.get("price"), "discount": discount})
    return lines


def _shipping(value: Any) -> str:
    shipping_lines = object_list(value or [], "shipping_lines")
    return _sum_amounts((s.get("discounted_price", s.get("price")) for s in shipping_lines),
                        "shipping_lines")


def _sum_amounts(amounts: Any, field: str) -> str:
    total = Decimal("0")
    for amount in amounts:
        if not isinstance(amount, str):
            raise AdapterError(f"{field}: amounts are strings such as \"9.99\"", field)
        try:
            total += Decimal(amount)
        except InvalidOperation as exc:
            raise AdapterError(f"{field}: {amount!r} is not an amount", field) from exc
    return format(total, "f") if total else "0.00"


def _tags(value: Any, field: str) -> set[str]:
    return {t.strip().lower() for t in text(value, field).split(",") if t.strip()}


def _customer(order: Mapping[str, Any], customer: Mapping[str, Any]) -> dict[str, Any]:
    bound = [m.group(1) for t in text(customer.get("tags"), "customer.tags").split(",")
             if (m := _BOUND_CUSTOMER.match(t.strip()))]
    shopify_id = text(customer.get("id"), "customer.id")
    customer_id = bound[0] if bound else (f"shopify-{shopify_id}" if shopify_id else "")
    name = " ".join(p for p in (text(customer.get("first_name"), "customer.first_name"),
                                text(customer.get("last_name"), "customer.last_name")) if p)
    email = text(customer.get("email"), "customer.email") or text(order.get("email"), "email")
    phone = text(customer.get("phone"), "customer.phone") or text(order.get("phone"), "phone")
    return {"id": customer_id, "name": name, "email": email or None, "phone": phone or None}


def _address(address: Mapping[str, Any], order: Mapping[str, Any],
             customer: Mapping[str, Any]) -> dict[str, Any]:
    line1 = " ".join(p for p in (text(address.get("address1"), "shipping_address.address1"),
                                 text(address.get("address2"), "shipping_address.address2")) if p)
    phone = (text(address.get("phone"), "shipping_address.phone")
             or text(customer.get("phone"), "customer.phone") or text(order.get("phone"), "phone"))
    name = text(address.get("name"), "shipping_address.name") or " ".join(
        p for p in (text(address.get("first_name"), "shipping_address.first_name"),
                    text(address.get("last_name"), "shipping_address.last_name")) if p)
    result: dict[str, Any] = {
        "name": name,
        "country": text(address.get("country_code"), "shipping_address.country_code") or "CN",
        "province": text(address.get("province"), "shipping_address.province"),
        "city": text(address.get("city"), "shipping_address.city"),
        "line1": line1,
        "postal_code": text(address.get("zip"), "shipping_address.zip"),
    }
    if phone:
        result["phone"] = phone
    return result


def _payment_terms(order: Mapping[str, Any]) -> str:
    terms = optional_mapping(order.get("payment_terms"), "payment_terms")
    days = terms.get("due_in_days")
    if terms.get("payment_terms_type") == "net" and isinstance(days, int) and not isinstance(days, bool):
        return f"net{days}"
    gateways = order.get("payment_gateway_names") or []
    if not isinstance(gateways, list):
        raise AdapterError("payment_gateway_names must be a list", "payment_gateway_names")
    names = [text(g, "payment_gateway_names").lower() for g in gateways]
    if any(name == "cod" or _COD_GATEWAYS[0] in name for name in names):
        return "cod"
    return "prepaid"


def _requested_delivery_date(value: Any) -> str | None:
    for i, attribute in enumerate(object_list(value or [], "note_attributes")):
        name = text(attribute.get("name"), f"note_attributes.{i}.name").lower()
        if name in _DELIVERY_DATE_ATTRIBUTES:
            return text(attribute.get("value"), f"note_attributes.{i}.value") or None
    return None


# a Shopify order number is only unique within its shop: the webhook URL's shop is its store
CHANNEL = Channel(to_canonical, external_id_fields=("id", "order_number", "name"), per_store=True)
