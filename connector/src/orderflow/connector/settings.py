"""The broker connection read from the environment (``ORDERFLOW_KAFKA_*``, and the conventional
``KAFKA_BOOTSTRAP_SERVERS``), as OrderFlow's services read it; a bad value fails at once, naming
the variable. Needs pydantic-settings: ``pip install orderflow-connector[settings]``."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from orderflow.connector.broker import BrokerConnection


class ConnectorSettings(BrokerConnection, BaseSettings):
    """``BrokerConnection`` from ``ORDERFLOW_KAFKA_<FIELD>`` variables."""

    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_KAFKA_", extra="ignore", populate_by_name=True)


__all__ = ["ConnectorSettings"]
