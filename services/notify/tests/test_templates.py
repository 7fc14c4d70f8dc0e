"""Every message kind renders in both languages with the order's facts."""

from __future__ import annotations

from typing import Any

import pytest

from orderflow.notify import domain
from orderflow.notify.templates import Renderer, format_date, money, reason_phrases

pytestmark = pytest.mark.unit

ORDER: dict[str, Any] = {
    "order_id": "0f3c", "external_id": "SO-778", "channel": "shopify",
    "placed_at": "2026-11-20T10:00:00+08:00", "currency": "CNY",
    "lines": [{"sku": "TEA-001", "name": "西湖龙井", "quantity": 2, "unit_price": "1200.00",
               "line_total": "2400.00"},
              {"sku": "CUP-002", "name": "", "quantity": 1, "unit_price": "35.50", "line_total": "35.50"}],
    "totals": {"subtotal": "2435.50", "discount": "0.00", "tax": "219.20", "shipping": "10.00",
               "grand_total": "2664.70"},
    "requested_delivery_date": "2026-11-28", "payment_terms": "prepaid",
}
SHIPMENT = {"shipment_id": "SH-1", "carrier": "SF", "service": "express", "tracking_number": "SF1234567",
            "tracking_url": "https://track.example/SF1234567", "dispatched_at": "2026-11-21T02:00:00+00:00",
            "promised_date": "2026-11-23", "lines": [{"sku": "TEA-001", "name": "西湖龙井", "quantity": 2}]}
