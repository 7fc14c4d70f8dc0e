"""Master data from CSV files: products, customers, warehouses and stock receipts, published as
``product.updated``, ``customer.updated``, ``warehouse.updated`` and ``stock.received`` events.

A bad row is reported with its line number and reason; the good rows still load. A file over the
limits of ``orderflow.connector.limits`` (size, rows), or not UTF-8 CSV, is refused as a whole
with ``FileRefused`` (a one-line reason)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orderflow.connector.limits import FileLimits, FileRefused, one_line, read_bounded
from orderflow.contracts.events import (
    CustomerUpdated,
    Event,
    ProductUpdated,
    StockReceived,
    WarehouseUpdated,
)
from orderflow.contracts.order import Address
from orderflow.runtime.consumer import format_validation_error
from orderflow.runtime.settings import KafkaSettings

DEMO_DATA = Path(__file__).parent / "demo_data"

COLUMNS: dict[str, tuple[str, ...]] = {
    "products": ("sku", "name", "spec", "unit_price", "currency", "tax_rate", "weight_kg", "active"),
    "customers": ("customer_id", "name", "email", "phone", "language", "credit_limit", "currency",
                  "payment_terms", "open_receivables", "overdue_amount", "overdue_days", "blocked"),
    "warehouses": ("warehouse_id", "name", "province", "city"),
    "stock": ("warehouse_id", "sku", "quantity"),
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "products": ("reorder_point",),
    # the customer's delivery address, its columns named as an order sheet's
    "customers": ("preferred_channel", "opt_out_marketing", "province", "city", "district",
                  "address", "postal_code"),
    "warehouses": (),
    "stock": ("reference",),
}


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"true", "1", "yes", "y"}:
        return True
    if v in {"false", "0", "no", "n", ""}:
        return False
    raise ValueError(f"{value!r} is not true or false")


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value.strip())
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc


def _product(row: dict[str, str]) -> Event:
    return ProductUpdated(
        sku=row["sku"].strip(), name=row["name"].strip(), spec=row.get("spec", "").strip(),
        unit_price=_decimal(row["unit_price"]), currency=row["currency"].strip(),
        tax_rate=_decimal(row["tax_rate"]), weight_kg=_decimal(row["weight_kg"]),
        active=_bool(row["active"]), reorder_point=int(row.get("reorder_point") or 0),
    )


def _customer(row: dict[str, str]) -> Event:
    return CustomerUpdated(
        customer_id=row["customer_id"].strip(), name=row["name"].strip(),
        email=row.get("email") or None, phone=row.get("phone") or None,
        language=row.get("language") or "zh-CN", credit_limit=_decimal(row["credit_limit"]),
        currency=row["currency"].strip(), payment_terms=row["payment_terms"].strip(),
        open_receivables=_decimal(row.get("open_receivables") or "0"),
        overdue_amount=_decimal(row.get("overdue_amount") or "0"),
        overdue_days=int(row.get("overdue_days") or 0), blocked=_bool(row.get("blocked", "")),
        preferred_channel=row.get("preferred_channel") or "email",
        opt_out_marketing=_bool(row.get("opt_out_marketing", "")),
        delivery_address=delivery_address(row),
    )


ADDRESS_COLUMNS = ("province", "city", "district", "address", "postal_code")


def delivery_address(row: Mapping[str, str]) -> Address | None:
    """A customer row's delivery address (``province``, ``city``, ``district``, ``address``: the
    street, ``postal_code``), for the customer by name at their phone; None when the row gives
    none of it. A partial one (no province, city, street or phone) is a bad row."""
    if not any((row.get(column) or "").strip() for column in ADDRESS_COLUMNS):
        return None
    return Address(name=row["name"].strip(), phone=(row.get("phone") or "").strip(),
                   province=(row.get("province") or "").strip(),
                   city=(row.get("city") or "").strip(),
                   district=(row.get("district") or "").strip(),
                   line1=(row.get("address") or "").strip(),
                   postal_code=(row.get("postal_code") or "").strip())


def _warehouse(row: dict[str, str]) -> Event:
    return WarehouseUpdated(warehouse_id=row["warehouse_id"].strip(), name=row["name"].strip(),
                            province=row["province"].strip(), city=row["city"].strip())


def _stock(row: dict[str, str]) -> Event:
    return StockReceived(warehouse_id=row["warehouse_id"].strip(), sku=row["sku"].strip(),
                         quantity=int(row["quantity"]), reference=row.get("reference", ""))


PARSERS: dict[str, Callable[[dict[str, str]], Event]] = {
    "products": _product, "customers": _customer, "warehouses": _warehouse, "stock": _stock,
}


@dataclass
class LoadReport:
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    published: int = 0


def parse_rows(kind: str, lines: Iterable[str], *, max_rows: int | None = None,
               source: str | None = None) -> LoadReport:
    """The events of a CSV file's rows; more than ``max_rows`` rows (the header aside), or text
    csv cannot read, refuse the whole file (``FileRefused``)."""
    source = source or f"{kind}.csv"
    report = LoadReport()
    reader = csv.DictReader(lines)
    try:
        missing = [c for c in COLUMNS[kind] if c not in (reader.fieldnames or [])]
        if missing:
            report.problems.append(f"1: missing column(s): {', '.join(missing)}")
            return report
        for count, row in enumerate(reader, start=1):
            if max_rows is not None and count > max_rows:
                raise FileRefused(source, f"more than {max_rows} rows (ORDERFLOW_FILE_MAX_ROWS)")
            _parse_row(kind, reader.line_num, row, report)
    except csv.Error as exc:  # a field over csv's own limit, a NUL byte
        raise FileRefused(source, f"line {reader.line_num}: not readable as CSV "
                                  f"({one_line(exc)})") from None
    return report


def _parse_row(kind: str, line: int, row: dict[str, Any], report: LoadReport) -> None:
    try:
        report.events.append(PARSERS[kind]({k: (v or "") for k, v in row.items() if k}))
    except ValidationError as exc:
        report.problems.append(f"{line}: {format_validation_error(exc)}")
    except (ValueError, KeyError) as exc:
        report.problems.append(f"{line}: {exc}")


def parse_file(kind: str, path: Path, limits: FileLimits | None = None) -> LoadReport:
    """A master-data CSV file (UTF-8), read within ``limits`` (default: the ``ORDERFLOW_FILE_*``
    settings)."""
    limits = limits or FileLimits()
    with path.open("rb") as fh:
        raw = read_bounded(fh, path.name, limits)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused(path.name, f"not UTF-8 text (byte {exc.start})") from None
    return parse_rows(kind, io.StringIO(text, newline=""), max_rows=limits.max_rows,
                      source=path.name)


async def publish(events: list[Event], kafka: KafkaSettings, *,
                  connect_within: float | None = None) -> int:
    from orderflow.connector import OrderPusher

    async with OrderPusher(kafka, producer_name="masterdata",
                           connect_within=connect_within) as pusher:
        for start in range(0, len(events), 2000):
            await pusher.publish(events[start:start + 2000])
    return len(events)


async def load_file(kind: str, path: Path, kafka: KafkaSettings, *,
                    connect_within: float | None = None) -> LoadReport:
    """Parse a master-data file and publish its good rows (``connect_within``: how long to wait
    for a broker, ``OrderPusher``)."""
    report = parse_file(kind, path)
    if report.events:
        report.published = await publish(report.events, kafka, connect_within=connect_within)
    return report


async def load_demo_data(kafka: KafkaSettings, folder: Path = DEMO_DATA) -> dict[str, Any]:
    """Load the shipped demo set, in the order the services need it."""
    counts: dict[str, Any] = {}
    for kind in ("products", "customers", "warehouses", "stock"):
        report = await load_file(kind, folder / f"{kind}.csv", kafka)
        if report.problems:
            raise ValueError(f"demo data {kind}.csv: {report.problems[:3]}")
        counts[kind] = report.published
    return counts
