"""Files a connector keeps between runs (a pull cursor, a state file other processes poll)."""

from __future__ import annotations

import os
from pathlib import Path


def replace_file(path: Path, body: bytes, *, durable: bool = True) -> None:
    """Write ``body`` to ``path`` so that a reader sees the old file or the new one, never an empty
    or half-written one (a temporary file renamed over it). ``durable`` also syncs the file and
    its folder, so the new content survives a power cut once this returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(body)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
