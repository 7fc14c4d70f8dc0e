"""Order sheets: a CSV or XLSX file of order lines (one row per line) for orders that arrive by
e-mail, phone or paper, read into one ``csv``/``xlsx`` channel payload per order.

The template (a header row, then one row per order line; the column order is free)::

    order_number   the order's number (required on the first row of each order; a blank cell
                   continues the order above, as in sheets where order cells are merged)
    order_date     when the order was placed: 2026-11-20 or 2026-11-20 10:30 (China time unless
                   an offset is given)
    customer_id    the customer's id in master data (C0001)
    customer_name, customer_email, customer_phone
    currency       ISO 4217 code, default CNY
    sku, quantity, unit_price (without tax), line_discount (on the whole line, default 0)
    recipient_name, recipient_phone, province, city, district, address, postal_code,
    country        (ISO 3166 two-letter code, default CN)
    requested_delivery_date (2026-12-20), priority (normal | rush), payment_terms (prepaid, cod,
    netN), promo_code, shipping_fee, order_total (the total the customer was quoted, checked),
    notes, revision (a whole number: raise it when re-sending a changed order)

Order columns may be repeated on every line or given once; contradicting values are refused by
intake. Headers are matched without regard to case, spaces or dashes, and common Chinese headers
are understood (订单号, 下单日期, 客户编号, 商品编码, 数量, 单价, 收货人, 联系电话, 省, 市, 区,
详细地址, 订单金额, 备注, ...). CSV files may be UTF-8 (with or without BOM) or GB18030 as Excel
saves them in China.

The payload of one order is ``{"order_number": ..., "source": <file name>, "rows": [{"row": <line
number in the sheet>, <column>: <cell text>, ...}, ...]}``; every cell is text, exactly as typed.

A sheet is read within limits (``orderflow.connector.limits``: 20 MiB, 50,000 rows, 256 columns by
default; an XLSX file's archive is checked for a zip bomb before openpyxl opens it, read-only); a
file over a limit, or not readable as what it claims to be, raises ``FileRefused`` with a one-line
reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Generator, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from orderflow.connector.limits import (
    FileLimits,
    FileRefused,
    check_size,
    check_zip,
    limit_rows,
    one_line,
    read_bounded,
)

ORDER_COLUMNS: tuple[str, ...] = (
    "order_number", "order_date", "customer_id", "customer_name", "customer_email",
    "customer_phone", "currency", "recipient_name", "recipient_phone", "province", "city",
    "district", "address", "postal_code", "country", "requested_delivery_date", "priority",
    "payment_terms", "promo_code", "shipping_fee", "order_total", "notes", "revision",
)
LINE_COLUMNS: tuple[str, ...] = ("sku", "quantity", "unit_price", "line_discount")
REQUIRED_COLUMNS: tuple[str, ...] = ("order_number", "sku", "quantity")

ALIASES: dict[str, str] = {
    "订单号": "order_number", "订单编号": "order_number", "order_no": "order_number",
    "order_id": "order_number", "po_number": "order_number",
    "下单日期": "order_date", "下单时间": "order_date", "date": "order_date",
    "客户编号": "customer_id", "客户id": "customer_id", "客户代码": "customer_id",
    "客户名称": "customer_name", "客户": "customer_name", "客户邮箱": "customer_email",
    "客户电话": "customer_phone", "币种": "currency",
    "商品编码": "sku", "商家编码": "sku", "物料编码": "sku", "sku_code": "sku",
    "数量": "quantity", "qty": "quantity", "单价": "unit_price", "price": "unit_price",
    "折扣": "line_discount", "优惠": "line_discount", "discount": "line_discount",
    "收货人": "recipient_name", "收件人": "recipient_name", "联系电话": "recipient_phone",
    "收货电话": "recipient_phone", "phone": "recipient_phone", "省": "province", "省份": "province",
    "市": "city", "城市": "city", "区": "district", "区县": "district", "详细地址": "address",
    "地址": "address", "邮编": "postal_code", "国家": "country",
    "要求到货日期": "requested_delivery_date", "交货日期": "requested_delivery_date",
    "优先级": "priority", "付款条件": "payment_terms", "促销码": "promo_code",
    "运费": "shipping_fee", "订单金额": "order_total", "合计": "order_total", "total": "order_total",
    "备注": "notes", "note": "notes", "版本": "revision",
}


def column_name(header: Any) -> str:
    """A header cell as a template column name."""
    name = re.sub(r"[\s\-]+", "_", cell_text(header).strip().lower()).strip("_")
    return ALIASES.get(name, name)


def cell_text(value: Any) -> str:
    """A cell as the text a person typed: numbers without float noise, dates as ISO."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) and value.tzinfo is None \
            else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


