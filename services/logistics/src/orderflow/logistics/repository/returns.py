"""Returns (``logistics_returns``): one row per RMA, approved, refused or received."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.contracts.events import ReturnReceived
from orderflow.logistics.domain import NewReturn, ReturnedLine, ReturnRecord
from orderflow.logistics.repository.tables import returns


def _return(row: Any) -> ReturnRecord:
    return ReturnRecord(
        row.rma_id, row.order_id, row.status, row.resolution,
        tuple(ReturnedLine(line["sku"], int(line["quantity"]), line.get("warehouse_id"),
                           Decimal(line["refund"]) if line.get("refund") is not None else None)
              for line in row.lines),
        row.currency)


class Returns:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, new: NewReturn) -> bool:
        """Record an RMA's decision; False when the RMA id is already known."""
        row = (await self.session.execute(pg_insert(returns).values(
            rma_id=new.rma_id, order_id=new.order_id, status=new.status,
            resolution=new.resolution, reasons=[r.model_dump(mode="json") for r in new.reasons],
            lines=[line.model_dump(mode="json") for line in new.lines], carrier=new.carrier,
            tracking_number=new.tracking_number, refund_amount=new.refund_amount,
            currency=new.currency, requested_at=new.requested_at,
        ).on_conflict_do_nothing().returning(returns.c.rma_id))).first()
        return row is not None

    async def lock(self, rma_id: str) -> ReturnRecord | None:
        row = (await self.session.execute(
            sa.select(returns).where(returns.c.rma_id == rma_id).with_for_update())).first()
        return _return(row) if row else None

    async def of_order(self, order_id: str) -> list[ReturnRecord]:
        rows = (await self.session.execute(
            sa.select(returns).where(returns.c.order_id == order_id)
            .order_by(returns.c.requested_at))).all()
        return [_return(r) for r in rows]

    async def mark_received(self, receipt: ReturnReceived, refund_id: str) -> None:
        await self.session.execute(returns.update().where(returns.c.rma_id == receipt.rma_id)
                                   .values(status="received", received_at=receipt.received_at,
                                           inspections=[u.model_dump() for u in
                                                        receipt.inspections],
                                           refund_id=refund_id, updated_at=sa.func.now()))
