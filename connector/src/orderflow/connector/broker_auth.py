"""A service or connector whose credentials the broker refuses must say so and stop, not retry.

aiokafka's clients report a refused SASL authentication only as a ``KafkaConnectionError``
("Unable to bootstrap"), which ``retry.is_transient`` rightly retries (the broker may be starting):
a wrong password would be retried for ever. ``check_broker_credentials`` authenticates once the
way every client will and keeps the broker's own answer."""

from __future__ import annotations

from orderflow.connector.broker import BrokerConnection

__all__ = ["BrokerAuthenticationFailed", "check_broker_credentials"]


class BrokerAuthenticationFailed(Exception):
    """The broker refused the credentials: permanent, never retried."""

    def __init__(self, message: str, user: str | None) -> None:
        super().__init__(message)
        self.user = user


async def check_broker_credentials(kafka: BrokerConnection, *, client_id: str) -> None:
    """Authenticate once to a bootstrap broker as every client of the process will: a refusal
    raises ``BrokerAuthenticationFailed`` (permanent); a broker out of reach stays a transient
    ``KafkaConnectionError``. Without SASL, nothing."""
    if not kafka.security_protocol.startswith("SASL"):
        return
    from aiokafka.conn import collect_hosts, create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        AuthenticationMethodNotSupported,
        IllegalSaslStateError,
        KafkaConnectionError,
        KafkaError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    refused = (SaslAuthenticationFailed, AuthenticationFailedError, AuthenticationMethodNotSupported,
               UnsupportedSaslMechanismError, IllegalSaslStateError)
    kwargs = kafka.client_kwargs()
    unreachable: list[str] = []
    for host, port, _family in collect_hosts(kafka.bootstrap_servers):
        try:
            conn = await create_conn(
                host, port, client_id=client_id, request_timeout_ms=15_000,
                ssl_context=kwargs.get("ssl_context"), security_protocol=kafka.security_protocol,
                sasl_mechanism=kafka.sasl_mechanism, sasl_plain_username=kafka.sasl_username,
                sasl_plain_password=kwargs.get("sasl_plain_password"))
        except refused as exc:
            raise BrokerAuthenticationFailed(
                f"Kafka authentication failed for user {kafka.sasl_username!r} "
                f"({kafka.sasl_mechanism}, {host}:{port}): {exc}; check "
                "ORDERFLOW_KAFKA_SASL_USERNAME and ORDERFLOW_KAFKA_SASL_PASSWORD",
                kafka.sasl_username) from exc
        except (TimeoutError, OSError, KafkaError) as exc:
            unreachable.append(f"{host}:{port}: {type(exc).__name__}: {exc}"[:200])
            continue
        conn.close()
        return
    raise KafkaConnectionError("no bootstrap broker answered: " + "; ".join(unreachable))
