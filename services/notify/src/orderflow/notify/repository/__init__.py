"""Notify's repository: SQL only, by table group.

- ``tables``: the tables;
- ``master_data``: customers' preferences and contact, product names;
- ``orders``: each order's state, read and locked for a run and written back;
- ``notifications``: the notifications a run stages and the dispatches waiting under its keys;
- ``delivery``: the sender's claims, folds, marks and retries, and the retention purge;
- ``webhooks``: the outcome webhooks channels registered (``channel.webhook-set``).

The handlers' statements are built once and run on asyncpg directly (``Statement``), each taking
a whole run's values as arrays."""

from __future__ import annotations

from orderflow.notify.domain import CustomerProfile, OrderRecord
from orderflow.notify.repository.delivery import NotificationRow, SenderRepository, purge_finished
from orderflow.notify.repository.master_data import MasterDataRows
from orderflow.notify.repository.notifications import NewNotification, NotificationRows
from orderflow.notify.repository.orders import OrderRows
from orderflow.notify.repository.webhooks import ChannelWebhookRows, registered_url


class NotifyRepository(MasterDataRows, OrderRows, NotificationRows, ChannelWebhookRows):
    """What the handlers read and write, inside the consumer's transaction."""


__all__ = ["CustomerProfile", "NewNotification", "NotificationRow", "NotifyRepository",
           "OrderRecord", "SenderRepository", "purge_finished", "registered_url"]
