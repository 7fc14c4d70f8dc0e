"""The console's dead-letter routes: inspect one dead letter (headers, reason, its payload with
personal data masked), replay that one, and replay a whole DLQ after seeing how many entries it
holds.

Replaying twice is prevented by the table ``console_dlq_replays`` (one row per DLQ entry the
console sent back, with who and when): a single replay inserts its row in the transaction that
sends the entry, so a second replay of it (or two at once) finds the row and is refused with
409. A whole-DLQ replay takes the entries after its consumer group's offset
(``orderflow.runtime.dlq``), leaves out those replayed one by one before, and sends the rest only
when their number is the ``expected`` count the operator confirmed (``GET`` the same path for it):
a stale confirmation never replays more than the operator saw."""


from collections.abc import Collection, Sequence
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncSession

from orderflow.console.api import Console, requirement
from orderflow.console.auth import Operator
from orderflow.contracts.topics import BY_NAME
from orderflow.runtime.dlq import DeadLetterRecord, DlqReplay, read_dead_letter, republish_one

metadata = sa.MetaData()
replays = sa.Table(
    "console_dlq_replays", metadata,
    sa.Column("dlq_topic", sa.Text, primary_key=True),
    sa.Column("dlq_partition", sa.Integer, primary_key=True),
    sa.Column("dlq_offset", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.Text),
    sa.Column("replayed_by", sa.Text, nullable=False),
    sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False,
              server_default=sa.func.now()),
    sa.Column("how", sa.Text, nullable=False),
)


class ReplayAll(BaseModel):
    expected: int = Field(ge=0, description="How many dead letters the operator confirmed "
                          "(the count GET /api/dlq/{topic}/replay gave): refused when the DLQ "
                          "now holds another number")


def _target(topic: str, partition: int, offset: int) -> str:
    return f"{topic}.dlq/{partition}/{offset}"


def _row_of(record: DeadLetterRecord, op: Operator, how: str) -> dict[str, Any]:
    return {"dlq_topic": f"{record.topic}.dlq", "dlq_partition": record.partition,
            "dlq_offset": record.offset, "event_id": dict(record.headers).get(
                "event_id", b"").decode("utf-8", "replace") or None,
            "replayed_by": op.name, "how": how}


