"""A live Apache Kafka that requires authentication, for the security tests: one node with a
SASL_SSL listener (SCRAM-SHA-512, a certificate for 127.0.0.1 signed by a CA made for the run),
the standard authorizer, one user per OrderFlow principal (``orderflow.devstack.acls``) with
exactly the derived ACLs, and every topic of the catalogue created by the super user.

Started once per session, only by the tests that ask for it. Where Kafka cannot start (no Java
17+, no jars) the test fails with the reason; it is never skipped."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from orderflow.contracts.topics import all_topic_names
from orderflow.devstack import acls
from orderflow.devstack.kafka import KafkaCluster, KafkaSecurity, KafkaUnavailable
from orderflow.devstack.stack import var_dir
from orderflow.runtime.retry import retry_transient
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings


@dataclass
class SecuredKafka:
    cluster: KafkaCluster
    security: KafkaSecurity
    acls: dict[str, list[acls.Acl]]

    @property
    def admin(self) -> KafkaSettings:
        return self.cluster.client_settings()

    def settings(self, user: str, password: str | None = None) -> KafkaSettings:
        return self.cluster.client_settings(user, password)

    def password(self, user: str) -> str:
        return self.security.users[user]

    @property
    def ca_file(self) -> Path:
        return self.security.ca_file

    def service_env(self, services: list[str]) -> dict[str, str]:
        """What each service process needs to log in as its own user over TLS."""
        env = {"ORDERFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "ORDERFLOW_KAFKA_SASL_MECHANISM": self.security.mechanism,
               "ORDERFLOW_KAFKA_SSL_CAFILE": str(self.ca_file)}
        for service in services:
            user = acls.principal_of(service)
            env[f"ORDERFLOW_{service.upper()}_KAFKA_SASL_USERNAME"] = user
            env[f"ORDERFLOW_{service.upper()}_KAFKA_SASL_PASSWORD"] = self.password(user)
        return env


async def _prepare(admin: KafkaSettings, derived: dict[str, list[acls.Acl]]) -> None:
    # the ACLs first: a broker applies metadata in order, and the topics' partitions take it
    # seconds to create, which ACLs created after them would wait for
    await acls.apply_acls(admin, acls.flatten(derived))
    await retry_transient(lambda: create_topics(admin, all_topic_names()), what="create topics",
                          max_attempts=20)


@pytest.fixture(scope="session")
def secured_kafka() -> Iterator[SecuredKafka]:
    root = var_dir() / "test" / str(os.getpid()) / "secured-kafka"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(root / "ca.pem")
    cert.private_key_pem.write_to_path(root / "broker-key.pem")
    (root / "broker-cert.pem").write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    derived = acls.all_acls()
    security = KafkaSecurity(ca_file=root / "ca.pem", cert_file=root / "broker-cert.pem",
                             key_file=root / "broker-key.pem",
                             admin_password=secrets.token_urlsafe(16),
                             users={user: secrets.token_urlsafe(16) for user in derived})
    cluster = KafkaCluster(root / "kafka", security=security)
    try:
        try:
            cluster.start()
        except KafkaUnavailable as exc:
            pytest.fail(f"Apache Kafka cannot run here, so the secured broker cannot be tested: "
                        f"{exc}", pytrace=False)
        except Exception as exc:
            log = cluster.nodes[0].log_file if cluster.nodes else None
            pytest.fail(f"the secured Kafka did not start: {type(exc).__name__}: {exc}"
                        + (f" (broker log: {log})" if log else ""), pytrace=False)
        asyncio.run(_prepare(cluster.client_settings(), derived))
        yield SecuredKafka(cluster, security, derived)
    finally:
        cluster.stop()
