"""The console's dead letters against the real broker (Apache Kafka unless
``ORDERFLOW_TEST_BROKER=tansu``) and PostgreSQL, the console's app in this process: inspect one
dead letter with its personal data masked, replay it once (a second replay refused), replay a
whole DLQ only with the count the operator confirmed, and a viewer refused."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import async_sessionmaker

from orderflow.console.api import Console, api_router
from orderflow.console.auth import Accounts, hash_password
from orderflow.console.dead_letters import dlq_router
from orderflow.console.pages import pages_router
from orderflow.console.settings import ConsoleSettings, UserEntry
from orderflow.runtime.db import make_engine, migrate
from orderflow.runtime.http import create_http_app
from orderflow.runtime.outbox import OutboxRelay
from orderflow.runtime.service import ServiceContext, create_topics
from orderflow.runtime.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from orderflow.runtime.unit_of_work import UnitOfWorkFactory
from orderflow.testing.infra import Infra, create_database

pytestmark = pytest.mark.service

MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "orderflow" / "console" / \
    "migrations" / "versions"
ADMIN_TOKEN = "admin-token-of-the-dead-letter-tests-0123456789"
VIEWER_PASSWORD = "vic-views-dead-letters"
EMAIL, PHONE, NAME = "jane.doe@example.com", "+44 7700 900123", "Jane Doe"


@dataclass
class DlqConsole:
    app: Any
    kafka: KafkaSettings
    topic: str

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                 base_url="http://console.test", timeout=60, **kwargs)

    def admin(self) -> httpx.AsyncClient:
        return self.client(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


async def _healthy() -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture(scope="module")
async def dlq_console(infra: Infra, tmp_path_factory: pytest.TempPathFactory
                      ) -> AsyncIterator[DlqConsole]:
    run = uuid.uuid4().hex[:8]
    url = await create_database(infra.database_url, f"console_dlq_{run}")
    engine = make_engine(DatabaseSettings(url=url), "console")
    await migrate(engine, "console", MIGRATIONS)
    kafka = infra.kafka
    topic = f"test.dlq.{run}"  # a topic of its own: no service consumes it
    await create_topics(kafka, [(topic, 1), (f"{topic}.dlq", 1)])
    settings = ConsoleSettings(
        users={"vic": UserEntry(role="viewer", password_hash=hash_password(VIEWER_PASSWORD))},
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        token_file=tmp_path_factory.mktemp("console") / "token")
    ctx = ServiceContext(name="console", settings=ServiceSettings(), kafka=kafka, engine=engine,
                         relay=cast(OutboxRelay, None), units=cast(UnitOfWorkFactory, None),
                         stopping=asyncio.Event())
    console = Console(ctx=ctx, settings=settings, accounts=Accounts.from_settings(settings),
                      sessions=async_sessionmaker(engine, expire_on_commit=False))
    app = create_http_app("console", _healthy, [api_router(console),
                                                dlq_router(console, topics={topic}),
                                                pages_router(console)], public_openapi=False)
    try:
        yield DlqConsole(app, kafka, topic)
    finally:
        await engine.dispose()


def _payload(n: int) -> bytes:
    return json.dumps({"order_id": f"ORD-{n}", "customer": {
        "email": EMAIL, "phone": PHONE, "name": NAME}, "note": f"call {PHONE} or {EMAIL}"}).encode()


async def _dead_letter(kafka: KafkaSettings, topic: str, n: int) -> str:
    """Put one dead letter of ``topic`` into its DLQ, as the runtime does; its event id."""
    event_id = str(uuid.uuid4())
    producer = AIOKafkaProducer(**kafka.producer_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(f"{topic}.dlq", value=_payload(n), key=f"ORD-{n}".encode(),
                                     headers=[("event_id", event_id.encode()),
                                              ("event_type", b"order.received"),
                                              ("dlq_reason", b"handler_failed"),
                                              ("dlq_error", f"no customer {EMAIL}".encode()),
                                              ("dlq_service", b"review"),
                                              ("dlq_source", f"{topic}/0/{n}".encode())])
    finally:
        await producer.stop()
    return event_id


async def _on_topic(kafka: KafkaSettings, topic: str) -> list[Any]:
    """Every record of ``topic`` (partition 0)."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(**kafka.client_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, 0)
        records: list[Any] = []
        while len(records) < end:
            records += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return records
    finally:
        await consumer.stop()


async def _viewer(dc: DlqConsole, client: httpx.AsyncClient) -> str:
    """Sign ``client`` in as the viewer; the session's CSRF token."""
    page = await client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    r = await client.post("/login", data={"username": "vic", "password": VIEWER_PASSWORD,
                                          "csrf_token": token.group(1), "next_url": "/"})
    assert r.status_code == 303, r.text
    home = await client.get("/")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', home.text)
    assert csrf is not None
    return csrf.group(1)