def _csv_rows(path: Path, limits: FileLimits) -> Generator[list[Any], None, None]:
    with path.open("rb") as fh:
        raw = read_bounded(fh, path.name, limits)
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise FileRefused(path.name, "not UTF-8 or GB18030 text")
    del raw
    sample = content[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(content), dialect)
    try:
        yield from reader
    except csv.Error as exc:  # a field over csv's own limit, a NUL byte
        raise FileRefused(path.name, f"line {reader.line_num}: not readable as CSV "
                                     f"({one_line(exc)})") from None


def _xlsx_rows(path: Path, limits: FileLimits) -> Generator[tuple[Any, ...], None, None]:
    """The order sheet's rows, read-only; the archive is checked before openpyxl opens it, and
    anything openpyxl cannot read is refused (not a workbook, XML it refuses, ...)."""
    from openpyxl import load_workbook

    with path.open("rb") as fh:
        check_size(fh, path.name, limits)
        check_zip(fh, path.name, limits)
        fh.seek(0)
        try:
            workbook = load_workbook(fh, read_only=True, data_only=True)
        except FileRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever openpyxl makes of a bad file
            raise FileRefused(path.name, f"not a readable XLSX workbook ({one_line(exc)})"
                              ) from None
        try:
            names = [n for n in workbook.sheetnames if n.strip().lower() in {"orders", "订单"}]
            sheet = workbook[names[0]] if names else workbook.worksheets[0]
            declared = getattr(sheet, "max_column", None)  # the sheet's <dimension>, if any
            if isinstance(declared, int) and declared > limits.max_columns:
                raise FileRefused(path.name, f"sheet {sheet.title[:40]!r} spans {declared} "
                                             f"columns, more than {limits.max_columns} "
                                             "(ORDERFLOW_FILE_MAX_COLUMNS)")
            # a sized sheet is read one column past the limit (that column tells a sheet that
            # uses more from one that does not); an unsized one as wide as its rows, which
            # limit_rows judges and cuts to the limit
            width = limits.max_columns + 1 if declared else None
            yield from sheet.iter_rows(values_only=True, max_col=width)
        except FileRefused:
            raise
        except Exception as exc:  # noqa: BLE001
            raise FileRefused(path.name, f"not a readable XLSX workbook ({one_line(exc)})"
                              ) from None
        finally:
            workbook.close()


def group_order_rows(rows: Iterable[list[Any] | tuple[Any, ...]],
                     source: str) -> list[dict[str, Any]]:
    """Rows (the first one the header) grouped into one payload per order number."""
    numbered = enumerate(rows, start=1)
    header: list[str] = []
    for _, header_cells in numbered:
        header = [column_name(c) for c in header_cells]
        if any(header):
            break
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{source}: the header row lacks the column(s) {', '.join(missing)} "
                         f"(template columns: {', '.join(ORDER_COLUMNS + LINE_COLUMNS)})")
    orders: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line_number, cells in numbered:
        texts = [cell_text(c) for c in cells]
        if not any(texts):
            continue
        row: dict[str, Any] = {"row": line_number}
        for name, value in zip(header, texts, strict=False):
            if name and name != "row":
                row[name] = value
        number = row.get("order_number", "")
        if number:
            current = number
        elif current is None:
            raise ValueError(f"{source} line {line_number}: order_number is empty and there is "
                             "no order above to continue")
        else:
            row["order_number"] = current
        orders.setdefault(current, {"order_number": current, "source": source, "rows": []})
        orders[current]["rows"].append(row)
    return list(orders.values())


def read_order_sheet(path: Path | str, limits: FileLimits | None = None) -> list[dict[str, Any]]:
    """One payload per order in a CSV or XLSX order sheet (see the module's template), read
    within ``limits`` (default: the ``ORDERFLOW_FILE_*`` settings); ``FileRefused`` if not."""
    path = Path(path)
    limits = limits or FileLimits()
    rows: Generator[Any, None, None] = _xlsx_rows(path, limits) \
        if path.suffix.lower() in {".xlsx", ".xlsm"} else _csv_rows(path, limits)
    with contextlib.closing(rows):  # the file and the workbook closed, refused or not
        return group_order_rows(limit_rows(rows, path.name, limits), path.name)


__all__ = ["LINE_COLUMNS", "ORDER_COLUMNS", "FileLimits", "FileRefused", "cell_text",
           "group_order_rows", "read_order_sheet"]
