"""Every channel's adapter, on realistic samples shaped like the platform's documentation, and on
everything a payload can get wrong: no broker, no database."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

import pytest

from orderflow.connector.spreadsheet import read_order_sheet
from orderflow.contracts.order import CanonicalOrder
from orderflow.devstack.simulator import CHANNEL_FORMATS, Mix, generate_orders
from orderflow.intake import domain
from orderflow.intake.adapters import AdapterError, ChannelOrder, adapt, adapter_of

from .samples import SAMPLES, demo_catalogue, expected, sample

pytestmark = pytest.mark.unit
CATALOGUE = demo_catalogue()


def intake(channel: str, payload: Any) -> domain.Accepted | domain.Refused:
    """What intake makes of a payload, short of the database: adapter, schema, checks."""
    try:
        adapted = adapt(adapter_of(channel), payload)
    except AdapterError as exc:
        return domain.Refused((domain.Reason(code=exc.code, field=exc.field, message=str(exc)),))
    parsed = domain.parse_canonical(adapted.data)
    if isinstance(parsed, domain.Refused):
        return parsed
    return domain.check_order(parsed, CATALOGUE, prices_include_tax=adapted.prices_include_tax)


def accepted(channel: str, payload: Any) -> domain.Accepted:
    result = intake(channel, payload)
    assert isinstance(result, domain.Accepted), result
    return result


def as_expected(result: domain.Accepted) -> dict[str, Any]:
    return {"order": result.order.model_dump(mode="json"),
            "totals": result.totals.model_dump(mode="json")}


def codes(result: domain.Accepted | domain.Refused) -> set[str]:
    assert isinstance(result, domain.Refused), result
    return {r.code for r in result.reasons}


# --- the samples ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["shopify_orders_create", "shopify_orders_create_b2b_tax_excluded"])
def test_shopify_samples_normalise_to_the_expected_canonical_order(name: str) -> None:
    want = expected(name)
    result = accepted("shopify", sample(f"{name}.json"))
    assert as_expected(result) == {"order": want["order"], "totals": want["totals"]}


def test_shopify_tax_included_prices_become_net_prices_and_the_platforms_tax() -> None:
    result = accepted("shopify", sample("shopify_orders_create.json"))
    # Shopify's own tax lines say 91.32 + 16.11: the VAT contained in the prices paid
    assert result.totals.tax == domain.Decimal("107.43")
    assert result.totals.grand_total == domain.Decimal("1258.00")  # what the customer paid
    tea, lamp = result.order.lines
    assert (tea.unit_price, tea.discount) == (domain.Decimal("507.34"), domain.Decimal("0.00"))
    assert (lamp.unit_price, lamp.discount) == (domain.Decimal("141.59"), domain.Decimal("17.70"))
    assert result.order.priority == "rush" and result.order.customer.id == "C0004"


def test_douyin_sample_normalises_to_the_expected_canonical_order() -> None:
    want = expected("douyin_order_detail")
    result = accepted("douyin", sample("douyin_order_detail.json"))
    assert as_expected(result) == {"order": want["order"], "totals": want["totals"]}
    assert result.totals.grand_total == domain.Decimal("391.69")  # order_amount 39169 fen


def test_douyin_response_data_and_bare_order_read_the_same() -> None:
    response = sample("douyin_order_detail.json")
    whole = adapter_of("douyin")(response)
    assert adapter_of("douyin")(response["data"]) == whole
    assert adapter_of("douyin")(response["data"]["shop_order_detail"]) == whole


@pytest.mark.parametrize(("name", "channel"), [("order_sheet.csv", "csv"), ("order_sheet.xlsx", "xlsx")])
def test_order_sheets_normalise_to_the_expected_canonical_orders(name: str, channel: str) -> None:
    payloads = read_order_sheet(SAMPLES / name)
    want = expected(name.replace(".", "_"))
    assert [as_expected(accepted(channel, p)) for p in payloads] == \
        [{"order": w["order"], "totals": w["totals"]} for w in want]


def test_an_order_sheet_groups_continuation_rows_and_keeps_line_numbers() -> None:
    first, second = read_order_sheet(SAMPLES / "order_sheet.csv")
    assert first["order_number"] == "PO-2026-1120-001"
    assert [r["row"] for r in first["rows"]] == [2, 3]
    assert first["rows"][1]["order_number"] == "PO-2026-1120-001"
    assert [r["row"] for r in second["rows"]] == [4]


# --- what each platform can get wrong --------------------------------------------------------

@pytest.mark.parametrize(("status", "code"), [(1, "order_not_paid"), (103, "order_not_paid"),
                                              (4, "order_cancelled"), (21, "order_cancelled"),
                                              (3, "order_already_shipped"), ("2", "unreadable_payload")])
def test_douyin_orders_not_to_fulfil_are_refused_with_their_status(status: object, code: str) -> None:
    order = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    order["order_status"] = status
    assert codes(intake("douyin", order)) == {code}


def test_douyin_recipient_still_encrypted_is_refused() -> None:
    order = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    del order["post_tel"], order["post_addr"]["detail"]
    assert codes(intake("douyin", order)) == {"recipient_encrypted"}


def test_douyin_amounts_must_be_fen() -> None:
    order = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    order["sku_order_list"][0]["origin_amount"] = "60.68"
    result = intake("douyin", order)
    assert isinstance(result, domain.Refused)
    assert result.reasons[0].field == "sku_order_list.0.origin_amount"


def test_douyin_total_that_differs_is_refused_with_both_figures() -> None:
    order = sample("douyin_order_detail.json")["data"]["shop_order_detail"]
    order["order_amount"] = 39069
    result = intake("douyin", order)
    assert codes(result) == {"total_mismatch"}
    assert isinstance(result, domain.Refused)
    assert "390.69" in result.reasons[0].message and "391.69" in result.reasons[0].message


def test_shopify_edited_out_lines_cod_and_unbound_customers() -> None:
    order = sample("shopify_orders_create.json")
    order["line_items"][1]["current_quantity"] = 0
    order["current_total_price"] = "1118.00"  # 2 x 553.00 + 12.00
    order["payment_gateway_names"] = ["Cash on Delivery (COD)"]
    order["customer"]["tags"] = "wholesale"
    result = accepted("shopify", order)
    assert [line.sku for line in result.order.lines] == ["TEA-002"]
    assert result.order.payment_terms == "cod"
    assert result.order.customer.id == "shopify-7012345678901"


@pytest.mark.parametrize(("change", "code"), [
    (lambda o: o["line_items"][0].update(quantity=-1, current_quantity=-1), "quantity_not_positive"),
    (lambda o: o["line_items"][0].update(sku="NO-SUCH-SKU"), "unknown_sku"),
    (lambda o: o["line_items"][0].update(price=553.0), "wrong_type"),
    (lambda o: o.pop("shipping_address"), "missing_field"),
    (lambda o: o.update(current_total_price="1250.00"), "total_mismatch"),
    (lambda o: o.update(currency="RMB"), "unknown_currency"),
    (lambda o: o.update(created_at="yesterday"), "unreadable_payload"),
    (lambda o: o.update(line_items={"sku": "TEA-002"}), "unreadable_payload"),
])
def test_shopify_bad_orders_get_a_reason_code(change: Any, code: str) -> None:
    order = sample("shopify_orders_create.json")
    change(order)
    assert code in codes(intake("shopify", order))


def test_order_sheet_rows_that_contradict_each_other_are_refused() -> None:
    first, _ = read_order_sheet(SAMPLES / "order_sheet.csv")
    first["rows"][1]["customer_id"] = "C0008"
    result = intake("csv", first)
    assert codes(result) == {"conflicting_rows"}
    assert isinstance(result, domain.Refused) and "rows 2 and 3" in result.reasons[0].message


def test_order_sheet_quantity_typed_wrong_is_refused_on_its_line() -> None:
    first, _ = read_order_sheet(SAMPLES / "order_sheet.csv")
    first["rows"][1]["quantity"] = "ten"
    result = intake("csv", first)
    assert isinstance(result, domain.Refused)
    assert [(r.code, r.field) for r in result.reasons] == [("wrong_type", "lines.1.quantity")]


def test_order_sheets_saved_by_a_chinese_excel_and_their_mistakes(tmp_path: Any) -> None:
    gbk = tmp_path / "订单.csv"
    with gbk.open("w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["订单号", "客户编号", "商品编码", "数量", "单价"])
        writer.writerow(["PO-9", "C0001", "TEA-001", "1", "379.08"])
    (payload,) = read_order_sheet(gbk)
    assert payload["rows"][0]["sku"] == "TEA-001" and payload["order_number"] == "PO-9"

    no_sku = tmp_path / "no_sku.csv"
    no_sku.write_text("order_number,quantity\nPO-1,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the column"):
        read_order_sheet(no_sku)
    orphan = tmp_path / "orphan.csv"
    orphan.write_text("order_number,sku,quantity\n,TEA-001,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        read_order_sheet(orphan)


# --- never anything but an AdapterError ------------------------------------------------------

JUNK: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], {}, [None], {"a": None}]


def mutations(node: Any, depth: int = 0) -> Iterator[Any]:
    """Copies of ``node`` with one value replaced by junk or one key deleted, down to depth 4."""
    if depth > 4:
        return
    items: list[tuple[Any, Any]] = (list(node.items()) if isinstance(node, dict)
                                    else list(enumerate(node)) if isinstance(node, list) else [])
    for key, child in items:
        for junk in JUNK:
            copy = _shallow(node)
            copy[key] = junk
            yield copy
        if isinstance(node, dict):
            copy = _shallow(node)
            del copy[key]
            yield copy
        for mutated in mutations(child, depth + 1):
            copy = _shallow(node)
            copy[key] = mutated
            yield copy


def _shallow(node: Any) -> Any:
    return dict(node) if isinstance(node, dict) else list(node)


@pytest.mark.parametrize(("channel", "payload"), [
    ("shopify", sample("shopify_orders_create.json")),
    ("douyin", sample("douyin_order_detail.json")["data"]["shop_order_detail"]),
    ("csv", read_order_sheet(SAMPLES / "order_sheet.csv")[0]),
])
def test_adapters_raise_only_adapter_errors_whatever_the_payload(channel: str, payload: Any) -> None:
    tried = 0
    for mutated in [*JUNK, *mutations(payload)]:
        tried += 1
        try:
            adapted = adapt(adapter_of(channel), mutated)
        except AdapterError:
            continue
        assert isinstance(adapted, ChannelOrder)
        parsed = domain.parse_canonical(adapted.data)  # must not raise either
        if isinstance(parsed, CanonicalOrder):
            domain.check_order(parsed, CATALOGUE, prices_include_tax=adapted.prices_include_tax)
    assert tried > 500


# --- the simulator speaks every platform's format --------------------------------------------

@pytest.mark.parametrize("channel", sorted(CHANNEL_FORMATS))
def test_simulated_orders_of_every_channel_are_read_back_as_they_were_made(channel: str) -> None:
    orders = generate_orders(120, seed=11, channels=(channel,), prefix=f"T{channel}",
                             mix=Mix(bad=0.2, duplicate=0.0))
    good = [o for o in orders if o.kind != "bad"]
    bad = [o for o in orders if o.kind == "bad"]
    assert good and bad
    for simulated in good:
        result = accepted(channel, simulated.payload)
        assert result.order.external_id == simulated.external_id
        assert result.order.customer.id.startswith("C0")
        assert result.order.stated_total == result.totals.grand_total
        assert (result.order.priority == "rush") == (simulated.kind == "rush")
    for simulated in bad:
        assert isinstance(intake(channel, simulated.payload), domain.Refused), simulated.payload
