"""Every file a person hands in is read within limits: its size, its rows and columns, and for an
XLSX workbook what its zip archive unpacks to, checked before openpyxl opens it. A file over a
limit is refused with a one-line reason (``FileRefused``), which the command line prints instead
of a traceback; a well-formed small file still reads."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from orderflow.connector.limits import FileLimits, FileRefused, MiB
from orderflow.connector.spreadsheet import read_order_sheet
from orderflow.devstack import cli
from orderflow.devstack.masterdata import DEMO_DATA, parse_file

pytestmark = pytest.mark.unit

HEADER = ["order_number", "customer_id", "sku", "quantity", "unit_price"]


def sheet_rows(n: int) -> list[list[Any]]:
    return [HEADER] + [[f"PO-{i // 3}", "C0001", "TEA-001", 1 + i % 5, "12.50"] for i in range(n)]


def write_xlsx(path: Path, rows: list[list[Any]], *, title: str = "Orders") -> Path:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def zip_bomb(path: Path, unpacked_mib: int, *, entry: str = "xl/worksheets/sheet1.xml") -> Path:
    """An .xlsx-named zip holding a workbook's usual entries and one entry of ``unpacked_mib``
    MiB of one repeated byte: about a thousandth of that on disk."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        with z.open(entry, "w", force_zip64=True) as f:
            chunk = b" " * MiB
            for _ in range(unpacked_mib):
                f.write(chunk)
    return path


