"""SQLAlchemy's private internals are reached in one module, orderflow.runtime.sqlalchemy_bridge,
which refuses a SQLAlchemy outside the range it was verified on when it is imported (every
service imports it at start)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from orderflow.runtime import sqlalchemy_bridge
from orderflow.runtime.sqlalchemy_bridge import (
    SUPPORTED_SQLALCHEMY,
    UnsupportedSQLAlchemy,
    check_sqlalchemy,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = Path(sqlalchemy_bridge.__file__).resolve()
# SQLAlchemy's connection adapter and what is under it: only the bridge goes there
ADAPTER_ATTRIBUTES = {"_transaction", "_start_transaction", "_connection", "driver_connection",
                      "dbapi_connection", "get_raw_connection", "_adapt_connection"}


def test_the_installed_sqlalchemy_is_supported() -> None:
    check_sqlalchemy()
    check_sqlalchemy(SUPPORTED_SQLALCHEMY[0])  # the lower bound is in the range


@pytest.mark.parametrize("version", ["2.0.35", "1.4.54", "2.2.0", "2.2.0b1", "3.0.0", "unknown"])
def test_a_sqlalchemy_outside_the_range_is_refused_naming_the_range(version: str) -> None:
    low, high = SUPPORTED_SQLALCHEMY
    with pytest.raises(UnsupportedSQLAlchemy) as caught:
        check_sqlalchemy(version)
    if version != "unknown":
        assert f"SQLAlchemy {version} is installed" in str(caught.value)
        assert f">={low},<{high}" in str(caught.value)


def test_an_adapter_without_what_the_bridge_uses_is_refused() -> None:
    class Adapter:
        _transaction = None
        isolation_level = None
        driver_connection = None

    with pytest.raises(UnsupportedSQLAlchemy, match="_start_transaction"):
        check_sqlalchemy(sa.__version__, Adapter)


def test_the_check_runs_when_the_module_is_imported() -> None:
    """A process with another SQLAlchemy stops at its first import of the runtime's database
    code, with the supported range in its error."""
    script = ("import sqlalchemy\nsqlalchemy.__version__ = '2.2.0'\n"
              "import orderflow.runtime.consumer\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "UnsupportedSQLAlchemy" in done.stderr and "SQLAlchemy 2.2.0 is installed" in done.stderr


def _adapter_accesses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in ADAPTER_ATTRIBUTES
            and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})]


def test_only_the_bridge_reaches_into_sqlalchemys_adapter() -> None:
    sources = [ROOT / "connector" / "src", ROOT / "shared" / "src", ROOT / "devtools" / "src", ROOT / "bench",
               *sorted((ROOT / "services").glob("*/src"))]
    found = [access for source in sources for path in sorted(source.rglob("*.py"))
             if path.resolve() != BRIDGE for access in _adapter_accesses(path)]
    assert not found, found
    assert _adapter_accesses(BRIDGE)  # the scan sees what the bridge does
