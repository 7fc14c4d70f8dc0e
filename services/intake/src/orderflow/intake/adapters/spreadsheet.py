"""Channels ``csv`` and ``xlsx``: an order sheet's rows for one order, as
``orderflow.connector.spreadsheet.read_order_sheet`` groups them (the template is documented
there and in the README). Cells are text as typed; prices are without tax."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from orderflow.channels import AdapterError, Channel, ChannelOrder
from orderflow.connector.spreadsheet import LINE_COLUMNS, ORDER_COLUMNS
from orderflow.contracts.order import CanonicalOrder
from orderflow.intake.adapters.reading import mapping, object_list

_WHOLE_NUMBER = re.compile(r"^[+-]?\d+(\.0+)?$")
_AMOUNT = re.compile(r"^[+-]?\d+(\.\d{1,2})?$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HAS_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_RUSH = {"rush", "urgent", "加急", "紧急"}
_ADDRESS_COLUMNS = ("recipient_name", "recipient_phone", "province", "city", "district",
                    "address", "postal_code")
# one row per order line: an order of more rows than an order may have lines is refused before
# its rows are read one by one
MAX_ROWS = next(m.max_length for m in CanonicalOrder.model_fields["lines"].metadata
                if hasattr(m, "max_length"))


def to_canonical(payload: Any) -> ChannelOrder:
    sheet_order = mapping(payload, None)
    rows = object_list(sheet_order.get("rows"), "rows")
    if not rows:
        raise AdapterError("an order sheet order needs at least one row", "rows")
    if len(rows) > MAX_ROWS:
        raise AdapterError(f"an order sheet order has {len(rows)} rows; an order has at most "
                           f"{MAX_ROWS} lines", "rows", code="too_many")
    order = _order_cells(rows)
    if not order.get("order_number"):
        raise AdapterError("order_number is empty", "order_number")
    data: dict[str, Any] = {
        "external_id": order["order_number"],
        "currency": order.get("currency") or "CNY",
        "lines": [_line(row) for row in rows],
        "priority": "rush" if order.get("priority", "").lower() in _RUSH
        else (order.get("priority") or "normal").lower(),
        "notes": order.get("notes", ""),
    }
    if order.get("order_date"):
        data["placed_at"] = _china_time_unless_given(order["order_date"])
    if order.get("customer_id"):
        data["customer"] = {"id": order["customer_id"], "name": order.get("customer_name", ""),
                            "email": order.get("customer_email") or None,
                            "phone": order.get("customer_phone") or None}
    if any(order.get(c) for c in _ADDRESS_COLUMNS):
        address: dict[str, Any] = {
            "name": order.get("recipient_name", ""), "country": order.get("country") or "CN",
            "province": order.get("province", ""), "city": order.get("city", ""),
            "district": order.get("district", ""), "line1": order.get("address", ""),
            "postal_code": order.get("postal_code", ""),
        }
        if order.get("recipient_phone"):
            address["phone"] = order["recipient_phone"]
        data["shipping_address"] = address
    optional = {"requested_delivery_date": "requested_delivery_date",
                "payment_terms": "payment_terms", "promo_code": "promo_code",
                "shipping_fee": "shipping_fee", "order_total": "stated_total"}
    for column, canonical_field in optional.items():
        if order.get(column):
            money = column in {"shipping_fee", "order_total"}
            data[canonical_field] = _amount(order[column]) if money else order[column]
    if order.get("revision"):
        data["revision"] = _whole_number(order["revision"])
    return ChannelOrder(data, prices_include_tax=False)


def _order_cells(rows: list[Mapping[str, Any]]) -> dict[str, str]:
    """The order's columns: the same on every row that fills them in."""
    cells: dict[str, str] = {}
    first_row: dict[str, Any] = {}
    for i, row in enumerate(rows):
        for column in ORDER_COLUMNS:
            value = row.get(column)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise AdapterError(f"rows.{i}.{column} must be text", f"rows.{i}.{column}")
            if column in cells and cells[column] != value:
                raise AdapterError(
                    f"{column} differs between sheet rows {first_row[column]} and "
                    f"{row.get('row', i)}: {cells[column]!r} and {value!r}", column,
                    code="conflicting_rows")
            cells.setdefault(column, value)
            first_row.setdefault(column, row.get("row", i))
    return cells


def _line(row: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in LINE_COLUMNS:
        value = row.get(column, "")
        if value is not None and not isinstance(value, str):
            raise AdapterError(f"sheet row {row.get('row')}: {column} must be text", column)
        values[column] = value or ""
    line: dict[str, Any] = {"sku": values["sku"], "quantity": _whole_number(values["quantity"])}
    if values["unit_price"]:
        line["unit_price"] = _amount(values["unit_price"])
    if values["line_discount"]:
        line["discount"] = _amount(values["line_discount"])
    return line


def _amount(value: str) -> str:
    """"57.7" (a number cell) as "57.70"; anything else as typed, for the schema to judge."""
    value = value.strip()
    if len(value) > 20 or not _AMOUNT.match(value):  # too long to be money: the schema says so
        return value
    return format(Decimal(value).quantize(Decimal("0.01")), "f")


def _whole_number(value: str) -> int | str:
    """"3" or Excel's "3.0" as 3 (exactly: no float in between); anything else, or a number
    too long to be a quantity, as typed, for the schema to refuse."""
    value = value.strip()
    if len(value) > 30 or not _WHOLE_NUMBER.match(value):
        return value
    return int(Decimal(value))


def _china_time_unless_given(value: str) -> str:
    value = value.strip()
    if _DATE_ONLY.match(value):
        return f"{value}T00:00:00+08:00"
    if not _HAS_OFFSET.search(value):
        return value.replace(" ", "T", 1) + "+08:00"
    return value


# channels csv and xlsx: the sheet's order number is the order's id
CHANNEL = Channel(to_canonical, external_id_fields=("order_number",))
