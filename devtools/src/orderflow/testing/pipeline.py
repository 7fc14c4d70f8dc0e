"""The running pipeline for tests: every (or the chosen) service as its own OS process against
the real infrastructure, with the demo master data loaded and consumed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from orderflow.contracts.events import Event
from orderflow.devstack.stack import Stack, available_services
from orderflow.testing.infra import Infra


def chosen_services() -> list[str]:
    """``ORDERFLOW_TEST_SERVICES=intake,review`` limits the services tests start."""
    wanted = os.environ.get("ORDERFLOW_TEST_SERVICES")
    services = available_services()
    if wanted:
        names = [w.strip() for w in wanted.split(",") if w.strip()]
        services = [s for s in services if s in names]
    return services


class Pipeline:
    def __init__(self, infra: Infra, root: Path, services: list[str] | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.infra = infra
        self.kafka = infra.kafka
        self.stack = Stack(root=root, services=services or chosen_services(), fixed_ports=False,
                           database_url=infra.database_url, bootstrap=infra.bootstrap,
                           broker_kind=infra.broker, topic_replication=infra.replication,
                           extra_env={"ORDERFLOW_LOG_LEVEL": "INFO", **(extra_env or {})})

    async def start(self) -> Pipeline:
        self.stack.start_infrastructure(create_topics=False)  # urls given: starts nothing
        await self.stack.create_topics()
        self.stack.start_services()
        self.stack.wait_healthy(timeout=300)
        return self

    def stop(self) -> None:
        self.stack.stop_services()

    @property
    def services(self) -> list[str]:
        return self.stack.services

    async def publish_and_wait(self, events: list[Event], timeout: float = 120.0) -> None:
        """Publish events; wait until every running consumer of their topics committed past them."""
        await self.stack.publish_and_wait(events, timeout)

    async def load_demo_master_data(self) -> None:
        await self.stack.load_demo_master_data()

    def kill(self, label: str) -> None:
        sp = self.stack.find(label)
        assert sp.proc is not None
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait(10)

    def restart(self, label: str) -> None:
        sp = self.stack.find(label)
        self.stack.launch(sp)
        from orderflow.devstack.processes import wait_until

        wait_until(lambda: self.stack.healthy(sp), timeout=60, what=f"{label} to be healthy again")

    def log_text(self, label: str) -> str:
        path = self.stack.root / "logs" / f"{label}.log"
        return path.read_text(errors="replace") if path.exists() else ""
