"""Prometheus scrapes every service; Grafana's provisioning and dashboards parse and query only
metrics that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.support import (
    GRAFANA,
    HTTP_PORT,
    KAFKA_EXPORTER_METRICS,
    PROMETHEUS_METRICS,
    ROOT,
    SERVICES,
    dashboard_exprs,
    dashboards,
    load_yaml,
    orderflow_metric_names,
    promql_metric_names,
)

pytestmark = pytest.mark.unit



@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    data = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(ROOT / "docker-compose.yml")
    assert isinstance(data, dict)
    return data


def test_every_replica_of_every_service_is_scraped(prometheus: dict[str, Any],
                                                   compose: dict[str, Any]) -> None:
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    for service in SERVICES:
        job = jobs[f"orderflow-{service}"]
        (sd,) = job["dns_sd_configs"]  # DNS: one A record per container, so --scale adds targets
        assert sd["names"] == [service] and sd["type"] == "A" and sd["port"] == HTTP_PORT
        assert service in compose["services"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
    (exporter,) = jobs["kafka-exporter"]["static_configs"]
    host, port = exporter["targets"][0].split(":")
    assert host in compose["services"] and port in compose["services"][host]["expose"]
    assert "prometheus.yml" in " ".join(compose["services"]["prometheus"]["volumes"])


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose: dict[str, Any]) -> None:
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "orderflow.yml")
    (provider,) = providers["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("."))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert dashboards()
    for path in dashboards():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == source["uid"], panel["title"]


def test_dashboards_query_only_metrics_that_exist() -> None:
    known = orderflow_metric_names() | KAFKA_EXPORTER_METRICS | PROMETHEUS_METRICS
    for path in dashboards():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids))
        for title, expr in dashboard_exprs(dashboard):
            names = promql_metric_names(expr)
            assert names, f"{title}: no metric in {expr}"
            assert names <= known, f"{title}: unknown metrics {names - known}"


def test_overview_covers_what_operations_watch() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "orderflow-overview.json").read_text(encoding="utf-8"))
    used = {name for _title, expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}
    assert {
        "orderflow_events_published_total",   # orders per second per topic
        "kafka_consumergroup_lag",            # consumer lag per group
        "orderflow_dead_letters_total",       # DLQ inflow by reason
        "kafka_topic_partition_current_offset",  # DLQ depth
        "orderflow_batch_seconds_bucket",     # stage latencies
        "orderflow_messages_consumed_total",  # error rate
        "orderflow_outbox_backlog",
        "orderflow_event_age_seconds_sum",    # end-to-end latency (the main line's hops)
        "orderflow_event_age_seconds_bucket",  # each hop's latency
        "orderflow_orders_allocated_total",   # fill rate
        "orderflow_shipments_delivered_total",  # on-time rate
        "orderflow_batch_failures_total",     # stalled partitions
        "orderflow_outbox_publish_refused_total",
    } <= used
    titles = " ".join(t for t, _ in dashboard_exprs(dashboard)).lower()
    for words in ("per topic", "lag", "dlq", "latency", "error rate", "end-to-end",
                  "orders by state per minute", "fill rate", "on-time rate"):
        assert words in titles, words


def test_the_metrics_the_docs_say_to_alert_on_are_on_the_dashboard() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "orderflow-overview.json").read_text(encoding="utf-8"))
    used = {name for _title, expr in dashboard_exprs(dashboard) for name in promql_metric_names(expr)}
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    said = set(re.findall(r"alert on `(orderflow_[a-z_]+)`", readme))
    from prometheus_client.metrics import MetricWrapperBase

    from orderflow.runtime import metrics

    said |= {f"{family.name}_total" for value in vars(metrics).values()
             if isinstance(value, MetricWrapperBase) for family in value.describe()
             if "alert on" in family.documentation}
    assert said >= {"orderflow_batch_failures_total", "orderflow_outbox_publish_refused_total"}
    assert said <= used, f"alerted on, on no panel: {said - used}"


def test_panels_by_service_follow_the_service_selector() -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "orderflow-overview.json").read_text(encoding="utf-8"))
    (variable,) = dashboard["templating"]["list"]
    assert variable["name"] == "service" and variable["includeAll"] and variable["multi"]
    assert promql_metric_names(variable["query"]["query"].replace("label_values", "x")) \
        <= orderflow_metric_names() | {"service"}
    for title, expr in dashboard_exprs(dashboard):
        if re.search(r"by \((le, )?(service|job)\b", expr):
            assert "$service" in expr, title


def test_promql_metric_names_reads_selectors_not_labels() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, service) '
            '(rate(orderflow_batch_seconds_bucket{service=~"a|b"}[$__rate_interval]))) '
            '/ on (service) group_left clamp_min(up{job="x"}, 1e-9)')
    assert promql_metric_names(expr) == {"orderflow_batch_seconds_bucket", "up"}
