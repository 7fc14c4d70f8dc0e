"""What the deployment checks share: the repository's paths, a Dockerfile reader, the
environment variables OrderFlow reads, the metric names it exports."""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import sys
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
SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
CONSUMERS = ("intake", "review", "inventory", "logistics", "notify")  # scaled on lag
HTTP_PORT = 8080
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


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))
