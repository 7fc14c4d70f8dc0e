"""The store is part of a marketplace order's identity (channel, store, external id): the
connector kit tells a push's store (Douyin's from its payload's ``shop_id``) and refuses a
marketplace push without one; intake's migration 0004 gives the orders it had the store the
operator names; and intake, one push at a time and set-based alike, keeps each store to its own
orders: an earlier order reached only by the store it was assigned, one without a store refused
to every store (``store_unassigned``)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from orderflow.connector import OrderPusher, StoreRefused, external_id_of, store_in, store_of
from orderflow.contracts.order import order_id_for
from orderflow.devstack import cli
from orderflow.devstack.catalogue import canonical_order
from orderflow.intake import domain
from orderflow.intake.adapters import adapt, adapter_of
from orderflow.intake.app import create_service
from orderflow.runtime.db import _alembic_config, make_engine, migrate
from orderflow.runtime.settings import KafkaSettings
from orderflow.testing.infra import Infra
from orderflow.testing.records import Schemas

from .samples import SAMPLES, sample
from .test_batch import Feed, batched, one_by_one, revised, state

VERSIONS = Path(create_service().migrations)
DOUYIN_SAMPLE = SAMPLES / "douyin_order_detail.json"


def migration_0004() -> ModuleType:
    path = next(VERSIONS.glob("0004_*.py"))
    spec = importlib.util.spec_from_file_location("intake_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the connector kit -------------------------------------------------------------------------

@pytest.mark.unit
def test_the_douyin_push_sample_is_read_where_intakes_adapter_reads_it() -> None:
    """The whole order-detail response (what ``orderflow push --channel douyin`` reads from the
    sample), its ``data`` and the bare order give the same external id and store."""
    response = sample("douyin_order_detail.json")
    adapted = adapt(adapter_of("douyin"), response).data["external_id"]
    for payload in (response, response["data"], response["data"]["shop_order_detail"]):
        assert external_id_of("douyin", payload) == adapted == "6948217736519034871"
        assert store_in("douyin", payload) == "77977"
        assert store_of("douyin", payload) == "77977"


@pytest.mark.unit
def test_a_pushs_store_is_the_connectors_else_the_douyin_shop_id() -> None:
    douyin = sample("douyin_order_detail.json")
    assert store_of("shopify", {"id": 1}, "shop-a") == "shop-a"
    assert store_of("douyin", douyin, "77977") == "77977"
    assert store_of("canonical", canonical_order("SO-1")) is None  # no stores: as before
    assert store_of("canonical", canonical_order("SO-1"), "north") == "north"
    refusals = [
        (("shopify", {"id": 1}, None), "store_missing"),
        (("douyin", {"order_id": "1"}, None), "store_missing"),
        (("douyin", douyin, "4463798"), "store_mismatch"),
        (("shopify", {"id": 1}, "shop:a"), "store_invalid"),
    ]
    for (channel, payload, store), code in refusals:
        with pytest.raises(StoreRefused) as refused:
            store_of(channel, payload, store)
        assert refused.value.code == code


@pytest.mark.unit
async def test_the_pusher_refuses_a_marketplace_order_without_its_store_before_pushing() -> None:
    pusher = OrderPusher(KafkaSettings(bootstrap_servers="127.0.0.1:9"))  # never started
    with pytest.raises(StoreRefused, match="names none") as refused:
        await pusher.push("shopify", {"id": 1001})
    assert refused.value.code == "store_missing"
    with pytest.raises(StoreRefused) as refused:
        await pusher.push_many([("canonical", "SO-1", canonical_order("SO-1")),
                                ("douyin", "1", sample("douyin_order_detail.json"), "4463798")])
    assert refused.value.code == "store_mismatch"


PUSHED: list[Any] = []


class _Pusher:
    """A pusher that only records what it was given."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    async def __aenter__(self) -> _Pusher:
        return self

    async def __aexit__(self, *_args: Any) -> None:
        pass

    async def push_many(self, orders: list[Any]) -> list[Any]:
        PUSHED.extend(orders)
        return list(orders)