EVENTS: dict[str, dict[str, Any]] = {
    "order_received": {},
    "order_approved": {},
    "order_rejected": {"stage": "intake", "reasons": [{"code": "unknown_sku", "field": "lines.1.sku"}]},
    "order_held": {"notice": "payment_due", "amount_due": "2664.70", "currency": "CNY"},
    "stock_backordered": {"short_lines": [{"sku": "TEA-001", "name": "西湖龙井", "ordered": 2,
                                           "reserved": 0, "short": 2}],
                          "expected_date": "2026-12-01"},
    "shipment_dispatched": {"shipments": [SHIPMENT], "shipment_count": 1},
    "shipment_delayed": {"shipment_id": "SH-1", "reason": "weather", "promised_date": "2026-11-23",
                         "expected_date": "2026-11-26", "tracking_number": "SF1234567",
                         "tracking_url": "https://track.example/SF1234567"},
    "shipment_delivered": {"shipment_id": "SH-1", "delivered_at": "2026-11-23T06:30:00+00:00",
                           "on_time": True, "order_delivered": True},
    "shipment_exception": {"shipment_id": "SH-1", "carrier": "SF", "code": "damaged",
                           "tracking_number": "SF1234567", "tracking_url": "https://track.example/SF1234567"},
    "order_cancelled": {"reason": "changed my mind", "requested_by": "customer"},
    "order_cancel_refused": {"reasons": [{"code": "already_dispatched", "field": None}],
                             "shipment_ids": ["SH-1"]},
    "return_approved": {"rma_id": "RMA-9", "resolution": "refund", "carrier": "SF",
                        "tracking_number": "SFR000000000042", "refund_amount": "1308.00",
                        "currency": "CNY", "lines": [{"sku": "TEA-001", "quantity": 1}]},
    "return_refused": {"rma_id": "RMA-9", "reasons": [{"code": "return_window_passed",
                                                      "field": None}]},
    "refund_issued": {"rma_id": "RMA-9", "amount": "1308.00", "currency": "CNY",
                      "exchange_order": None},
    "order_changed": {"changes": ["quantity_increased", "shipping_address"], "revision": 2,
                      "ship_to": "Zhejiang Hangzhou Wensan Road 1",
                      "requested_delivery_date": None},
    "order_change_rejected": {"revision": 2, "stage": "logistics",
                              "reasons": [{"code": "already_dispatched", "field": None}]},
}
# what each kind must say, in each language
EXPECTED: dict[tuple[str, str], list[str]] = {
    ("order_received", "en"): ["received your order SO-778", "西湖龙井 (TEA-001) x 2", "CNY 2,400.00",
                               "Total: CNY 2,664.70", "28 Nov 2026", "Dear 王芳"],
    ("order_received", "zh-CN"): ["我们已收到您的订单 SO-778", "西湖龙井（TEA-001）× 2", "¥2,400.00",
                                  "合计：¥2,664.70", "2026年11月28日", "尊敬的王芳"],
    ("order_approved", "en"): ["order SO-778 is confirmed", "Total: CNY 2,664.70"],
    ("order_approved", "zh-CN"): ["订单 SO-778 已确认", "合计：¥2,664.70"],
    ("order_rejected", "en"): ["could not accept your order SO-778",
                               "line 2: an item is not in our catalogue"],
    ("order_rejected", "zh-CN"): ["未能受理", "第2行：有商品不在我们的商品目录中"],
    ("order_held", "en"): ["Payment needed", "payment of CNY 2,664.70"],
    ("order_held", "zh-CN"): ["待付款", "¥2,664.70"],
    ("stock_backordered", "en"): ["backorder", "2 of 2 to follow", "1 Dec 2026"],
    ("stock_backordered", "zh-CN"): ["缺货", "待补 2 件", "2026年12月1日"],
    ("shipment_dispatched", "en"): ["on its way", "SF (express)", "SF1234567",
                                    "https://track.example/SF1234567", "23 Nov 2026"],
    ("shipment_dispatched", "zh-CN"): ["已发货", "承运商：SF", "运单号：SF1234567", "2026年11月23日"],
    ("shipment_delayed", "en"): ["later than promised", "bad weather", "26 Nov 2026", "SF1234567"],
    ("shipment_delayed", "zh-CN"): ["延迟送达", "天气恶劣", "2026年11月26日"],
    ("shipment_delivered", "en"): ["has been delivered", "23 Nov 2026 14:30"],
    ("shipment_delivered", "zh-CN"): ["已送达", "2026年11月23日 14:30"],
    ("shipment_exception", "en"): ["problem with the delivery", "damaged in transit", "SF1234567"],
    ("shipment_exception", "zh-CN"): ["配送异常", "包裹在运输途中损坏", "SF1234567"],
    ("order_cancelled", "en"): ["is cancelled", "Nothing of it will be shipped"],
    ("order_cancelled", "zh-CN"): ["已取消", "不会发货"],
    ("order_cancel_refused", "en"): ["could not be cancelled", "already left our warehouse"],
    ("order_cancel_refused", "zh-CN"): ["无法取消", "已从仓库发出"],
    ("return_approved", "en"): ["RMA-9", "is approved", "SFR000000000042", "CNY 1,308.00"],
    ("return_approved", "zh-CN"): ["RMA-9", "已批准", "SFR000000000042", "¥1,308.00"],
    ("return_refused", "en"): ["RMA-9", "return period for this order has ended"],
    ("return_refused", "zh-CN"): ["RMA-9", "已超过退货期限"],
    ("refund_issued", "en"): ["RMA-9", "refund", "CNY 1,308.00"],
    ("refund_issued", "zh-CN"): ["RMA-9", "退款", "¥1,308.00"],
    ("order_changed", "en"): ["has been changed", "quantities increased", "new delivery address"],
    ("order_changed", "zh-CN"): ["已修改", "增加数量", "修改收货地址", "Wensan Road"],
    ("order_change_rejected", "en"): ["could not be changed", "already left our warehouse",
                                      "stands as it was"],
    ("order_change_rejected", "zh-CN"): ["无法修改", "已从仓库发出"],
}

renderer = Renderer(sender_name="TeaHouse", timezone="Asia/Shanghai")


