"""Channel ``douyin``: a Douyin shop (抖店) order as the open platform's order-detail API
(``order.orderDetail``) returns it: the whole response, its ``data``, or the bare
``shop_order_detail`` (what connectors push). Amounts are integers in fen; times are Unix seconds;
consumer prices include VAT.

Mapping (README, "Douyin"):

- ``order_id`` (店铺订单号) → external id; ``update_time`` → revision; ``create_time`` → placed_at
  (China time).
- ``order_status``: 2 备货中 and 105 已支付 are orders to fulfil; 1/103 (not paid) are refused with
  ``order_not_paid``, 4/21/22/39 (cancelled, refunded) with ``order_cancelled``, 3/101/5 (already
  shipped or finished) with ``order_already_shipped``.
- ``sku_order_list[]`` (one 商品单 per SKU): ``code`` (商家编码; else ``out_sku_id``) → SKU,
  ``item_num`` → quantity, ``origin_amount`` (商品现价, per unit) → unit price, line discount =
  ``promotion_amount`` (shop + platform + creator discounts) minus ``modify_amount`` (a negative
  改价 lowers the price).
- ``post_amount`` + ``modify_post_amount`` → shipping fee; ``order_amount`` (订单金额: goods after
  discounts, plus shipping) → the stated total. Payment-side discounts (``promotion_pay_amount``,
  red packets) reduce what the buyer's payment method charged, not the order, and are left out.
- 收件人: ``post_receiver``, ``post_tel``, ``post_addr`` {``province``, ``city``, ``town``,
  ``street``: {``name``}, ``detail``}. The platform encrypts them (``encrypt_post_*``): the
  connector decrypts them (``order.batchDecrypt``) before pushing; an order with only encrypted
  收件人 fields is refused with ``recipient_encrypted``.
- customer: ``orderflow:<id>`` in the merchant's note (``seller_words``) binds a master-data
  customer; else ``douyin-<hash of doudian_open_id>``, named by the 收件人.
- ``pay_type`` 0 (货到付款) → ``cod``; otherwise paid on the platform → ``prepaid``.
- a red flag (``seller_remark_stars`` 5, 红旗) → priority rush; ``buyer_words`` → notes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from orderflow.channels import AdapterError, Channel, ChannelOrder
from orderflow.intake.adapters.reading import (
    china_time,
    epoch_seconds,
    fen_to_yuan,
    mapping,
    object_list,
    optional_mapping,
    text,
)

ORDERABLE = frozenset({2, 105})
NOT_PAID = frozenset({1, 103})
CANCELLED = frozenset({4, 21, 22, 39})
RUSH_FLAG = 5  # 红旗
_BOUND_CUSTOMER = re.compile(r"orderflow:(\S{1,64})", re.IGNORECASE)


def unwrap(payload: Any) -> Mapping[str, Any]:
    """The shop order, from the API response, its ``data``, or the bare order."""
    order = mapping(payload, None)
    if isinstance(order.get("data"), Mapping):
        order = order["data"]
    if isinstance(order.get("shop_order_detail"), Mapping):
        order = order["shop_order_detail"]
    return order


def to_canonical(payload: Any) -> ChannelOrder:
    order = unwrap(payload)
    order_id = text(order.get("order_id"), "order_id")
    if not order_id:
        raise AdapterError("a Douyin order needs its order_id (店铺订单号)", "order_id")
    _check_status(order.get("order_status"))
    created = epoch_seconds(order.get("create_time"), "create_time")
    updated = epoch_seconds(order["update_time"], "update_time") if order.get("update_time") else created
    data: dict[str, Any] = {
        "external_id": order_id,
        "placed_at": china_time(created),
        "revision": updated,
        "currency": "CNY",
        "lines": _lines(order.get("sku_order_list")),
        "shipping_fee": fen_to_yuan(_fen(order, "post_amount") + _fen(order, "modify_post_amount"),
                                    "post_amount"),
        "stated_total": fen_to_yuan(order.get("order_amount"), "order_amount"),
        "priority": "rush" if order.get("seller_remark_stars") == RUSH_FLAG else "normal",
        "payment_terms": "cod" if order.get("pay_type") == 0 else "prepaid",
        "notes": text(order.get("buyer_words"), "buyer_words"),
    }
    if data["payment_terms"] == "prepaid":  # paid on the platform at checkout
        data["amount_paid"] = data["stated_total"]
    receiver = text(order.get("post_receiver"), "post_receiver")
    data["customer"] = {"id": _customer_id(order), "name": receiver}
    address = _address(order, receiver)
    if address is not None:
        data["shipping_address"] = address
    return ChannelOrder(data, prices_include_tax=True)


def _check_status(status: Any) -> None:
    if isinstance(status, bool) or not isinstance(status, int):
        raise AdapterError("order_status must be the platform's status number", "order_status")
    if status in ORDERABLE:
        return
    if status in NOT_PAID:
        raise AdapterError(f"order_status {status}: the buyer has not paid yet", "order_status",
                           code="order_not_paid")
    if status in CANCELLED:
        raise AdapterError(f"order_status {status}: the order was cancelled or refunded",
                           "order_status", code="order_cancelled")
    raise AdapterError(f"order_status {status}: the order was already shipped or finished",
                       "order_status", code="order_already_shipped")


def _fen(source: Mapping[str, Any], name: str, where: str = "") -> int:
    value = source.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(f"{where}{name} must be a whole number of fen", f"{where}{name}")
    return value


def _lines(value: Any) -> list[dict[str, Any]]:
    lines = []
    for i, item in enumerate(object_list(value, "sku_order_list")):
        where = f"sku_order_list.{i}."
        sku = text(item.get("code"), f"{where}code") or text(item.get("out_sku_id"), f"{where}out_sku_id")
        discount = _fen(item, "promotion_amount", where) - _fen(item, "modify_amount", where)
        lines.append({
            "sku": sku,
            "quantity": item.get("item_num"),
            "unit_price": fen_to_yuan(item.get("origin_amount"), f"{where}origin_amount"),
            "discount": fen_to_yuan(discount, f"{where}promotion_amount"),
        })
    return lines


def _customer_id(order: Mapping[str, Any]) -> str:
    bound = _BOUND_CUSTOMER.search(text(order.get("seller_words"), "seller_words"))
    if bound:
        return bound.group(1)
    buyer = (text(order.get("doudian_open_id"), "doudian_open_id")
             or text(order.get("open_id"), "open_id") or text(order.get("user_id"), "user_id"))
    if not buyer:
        return ""
    return "douyin-" + hashlib.sha256(buyer.encode()).hexdigest()[:16]


def _address(order: Mapping[str, Any], receiver: str) -> dict[str, Any] | None:
    addr = optional_mapping(order.get("post_addr"), "post_addr")
    phone = text(order.get("post_tel"), "post_tel")
    detail = text(addr.get("detail"), "post_addr.detail")
    encrypted = [n for n in ("encrypt_post_tel", "encrypt_post_receiver") if order.get(n)]
    if addr.get("encrypt_detail"):
        encrypted.append("post_addr.encrypt_detail")
    if encrypted and not (phone and detail):
        raise AdapterError(
            "the 收件人 fields are encrypted (" + ", ".join(encrypted) + "): the connector must "
            "decrypt them with order.batchDecrypt before pushing", encrypted[0],
            code="recipient_encrypted")
    if not addr and not phone:
        return None

    def region(name: str) -> str:
        return text(optional_mapping(addr.get(name), f"post_addr.{name}").get("name"),
                    f"post_addr.{name}.name")

    street = region("street")
    result: dict[str, Any] = {
        "name": receiver, "country": "CN", "province": region("province"), "city": region("city"),
        "district": region("town"), "line1": f"{street} {detail}".strip() if street else detail,
    }
    if phone:
        result["phone"] = phone
    return result


CHANNEL = Channel(to_canonical, external_id_fields=("order_id", "shop_order_id"), per_store=True,
                  order_wrappers=("data", "shop_order_detail"), store_fields=("shop_id",))
