"""The connector kit: what a channel connector uses to push orders onto ``order.inbound``."""

from orderflow.connector.client import OrderPusher, PushResult, external_id_of

__all__ = ["OrderPusher", "PushResult", "external_id_of"]
