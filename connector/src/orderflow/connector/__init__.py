"""The connector kit: what a channel connector uses to push orders onto ``order.inbound``."""

from orderflow.connector.client import (
    BrokerUnreachable,
    OrderPusher,
    PushResult,
    StoreRefused,
    Submission,
    external_id_of,
    store_in,
    store_of,
    wait_for_broker,
)

__all__ = ["BrokerUnreachable", "OrderPusher", "PushResult", "StoreRefused",
           "Submission", "external_id_of", "store_in", "store_of", "wait_for_broker"]
