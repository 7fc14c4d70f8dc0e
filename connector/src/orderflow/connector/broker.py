"""How a client reaches the broker: its addresses, TLS and SASL, and which kind of broker it is.

``BrokerConnection`` is a plain pydantic model (what the connector kit needs: pydantic alone);
``orderflow.connector.settings.ConnectorSettings`` reads the same fields from the environment
(``ORDERFLOW_KAFKA_*``, the ``[settings]`` extra), and the services' ``KafkaSettings`` adds their
consumers' settings to that. SASL without TLS must be asked for explicitly."""

from __future__ import annotations

import ssl
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator

from orderflow.connector.broker_profile import profile_of

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
BrokerKind = Literal["kafka", "tansu"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class BrokerConnection(BaseModel):
    """How to reach the broker. The messages name the environment variables that set each field
    (``ORDERFLOW_KAFKA_<FIELD>``), which is where a deployment sets them."""

    # a misspelt field fails rather than leaving its default in force
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ORDERFLOW_KAFKA_BOOTSTRAP_SERVERS"),
    )
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # what kind of broker this is: every default that differs between the two comes from its
    # profile (``orderflow.connector.broker_profile``), decided there and nowhere else
    broker: BrokerKind = Field(default="kafka", description="kafka (Apache Kafka) or tansu")
    allow_sasl_plaintext: bool = Field(
        default=False,
        description="SASL credentials over an unencrypted connection; only for a local broker",
    )

    @property
    def idempotent_producer(self) -> bool:
        """Whether producers are idempotent (``acks=all`` either way): the broker's profile."""
        return profile_of(self.broker).idempotent_producer

    @model_validator(mode="after")
    def _check_security(self) -> BrokerConnection:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                "ORDERFLOW_KAFKA_SECURITY_PROTOCOL is SASL_* but ORDERFLOW_KAFKA_SASL_MECHANISM, "
                "ORDERFLOW_KAFKA_SASL_USERNAME and ORDERFLOW_KAFKA_SASL_PASSWORD are not all set"
            )
        if self.sasl_username and not sasl:
            raise ValueError(
                "ORDERFLOW_KAFKA_SASL_USERNAME is set but ORDERFLOW_KAFKA_SECURITY_PROTOCOL is "
                f"{self.security_protocol}: set it to SASL_SSL (or SASL_PLAINTEXT with "
                "ORDERFLOW_KAFKA_ALLOW_SASL_PLAINTEXT=true)"
            )
        if self.security_protocol == "SASL_PLAINTEXT" and not self.allow_sasl_plaintext:
            raise ValueError(
                "ORDERFLOW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT sends credentials unencrypted; "
                "use SASL_SSL, or set ORDERFLOW_KAFKA_ALLOW_SASL_PLAINTEXT=true for a local broker"
            )
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return ctx

    def producer_kwargs(self) -> dict[str, object]:
        """``client_kwargs`` plus what every OrderFlow producer sends with: every in-sync
        replica's acknowledgement, and idempotence where the broker supports it."""
        return {**self.client_kwargs(), "acks": "all",
                "enable_idempotence": self.idempotent_producer}

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        ctx = self.ssl_context()
        if ctx is not None:
            kwargs["ssl_context"] = ctx
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kwargs


__all__ = ["BrokerConnection", "BrokerKind", "SaslMechanism", "SecurityProtocol"]
