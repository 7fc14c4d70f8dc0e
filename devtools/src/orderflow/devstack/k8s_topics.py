"""The topic catalogue as Strimzi ``KafkaTopic`` resources, for Kubernetes.

``python -m orderflow.devstack.k8s_topics deploy/k8s/components/strimzi-topics/kafkatopics.yaml``
writes one resource per catalogue topic and per DLQ; ``tests/deploy/test_k8s.py`` fails when the
committed file no longer matches the catalogue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from orderflow.contracts.topics import CATALOGUE, topic_config

STRIMZI_CLUSTER = "orderflow"  # the Kafka resource's name: bootstrap orderflow-kafka-bootstrap
REPLICAS = 3
MIN_INSYNC_REPLICAS = 2
RETENTION_MS = 7 * 24 * 3600 * 1000
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000  # dead letters wait for a person: keep them longer
DEFAULT_PATH = Path("deploy/k8s/components/strimzi-topics/kafkatopics.yaml")


def resource_name(topic: str) -> str:
    """A Kubernetes name for a topic (dots are allowed, but Strimzi advises against them)."""
    return topic.replace(".", "-").replace("_", "-").lower()


def kafka_topic(name: str, partitions: int, *, description: str, dlq: bool) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {
            "name": resource_name(name),
            "labels": {"strimzi.io/cluster": STRIMZI_CLUSTER, "app.kubernetes.io/part-of": "orderflow"},
            "annotations": {"orderflow.io/description": description},
        },
        "spec": {
            "topicName": name,
            "partitions": partitions,
            "replicas": REPLICAS,
            "config": {
                "cleanup.policy": "delete",
                "retention.ms": DLQ_RETENTION_MS if dlq else RETENTION_MS,
                "min.insync.replicas": MIN_INSYNC_REPLICAS,
                **{k: int(v) for k, v in topic_config(name).items()},
            },
        },
    }


def kafka_topics() -> list[dict[str, Any]]:
    """Every topic of the catalogue, then every DLQ (one partition each)."""
    resources = [kafka_topic(t.name, t.partitions, description=t.description, dlq=False)
                 for t in CATALOGUE]
    resources += [kafka_topic(t.dlq, 1, description=f"Dead letters of {t.name}", dlq=True)
                  for t in CATALOGUE]
    return resources


def render() -> str:
    header = ("# Generated from orderflow.contracts.topics by\n"
              f"#   python -m orderflow.devstack.k8s_topics {DEFAULT_PATH}\n"
              "# Do not edit: change the catalogue and regenerate.\n")
    return header + yaml.safe_dump_all(kafka_topics(), sort_keys=False, explicit_start=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderflow.devstack.k8s_topics",
                                     description="Write the Strimzi KafkaTopic resources")
    parser.add_argument("path", type=Path, nargs="?", default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(render(), encoding="utf-8")
    print(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
