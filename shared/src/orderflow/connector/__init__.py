"""The connector kit: what a channel connector uses to push orders onto ``order.inbound``."""

from orderflow.connector.client import (
    OrderPusher,
    PushResult,
    StoreRefused,
    Submission,
    external_id_of,
    store_in,
    store_of,
)

__all__ = ["OrderPusher", "PushResult", "StoreRefused", "Submission", "external_id_of", "store_in",
           "store_of"]