@pytest.mark.parametrize("language", domain.LANGUAGES)
@pytest.mark.parametrize("kind", domain.KINDS)
def test_every_kind_renders_in_every_language(kind: domain.Kind, language: domain.Language) -> None:
    message = renderer.render(kind, language, {"order": ORDER, "customer_name": "王芳",
                                               "event": EVENTS[kind]})
    whole = "\n".join([message.subject, message.text, message.sms])
    for expected in EXPECTED[(kind, language)]:
        assert expected in whole, f"{expected!r} missing from {kind}/{language}:\n{whole}"
    assert "SO-778" in message.subject and "SO-778" in message.sms
    assert "None" not in whole and "\n\n\n" not in message.text
    assert "TeaHouse" in message.text and "TeaHouse" in message.sms
    assert "\n" not in message.subject
    if language == "en":
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in whole.replace("西湖龙井", "").replace("王芳", ""))


def test_an_internal_hold_is_a_neutral_review_notice() -> None:
    for language in domain.LANGUAGES:
        message = renderer.render("order_held", language, {
            "order": ORDER, "customer_name": "", "event": {"notice": "under_review", "amount_due": None,
                                                           "currency": None}})
        text = message.text.lower()
        assert "credit" not in text and "信用" not in text
        assert ("being reviewed" in text) or ("审核" in text)
    anonymous = renderer.render("order_held", "en", {
        "order": ORDER, "customer_name": "",
        "event": {"notice": "under_review", "amount_due": None, "currency": None}})
    assert anonymous.text.startswith("Dear customer,")


def test_several_shipments_are_told_in_one_message() -> None:
    second = {**SHIPMENT, "shipment_id": "SH-2", "carrier": "JD", "service": "",
              "tracking_number": "JD99", "tracking_url": "https://track.example/JD99"}
    message = renderer.render("shipment_dispatched", "en", {
        "order": ORDER, "customer_name": "Anna",
        "event": {"shipments": [SHIPMENT, second], "shipment_count": 3}})
    assert message.subject == "2 shipments of your order SO-778 are on the way"
    assert "2 of the 3 shipments" in message.text
    assert "Shipment 1:" in message.text and "Shipment 2:" in message.text
    assert "SF1234567" in message.sms and "JD99" in message.sms


def test_a_message_for_an_order_notify_never_saw_received_still_renders() -> None:
    bare = {"order_id": "0f3c", "external_id": "", "channel": None, "placed_at": None, "currency": None,
            "lines": [], "totals": None, "requested_delivery_date": None, "payment_terms": None}
    message = renderer.render("order_rejected", "zh-CN", {
        "order": bare, "customer_name": "", "event": {"stage": "intake", "reasons": []}})
    assert "0f3c" in message.subject and "订单中有信息未能通过审核" in message.text


@pytest.mark.parametrize(("value", "currency", "language", "expected"), [
    ("1234.5", "CNY", "zh-CN", "¥1,234.50"), ("1234.5", "CNY", "en", "CNY 1,234.50"),
    ("0", "USD", "zh-CN", "$0.00"), ("10", "XYZ", "zh-CN", "XYZ 10.00"),
])
def test_money_is_written_for_the_reader(value: str, currency: str, language: domain.Language,
                                         expected: str) -> None:
    assert money(value, currency, language) == expected


def test_dates_are_written_for_the_reader() -> None:
    assert format_date("2026-03-04", "zh-CN") == "2026年3月4日"
    assert format_date("2026-03-04", "en") == "4 Mar 2026"
    assert format_date(None, "en") == ""


def test_reasons_are_plain_words_without_repeats_or_credit_figures() -> None:
    phrases = reason_phrases([{"code": "credit_limit"}, {"code": "overdue"}, {"code": "something_new"}], "en")
    assert len(phrases) == 2
    assert "sales representative" in phrases[0] and "limit" not in phrases[0]
    assert phrases[1] == "a detail of the order could not be accepted"