@pytest.mark.unit
def test_orderflow_push_of_the_douyin_sample_and_of_a_shop_without_store(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("orderflow.connector.OrderPusher", _Pusher)
    monkeypatch.setattr(cli, "_kafka_from_state", lambda: None)
    PUSHED.clear()
    assert cli.main(["push", "--channel", "douyin", str(DOUYIN_SAMPLE)]) == 0
    ((channel, external_id, payload, store),) = PUSHED
    assert (channel, external_id, store) == ("douyin", "6948217736519034871", "77977")
    assert payload == sample("douyin_order_detail.json")

    shopify = tmp_path / "order.json"
    shopify.write_text(json.dumps(sample("shopify_orders_create.json")))
    PUSHED.clear()
    assert cli.main(["push", "--channel", "shopify", str(shopify)]) == 2
    assert "store_missing" in capsys.readouterr().err and not PUSHED
    assert cli.main(["push", "--channel", "shopify", "--store", "shop-a", str(shopify)]) == 0
    assert [(c, s) for c, _, _, s in PUSHED] == [("shopify", "shop-a")]


# --- which order a push is ---------------------------------------------------------------------

@pytest.mark.unit
def test_a_push_finds_its_stores_order_or_an_earlier_one_assigned_its_store() -> None:
    mine = domain.Identity.of("shopify", "1001", "shop-a")
    assert (mine.order_id, mine.legacy_id) == (order_id_for("shopify", "1001", "shop-a"),
                                               order_id_for("shopify", "1001"))

    def row(order_id: str, store: str) -> domain.KnownOrder:
        return domain.KnownOrder(order_id, 1, "received", "x", store)

    own = row(mine.order_id, "shop-a")
    assert domain.find_order(mine, {mine.order_id: own}) == (mine.order_id, own)
    assigned = row(mine.legacy_id, "shop-a")
    assert domain.find_order(mine, {mine.legacy_id: assigned}) == (mine.legacy_id, assigned)
    # another store's earlier order, or none: a new order under the store's id
    assert domain.find_order(mine, {mine.legacy_id: row(mine.legacy_id, "shop-b")}) == (
        mine.order_id, None)
    assert domain.find_order(mine, {}) == (mine.order_id, None)
    # an earlier order without a store is nobody's to change
    refused = domain.find_order(mine, {mine.legacy_id: row(mine.legacy_id, "")})
    assert isinstance(refused, domain.StoreRefusal)
    assert refused.order_id == mine.order_id  # rejected under the store's id, which none has
    reasons = refused.refused.reasons
    assert [(r.code, r.field) for r in reasons] == [("store_unassigned", "store")]
    assert domain.LEGACY_STORES_VARIABLE in reasons[0].message
    # a push without a store (a channel without stores) is as before; never a store's order
    plain = domain.Identity.of("canonical", "SO-1", None)
    assert plain.ids == (order_id_for("canonical", "SO-1"),)
    assert domain.find_order(plain, {}) == (plain.order_id, None)
    refused = domain.find_order(plain, {plain.order_id: row(plain.order_id, "north")})
    assert isinstance(refused, domain.StoreRefusal)
    assert refused.refused.reasons[0].code == "store_missing"
    assert refused.order_id == order_id_for("canonical", "SO-1", "")  # never that order's id


# --- the migration and the handlers, against the real PostgreSQL -------------------------------

@pytest.mark.unit
def test_the_legacy_stores_variable_is_checked() -> None:
    legacy_stores = migration_0004().legacy_stores
    assert legacy_stores(None) == {} == legacy_stores(" ")
    assert legacy_stores('{"shopify": "shop-a", "douyin": "4463798"}') == {
        "shopify": "shop-a", "douyin": "4463798"}
    for bad in ("{", '["shop-a"]', '{"shopify": ""}', '{"shopify": 7}', '{"shopify": "a:b"}'):
        with pytest.raises(ValueError, match="ORDERFLOW_INTAKE_LEGACY_STORES"):
            legacy_stores(bad)


SHOPIFY_NUMBER = "1001"
DOUYIN_UNASSIGNED = "6900000000000000555"
CANONICAL = "SO-LEGACY"


def shopify(number: str, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = sample("shopify_orders_create.json")
    order["id"] = int(number)
    order.update(changes)
    return order


def revision(channel: str, payload: Any) -> int:
    return int(adapt(adapter_of(channel), payload).data["revision"])


def douyin(number: str, **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    order["order_id"] = number
    order.update(changes)
    return order


class LegacySchemas(Schemas):
    """Schemas migrated as far as 0003, with orders received before stores counted, then to the
    newest revision with ``ORDERFLOW_INTAKE_LEGACY_STORES`` set as given."""

    async def make_legacy(self, stores: str | None, monkeypatch: pytest.MonkeyPatch) -> AsyncEngine:
        name = f"{self.prefix}_{uuid.uuid4().hex[:10]}"
        engine = make_engine(self.settings, name)
        self.made.append((name, engine))
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
            await conn.execute(sa.text(f'SET LOCAL search_path TO "{name}"'))
            await conn.run_sync(lambda sync: command.upgrade(
                _alembic_config(sync, name, VERSIONS), "intake_0003"))
            for channel, number in (("shopify", SHOPIFY_NUMBER), ("douyin", DOUYIN_UNASSIGNED),
                                    ("canonical", CANONICAL)):
                await conn.execute(sa.text(
                    "INSERT INTO intake_orders (order_id, channel, external_id, revision, status, "
                    "payload_sha256) VALUES (:o, :c, :e, 1, 'received', 'earlier')"),
                    {"o": order_id_for(channel, number), "c": channel, "e": number})
        if stores is None:
            monkeypatch.delenv("ORDERFLOW_INTAKE_LEGACY_STORES", raising=False)
        else:
            monkeypatch.setenv("ORDERFLOW_INTAKE_LEGACY_STORES", stores)
        await migrate(engine, name, VERSIONS)
        return engine


@pytest.fixture
async def legacy(infra: Infra) -> AsyncIterator[LegacySchemas]:
    schemas = LegacySchemas(infra.database_url, "intake")
    try:
        yield schemas
    finally:
        await schemas.drop()


@pytest.mark.service
async def test_the_migration_gives_earlier_orders_the_store_the_operator_names(
        legacy: LegacySchemas, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await legacy.make_legacy('{"shopify": "shop-a", "amazon": "nowhere"}', monkeypatch)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(
            "SELECT order_id, channel, store FROM intake_orders ORDER BY channel"))).all()
    assert [tuple(r) for r in rows] == [  # every order keeps its id
        (order_id_for("canonical", CANONICAL), "canonical", ""),
        (order_id_for("douyin", DOUYIN_UNASSIGNED), "douyin", ""),
        (order_id_for("shopify", SHOPIFY_NUMBER), "shopify", "shop-a")]
    insert = sa.text("INSERT INTO intake_orders (order_id, channel, external_id, store, revision, "
                     "status, payload_sha256) VALUES (:o, 'shopify', :e, :s, 1, 'received', 'x')")
    async with engine.begin() as conn:  # one order per (channel, store, external id)
        await conn.execute(insert, {"o": "another-shop", "e": SHOPIFY_NUMBER, "s": "shop-b"})
    with pytest.raises(IntegrityError, match="intake_orders_channel_store_external_id_key"):
        async with engine.begin() as conn:
            await conn.execute(insert, {"o": "same-shop", "e": SHOPIFY_NUMBER, "s": "shop-a"})


@pytest.mark.service
async def test_each_store_reaches_its_own_orders_one_push_at_a_time_and_set_based_alike(
        legacy: LegacySchemas, monkeypatch: pytest.MonkeyPatch) -> None:
    """Earlier orders (before migration 0004): shopify 1001 assigned shop-a, a douyin order and a
    canonical one with no store. Then one run of pushes: the same outcome either way."""
    stores = '{"shopify": "shop-a"}'
    engines = [await legacy.make_legacy(stores, monkeypatch) for _ in range(2)]
    feed = Feed()
    products = feed.products()
    first = shopify(SHOPIFY_NUMBER)
    edited = shopify(SHOPIFY_NUMBER, updated_at="2026-11-20T11:02:00+08:00",
                     current_total_price="705.00")
    edited["line_items"][0]["current_quantity"] = 1
    no_shop = douyin("6900000000000000558")
    del no_shop["shop_id"]
    run = [
        feed.push("shopify", SHOPIFY_NUMBER, first, "shop-a"),   # its assigned earlier order
        feed.push("shopify", SHOPIFY_NUMBER, first, "shop-b"),   # shop B's own, new
        feed.push("shopify", SHOPIFY_NUMBER, edited, "shop-b"),  # ... and its revision
        feed.push("douyin", DOUYIN_UNASSIGNED, douyin(DOUYIN_UNASSIGNED)),  # store_unassigned
        feed.push("douyin", "6900000000000000556", douyin("6900000000000000556")),  # shop_id's
        feed.push("douyin", "6900000000000000557", douyin("6900000000000000557"), "4463798"),
        feed.push("douyin", "6900000000000000558", no_shop),     # no store anywhere
        feed.push("shopify", "2002", shopify("2002")),           # no store
        feed.push("canonical", CANONICAL, revised(canonical_order(CANONICAL), 2)),
        feed.push("shopify", SHOPIFY_NUMBER, first, "shop-a"),   # the same again: a duplicate
    ]
    fast, slow = batched(engines[0]), one_by_one(engines[1])
    for processor in (fast, slow):
        await processor.process(products, None)
        await processor.process(run, None)
    got, want = await state(engines[0]), await state(engines[1])
    assert got == want

    a_legacy = order_id_for("shopify", SHOPIFY_NUMBER)
    b_own = order_id_for("shopify", SHOPIFY_NUMBER, "shop-b")
    unassigned = order_id_for("douyin", DOUYIN_UNASSIGNED, "77977")
    by_shop_id = order_id_for("douyin", "6900000000000000556", "77977")
    mismatch = order_id_for("douyin", "6900000000000000557", "4463798")
    missing = [order_id_for("douyin", "6900000000000000558", ""), order_id_for("shopify", "2002", "")]
    canonical = order_id_for("canonical", CANONICAL)
    published = [(json.loads(value)["order_id"], event_type)
                 for _, _, value, _, event_type in got["outbox"]]
    assert published == [
        (a_legacy, "OrderRevisionReceived"), (a_legacy, "OrderChangeRequested"),
        (b_own, "OrderReceived"),
        (b_own, "OrderRevisionReceived"), (b_own, "OrderChangeRequested"),
        (unassigned, "OrderRejected"),
        (by_shop_id, "OrderReceived"),
        (mismatch, "OrderRejected"),
        (missing[0], "OrderRejected"), (missing[1], "OrderRejected"),
        (canonical, "OrderRevisionReceived"), (canonical, "OrderChangeRequested"),
    ]
    rejections = {json.loads(value)["order_id"]: json.loads(value)["reasons"]
                  for _, _, value, _, event_type in got["outbox"] if event_type == "OrderRejected"}
    assert {oid: [(r["code"], r["field"]) for r in reasons]
            for oid, reasons in rejections.items()} == {
        unassigned: [("store_unassigned", "store")], mismatch: [("store_mismatch", "store")],
        missing[0]: [("store_missing", "store")], missing[1]: [("store_missing", "store")]}
    assert "ORDERFLOW_INTAKE_LEGACY_STORES" in rejections[unassigned][0]["message"]
    # shop A's earlier order took shop A's revision only; shop B's order is its own row
    rows = {r[0]: (r[1], r[2], r[3], r[4]) for r in got["orders"]}
    assert rows == {
        a_legacy: ("shopify", SHOPIFY_NUMBER, "shop-a", revision("shopify", first)),
        b_own: ("shopify", SHOPIFY_NUMBER, "shop-b", revision("shopify", edited)),
        order_id_for("douyin", DOUYIN_UNASSIGNED): ("douyin", DOUYIN_UNASSIGNED, "", 1),
        by_shop_id: ("douyin", "6900000000000000556", "77977",
                     douyin("6900000000000000556")["update_time"]),
        canonical: ("canonical", CANONICAL, "", 2),
    }
