"""The console's two languages, English (``en``) and Simplified Chinese (``zh-CN``): one catalogue
of message ids, each with its text in both, and the formatting of dates, money and numbers (Babel:
CLDR's patterns for each language; the browser formats with ``Intl``, the same data).

Translation happens in rendering only: the JSON API keeps codes, ISO dates and decimal strings.
The templates call ``t("id")``; ``console.js`` gets the chosen language's catalogue embedded in
the page (``catalogue``) and calls ``t("id")`` with the same ids. Texts take named values in
braces (``{order}``); a list value is a list of reason codes, each shown by its text (``en``
keeps the codes themselves, as the timeline's English summaries always did). A message id
without an entry, and a reason code without a text, show as themselves, never as an error."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import babel.dates
import babel.numbers

from orderflow.console import (
    messages_actions,
    messages_approvals,
    messages_desk,
    messages_events,
    messages_rework,
    messages_worklists,
)

LANGS = ("en", "zh-CN")
DEFAULT_LANG = "en"
LANG_COOKIE = "orderflow_lang"
# what the language switch shows for each language (in that language)
LANG_NAMES = {"en": "English", "zh-CN": "中文"}

_STATES = {
    "submitted": "已提交", "received": "已接收", "held": "暂扣", "approved": "已批准",
    "backordered": "缺货待补", "reserved": "已预留", "dispatched": "已发货", "delivered": "已送达",
    "rejected": "已拒绝", "cancelled": "已取消", "returned": "已退货",
}
_KINDS = {
    "held": ("held", "暂扣"), "backordered": ("backordered", "缺货待补"),
    "delayed": ("delayed", "延误"), "carrier_exception": ("carrier exception", "承运商异常"),
    "dlq": ("dead letters", "死信"), "outbox": ("outbox quarantine", "发件箱隔离"),
}
# reason codes of intake (refusals), review (holds), inventory and logistics (delays, carrier
# exceptions, refusals) and of dead letters
_REASONS: dict[str, tuple[str, str]] = {
    # intake
    "unknown_channel": ("unknown sales channel", "未知销售渠道"),
    "external_id_mismatch": ("external id does not match the payload", "外部单号与内容不符"),
    "quantity_not_positive": ("quantity not positive", "数量不是正数"),
    "negative_amount": ("negative amount", "金额为负"),
    "wrong_type": ("field of the wrong type", "字段类型错误"),
    "unknown_currency": ("unknown currency", "未知币种"),
    "duplicate_line": ("SKU on two lines", "同一 SKU 出现在两行"),
    "unknown_sku": ("unknown SKU", "未知 SKU"),
    "inactive_sku": ("SKU no longer sold", "SKU 已停售"),
    "discount_exceeds_line": ("discount above the line amount", "折扣超过行金额"),
    "total_too_large": ("total too large", "总额过大"),
    "total_mismatch": ("stated total differs from the lines", "申报总额与明细不符"),
    "store_missing": ("no store named", "未指明店铺"),
    "store_mismatch": ("push and payload name different stores", "推送与内容的店铺不一致"),
    "store_unassigned": ("store not assigned to a channel", "店铺未分配渠道"),
    "too_many": ("too many lines", "行数过多"),
    "conflicting_rows": ("rows of one order conflict", "同一订单的行互相矛盾"),
    "order_not_paid": ("order not paid", "订单未付款"),
    "order_cancelled": ("order cancelled", "订单已取消"),
    "order_already_shipped": ("order already shipped", "订单已发货"),
    "recipient_encrypted": ("recipient encrypted by the marketplace", "收件人信息被平台加密"),
    # review
    "credit_limit": ("credit limit exceeded", "超出信用额度"),
    "overdue": ("overdue invoices", "存在逾期账款"),
    "prepayment_due": ("prepayment due", "需预付款"),
    "price_deviation": ("price differs from the price list", "价格偏离价目表"),
    "promo_invalid": ("promotion not valid", "促销无效"),
    "date_infeasible": ("requested date not feasible", "要求日期无法满足"),
    "manager_approval": ("needs a manager's approval", "需经理审批"),
    "blocked_customer": ("customer blocked", "客户已冻结"),
    "rejected_by_reviewer": ("rejected by a reviewer", "审核员拒绝"),
    # inventory and logistics
    "already_dispatched": ("already dispatched", "已发货"),
    "not_picked_up": ("not picked up", "未揽收"),
    "carrier_exception": ("carrier exception", "承运商异常"),
    "not_out_for_delivery_on_promised_day": ("not out for delivery on the promised day",
                                             "承诺日未派送"),
    "promised_date_missed": ("promised date missed", "错过承诺日期"),
    "no_carrier": ("no carrier can take it", "无可用承运商"),
    "damaged": ("damaged", "破损"),
    "lost": ("lost", "遗失"),
    # dead letters
    "unprocessable": ("message could not be applied", "消息无法处理"),
    "notification_failed": ("notification failed", "通知发送失败"),
}

MESSAGES: dict[str, dict[str, str]] = {
    # page frame
    "app.title": {"en": "OrderFlow console", "zh-CN": "OrderFlow 控制台"},
    "nav.dashboard": {"en": "Dashboard", "zh-CN": "仪表板"},
    "nav.orders": {"en": "Orders", "zh-CN": "订单"},
    "nav.exceptions": {"en": "Exceptions", "zh-CN": "异常"},
    "nav.reports": {"en": "Reports", "zh-CN": "报表"},
    "page.login": {"en": "Sign in", "zh-CN": "登录"},
    "page.order": {"en": "Order", "zh-CN": "订单"},
    "page.dead_letter": {"en": "Dead letter", "zh-CN": "死信"},
    "frame.live": {"en": "refreshed every 2 s", "zh-CN": "每 2 秒刷新"},
    "frame.sign_out": {"en": "Sign out", "zh-CN": "退出登录"},
    "frame.language": {"en": "Language", "zh-CN": "语言"},
    "role.viewer": {"en": "viewer", "zh-CN": "查看者"},
    "role.clerk": {"en": "clerk", "zh-CN": "跟单员"},
    "role.reviewer": {"en": "reviewer", "zh-CN": "审核员"},
    "role.director": {"en": "director", "zh-CN": "主管"},
    "role.admin": {"en": "admin", "zh-CN": "管理员"},
    # sign-in
    "login.intro": {"en": "Sign in to watch the topics, find any order, work the exception "
                          "queue and read the reports.",
                    "zh-CN": "登录后可查看主题、查找任意订单、处理异常队列并阅读报表。"},
    "login.user": {"en": "User", "zh-CN": "用户名"},
    "login.password": {"en": "Password", "zh-CN": "密码"},
    "login.submit": {"en": "Sign in", "zh-CN": "登录"},
    "login.expired": {"en": "The form expired; please sign in again.",
                      "zh-CN": "表单已过期，请重新登录。"},
    "login.wrong": {"en": "Unknown user or wrong password.", "zh-CN": "用户不存在或密码错误。"},
    "login.not_signed_in": {"en": "You are not signed in.", "zh-CN": "您尚未登录。"},
    # dashboard
    "dash.orders": {"en": "Orders", "zh-CN": "订单数"},
    "dash.last_hour": {"en": "Received, last hour", "zh-CN": "近一小时接收"},
    "dash.open_exceptions": {"en": "Open exceptions", "zh-CN": "未处理异常"},
    "dash.sla_breached": {"en": "SLA breached", "zh-CN": "超出 SLA"},
    "dash.funnel": {"en": "Order funnel", "zh-CN": "订单漏斗"},
    "dash.throughput": {"en": "Throughput (orders received per minute, last hour)",
                        "zh-CN": "吞吐量（近一小时每分钟接收订单数）"},
    "dash.exception_queue": {"en": "Exception queue", "zh-CN": "异常队列"},
    "dash.services": {"en": "Services", "zh-CN": "服务"},
    "dash.topics": {"en": "Topics", "zh-CN": "主题"},
    "dash.groups": {"en": "Consumer groups and lag", "zh-CN": "消费组与积压"},
    "dash.dlqs": {"en": "Dead-letter queues", "zh-CN": "死信队列"},
    "dash.late": {"en": "{n} late", "zh-CN": "{n} 个超时"},
    "dash.up": {"en": "up", "zh-CN": "正常"},
    "dash.down": {"en": "down", "zh-CN": "停止"},
    "dash.caught_up": {"en": "caught up on {n} topics", "zh-CN": "{n} 个主题均无积压"},
    "dash.no_commits": {"en": "no commits yet", "zh-CN": "尚无提交"},
    "dash.dlq_link": {"en": "newest errors in the exception queue →",
                      "zh-CN": "在异常队列中查看最新错误 →"},
    "dash.dlq_empty": {"en": "every DLQ is empty", "zh-CN": "所有死信队列均为空"},
    "dash.max": {"en": "max {n}", "zh-CN": "最大 {n}"},
    "col.service": {"en": "service", "zh-CN": "服务"},
    "col.status": {"en": "status", "zh-CN": "状态"},
    "col.checks": {"en": "checks", "zh-CN": "检查"},
    "col.topic": {"en": "topic", "zh-CN": "主题"},
    "col.partitions": {"en": "partitions", "zh-CN": "分区"},
    "col.end_offset": {"en": "end offset", "zh-CN": "末尾偏移"},
    "col.rate_now": {"en": "msg/s now", "zh-CN": "当前 条/秒"},
    "col.rate_hour": {"en": "msg/s last hour", "zh-CN": "近一小时 条/秒"},
    "col.last_2_min": {"en": "last 2 min", "zh-CN": "近 2 分钟"},
    "col.group": {"en": "group", "zh-CN": "消费组"},
    "col.replicas": {"en": "replicas", "zh-CN": "副本"},
    "col.lag": {"en": "lag", "zh-CN": "积压"},
    "col.per_topic": {"en": "per topic", "zh-CN": "按主题"},
    # orders
    "orders.title": {"en": "Orders", "zh-CN": "订单"},
    "orders.search": {"en": "Search", "zh-CN": "搜索"},
    "orders.search_hint": {"en": "order id, external id, customer, tracking number",
                           "zh-CN": "订单号、外部单号、客户、运单号"},
    "orders.state": {"en": "State", "zh-CN": "状态"},
    "orders.any": {"en": "any", "zh-CN": "全部"},
    "orders.channel": {"en": "Channel", "zh-CN": "渠道"},
    "orders.customer": {"en": "Customer", "zh-CN": "客户"},
    "orders.external_id": {"en": "External id", "zh-CN": "外部单号"},
    "orders.submit": {"en": "Search", "zh-CN": "搜索"},
    "orders.total_count": {"en": "{n} orders", "zh-CN": "共 {n} 个订单"},
    "col.order": {"en": "Order", "zh-CN": "订单"},
    "col.external_id": {"en": "External id", "zh-CN": "外部单号"},
    "col.channel": {"en": "Channel", "zh-CN": "渠道"},
    "col.customer": {"en": "Customer", "zh-CN": "客户"},
    "col.state": {"en": "State", "zh-CN": "状态"},
    "col.since": {"en": "Since", "zh-CN": "持续"},
    "col.total": {"en": "Total", "zh-CN": "金额"},
    "col.priority": {"en": "Priority", "zh-CN": "优先级"},
    "priority.normal": {"en": "normal", "zh-CN": "普通"},
    "priority.rush": {"en": "rush", "zh-CN": "加急"},
    # one order
    "order.back": {"en": "← Orders", "zh-CN": "← 订单"},
    "order.title": {"en": "Order", "zh-CN": "订单"},
    "order.not_known": {"en": "not known (yet)", "zh-CN": "（尚）不存在"},
    "order.held_decide": {"en": "Held: decide", "zh-CN": "暂扣：请决定"},
    "order.comment": {"en": "Comment", "zh-CN": "备注"},
    "order.comment_hint": {"en": "why (shown on the timeline)", "zh-CN": "原因（显示在时间线上）"},
    "order.approve": {"en": "Approve", "zh-CN": "批准"},
    "order.reject": {"en": "Reject", "zh-CN": "拒绝"},
    "order.facts": {"en": "Order", "zh-CN": "订单信息"},
    "order.stages": {"en": "Time per stage", "zh-CN": "各阶段用时"},
    "order.lines": {"en": "Lines", "zh-CN": "明细"},
    "order.shipments": {"en": "Shipments", "zh-CN": "发货"},
    "order.problems": {"en": "Holds and rejections", "zh-CN": "暂扣与拒绝"},
    "order.notifications": {"en": "Notifications", "zh-CN": "通知"},
    "order.timeline": {"en": "Timeline", "zh-CN": "时间线"},
    "fact.customer": {"en": "customer", "zh-CN": "客户"},
    "fact.total": {"en": "total", "zh-CN": "金额"},
    "fact.priority": {"en": "priority", "zh-CN": "优先级"},
    "fact.payment_terms": {"en": "payment terms", "zh-CN": "付款条件"},
    "fact.placed": {"en": "placed", "zh-CN": "下单时间"},
    "fact.requested_delivery": {"en": "requested delivery", "zh-CN": "要求送达"},
    "fact.promised": {"en": "promised", "zh-CN": "承诺送达"},
    "fact.destination": {"en": "destination", "zh-CN": "目的地"},
    "fact.approved_by": {"en": "approved by", "zh-CN": "批准人"},
    "fact.in_full_first": {"en": "in full at first attempt", "zh-CN": "首次即足额"},
    "fact.delivered": {"en": "delivered", "zh-CN": "送达时间"},
    "fact.on_time": {"en": "on time", "zh-CN": "准时"},
    "fact.in_state_for": {"en": "in this state for", "zh-CN": "当前状态持续"},
    "yes": {"en": "yes", "zh-CN": "是"},
    "no": {"en": "no", "zh-CN": "否"},
    "stage.in_progress": {"en": "in progress, {age}", "zh-CN": "进行中，{age}"},
    "col.sku": {"en": "SKU", "zh-CN": "SKU"},
    "col.qty": {"en": "qty", "zh-CN": "数量"},
    "col.unit_price": {"en": "unit price", "zh-CN": "单价"},
    "col.discount": {"en": "discount", "zh-CN": "折扣"},
    "col.amount": {"en": "amount", "zh-CN": "金额"},
    "col.shipment": {"en": "shipment", "zh-CN": "发货单"},
    "col.warehouse": {"en": "warehouse", "zh-CN": "仓库"},
    "col.carrier": {"en": "carrier", "zh-CN": "承运商"},
    "col.tracking": {"en": "tracking number", "zh-CN": "运单号"},
    "col.promised": {"en": "promised", "zh-CN": "承诺送达"},
    "col.kind": {"en": "kind", "zh-CN": "类型"},
    "col.reason": {"en": "reason", "zh-CN": "原因"},
    "col.detail": {"en": "detail", "zh-CN": "详情"},
    "col.at": {"en": "at", "zh-CN": "时间"},
    "col.for": {"en": "for", "zh-CN": "事件"},
    "col.header": {"en": "header", "zh-CN": "消息头"},
    "col.value": {"en": "value", "zh-CN": "值"},
    "problem.hold": {"en": "hold", "zh-CN": "暂扣"},
    "problem.rejection": {"en": "rejection ({stage})", "zh-CN": "拒绝（{stage}）"},
    "shipment.in_transit": {"en": "in_transit", "zh-CN": "运输中"},
    "shipment.out_for_delivery": {"en": "out_for_delivery", "zh-CN": "派送中"},
    "shipment.dispatched": {"en": "dispatched", "zh-CN": "已发货"},
    "shipment.delivered": {"en": "delivered", "zh-CN": "已送达"},
    "shipment.delayed": {"en": "delayed", "zh-CN": "延误"},
    "shipment.exception": {"en": "exception", "zh-CN": "异常"},
    # stages (time per stage, cycle times)
    "stage.intake": {"en": "intake", "zh-CN": "接单"},
    "stage.review": {"en": "review", "zh-CN": "审核"},
    "stage.allocation": {"en": "allocation", "zh-CN": "配货"},
    "stage.fulfilment": {"en": "fulfilment", "zh-CN": "出库"},
    "stage.transit": {"en": "transit", "zh-CN": "运输"},
    # exception queue
    "x.title": {"en": "Exception queue", "zh-CN": "异常队列"},
    "x.kind": {"en": "Kind", "zh-CN": "类型"},
    "x.every_kind": {"en": "every kind", "zh-CN": "全部类型"},
    "x.reason_code": {"en": "Reason code", "zh-CN": "原因代码"},
    "x.reason_hint": {"en": "e.g. credit_limit", "zh-CN": "例如 credit_limit"},
    "x.comment": {"en": "Comment for decisions", "zh-CN": "决定备注"},
    "x.col_kind": {"en": "Kind", "zh-CN": "类型"},
    "x.col_order": {"en": "Order", "zh-CN": "订单"},
    "x.col_customer": {"en": "Customer", "zh-CN": "客户"},
    "x.col_reason": {"en": "Reason", "zh-CN": "原因"},
    "x.col_age": {"en": "Age", "zh-CN": "已等待"},
    "x.col_sla": {"en": "SLA", "zh-CN": "SLA"},
    "x.col_actions": {"en": "Actions", "zh-CN": "操作"},
    "x.past_sla": {"en": "{n} past SLA", "zh-CN": "{n} 个超出 SLA"},
    "x.breached": {"en": "breached", "zh-CN": "已超时"},
    "x.left": {"en": "{age} left", "zh-CN": "剩余 {age}"},
    "x.cancel_order": {"en": "Cancel order", "zh-CN": "取消订单"},
    "x.inspect": {"en": "Inspect", "zh-CN": "查看"},
    "x.replay_dlq": {"en": "Replay DLQ", "zh-CN": "重放死信队列"},
    "x.backordered": {"en": "short: {skus}", "zh-CN": "缺货：{skus}"},
    "x.waiting_for_stock": {"en": "waiting for stock", "zh-CN": "等待到货"},
    "x.outbox": {"en": "{service} could not publish to {topic}",
                 "zh-CN": "{service} 无法发布到 {topic}"},
    "x.outbox_target": {"en": "{service} outbox #{id} → {topic}",
                        "zh-CN": "{service} 发件箱 #{id} → {topic}"},
    "x.cancel_reason": {"en": "cancelled from the exception queue", "zh-CN": "从异常队列取消"},
    "x.cancel_requested": {"en": "cancel requested; logistics decides",
                           "zh-CN": "已请求取消，由物流决定"},
    "x.cancel_failed": {"en": "cancel failed: {status}", "zh-CN": "取消失败：{status}"},
    "verb.approve": {"en": "approve", "zh-CN": "批准"},
    "verb.reject": {"en": "reject", "zh-CN": "拒绝"},
    "toast.decided": {"en": "{decision} {order}: {status} {message}",
                      "zh-CN": "{decision} {order}：{status} {message}"},
    # dead letters
    "dl.back": {"en": "← Exception queue", "zh-CN": "← 异常队列"},
    "dl.title": {"en": "Dead letter", "zh-CN": "死信"},
    "dl.why": {"en": "Why", "zh-CN": "原因"},
    "dl.replay": {"en": "Replay", "zh-CN": "重放"},
    "dl.replay_button": {"en": "Replay this dead letter onto {topic}",
                         "zh-CN": "将此死信重放到 {topic}"},
    "dl.headers": {"en": "Headers", "zh-CN": "消息头"},
    "dl.payload": {"en": "Payload", "zh-CN": "内容"},
    "dl.masked": {"en": "Personal data (e-mails, phones, names, addresses) masked.",
                  "zh-CN": "个人数据（邮箱、电话、姓名、地址）已脱敏。"},
    "dl.error": {"en": "error", "zh-CN": "错误"},
    "dl.reason": {"en": "reason", "zh-CN": "原因"},
    "dl.service": {"en": "service", "zh-CN": "服务"},
    "dl.event_type": {"en": "event type", "zh-CN": "事件类型"},
    "dl.event_id": {"en": "event id", "zh-CN": "事件 ID"},
    "dl.key": {"en": "key", "zh-CN": "键"},
    "dl.at": {"en": "dead-lettered at", "zh-CN": "进入死信时间"},
    "dl.size": {"en": "({n} bytes)", "zh-CN": "（{n} 字节）"},
    "dl.size_truncated": {"en": "({n} bytes, shown truncated)", "zh-CN": "（{n} 字节，已截断显示）"},
    "dl.replayed_by": {"en": "Replayed by {by} at {at}.", "zh-CN": "已由 {by} 于 {at} 重放。"},
    "dl.not_replayed": {"en": "Not replayed by the console yet.", "zh-CN": "控制台尚未重放。"},
    "dl.confirm_one": {"en": "Replay this dead letter onto {topic}?",
                       "zh-CN": "将此死信重放到 {topic}？"},
    "dl.replayed_onto": {"en": "replayed onto {topic}", "zh-CN": "已重放到 {topic}"},
    "dl.refused": {"en": "replay refused: {detail}", "zh-CN": "重放被拒绝：{detail}"},
    "dl.failed": {"en": "replay: {detail}", "zh-CN": "重放：{detail}"},
    "dl.nothing": {"en": "nothing to replay in {topic}.dlq", "zh-CN": "{topic}.dlq 中没有可重放的消息"},
    "dl.confirm_all": {"en": "Replay {n} dead letter(s) onto {topic}?",
                       "zh-CN": "将 {n} 条死信重放到 {topic}？"},
    "dl.replayed_n": {"en": "replayed {n} message(s) onto {topic}",
                      "zh-CN": "已将 {n} 条消息重放到 {topic}"},
    # reports
    "r.title": {"en": "Reports", "zh-CN": "报表"},
    "r.from": {"en": "From", "zh-CN": "起"},
    "r.to": {"en": "To", "zh-CN": "止"},
    "r.show": {"en": "Show", "zh-CN": "显示"},
    "r.export_csv": {"en": "Export CSV", "zh-CN": "导出 CSV"},
    "r.export_xlsx": {"en": "Export XLSX", "zh-CN": "导出 XLSX"},
    "r.cycle": {"en": "Cycle time per stage (p50 / p95)", "zh-CN": "各阶段周期（p50 / p95）"},
    "r.volumes": {"en": "Volumes by day and channel", "zh-CN": "按日期和渠道的订单量"},
    "r.top_customers": {"en": "Top customers by amount", "zh-CN": "金额最高的客户"},
    "r.top_skus": {"en": "Top SKUs by amount", "zh-CN": "金额最高的 SKU"},
    "r.holds": {"en": "Holds by reason", "zh-CN": "按原因统计的暂扣"},
    "r.rejections": {"en": "Rejections by reason", "zh-CN": "按原因统计的拒绝"},
    "r.orders": {"en": "orders", "zh-CN": "订单数"},
    "r.fill_orders": {"en": "fill rate · orders", "zh-CN": "满足率 · 订单"},
    "r.fill_lines": {"en": "fill rate · lines", "zh-CN": "满足率 · 行"},
    "r.fill_units": {"en": "fill rate · units", "zh-CN": "满足率 · 件"},
    "r.ot_shipments": {"en": "on-time · shipments", "zh-CN": "准时率 · 发货"},
    "r.ot_orders": {"en": "on-time · orders", "zh-CN": "准时率 · 订单"},
    "r.otif": {"en": "on-time in full", "zh-CN": "准时足额"},
    "r.col_day": {"en": "day", "zh-CN": "日期"},
    "r.col_channel": {"en": "channel", "zh-CN": "渠道"},
    "r.col_orders": {"en": "orders", "zh-CN": "订单数"},
    "r.col_amount": {"en": "amount", "zh-CN": "金额"},
    "r.units": {"en": "{n} units", "zh-CN": "{n} 件"},
    "r.failed": {"en": "report: {detail}", "zh-CN": "报表：{detail}"},
    # shared
    "none": {"en": "none", "zh-CN": "无"},
    "nothing_yet": {"en": "nothing yet", "zh-CN": "暂无数据"},
    "unit.s": {"en": "{n} s", "zh-CN": "{n} 秒"},
    "unit.min": {"en": "{n} min", "zh-CN": "{n} 分钟"},
    "unit.h": {"en": "{n} h", "zh-CN": "{n} 小时"},
    "unit.d": {"en": "{n} d", "zh-CN": "{n} 天"},
    "fmt.list_sep": {"en": ", ", "zh-CN": "、"},
    # timeline summaries (the English ones are the API's ``summary``)
    "tl.submitted": {"en": "pushed by the {channel} connector", "zh-CN": "由 {channel} 连接器推送"},
    "tl.received": {"en": "accepted by intake: {lines} line(s), total {total} {currency}",
                    "zh-CN": "接单已接受：{lines} 行，金额 {total} {currency}"},
    "tl.revision_received": {"en": "revision {revision} received (was {previous})",
                             "zh-CN": "收到第 {revision} 版（原为第 {previous} 版）"},
    "tl.rejected": {"en": "rejected at {stage}: {codes}", "zh-CN": "在{stage}阶段被拒绝：{codes}"},
    "tl.rejected_by": {"en": "rejected at {stage} by {by}: {codes}",
                       "zh-CN": "在{stage}阶段被 {by} 拒绝：{codes}"},
    "tl.held": {"en": "held: {reasons}", "zh-CN": "暂扣：{codes}"},
    "tl.approved": {"en": "approved by {by}", "zh-CN": "由 {by} 批准"},
    "tl.approved_note": {"en": "approved by {by} ({comment})", "zh-CN": "由 {by} 批准（{comment}）"},
    "tl.backordered": {"en": "backordered: {shorts}", "zh-CN": "缺货待补：{skus}"},
    "tl.reserved_backorder": {"en": "stock reserved in {where} (from backorder)",
                              "zh-CN": "已在 {where} 预留库存（来自缺货补货）"},
    "tl.reserved_full": {"en": "stock reserved in {where} (in full at the first attempt)",
                         "zh-CN": "已在 {where} 预留库存（首次即足额）"},
    "tl.reserved_partly": {"en": "stock reserved in {where} (partly)",
                           "zh-CN": "已在 {where} 预留库存（部分）"},
    "tl.dispatched": {"en": "shipment {shipment} dispatched from {warehouse} by {carrier} "
                            "{service}, tracking {tracking}, promised {promised}",
                      "zh-CN": "发货单 {shipment} 已从 {warehouse} 由 {carrier} {service} 发出，"
                               "运单号 {tracking}，承诺 {promised} 送达"},
    "tl.tracking": {"en": "tracking: {status}", "zh-CN": "物流跟踪：{status}"},
    "tl.tracking_at": {"en": "tracking: {status} at {location}",
                       "zh-CN": "物流跟踪：{status}，位于 {location}"},
    "tl.delayed": {"en": "shipment {shipment} delayed: {reason}, expected {expected}",
                   "zh-CN": "发货单 {shipment} 延误：{codes}，预计 {expected}"},
    "tl.carrier_exception": {"en": "carrier exception on {shipment}: {code} {detail}",
                             "zh-CN": "发货单 {shipment} 承运商异常：{codes} {detail}"},
    "tl.delivered_on_time": {"en": "shipment {shipment} delivered (on time)",
                             "zh-CN": "发货单 {shipment} 已送达（准时）"},
    "tl.delivered_late": {"en": "shipment {shipment} delivered (late)",
                          "zh-CN": "发货单 {shipment} 已送达（迟到）"},
    "tl.notification": {"en": "notification {status} by {channel} for {event}",
                        "zh-CN": "通知 {status}（{channel}），事件 {event}"},
    "tl.cancelled": {"en": "cancelled: {reason} (by {by})", "zh-CN": "已取消：{reason}（{by}）"},
    "tl.changed": {"en": "changed to revision {revision}: {changes}",
                   "zh-CN": "已改为第 {revision} 版：{changes}"},
    "tl.stock_released": {"en": "reservation released: {reason}", "zh-CN": "预留已释放：{reason}"},
    "tl.revision_rejected": {"en": "revision {revision} rejected by intake: {codes}",
                             "zh-CN": "第 {revision} 版被接单拒绝：{codes}"},
    "tl.cancel_requested": {"en": "cancel requested by {by}: {reason}",
                            "zh-CN": "{by} 请求取消：{reason}"},
    "tl.cancel_refused": {"en": "cancel refused: {codes}", "zh-CN": "取消被拒绝：{codes}"},
    "tl.change_requested": {"en": "change to revision {revision} requested by {by}",
                            "zh-CN": "{by} 请求改为第 {revision} 版"},
    "tl.change_admitted": {"en": "change admitted by logistics: nothing dispatched, dispatch "
                                 "waits for it",
                           "zh-CN": "物流已接受变更：尚未发货，发货等待变更完成"},
    "tl.change_approved": {"en": "change accepted by review ({status}), exposure moved by "
                                 "{delta}",
                           "zh-CN": "审核已接受变更（{status}），敞口变动 {delta}"},
    "tl.change_reserved": {"en": "change applied to the stock: {status}",
                           "zh-CN": "变更已应用到库存：{status}"},
    "tl.change_reserved_released": {"en": "change applied to the stock: {status}, {released} "
                                          "unit(s) released",
                                    "zh-CN": "变更已应用到库存：{status}，释放 {released} 件"},
    "tl.change_rejected": {"en": "change to revision {revision} refused by {stage}: {codes}",
                           "zh-CN": "改为第 {revision} 版的变更被{stage}拒绝：{codes}"},
    "tl.refund": {"en": "refund {id} issued: {amount} {currency}",
                  "zh-CN": "已退款 {id}：{amount} {currency}"},
    "tl.invoice": {"en": "invoice {id} issued: {amount} {currency}",
                   "zh-CN": "已开具发票 {id}：{amount} {currency}"},
    "tl.payment": {"en": "payment {id} received: {amount} {currency}",
                   "zh-CN": "已收款 {id}：{amount} {currency}"},
    "tl.return_requested": {"en": "return {rma} requested", "zh-CN": "退货 {rma} 已申请"},
    "tl.return_approved": {"en": "return {rma} approved", "zh-CN": "退货 {rma} 已批准"},
    "tl.return_refused": {"en": "return {rma} refused", "zh-CN": "退货 {rma} 被拒绝"},
    "tl.return_received": {"en": "return {rma} received at {warehouse}: {restocked} restocked, "
                                 "{scrapped} scrapped",
                           "zh-CN": "退货 {rma} 已在 {warehouse} 收货：重新入库 {restocked} 件，"
                                    "报废 {scrapped} 件"},
}
MESSAGES.update(messages_desk.MESSAGES)
MESSAGES.update({f"state.{s}": {"en": s, "zh-CN": zh} for s, zh in _STATES.items()})
MESSAGES.update(messages_worklists.MESSAGES)
MESSAGES.update(messages_actions.MESSAGES)
MESSAGES.update({f"kind.{k}": {"en": en, "zh-CN": zh} for k, (en, zh) in _KINDS.items()})
MESSAGES.update({f"reason.{c}": {"en": en, "zh-CN": zh} for c, (en, zh) in _REASONS.items()})
MESSAGES.update(messages_approvals.MESSAGES)
MESSAGES.update(messages_rework.MESSAGES)
MESSAGES.update(messages_events.MESSAGES)


def known(lang: str | None) -> str:
    """``lang`` when the console speaks it, else the default."""
    return lang if lang in LANGS else DEFAULT_LANG


def from_accept_language(header: str | None) -> str:
    """The language for an ``Accept-Language`` header: the most wanted of Chinese (any ``zh``
    variant: ``zh-CN``) and English; English when it names neither."""
    wanted: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in {"zh", "en"} and q > 0:
            wanted.append((-q, i, "zh-CN" if primary == "zh" else "en"))
    return min(wanted)[2] if wanted else DEFAULT_LANG


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The user's choice (the cookie) when it names a language, else the browser's."""
    return cookie if cookie in LANGS else from_accept_language(accept_language)


