"""The worklists' tables (``console_worklist``, ``console_cases``): store and load, no policy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.repository import audit, metadata
from orderflow.console.worklist import Assignment, Case

assignments = sa.Table(
    "console_worklist", metadata,
    sa.Column("item_key", sa.Text, primary_key=True),
    sa.Column("assignee", sa.Text),
    sa.Column("assigned_by", sa.Text),
    sa.Column("assigned_at", sa.DateTime(timezone=True)),
    sa.Column("done_by", sa.Text),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
cases = sa.Table(
    "console_cases", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("customer_id", sa.Text, nullable=False),
    sa.Column("order_id", sa.Text),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("updated_by", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


def _assignment(row: Any) -> Assignment:
    return Assignment(key=row.item_key, assignee=row.assignee, assigned_by=row.assigned_by,
                      assigned_at=row.assigned_at, done_by=row.done_by, done_at=row.done_at)


class WorklistRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def assignments(self) -> dict[str, Assignment]:
        rows = (await self.session.execute(sa.select(assignments))).all()
        return {r.item_key: _assignment(r) for r in rows}

    async def assignment(self, key: str) -> Assignment | None:
        row = (await self.session.execute(
            sa.select(assignments).where(assignments.c.item_key == key))).first()
        return _assignment(row) if row else None

    async def claim(self, key: str, who: str, at: datetime) -> Assignment:
        """Give the item to ``who`` unless someone else holds it (one statement: of concurrent
        claims one wins); the item's assignment after it."""
        stmt = pg.insert(assignments).values(item_key=key, assignee=who, assigned_by=who,
                                             assigned_at=at, updated_at=at)
        stmt = stmt.on_conflict_do_update(
            index_elements=[assignments.c.item_key],
            set_={"assignee": who, "assigned_by": who, "assigned_at": at, "updated_at": at},
            where=sa.or_(assignments.c.assignee.is_(None), assignments.c.assignee == who))
        await self.session.execute(stmt)
        found = await self.assignment(key)
        assert found is not None
        return found

    async def assign(self, key: str, assignee: str | None, by: str, at: datetime) -> Assignment:
        """Give the item to ``assignee`` (None: unassign) whoever held it."""
        values = {"assignee": assignee, "assigned_by": by if assignee else None,
                  "assigned_at": at if assignee else None, "updated_at": at}
        stmt = pg.insert(assignments).values(item_key=key, **values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[assignments.c.item_key], set_=values))
        found = await self.assignment(key)
        assert found is not None
        return found

    async def mark_done(self, key: str, by: str, at: datetime) -> None:
        values = {"done_by": by, "done_at": at, "updated_at": at}
        stmt = pg.insert(assignments).values(item_key=key, **values)
        await self.session.execute(stmt.on_conflict_do_update(
            index_elements=[assignments.c.item_key], set_=values))

    # -- cases ----------------------------------------------------------------------------------
    async def add_case(self, *, customer_id: str, order_id: str | None, type: str, text: str,
                       due_at: datetime, created_by: str, created_at: datetime) -> Case:
        row = (await self.session.execute(cases.insert().values(
            customer_id=customer_id, order_id=order_id, type=type, text=text, status="open",
            due_at=due_at, created_by=created_by, created_at=created_at).returning(cases))).one()
        return Case.model_validate(row._mapping)

    async def case(self, case_id: int) -> Case | None:
        row = (await self.session.execute(sa.select(cases).where(cases.c.id == case_id))).first()
        return Case.model_validate(row._mapping) if row else None

    async def cases(self, *, statuses: tuple[str, ...] | None = None,
                    order_id: str | None = None, customer_id: str | None = None,
                    limit: int = 500) -> list[Case]:
        stmt = sa.select(cases).order_by(cases.c.created_at, cases.c.id).limit(limit)
        if statuses:
            stmt = stmt.where(cases.c.status.in_(statuses))
        if order_id:
            stmt = stmt.where(cases.c.order_id == order_id)
        if customer_id:
            stmt = stmt.where(cases.c.customer_id == customer_id)
        return [Case.model_validate(r._mapping) for r in (await self.session.execute(stmt)).all()]

    async def set_case_status(self, case_id: int, status: str, by: str,
                              at: datetime) -> Case | None:
        row = (await self.session.execute(
            cases.update().where(cases.c.id == case_id)
            .values(status=status, updated_by=by, updated_at=at).returning(cases))).first()
        return Case.model_validate(row._mapping) if row else None

    # -- the console's own actions on an order (its timeline) -----------------------------------
    async def actions_on(self, order_id: str) -> list[dict[str, Any]]:
        """The audited actions whose target is the order, oldest first (refusals left out)."""
        stmt = (sa.select(audit).where(audit.c.target == order_id,
                                       audit.c.outcome != "forbidden")
                .order_by(audit.c.id))
        return [dict(r) for r in (await self.session.execute(stmt)).mappings().all()]
