"""Message templates: one Jinja2 file per event kind and language (``templates/<lang>/<kind>.j2``),
each setting ``subject``, ``text`` (e-mail body, also sent in webhooks) and ``sms`` (short).

Filters are bound to the language: ``money`` (``¥1,234.50`` / ``CNY 1,234.50``), ``date``,
``datetime`` (in the configured time zone), ``reasons`` (rejection reasons in plain words),
``exception_text`` and ``delay_text`` (carrier codes in plain words)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from orderflow.notify.domain import LANGUAGES, Kind, Language

TEMPLATES = Path(__file__).parent

CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}

_GENERIC_REASON = {"en": "a detail of the order could not be accepted",
                   "zh-CN": "订单中有信息未能通过审核"}
REASON_PHRASES: dict[str, dict[str, str]] = {
    "quantity_not_positive": {"en": "a quantity must be a positive whole number",
                              "zh-CN": "商品数量必须是正整数"},
    "unknown_sku": {"en": "an item is not in our catalogue", "zh-CN": "有商品不在我们的商品目录中"},
    "inactive_sku": {"en": "an item is no longer sold", "zh-CN": "有商品已停售"},
    "total_mismatch": {"en": "the order total does not match the prices of its items",
                       "zh-CN": "订单总额与商品价格不符"},
    "missing_field": {"en": "a required detail is missing", "zh-CN": "订单缺少必填信息"},
    "wrong_type": {"en": "a detail of the order is not in the expected form",
                   "zh-CN": "订单中有信息格式不正确"},
    "invalid_value": {"en": "a detail of the order is not valid", "zh-CN": "订单中有信息无效"},
    "invalid_format": {"en": "a detail of the order is not in the expected form",
                       "zh-CN": "订单中有信息格式不正确"},
    "invalid_date": {"en": "a date on the order is not valid", "zh-CN": "订单中的日期无效"},
    "negative_amount": {"en": "an amount on the order is negative", "zh-CN": "订单中有金额为负数"},
    "too_large": {"en": "an amount or quantity on the order is larger than we can accept",
                  "zh-CN": "订单中有金额或数量超出可接受的范围"},
    "total_too_large": {"en": "the order's total is larger than we can accept",
                        "zh-CN": "订单总额超出可接受的范围"},
    "unknown_currency": {"en": "the order's currency is not accepted", "zh-CN": "不支持订单所用币种"},
    "duplicate_line": {"en": "an item appears twice on the order", "zh-CN": "同一商品在订单中重复出现"},
    "discount_exceeds_line": {"en": "a discount is larger than the amount of its item",
                              "zh-CN": "折扣金额超过了商品金额"},
    "unknown_channel": {"en": "the order could not be read from its sales channel",
                        "zh-CN": "无法读取销售渠道发来的订单"},
    "unreadable_payload": {"en": "the order could not be read from its sales channel",
                           "zh-CN": "无法读取销售渠道发来的订单"},
    "external_id_mismatch": {"en": "the order could not be read from its sales channel",
                             "zh-CN": "无法读取销售渠道发来的订单"},
    "blocked_customer": {"en": "we cannot accept orders on this account at the moment; "
                               "please contact your sales representative",
                         "zh-CN": "您的账户暂时无法下单，请联系您的销售代表"},
    # credit figures are never told: a neutral sentence for every credit reason
    "credit_limit": {"en": "the order could not be approved on your account's current terms; "
                           "please contact your sales representative",
                     "zh-CN": "按您账户当前的条件，该订单无法通过审批，请联系您的销售代表"},
    "overdue": {"en": "the order could not be approved on your account's current terms; "
                      "please contact your sales representative",
                "zh-CN": "按您账户当前的条件，该订单无法通过审批，请联系您的销售代表"},
    "price_deviation": {"en": "a price on the order differs from our price list",
                        "zh-CN": "订单中的价格与我们的价目表不符"},
    "promo_invalid": {"en": "the promotion code is not valid for this order",
                      "zh-CN": "该优惠码不适用于此订单"},
    "date_infeasible": {"en": "we cannot deliver by the requested date",
                        "zh-CN": "我们无法在您要求的日期前送达"},
    # cancellations and returns
    "already_dispatched": {"en": "the order has already left our warehouse; you can return it "
                                 "once it is delivered",
                           "zh-CN": "订单已从仓库发出，签收后可申请退货"},
    "not_dispatched": {"en": "nothing of this order has been shipped yet; you can cancel it instead",
                       "zh-CN": "该订单尚未发货，您可以直接取消订单"},
    "return_window_passed": {"en": "the return period for this order has ended",
                             "zh-CN": "该订单已超过退货期限"},
    "sku_not_returnable": {"en": "an item cannot be returned", "zh-CN": "有商品不支持退货"},
    "condition_not_accepted": {"en": "an item cannot be taken back in its condition",
                               "zh-CN": "有商品的状况不符合退货条件"},
    "more_than_shipped": {"en": "more units were asked back than were delivered",
                          "zh-CN": "申请退货的数量超过了已发货数量"},
    # changes
    "order_cancelled": {"en": "the order is cancelled", "zh-CN": "该订单已取消"},
    "order_rejected": {"en": "the order was not accepted", "zh-CN": "该订单未被接受"},
    "order_released": {"en": "the order is no longer being prepared",
                       "zh-CN": "该订单已不在备货中"},
    "change_in_progress": {"en": "an earlier change of the order is still being applied; please "
                                 "try again in a moment",
                           "zh-CN": "订单的上一次修改仍在处理中，请稍后再试"},
    "stale_revision": {"en": "a newer version of the order was already received",
                       "zh-CN": "已收到该订单更新的版本"},
    "insufficient_stock": {"en": "the extra items are not in stock; the order ships as it was",
                           "zh-CN": "新增的商品库存不足，订单将按原内容发货"},
    "customer_changed": {"en": "an order cannot move to another customer",
                         "zh-CN": "订单不能转给其他客户"},
    "currency_changed": {"en": "an order's currency cannot change", "zh-CN": "订单币种不能修改"},
    "manager_approval": {"en": "the change needs an approval we cannot give automatically; "
                               "please contact your sales representative",
                         "zh-CN": "该修改需要人工审批，请联系您的销售代表"},
    "prepayment_due": {"en": "the new total must be paid first", "zh-CN": "需先支付新的订单金额"},
}
CHANGE_PHRASES: dict[str, dict[str, str]] = {
    "line_added": {"en": "items added", "zh-CN": "新增商品"},
    "line_removed": {"en": "items removed", "zh-CN": "删除商品"},
    "quantity_increased": {"en": "quantities increased", "zh-CN": "增加数量"},
    "quantity_decreased": {"en": "quantities reduced", "zh-CN": "减少数量"},
    "price_changed": {"en": "prices updated", "zh-CN": "价格调整"},
    "shipping_address": {"en": "new delivery address", "zh-CN": "修改收货地址"},
    "requested_delivery_date": {"en": "new delivery date", "zh-CN": "修改送达日期"},
    "priority": {"en": "new priority", "zh-CN": "修改优先级"},
    "payment_terms": {"en": "new payment terms", "zh-CN": "修改付款条件"},
    "promo_code": {"en": "new promotion code", "zh-CN": "修改优惠码"},
    "shipping_fee": {"en": "new shipping fee", "zh-CN": "修改运费"},
}
_GENERIC_CHANGE = {"en": "order details updated", "zh-CN": "订单信息更新"}


def change_phrases(codes: Iterable[str], language: Language) -> list[str]:
    """What changed, in plain words, once each."""
    phrases: list[str] = []
    for code in codes:
        phrase = CHANGE_PHRASES.get(str(code), _GENERIC_CHANGE)[language]
        if phrase not in phrases:
            phrases.append(phrase)
    return phrases or [_GENERIC_CHANGE[language]]
EXCEPTION_PHRASES: dict[str, dict[str, str]] = {
    "damaged": {"en": "the parcel was damaged in transit; we will arrange a replacement or a refund",
                "zh-CN": "包裹在运输途中损坏，我们将为您安排补发或退款"},
    "lost": {"en": "the carrier lost the parcel; we will arrange a replacement or a refund",
             "zh-CN": "承运商遗失了包裹，我们将为您安排补发或退款"},
    "refused": {"en": "delivery was refused at the address", "zh-CN": "包裹在收货地址被拒收"},
    "address_unknown": {"en": "the carrier could not find the delivery address; "
                              "please reply to confirm it",
                        "zh-CN": "承运商无法找到收货地址，请回复确认地址"},
}
_GENERIC_EXCEPTION = {"en": "the carrier reported a problem with the delivery",
                      "zh-CN": "承运商报告配送出现问题"}
DELAY_PHRASES: dict[str, dict[str, str]] = {
    "weather": {"en": "bad weather on the route", "zh-CN": "运输途中天气恶劣"},
    "capacity": {"en": "the carrier is short of capacity", "zh-CN": "承运商运力不足"},
    "customs": {"en": "a customs check", "zh-CN": "海关查验"},
}
_GENERIC_DELAY = {"en": "a delay at the carrier", "zh-CN": "承运商运输延误"}
_LINE_FIELD = re.compile(r"(?:^|\.)lines\.(\d+)")


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    sms: str


class TemplateNotFound(LookupError):
    pass


def money(value: Any, currency: str | None, language: Language) -> str:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    code = (currency or "").upper()
    figure = f"{amount:,.2f}"
    if language == "zh-CN" and code in CURRENCY_SYMBOLS:
        return f"{CURRENCY_SYMBOLS[code]}{figure}"
    return f"{code} {figure}".strip()


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def format_date(value: Any, language: Language) -> str:
    if value in (None, ""):
        return ""
    day: date | None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    else:
        moment = _as_datetime(value)
        if moment is None:
            try:
                day = date.fromisoformat(str(value))
            except ValueError:
                return str(value)
        else:
            day = moment.date()
    if language == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return day.strftime("%d %b %Y").lstrip("0")


def format_datetime(value: Any, language: Language, tz: ZoneInfo) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return format_date(value, language)
    if moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return f"{format_date(moment.date(), language)} {moment:%H:%M}"


def reason_phrases(reasons: Iterable[Mapping[str, Any]], language: Language) -> list[str]:
    """Rejection reasons in plain words, once each, with the order line when there is one."""
    phrases: list[str] = []
    for reason in reasons:
        code = str(reason.get("code", ""))
        phrase = REASON_PHRASES.get(code, _GENERIC_REASON)[language]
        match = _LINE_FIELD.search(str(reason.get("field") or ""))
        if match:
            line = int(match.group(1)) + 1
            phrase = f"第{line}行：{phrase}" if language == "zh-CN" else f"line {line}: {phrase}"
        if phrase not in phrases:
            phrases.append(phrase)
    return phrases or [_GENERIC_REASON[language]]


def exception_text(code: str, language: Language) -> str:
    return EXCEPTION_PHRASES.get(code, _GENERIC_EXCEPTION)[language]


def delay_text(reason: str, language: Language) -> str:
    return DELAY_PHRASES.get(reason, _GENERIC_DELAY)[language]


_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _tidy(text: Any) -> str:
    lines = [line.rstrip() for line in str(text).strip().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines))


class Renderer:
    """Renders a notification's subject, text and SMS from its stored facts."""

    def __init__(self, *, sender_name: str = "OrderFlow", timezone: str = "Asia/Shanghai") -> None:
        self.sender_name = sender_name
        self.tz = ZoneInfo(timezone)
        self.environments = {lang: self._environment(lang) for lang in LANGUAGES}

    def _environment(self, language: Language) -> Environment:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES / language),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False,
                                         default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # shipped with the package: no stat of each template per render
        )
        env.filters["money"] = lambda value, currency: money(value, currency, language)
        env.filters["date"] = lambda value: format_date(value, language)
        env.filters["datetime"] = lambda value: format_datetime(value, language, self.tz)
        env.filters["reasons"] = lambda reasons: reason_phrases(reasons, language)
        env.filters["changes"] = lambda codes: change_phrases(codes, language)
        env.filters["exception_text"] = lambda code: exception_text(code, language)
        env.filters["delay_text"] = lambda reason: delay_text(reason, language)
        return env

    def render(self, kind: Kind, language: Language, context: Mapping[str, Any]) -> RenderedMessage:
        env = self.environments[language]
        template = env.get_template(f"{kind}.j2")
        module = template.make_module({**context, "sender": self.sender_name, "lang": language})
        return RenderedMessage(subject=_tidy(module.subject).replace("\n", " "),  # type: ignore[attr-defined]
                               text=_tidy(module.text) + "\n",  # type: ignore[attr-defined]
                               sms=_tidy(module.sms).replace("\n", " "))  # type: ignore[attr-defined]
