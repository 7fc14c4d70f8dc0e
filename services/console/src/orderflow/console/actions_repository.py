"""The inspections of returns operators entered (``console_return_inspections``): store and
load, no policy."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.repository import metadata

inspections = sa.Table(
    "console_return_inspections", metadata,
    sa.Column("rma_id", sa.Text, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("inspection", pg.JSONB, nullable=False),
    sa.Column("requested_by", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)


class ActionsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_inspection(self, rma_id: str, order_id: str, inspection: dict[str, str],
                             requested_by: str, requested_at: datetime) -> None:
        await self.session.execute(sa.insert(inspections).values(
            rma_id=rma_id, order_id=order_id, inspection=inspection,
            requested_by=requested_by, requested_at=requested_at))

    async def take_inspections(self, rma_ids: list[str], now: datetime) -> dict[str, dict[str, str]]:
        """The inspections of these RMAs not received yet, marked received (locked: of two
        replicas reading the same approval, one publishes its receipt)."""
        if not rma_ids:
            return {}
        rows = (await self.session.execute(
            sa.update(inspections)
            .where(inspections.c.rma_id.in_(sorted(set(rma_ids))),
                   inspections.c.received_at.is_(None))
            .values(received_at=now)
            .returning(inspections.c.rma_id, inspections.c.inspection))).all()
        return {r.rma_id: dict(r.inspection) for r in rows}