async def _claim(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert the rows of entries about to be sent; how many were new (a row already there is a
    replay done before, or by a concurrent request that now holds it)."""
    if not rows:
        return 0
    inserted = await session.execute(pg.insert(replays).values(list(rows))
                                     .on_conflict_do_nothing().returning(replays.c.dlq_offset))
    return len(inserted.all())


async def _replayed(session: AsyncSession, dlq_topic: str, partition: int,
                    offsets: Collection[int]) -> dict[int, dict[str, Any]]:
    if not offsets:
        return {}
    rows = (await session.execute(sa.select(replays).where(
        replays.c.dlq_topic == dlq_topic, replays.c.dlq_partition == partition,
        replays.c.dlq_offset.in_(list(offsets))))).mappings().all()
    return {r["dlq_offset"]: {"by": r["replayed_by"], "at": r["replayed_at"].isoformat(),
                              "how": r["how"]} for r in rows}


class _Refused(Exception):
    pass


def dlq_router(console: Console, topics: Collection[str] | None = None) -> APIRouter:
    """``topics``: the topics whose DLQs may be read and replayed (the catalogue's)."""
    known = frozenset(BY_NAME if topics is None else topics)
    router = APIRouter(prefix="/api/dlq", tags=["console"])
    viewer = Depends(requirement(console, "view"))
    admin_replay = Depends(requirement(console, "replay"))
    kafka = console.ctx.kafka

    def check(topic: str) -> None:
        if topic not in known:
            raise HTTPException(404, f"no topic {topic}")

    async def pending(replay: DlqReplay) -> tuple[list[DeadLetterRecord], set[int]]:
        """The entries after the replay group's offset, and those of them replayed one by one
        before."""
        records = await replay.pending()
        async with console.sessions() as session:
            done = await _replayed(session, replay.tp.topic, 0, [r.offset for r in records])
        return records, set(done)

    @router.get("/{topic}/replay")
    async def replay_preview(topic: str, _op: Annotated[Operator, viewer]) -> dict[str, Any]:
        """How many dead letters a replay of ``topic``'s DLQ would send now (the ``expected``
        count its POST takes)."""
        check(topic)
        async with DlqReplay(kafka, topic) as replay:
            records, skipped = await pending(replay)
        count = len(records) - len(skipped)
        return {"topic": topic, "dlq": f"{topic}.dlq", "pending": count,
                "already_replayed": len(skipped),
                "confirm": f"Replay {count} dead letter{'' if count == 1 else 's'} onto {topic}?"}

    @router.post("/{topic}/replay")
    async def replay_all(topic: str, op: Annotated[Operator, admin_replay],
                         body: Annotated[ReplayAll, Body()]) -> Response:
        """Republish ``topic``'s dead letters not replayed before onto ``topic``, when their
        number is ``expected``; 409 with the current number otherwise."""
        check(topic)
        async with DlqReplay(kafka, topic) as replay:
            records, skipped = await pending(replay)
            to_send = [r for r in records if r.offset not in skipped]
            if len(to_send) != body.expected:
                await console.audit(op, "replay", topic, "refused_count_changed",
                                    expected=body.expected, pending=len(to_send))
                return JSONResponse({
                    "topic": topic, "replayed": 0, "pending": len(to_send),
                    "expected": body.expected,
                    "detail": f"{topic}.dlq holds {len(to_send)} dead letter(s) to replay, not "
                              f"{body.expected}: confirm again"}, status_code=409)
            try:
                async with console.sessions() as session, session.begin():
                    claimed = await _claim(session, [_row_of(r, op, "dlq") for r in to_send])
                    if claimed != len(to_send):
                        raise _Refused
                    await replay.republish(to_send)
                    await replay.done(records)
            except _Refused:
                await console.audit(op, "replay", topic, "refused_concurrent",
                                    expected=body.expected)
                return JSONResponse({"topic": topic, "replayed": 0, "detail":
                                     "another replay of these dead letters ran meanwhile"},
                                    status_code=409)
        await console.audit(op, "replay", topic, "done", replayed=len(to_send),
                            skipped_replayed_before=len(skipped),
                            offsets=[r.offset for r in to_send][:1000])
        return JSONResponse({"topic": topic, "replayed": len(to_send),
                             "skipped_replayed_before": len(skipped)})

    async def one(topic: str, partition: int, offset: int) -> DeadLetterRecord:
        check(topic)
        if partition < 0 or offset < 0:
            raise HTTPException(404, "no such dead letter")
        record = await read_dead_letter(kafka, topic, partition, offset)
        if record is None:
            raise HTTPException(404, f"no dead letter at {_target(topic, partition, offset)}")
        return record

    @router.get("/{topic}/{partition}/{offset}")
    async def inspect(topic: str, partition: int, offset: int,
                      _op: Annotated[Operator, viewer]) -> dict[str, Any]:
        """One dead letter: its headers, reason and error, and its payload as text with personal
        data masked; ``replayed`` says whether (and by whom) the console replayed it."""
        record = await one(topic, partition, offset)
        async with console.sessions() as session:
            done = await _replayed(session, f"{topic}.dlq", partition, [offset])
        return {**record.masked(), "replayed": done.get(offset),
                "confirm": f"Replay this dead letter onto {topic}?"}

    @router.post("/{topic}/{partition}/{offset}/replay")
    async def replay_one(topic: str, partition: int, offset: int,
                         op: Annotated[Operator, admin_replay]) -> Response:
        """Republish this one dead letter onto ``topic`` (its original headers); once: a
        second replay is refused with 409 and says who replayed it when."""
        record = await one(topic, partition, offset)
        target = _target(topic, partition, offset)
        row = _row_of(record, op, "one")
        try:
            async with console.sessions() as session, session.begin():
                if not await _claim(session, [row]):
                    raise _Refused
                await republish_one(kafka, record)
        except _Refused:
            async with console.sessions() as session:
                before = (await _replayed(session, f"{topic}.dlq", partition, [offset]))
            await console.audit(op, "replay", target, "refused_replayed_before",
                                event_id=row["event_id"])
            return JSONResponse({"topic": topic, "partition": partition, "offset": offset,
                                 "replayed": False, "replayed_before": before.get(offset),
                                 "detail": "this dead letter was replayed before"},
                                status_code=409)
        await console.audit(op, "replay", target, "done", event_id=row["event_id"])
        return JSONResponse({"topic": topic, "partition": partition, "offset": offset,
                             "replayed": True, "event_id": row["event_id"]})

    return router
