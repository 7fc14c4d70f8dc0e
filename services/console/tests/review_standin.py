"""A stand-in for review's decision API, used only when the test run does not start the review
service (``ORDERFLOW_TEST_SERVICES`` without ``review``): it answers as review does (200 for a held
order, 409 otherwise, 401 without a valid service credential: the same check, with the stack's
key) and publishes the decision's event on the real broker in the name the credential gives, so
the console's forwarding, the relayed status and the order moving on are all observed end to
end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from orderflow.connector import OrderPusher
from orderflow.contracts import events as ev
from orderflow.runtime.service_auth import Actor, ServiceVerifier, require_actor
from orderflow.runtime.settings import KafkaSettings


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as review's: no reviewer in the body

    comment: str | None = ""


class ReviewStandIn:
    def __init__(self, kafka: KafkaSettings, port: int, service_key: str) -> None:
        self.kafka = kafka
        self.port = port
        self.held: dict[str, ev.OrderReceived] = {}
        self.decisions: list[tuple[str, str, str, str]] = []
        self.app = FastAPI()
        self.app.state.service_auth = ServiceVerifier("review", (service_key,))
        self.app.post("/api/orders/{order_id}/{decision}")(self.decide)

    def hold(self, received: ev.OrderReceived) -> None:
        self.held[received.order_id] = received

    async def decide(self, order_id: str, decision: str,
                     actor: Annotated[Actor, Depends(require_actor("reviewer"))],
                     body: Decision) -> dict[str, Any]:
        received = self.held.pop(order_id, None)
        if received is None:
            raise HTTPException(409, f"order {order_id} is not held")
        reviewer, comment = actor.name, body.comment or ""
        self.decisions.append((order_id, decision, reviewer, comment))
        event: ev.Event
        if decision == "approve":
            event = ev.OrderApproved(order_id=order_id, channel=received.channel,
                                     external_id=received.external_id, order=received.order,
                                     totals=received.totals, approved_by=reviewer,
                                     comment=comment or None)
        else:
            event = ev.OrderRejected(order_id=order_id, channel=received.channel,
                                     external_id=received.external_id, stage="review",
                                     reasons=(ev.Reason(code="manual_rejection", message="rejected"),),
                                     decided_by=reviewer, comment=comment or None)
        async with OrderPusher(self.kafka, producer_name="review") as pusher:
            await pusher.publish([event])
        return {"order_id": order_id, "status": decision + "d", "message": f"{decision}d"}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ReviewStandIn]:
        server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                               log_level="warning", lifespan="off"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        try:
            yield self
        finally:
            server.should_exit = True
            await task