def without_dimension(source: Path, target: Path) -> Path:
    """The workbook with its sheets' <dimension> left out (openpyxl then knows a sheet's width
    only from its rows)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("xl/worksheets/"):
                data = re.sub(rb"<dimension [^>]*/>", b"", data)
            dst.writestr(info, data)
    return target


@pytest.fixture
def no_openpyxl(monkeypatch: pytest.MonkeyPatch) -> None:
    """openpyxl must not be asked to open the file at all."""
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("openpyxl was asked to open a refused file")

    monkeypatch.setattr("openpyxl.load_workbook", refuse)


# --- XLSX --------------------------------------------------------------------------------------

@pytest.mark.usefixtures("no_openpyxl")
def test_a_real_zip_bomb_is_refused_from_its_directory_without_unpacking_it(tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "orders.xlsx", 256)
    assert bomb.stat().st_size < 1 * MiB  # small on disk, 256 MiB unpacked
    tracemalloc.start()
    try:
        with pytest.raises(FileRefused) as refused:
            read_order_sheet(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB  # nothing was unpacked
    assert str(refused.value) == ("orders.xlsx: unpacks to more than 200.0 MiB "
                                  "(ORDERFLOW_FILE_MAX_UNCOMPRESSED_BYTES): a zip bomb?")
    assert "\n" not in str(refused.value)


@pytest.mark.usefixtures("no_openpyxl")
def test_an_entry_compressed_too_well_is_refused_below_the_size_limit(tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "orders.xlsx", 20)
    with pytest.raises(FileRefused, match=r"entry 'xl/worksheets/sheet1.xml' is compressed "
                                          r"\d+:1, more than 100:1 .*zip bomb"):
        read_order_sheet(bomb)


@pytest.mark.usefixtures("no_openpyxl")
def test_an_archive_of_too_many_entries_or_not_an_archive_is_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.xlsx"
    with zipfile.ZipFile(many, "w") as z:
        for i in range(1001):
            z.writestr(f"xl/media/{i}.bin", b"x")
    with pytest.raises(FileRefused, match=r"^many.xlsx: 1001 entries in the archive, more than "
                                          r"1000 \(ORDERFLOW_FILE_MAX_ZIP_ENTRIES\)$"):
        read_order_sheet(many)
    fake = tmp_path / "fake.xlsx"
    fake.write_text("order_number,sku,quantity\nPO-1,TEA-001,1\n")
    with pytest.raises(FileRefused, match=r"^fake.xlsx: not an XLSX workbook"):
        read_order_sheet(fake)


def test_a_well_formed_small_workbook_is_still_read(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "orders.xlsx", sheet_rows(6))
    orders = read_order_sheet(path)
    assert [o["order_number"] for o in orders] == ["PO-0", "PO-1"]
    assert orders[0]["rows"][0] == {"row": 2, "order_number": "PO-0", "customer_id": "C0001",
                                    "sku": "TEA-001", "quantity": "1", "unit_price": "12.50"}


def test_a_zip_that_is_not_a_workbook_is_refused_by_openpyxl_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(FileRefused, match=r"^orders.xlsx: not a readable XLSX workbook \(") as e:
        read_order_sheet(path)
    assert "\n" not in str(e.value)


def test_a_workbook_of_too_many_rows_or_columns_is_refused(tmp_path: Path) -> None:
    limits = FileLimits(max_rows=10)
    assert len(read_order_sheet(write_xlsx(tmp_path / "ten.xlsx", sheet_rows(10)), limits)) == 4
    with pytest.raises(FileRefused, match=r"^eleven.xlsx: more than 10 rows "
                                          r"\(ORDERFLOW_FILE_MAX_ROWS\)$"):
        read_order_sheet(write_xlsx(tmp_path / "eleven.xlsx", sheet_rows(11)), limits)
    wide = sheet_rows(2)
    wide[2] = wide[2] + [None] * 295 + ["far away"]  # column 301
    with pytest.raises(FileRefused, match=r"^wide.xlsx: sheet 'Orders' spans 301 columns, more "
                                          r"than 256 \(ORDERFLOW_FILE_MAX_COLUMNS\)$"):
        read_order_sheet(write_xlsx(tmp_path / "wide.xlsx", wide))
    undeclared = without_dimension(tmp_path / "wide.xlsx", tmp_path / "undeclared.xlsx")
    with pytest.raises(FileRefused, match=r"^undeclared.xlsx: row 3 has more than 256 columns"):
        read_order_sheet(undeclared)
    wide_csv = write_csv(tmp_path / "wide.csv", wide)
    with pytest.raises(FileRefused, match=r"^wide.csv: row 3 has more than 256 columns"):
        read_order_sheet(wide_csv)


def test_an_oversized_workbook_is_refused_by_its_size(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_xlsx(tmp_path / "orders.xlsx", sheet_rows(200))
    monkeypatch.setenv("ORDERFLOW_FILE_MAX_BYTES", "2048")  # the limits are settings
    with pytest.raises(FileRefused, match=r"^orders.xlsx: \d+ bytes, larger than 2048 bytes "
                                          r"\(ORDERFLOW_FILE_MAX_BYTES\)$"):
        read_order_sheet(path)


# --- CSV ---------------------------------------------------------------------------------------

def test_an_oversized_csv_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", sheet_rows(100))
    limits = FileLimits(max_bytes=1024)
    with pytest.raises(FileRefused, match=r"^orders.csv: \d+ bytes, larger than 1024 bytes"):
        read_order_sheet(path, limits)
    assert len(read_order_sheet(path)) == 34  # within the default limits


def test_a_csv_file_of_too_many_rows_is_refused(tmp_path: Path) -> None:
    """The default: 50,000 rows read, one more refused."""
    assert len(read_order_sheet(write_csv(tmp_path / "full.csv", sheet_rows(50_000)))) == 16_667
    with pytest.raises(FileRefused, match=r"^over.csv: more than 50000 rows"):
        read_order_sheet(write_csv(tmp_path / "over.csv", sheet_rows(50_001)))


def test_a_csv_field_over_csvs_own_limit_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_number,sku,quantity,notes\nPO-1,TEA-001,1,\"" + "x" * 200_000 + "\"\n")
    with pytest.raises(FileRefused, match=r"^orders.csv: line \d+: not readable as CSV"):
        read_order_sheet(path)


# --- master data and JSON orders ----------------------------------------------------------------

def test_master_data_files_are_read_within_the_limits(tmp_path: Path) -> None:
    customers = (DEMO_DATA / "customers.csv").read_text(encoding="utf-8")
    assert len(parse_file("customers", DEMO_DATA / "customers.csv").events) == 100
    with pytest.raises(FileRefused, match=r"^customers.csv: \d+ bytes, larger than 4096 bytes"):
        parse_file("customers", DEMO_DATA / "customers.csv", FileLimits(max_bytes=4096))
    with pytest.raises(FileRefused, match=r"^customers.csv: more than 50 rows"):
        parse_file("customers", DEMO_DATA / "customers.csv", FileLimits(max_rows=50))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(customers.encode("utf-8") + "Müller\n".encode("latin-1"))
    with pytest.raises(FileRefused, match=r"^latin1.csv: not UTF-8 text"):
        parse_file("customers", latin1)


def test_json_order_files_are_read_within_the_limits(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    orders = tmp_path / "orders.jsonl"
    orders.write_text("\n".join(json.dumps({"id": i}) for i in range(20)))
    assert len(cli.read_orders(orders, "canonical")) == 20
    monkeypatch.setenv("ORDERFLOW_FILE_MAX_ROWS", "10")
    with pytest.raises(FileRefused, match=r"^orders.jsonl: more than 10 orders"):
        cli.read_orders(orders, "canonical")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileRefused, match=r"^deep.json: not JSON"):
        cli.read_orders(deep, "canonical")


# --- what a person sees ------------------------------------------------------------------------

@pytest.mark.usefixtures("no_openpyxl")
def test_the_command_line_says_why_in_one_line_instead_of_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    bomb = zip_bomb(tmp_path / "orders.xlsx", 20)
    assert cli.main(["push", "--channel", "xlsx", str(bomb)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("orderflow push: refused orders.xlsx: entry 'xl/worksheets/sheet1.xml'")
    assert err.count("\n") == 1 and "Traceback" not in err
    big = tmp_path / "customers.csv"
    big.write_bytes((DEMO_DATA / "customers.csv").read_bytes())
    monkeypatch.setenv("ORDERFLOW_FILE_MAX_BYTES", "1000")
    assert cli.main(["load", "customers", str(big)]) == 2
    err = capsys.readouterr().err
    assert err == (f"orderflow load: refused customers.csv: {big.stat().st_size} bytes, larger "
                   "than 1000 bytes (ORDERFLOW_FILE_MAX_BYTES)\n")


def test_refusals_are_value_errors_carrying_their_reason() -> None:
    """Callers that already turn a ValueError from a sheet into a message keep doing so."""
    refused = FileRefused("a.csv", "more than 3 rows")
    assert isinstance(refused, ValueError)
    assert (str(refused), refused.source, refused.reason) == ("a.csv: more than 3 rows", "a.csv",
                                                              "more than 3 rows")
    assert io.StringIO(str(refused)).read().count("\n") == 0


def test_intake_refuses_a_sheet_order_of_more_rows_than_an_order_may_have_lines(
        tmp_path: Path) -> None:
    """A sheet order reaches intake as a payload, not a file: more rows than an order may have
    lines is refused with a reason before its rows are read one by one."""
    from orderflow.intake.adapters import AdapterError, adapt, adapter_of

    (payload,) = read_order_sheet(write_csv(tmp_path / "one.csv",
                                            [HEADER] + [["PO-1", "C0001", "TEA-001", 1, "1.00"]]
                                            * 501))
    with pytest.raises(AdapterError, match="has 501 rows; an order has at most 500 lines") as e:
        adapt(adapter_of("csv"), payload)
    assert (e.value.code, e.value.field) == ("too_many", "rows")
    payload["rows"] = payload["rows"][:500]
    assert len(adapt(adapter_of("csv"), payload).data["lines"]) == 500