def reason_text(code: str, lang: str) -> str:
    """A reason code's text; an unknown code is shown as itself."""
    entry = MESSAGES.get(f"reason.{code}")
    return entry.get(known(lang)) or code if entry else code


def _value(value: Any, lang: str) -> Any:
    if isinstance(value, list | tuple):
        sep = translate("fmt.list_sep", lang)
        return sep.join(str(c) if lang == "en" else reason_text(str(c), lang) for c in value)
    return value


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def translate(key: str, lang: str, **values: Any) -> str:
    """The message ``key`` in ``lang`` with ``values`` filled in; the id itself when the
    catalogue has no entry (visible, never an error), a value it lacks left as ``{name}``."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(known(lang)) or entry[DEFAULT_LANG]
    return text.format_map(_Missing({k: _value(v, lang) for k, v in values.items()}))


def catalogue(lang: str) -> dict[str, str]:
    """Every message in ``lang``: what the page embeds for ``console.js``."""
    lang = known(lang)
    return {k: v.get(lang) or v[DEFAULT_LANG] for k, v in MESSAGES.items()}


def catalogue_json(lang: str) -> str:
    """The catalogue as JSON safe inside a ``<script type="application/json">`` element."""
    return (json.dumps(catalogue(lang), ensure_ascii=False, sort_keys=True)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


#: the CLDR locale (Babel's name) each language formats dates and numbers by
LOCALES = {"en": "en", "zh-CN": "zh_Hans_CN"}


def _locale(lang: str) -> str:
    return LOCALES[known(lang)]


def format_date(value: date, lang: str) -> str:
    """CLDR's abbreviated date: ``Dec 7, 2026`` / ``2026年12月7日`` (the browser's
    ``Intl.DateTimeFormat`` gives the same)."""
    return babel.dates.format_skeleton("yMMMd", value, locale=_locale(lang))


def format_datetime(value: datetime, lang: str) -> str:
    """``Dec 7, 2026 14:05`` / ``2026年12月7日 14:05`` (in the value's own time zone)."""
    return (f"{format_date(value, lang)} "
            f"{babel.dates.format_time(value, 'HH:mm', tzinfo=value.tzinfo, locale=_locale(lang))}")


def format_number(value: Decimal | float | int | str, lang: str, digits: int = 0) -> str:
    """Grouped by the language's rule with ``digits`` decimals; what is no number stays as it is."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    pattern = "#,##0" + ("." + "0" * digits if digits else "")
    return babel.numbers.format_decimal(number, format=pattern, locale=_locale(lang))


def format_money(amount: Decimal | float | int | str, currency: str, lang: str) -> str:
    """``¥1,234.50`` (zh-CN: CLDR's symbol) / ``CNY 1,234.50`` (en: the ISO code, unambiguous
    between yuan and yen), with the currency's own decimals (JPY none)."""
    try:
        number = Decimal(str(amount))
    except InvalidOperation:
        return f"{amount} {currency}"
    pattern = None if known(lang) == "zh-CN" else "\u00a4\u00a4\u00a0#,##0.00"
    try:
        text = babel.numbers.format_currency(number, currency, format=pattern,
                                             locale=_locale(lang))
    except babel.numbers.UnknownCurrencyError:
        return f"{currency} {format_number(number, lang, 2)}"
    return text.replace("\u00a0", " ")


def missing(langs: Iterable[str] = LANGS,
            messages: Mapping[str, Mapping[str, str]] = MESSAGES) -> list[str]:
    """``id:lang`` for every entry without a (non-empty) text in a language."""
    return [f"{k}:{lang}" for k, v in messages.items() for lang in langs
            if not (v.get(lang) or "").strip()]
