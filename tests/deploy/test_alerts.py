"""The alert rules (deploy/prometheus/alerts.yml): checked and unit-tested by promtool, loaded by
Prometheus, complete (a duration, a severity, what to do), and reading only metrics that exist."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import (
    KAFKA_EXPORTER_METRICS,
    PROMETHEUS_METRICS,
    ROOT,
    dashboard_exprs,
    dashboards,
    load_yaml,
    orderflow_metric_names,
    promql_metric_names,
)

pytestmark = pytest.mark.unit

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
# what the alerts watch (issue 35): batch failures, DLQ inflow, lag growing, outbox backlog,
# relay stuck, a consumer group with no members, a service down
EXPECTED = {"OrderflowBatchFailing", "OrderflowDeadLetterInflow", "OrderflowConsumerLagGrowing",
            "OrderflowOutboxBacklog", "OrderflowOutboxRelayStuck",
            "OrderflowConsumerGroupWithoutMembers", "OrderflowServiceDown"}


def promtool() -> str:
    """promtool on the path, else where `make promtool` unpacks it; skipped without it (failed
    on CI, which runs `make test`)."""
    unpacked = ROOT / "var" / "tools" / "usr" / "bin" / "promtool"
    found = shutil.which("promtool") or (str(unpacked) if unpacked.is_file() else None)
    if found is None:
        reason = "promtool is absent: `make promtool` fetches it (Debian's prometheus package)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def rules() -> list[dict[str, Any]]:
    data = load_yaml(RULES)
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: an expression that does not parse is refused."""
    broken = tmp_path / "alerts.yml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace(
        "increase(orderflow_batch_failures_total[5m])", "increase(orderflow_batch_failures_total[5m]"),
        encoding="utf-8")
    result = run_promtool("check", "rules", broken)
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr)


def test_prometheus_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    compose = load_yaml(ROOT / "docker-compose.yml")
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    result = run_promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_says_how_long_how_bad_and_what_to_do() -> None:
    found = rules()
    names = [r["alert"] for r in found]
    assert len(names) == len(set(names))
    assert set(names) >= EXPECTED
    for rule in found:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["runbook_url"] == "docs/deployment.md#alerts"
        assert "Runbook: " in annotations["description"], rule["alert"]
    runbook = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    assert "\n### Alerts\n" in runbook
    for name in names:
        assert f"`{name}`" in runbook, f"{name} is not in docs/deployment.md's Alerts"


def test_alerts_read_only_metrics_that_exist() -> None:
    known = orderflow_metric_names() | KAFKA_EXPORTER_METRICS | PROMETHEUS_METRICS
    for rule in rules():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= known, f"{rule['alert']}: unknown metrics {names - known}"


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {r["alert"] for r in rules()}
    assert firing == names
    assert silent == names


def test_the_dashboards_queries_parse(tmp_path: Path) -> None:
    """Every panel's query, its Grafana variables given values, parses as PromQL (promtool checks
    it as a recording rule)."""
    records = []
    for path in dashboards():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for i, (title, expr) in enumerate(dashboard_exprs(dashboard)):
            text = expr.replace("$__rate_interval", "1m").replace("$service", ".+")
            records.append({"record": f"dashboard:{path.stem.replace('-', '_')}:{i}",
                            "expr": text, "labels": {"panel": title}})
    rules_file = tmp_path / "dashboards.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": records}]}),
                          encoding="utf-8")
    result = run_promtool("check", "rules", rules_file)
    assert result.returncode == 0, result.stdout + result.stderr
