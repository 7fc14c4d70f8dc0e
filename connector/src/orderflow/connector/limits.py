"""Limits on a file a person hands in (an order sheet, a master-data CSV, orders as JSON): its size
in bytes, its rows and columns, and for an XLSX workbook (a zip archive) what it unpacks to,
checked with ``zipfile`` before openpyxl opens it. A file over a limit is refused with
``FileRefused``, whose text is a one-line reason naming the file and the limit.

The limits are settings (``ORDERFLOW_FILE_*``)::

    ORDERFLOW_FILE_MAX_BYTES               20 MiB     the file as it is on disk
    ORDERFLOW_FILE_MAX_ROWS                50000      rows of a sheet or CSV file, header aside
    ORDERFLOW_FILE_MAX_COLUMNS             256        columns of a sheet or CSV file
    ORDERFLOW_FILE_MAX_UNCOMPRESSED_BYTES  200 MiB    what an XLSX unpacks to, all entries
    ORDERFLOW_FILE_MAX_COMPRESSION_RATIO   100        unpacked : packed, per entry and in all
    ORDERFLOW_FILE_MAX_ZIP_ENTRIES         1000       entries of an XLSX archive

``zipfile`` (which openpyxl reads through) never unpacks an entry beyond the size the archive
declares for it, so the declared sizes checked here bound what is actually unpacked.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
# an entry this small may compress as well as it likes: it cannot be a bomb
_RATIO_EXEMPT_BYTES = 1 * MiB
_T = TypeVar("_T")


class FileRefused(ValueError):
    """A file refused before or while it is read: over a limit, or not what it claims to be.
    ``str()`` is one line, ``"<file>: <reason>"``; ``reason`` is the reason alone."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class FileLimits(BaseSettings):
    """How large a file a person hands in may be (``ORDERFLOW_FILE_*``)."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_FILE_", extra="ignore")

    max_bytes: int = Field(default=20 * MiB, ge=1, description="the file as it is on disk")
    max_rows: int = Field(default=50_000, ge=1, description="rows, the header row aside")
    max_columns: int = Field(default=256, ge=1, le=16_384)
    max_uncompressed_bytes: int = Field(default=200 * MiB, ge=1,
                                        description="what an XLSX archive unpacks to")
    max_compression_ratio: float = Field(default=100.0, ge=1,
                                         description="unpacked : packed, per entry and overall")
    max_zip_entries: int = Field(default=1000, ge=1)


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and its text, whitespace runs made one space."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}" if text else type(exc).__name__


def _size(n: float) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{int(n)} bytes"


def read_bounded(fh: IO[bytes], source: str, limits: FileLimits) -> bytes:
    """All of an open file, refused beyond ``max_bytes`` (told by its size where it has one,
    and by reading at most one byte more where it has none: a pipe, a device)."""
    check_size(fh, source, limits)
    data = fh.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise FileRefused(source, f"larger than {_size(limits.max_bytes)} "
                                  "(ORDERFLOW_FILE_MAX_BYTES)")
    return data


def check_size(fh: IO[bytes], source: str, limits: FileLimits) -> None:
    try:
        size = os.fstat(fh.fileno()).st_size
    except (OSError, AttributeError, ValueError):  # not a real file: read_bounded counts
        return
    if size > limits.max_bytes:
        raise FileRefused(source, f"{_size(size)}, larger than {_size(limits.max_bytes)} "
                                  "(ORDERFLOW_FILE_MAX_BYTES)")


def check_zip(fh: IO[bytes], source: str, limits: FileLimits) -> None:
    """Refuse an XLSX archive that would unpack to too much (a zip bomb), before anything in it
    is unpacked: too many entries, too many bytes in all, or compressed too well."""
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise FileRefused(source, "not an XLSX workbook (not a readable zip archive: "
                                  f"{one_line(exc)})") from None
    infos = archive.infolist()
    if len(infos) > limits.max_zip_entries:
        raise FileRefused(source, f"{len(infos)} entries in the archive, more than "
                                  f"{limits.max_zip_entries} (ORDERFLOW_FILE_MAX_ZIP_ENTRIES)")
    unpacked = packed = 0
    for info in infos:
        unpacked += info.file_size
        packed += info.compress_size
        if unpacked > limits.max_uncompressed_bytes:
            raise FileRefused(source, f"unpacks to more than "
                                      f"{_size(limits.max_uncompressed_bytes)} "
                                      "(ORDERFLOW_FILE_MAX_UNCOMPRESSED_BYTES): a zip bomb?")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_EXEMPT_BYTES and ratio > limits.max_compression_ratio:
            raise FileRefused(source, f"entry {info.filename[:80]!r} is compressed {ratio:.0f}:1, "
                                      f"more than {limits.max_compression_ratio:g}:1 "
                                      "(ORDERFLOW_FILE_MAX_COMPRESSION_RATIO): a zip bomb?")
    if unpacked > _RATIO_EXEMPT_BYTES and unpacked / max(packed, 1) > limits.max_compression_ratio:
        raise FileRefused(source, f"compressed {unpacked / max(packed, 1):.0f}:1 in all, more than "
                                  f"{limits.max_compression_ratio:g}:1 "
                                  "(ORDERFLOW_FILE_MAX_COMPRESSION_RATIO): a zip bomb?")


def limit_rows(rows: Iterable[_T], source: str, limits: FileLimits) -> Iterator[_T]:
    """The rows, refused at the first one past ``max_rows`` (plus the header row) or with a
    value past ``max_columns``; empty cells past it are cut off."""
    for number, row in enumerate(rows, start=1):
        if number > limits.max_rows + 1:
            raise FileRefused(source, f"more than {limits.max_rows} rows "
                                      "(ORDERFLOW_FILE_MAX_ROWS)")
        if isinstance(row, list | tuple) and len(row) > limits.max_columns:
            if any(_filled(c) for c in row[limits.max_columns:]):
                raise FileRefused(source, f"row {number} has more than {limits.max_columns} "
                                          "columns (ORDERFLOW_FILE_MAX_COLUMNS)")
            row = row[:limits.max_columns]  # type: ignore[assignment]
        yield row


def _filled(cell: Any) -> bool:
    return cell is not None and cell != ""


__all__ = ["FileLimits", "FileRefused", "check_size", "check_zip", "limit_rows", "one_line",
           "read_bounded"]
