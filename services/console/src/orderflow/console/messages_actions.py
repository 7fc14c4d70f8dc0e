"""The order actions' messages (``orderflow.console.i18n`` registers them): the order page's
forms and the operators' actions on an order's timeline."""

from __future__ import annotations

# an audited action with its outcome -> its timeline summary (``worklists.activity_said``)
ACTION_SUMMARIES: dict[tuple[str, str], str] = {
    ("return", "published"): "act.tl_return",
    ("payment", "published"): "act.tl_payment",
    ("scan", "published"): "act.tl_scan",
    ("cancel", "requested"): "act.tl_cancel",
}
# audited actions the order's own events put on its timeline, so not shown twice: an order or a
# revision entered at the desk is ``order.received`` / ``order.revision-received`` naming its
# author (``domain``)
TOLD_BY_EVENTS: frozenset[tuple[str, str]] = frozenset({("desk_submit", "accepted")})

MESSAGES: dict[str, dict[str, str]] = {
    "act.title": {"en": "Act on the order", "zh-CN": "订单操作"},
    "act.change": {"en": "Change the order", "zh-CN": "变更订单"},
    "act.change_closed": {"en": "No change possible in this state", "zh-CN": "当前状态不可变更"},
    "act.cancel_title": {"en": "Cancel", "zh-CN": "取消订单"},
    "act.cancel": {"en": "Ask to cancel", "zh-CN": "申请取消"},
    "act.reason": {"en": "Reason", "zh-CN": "原因"},
    "act.return_title": {"en": "Return or exchange", "zh-CN": "退货或换货"},
    "act.resolution": {"en": "Resolution", "zh-CN": "处理方式"},
    "act.refund_kind": {"en": "refund", "zh-CN": "退款"},
    "act.exchange_kind": {"en": "exchange", "zh-CN": "换货"},
    "act.sku": {"en": "SKU", "zh-CN": "商品编码"},
    "act.can_return": {"en": "May come back", "zh-CN": "可退数量"},
    "act.quantity": {"en": "Quantity", "zh-CN": "数量"},
    "act.inspection": {"en": "Inspection", "zh-CN": "检验结果"},
    "act.restock": {"en": "restock", "zh-CN": "重新入库"},
    "act.scrap": {"en": "scrap", "zh-CN": "报废"},
    "act.refund": {"en": "Refund amount", "zh-CN": "退款金额"},
    "act.refund_max": {"en": "at most {amount}", "zh-CN": "最多 {amount}"},
    "act.nothing_dispatched": {"en": "Nothing dispatched yet", "zh-CN": "尚未发货"},
    "act.return": {"en": "Enter the return", "zh-CN": "登记退货"},
    "act.payment_title": {"en": "Record a payment", "zh-CN": "登记收款"},
    "act.amount": {"en": "Amount", "zh-CN": "金额"},
    "act.currency": {"en": "Currency", "zh-CN": "币种"},
    "act.reference": {"en": "Reference", "zh-CN": "付款参考号"},
    "act.payment": {"en": "Record the payment", "zh-CN": "登记收款"},
    "act.scan_title": {"en": "Record a carrier scan", "zh-CN": "手工登记物流扫描"},
    "act.shipment": {"en": "Shipment", "zh-CN": "包裹"},
    "act.no_shipments": {"en": "No shipment yet", "zh-CN": "暂无包裹"},
    "act.scan_status": {"en": "Status", "zh-CN": "状态"},
    "act.code": {"en": "Exception", "zh-CN": "异常类型"},
    "act.at": {"en": "Time", "zh-CN": "时间"},
    "act.location": {"en": "Location", "zh-CN": "地点"},
    "act.note": {"en": "Note", "zh-CN": "备注"},
    "act.scan": {"en": "Record the scan", "zh-CN": "登记扫描"},
    "act.done": {"en": "Sent: the outcome appears on the timeline", "zh-CN": "已提交：结果将显示在时间线上"},
    "act.failed": {"en": "Refused ({status}): {detail}", "zh-CN": "被拒绝（{status}）：{detail}"},
    "act.required": {"en": "Required", "zh-CN": "必填"},
    "act.invalid": {"en": "Not valid: {detail}", "zh-CN": "无效：{detail}"},
    "scan.in_transit": {"en": "in transit", "zh-CN": "运输中"},
    "scan.delivered": {"en": "delivered", "zh-CN": "已签收"},
    "scan.exception": {"en": "exception", "zh-CN": "异常"},
    "exc.damaged": {"en": "damaged", "zh-CN": "破损"},
    "exc.lost": {"en": "lost", "zh-CN": "丢失"},
    "exc.refused": {"en": "refused by the recipient", "zh-CN": "拒收"},
    "exc.address_unknown": {"en": "address unknown", "zh-CN": "地址不详"},
    "exc.recipient_unavailable": {"en": "recipient unavailable", "zh-CN": "收件人联系不上"},
    "exc.weather": {"en": "weather", "zh-CN": "天气原因"},
    "exc.carrier_exception": {"en": "other carrier problem", "zh-CN": "其他承运商问题"},
    "act.tl_return": {"en": "{user} entered return {rma_id} ({resolution}): {units}; refund "
                            "{refund} {currency}; reason: {reason}",
                      "zh-CN": "{user} 登记了退货 {rma_id}（{resolution}）：{units}；退款 {refund} "
                               "{currency}；原因：{reason}"},
    "act.tl_payment": {"en": "{user} recorded a payment of {amount} {currency} (reference "
                             "{reference})",
                       "zh-CN": "{user} 登记了收款 {amount} {currency}（参考号 {reference}）"},
    "act.tl_scan": {"en": "{user} entered a carrier scan of {shipment_id}: {status} {code} at "
                          "{location}",
                    "zh-CN": "{user} 手工登记了包裹 {shipment_id} 的扫描：{status} {code}，地点 "
                             "{location}"},
    "act.tl_cancel": {"en": "{user} asked to cancel: {reason}",
                      "zh-CN": "{user} 申请取消：{reason}"},
}
