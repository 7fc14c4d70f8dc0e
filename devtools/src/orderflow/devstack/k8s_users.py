"""The principals and ACLs of ``orderflow.devstack.acls`` as Strimzi ``KafkaUser`` resources.

``python -m orderflow.devstack.k8s_users`` writes, into ``deploy/k8s/components/strimzi-users/``:

- ``kafkausers.yaml``: one ``KafkaUser`` per service (``orderflow-<service>``) and one for the
  connectors (``orderflow-connector``), SCRAM-SHA-512, ``simple`` authorization with exactly the
  derived ACLs. Strimzi's User Operator creates each user and a Secret of the same name whose
  ``password`` key holds its password;
- ``credentials.yaml``: a patch of each service's Deployment that logs it in as its own user,
  the password from that Secret (instead of the shared ``orderflow-kafka`` Secret's).

``tests/deploy/test_kafka_users.py`` fails when the committed files no longer match the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from orderflow.devstack import acls
from orderflow.devstack.k8s_topics import STRIMZI_CLUSTER

DEFAULT_DIR = Path("deploy/k8s/components/strimzi-users")
USERS_FILE = "kafkausers.yaml"
CREDENTIALS_FILE = "credentials.yaml"
PASSWORD_KEY = "password"  # noqa: S105 - the key of the Secret Strimzi writes for a user
DESCRIPTIONS = {acls.CONNECTOR: "channel, master-data and finance connectors pushing into OrderFlow"}


def kafka_user(name: str, rules: list[acls.Acl]) -> dict[str, Any]:
    description = DESCRIPTIONS.get(name, f"the {name.removeprefix(acls.PRINCIPAL_PREFIX)} service")
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {
            "name": name,
            "labels": {"strimzi.io/cluster": STRIMZI_CLUSTER,
                       "app.kubernetes.io/part-of": "orderflow"},
            "annotations": {"orderflow.io/description": description},
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {
                "type": "simple",
                "acls": [{"resource": {"type": rtype, "name": resource, "patternType": "literal"}
                          if rtype != "cluster" else {"type": "cluster"},
                          "operations": list(operations), "host": "*"}
                         for rtype, resource, operations in acls.by_resource(rules)],
            },
        },
    }


def kafka_users() -> list[dict[str, Any]]:
    return [kafka_user(name, rules) for name, rules in acls.all_acls().items()]


def credentials_patch(service: str) -> dict[str, Any]:
    user = acls.principal_of(service)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service},
        "spec": {"template": {"spec": {"containers": [{
            "name": service,
            "env": [
                {"name": "ORDERFLOW_KAFKA_SASL_USERNAME", "value": user},
                {"name": "ORDERFLOW_KAFKA_SASL_PASSWORD",
                 "valueFrom": {"secretKeyRef": {"name": user, "key": PASSWORD_KEY}}},
            ],
        }]}}},
    }


def _header(what: str) -> str:
    return (f"# Generated from orderflow.devstack.acls ({what}) by\n"
            f"#   python -m orderflow.devstack.k8s_users {DEFAULT_DIR}\n"
            "# Do not edit: change the code and regenerate.\n")


def render() -> dict[str, str]:
    """The files' names and contents."""
    users = yaml.safe_dump_all(kafka_users(), sort_keys=False, explicit_start=True)
    patches = yaml.safe_dump_all([credentials_patch(s) for s in acls.services()],
                                 sort_keys=False, explicit_start=True)
    return {USERS_FILE: _header("KafkaUser per principal") + users,
            CREDENTIALS_FILE: _header("each service logs in as its own user") + patches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orderflow.devstack.k8s_users",
                                     description="Write the Strimzi KafkaUser resources")
    parser.add_argument("folder", type=Path, nargs="?", default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.folder / name).write_text(text, encoding="utf-8")
        print(args.folder / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