async def test_inspect_replay_one_once_and_a_whole_dlq_with_its_count(
        dlq_console: DlqConsole) -> None:
    dc, topic = dlq_console, dlq_console.topic
    ids = [await _dead_letter(dc.kafka, topic, n) for n in range(3)]  # offsets 0, 1, 2
    async with dc.admin() as admin:
        # inspect: headers, reason, size; the payload as text, personal data masked
        r = await admin.get(f"/api/dlq/{topic}/0/0")
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["headers"]["dlq_reason"] == "handler_failed" == d["reason"]
        assert d["headers"]["dlq_service"] == "review" and d["event_id"] == ids[0]
        assert d["headers"]["dlq_source"] == f"{topic}/0/0"
        assert d["size"] == len(_payload(0)) and d["payload_json"]
        assert '"order_id": "ORD-0"' in d["payload"]
        for raw in (EMAIL, PHONE, NAME, "7700 900123", "jane.doe"):
            assert raw not in r.text, raw
        assert d["replayed"] is None
        assert d["confirm"] == f"Replay this dead letter onto {topic}?"
        assert (await admin.get(f"/api/dlq/{topic}/0/99")).status_code == 404
        assert (await admin.get(f"/api/dlq/{topic}/7/0")).status_code == 404
        assert (await admin.get("/api/dlq/not.a.topic/0/0")).status_code == 404

        # replay one: on the source topic once, its original headers without the DLQ's
        r = await admin.post(f"/api/dlq/{topic}/0/0/replay")
        assert r.status_code == 200 and r.json()["replayed"] is True, r.text
        again = await admin.post(f"/api/dlq/{topic}/0/0/replay")
        assert again.status_code == 409, again.text
        assert again.json()["replayed_before"]["by"] == "admin-token"
        on_topic = await _on_topic(dc.kafka, topic)
        assert len(on_topic) == 1
        headers = dict(on_topic[0].headers)
        assert headers["event_id"].decode() == ids[0] and not any(
            k.startswith("dlq_") for k in headers)
        assert on_topic[0].value == _payload(0)
        assert (await admin.get(f"/api/dlq/{topic}/0/0")).json()["replayed"]["by"] == "admin-token"

        # a whole DLQ: the preview counts what is left (offset 0 was replayed on its own)
        path = f"/api/dlq/{topic}/replay"
        preview = (await admin.get(path)).json()
        assert preview["pending"] == 2 and preview["already_replayed"] == 1
        assert preview["confirm"] == f"Replay 2 dead letters onto {topic}?"
        assert (await admin.post(path)).status_code == 422  # no count: refused
        wrong = await admin.post(path, json={"expected": 3})
        assert wrong.status_code == 409 and wrong.json()["pending"] == 2, wrong.text
        assert len(await _on_topic(dc.kafka, topic)) == 1  # refused: nothing sent
        done = await admin.post(path, json={"expected": 2})
        assert done.status_code == 200, done.text
        assert done.json() == {"topic": topic, "replayed": 2, "skipped_replayed_before": 1}
        replayed = await _on_topic(dc.kafka, topic)
        assert sorted(dict(r.headers)["event_id"].decode() for r in replayed) == sorted(ids)
        # nothing left; a stale confirmation of 2 replays nothing
        assert (await admin.get(path)).json()["pending"] == 0
        stale = await admin.post(path, json={"expected": 2})
        assert stale.status_code == 409 and stale.json()["pending"] == 0
        # an entry the whole-DLQ replay sent is not replayed again on its own
        assert (await admin.post(f"/api/dlq/{topic}/0/1/replay")).status_code == 409
        assert len(await _on_topic(dc.kafka, topic)) == 3

        # audited: who, when, what
        log = (await admin.get("/api/audit", params={"action": "replay"})).json()["entries"]
        seen = {(e["target"], e["outcome"]) for e in log}
        assert {(f"{topic}.dlq/0/0", "done"), (f"{topic}.dlq/0/0", "refused_replayed_before"),
                (topic, "refused_count_changed"), (topic, "done"),
                (f"{topic}.dlq/0/1", "refused_replayed_before")} <= seen
        one = next(e for e in log if e["target"] == f"{topic}.dlq/0/0" and e["outcome"] == "done")
        assert one["user_name"] == "admin-token" and one["at"] and one["detail"]["event_id"] == ids[0]


async def test_a_viewer_may_inspect_but_not_replay(dlq_console: DlqConsole) -> None:
    dc, topic = dlq_console, dlq_console.topic
    await _dead_letter(dc.kafka, topic, 9)
    async with dc.admin() as admin:
        end = len(await _on_topic(dc.kafka, topic))
        pending = (await admin.get(f"/api/dlq/{topic}/replay")).json()["pending"]
        assert pending >= 1
    async with dc.client() as client:
        csrf = await _viewer(dc, client)
        inspected = await client.get(f"/api/dlq/{topic}/0/0")
        assert inspected.status_code == 200 and EMAIL not in inspected.text
        preview = await client.get(f"/api/dlq/{topic}/replay")
        assert preview.status_code == 200 and preview.json()["pending"] == pending
        # the page of one dead letter, and the prompts its script asks before a replay
        page = await client.get(f"/dead-letters/{topic}/0/0")
        assert page.status_code == 200 and 'id="dl-replay"' in page.text
        script = (await client.get("/static/console.js")).text
        assert 'window.confirm(t("dl.confirm_one", {topic: d.topic}))' in script
        assert 'window.confirm(t("dl.confirm_all", {n: n, topic: topic}))' in script
        assert '"dl.confirm_all": "Replay {n} dead letter(s) onto {topic}?"' in page.text
        headers = {"X-CSRF-Token": csrf}
        one = await client.post(f"/api/dlq/{topic}/0/0/replay", headers=headers)
        assert one.status_code == 403 and "may not replay" in one.text
        whole = await client.post(f"/api/dlq/{topic}/replay", headers=headers,
                                  json={"expected": pending})
        assert whole.status_code == 403 and "may not replay" in whole.text
        # a session's write without its CSRF token: refused before anything else
        assert (await client.post(f"/api/dlq/{topic}/replay",
                                  json={"expected": pending})).status_code == 403
    async with dc.admin() as admin:
        assert len(await _on_topic(dc.kafka, topic)) == end  # nothing replayed
        assert (await admin.get(f"/api/dlq/{topic}/replay")).json()["pending"] == pending
        log = (await admin.get("/api/audit", params={"action": "replay"})).json()["entries"]
        assert any(e["user_name"] == "vic" and e["outcome"] == "forbidden" for e in log)
