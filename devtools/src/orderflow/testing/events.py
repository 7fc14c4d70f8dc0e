"""Re-exported for tests: the topic reader lives in ``orderflow.devstack.eventlog``."""

from orderflow.devstack.eventlog import EventLog, SeenEvent

__all__ = ["EventLog", "SeenEvent"]
