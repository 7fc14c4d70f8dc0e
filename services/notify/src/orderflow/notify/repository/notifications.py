"""The notifications a run of customer-facing events stages (``notify_notifications``), whose
unique key (source event id, channel) makes every notification happen at most once however often
its event is delivered, and the dispatches waiting to be told together."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orderflow.notify.domain import Channel, Kind, Language
from orderflow.notify.repository.tables import Rows, json_text
from orderflow.runtime.sqlalchemy_bridge import Statement

# a run's notifications in its order (ids follow it), each due when the handler decided (no
# time: now, as a release sets it) and finished when it says (a suppressed row, as staged)
_STAGE_ALL = Statement(
    "INSERT INTO notify_notifications (notification_id, source_event_id, source_topic, "
    "source_event_type, kind, order_id, channel, recipient, language, context, status, detail, "
    "attempts, next_attempt_at, coalesce_key, raw_value, raw_headers, finished_at) "
    "SELECT notification_id, source_event_id, source_topic, source_event_type, kind, order_id, "
    "channel, recipient, language, CAST(context AS json), status, detail, 0, "
    "COALESCE(next_attempt_at, now()), coalesce_key, raw_value, CAST(raw_headers AS json), "
    "CASE WHEN finished THEN now() END "
    "FROM unnest(CAST(:notification_ids AS uuid[]), CAST(:source_event_ids AS uuid[]), "
    "CAST(:source_topics AS text[]), CAST(:source_event_types AS text[]), CAST(:kinds AS text[]), "
    "CAST(:order_ids AS text[]), CAST(:channels AS text[]), CAST(:recipients AS text[]), "
    "CAST(:languages AS text[]), CAST(:contexts AS text[]), CAST(:statuses AS text[]), "
    "CAST(:details AS text[]), CAST(:next_attempts AS timestamptz[]), "
    "CAST(:coalesce_keys AS text[]), CAST(:raw_values AS bytea[]), "
    "CAST(:raw_headers AS text[]), CAST(:finished AS boolean[])) WITH ORDINALITY "
    "AS u(notification_id, source_event_id, source_topic, source_event_type, kind, order_id, "
    "channel, recipient, language, context, status, detail, next_attempt_at, coalesce_key, "
    "raw_value, raw_headers, finished, n) "
    "ORDER BY n ON CONFLICT (source_event_id, channel) DO NOTHING "
    "RETURNING source_event_id, channel")
# the dispatches waiting under a run's (coalesce key, channel) pairs, locked in id order, and
# the (event, channel) pairs the run's events already staged (a stored pair is not staged again)
_WAITING_AND_STAGED = Statement(
    "WITH waiting AS (SELECT n.id, n.coalesce_key, n.channel FROM notify_notifications n "
    "JOIN unnest(CAST(:keys AS text[]), CAST(:channels AS text[])) AS p(coalesce_key, channel) "
    "ON n.coalesce_key = p.coalesce_key AND n.channel = p.channel "
    "WHERE n.status = 'pending' ORDER BY n.id FOR UPDATE OF n) "
    "SELECT id, coalesce_key, channel, NULL::uuid AS source_event_id FROM waiting "
    "UNION ALL SELECT NULL, NULL, channel, source_event_id FROM notify_notifications "
    "WHERE source_event_id = ANY(CAST(:event_ids AS uuid[]))")
# waiting rows the handler let go now
_RELEASE = Statement("UPDATE notify_notifications SET next_attempt_at = now() "
                     "WHERE id = ANY(CAST(:ids AS bigint[]))")


@dataclass(frozen=True)
class NewNotification:
    """A row the handler stages in the consumer's transaction."""

    source_event_id: str
    source_topic: str
    source_event_type: str
    kind: Kind
    order_id: str
    channel: Channel
    recipient: str
    language: Language
    context: Mapping[str, Any]
    status: str
    detail: str
    next_attempt_at: datetime | None  # None: now, as it is stored
    finished: bool  # finished as it is stored (a suppressed notification)
    coalesce_key: str | None
    raw_value: bytes
    raw_headers: Sequence[tuple[str, bytes]]
    notification_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class NotificationRows(Rows):
    """The notifications the handlers stage."""

    async def stage_all(self, rows: Sequence[NewNotification]) -> set[tuple[str, str]]:
        """Insert the notifications; the (source event id, channel) pairs inserted: a pair that
        already has a row is skipped."""
        if not rows:
            return set()
        inserted = await _STAGE_ALL.fetch(self.session, {
            "notification_ids": [uuid.UUID(r.notification_id) for r in rows],
            "source_event_ids": [uuid.UUID(r.source_event_id) for r in rows],
            "source_topics": [r.source_topic for r in rows],
            "source_event_types": [r.source_event_type for r in rows],
            "kinds": [r.kind for r in rows],
            "order_ids": [r.order_id for r in rows],
            "channels": [r.channel for r in rows],
            "recipients": [r.recipient for r in rows],
            "languages": [r.language for r in rows],
            "contexts": [json_text(r.context) for r in rows],
            "statuses": [r.status for r in rows],
            "details": [r.detail for r in rows],
            "next_attempts": [r.next_attempt_at for r in rows],
            "coalesce_keys": [r.coalesce_key for r in rows],
            "raw_values": [r.raw_value for r in rows],
            "raw_headers": [json_text([[k, v.decode("utf-8", "replace")] for k, v in r.raw_headers])
                            for r in rows],
            "finished": [r.finished for r in rows],
        })
        return {(str(event_id), channel) for event_id, channel in inserted}

    async def waiting_and_staged(
            self, pairs: Sequence[tuple[str, str]], event_ids: Sequence[str],
    ) -> tuple[dict[tuple[str, Channel], list[int]], set[tuple[str, str]]]:
        """The ids of the notifications waiting under each (coalesce key, channel) pair (locked:
        the counts stay right while this transaction lasts), and the (source event id, channel)
        pairs of these events that already have a row."""
        rows = await _WAITING_AND_STAGED.fetch(self.session, {
            "keys": [key for key, _ in pairs], "channels": [channel for _, channel in pairs],
            "event_ids": [uuid.UUID(e) for e in event_ids]})
        waiting: dict[tuple[str, Channel], list[int]] = {}
        staged: set[tuple[str, str]] = set()
        for row_id, coalesce_key, channel, source_event_id in rows:
            if row_id is not None:
                waiting.setdefault((coalesce_key, channel), []).append(row_id)
            else:
                staged.add((str(source_event_id), channel))
        return waiting, staged

    async def release(self, notification_ids: Sequence[int]) -> None:
        """Let waiting notifications go now."""
        await _RELEASE.run(self.session, {"ids": list(notification_ids)})
