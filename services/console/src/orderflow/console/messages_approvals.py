"""The labels of approval levels and sending back (both languages): the director's approval, the
send-back for rework, their timeline lines and reason codes."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "order.director_approve": {"en": "Director's approval", "zh-CN": "总监批准"},
    "order.send_back": {"en": "Send back for rework", "zh-CN": "退回修改"},
    "order.awaiting_director": {"en": "Awaiting a director: approved by {by}",
                                "zh-CN": "待总监批准：已由 {by} 批准"},
    "order.sent_back": {"en": "Sent back for rework by {by}: {comment}",
                        "zh-CN": "已由 {by} 退回修改：{comment}"},
    "order.rework_worklist": {"en": "on the worklist of channel {channel} until its next revision",
                              "zh-CN": "在渠道 {channel} 的工作清单上，直至提交新版本"},
    "order.comment_required": {"en": "say why: a rejection or a send-back needs a comment",
                               "zh-CN": "请填写原因：拒绝或退回修改须附说明"},
    "order.rework_back_to": {"en": "back with {by}, who entered it, until its next revision",
                             "zh-CN": "已退回录入人 {by}，直至提交新版本"},
    "verb.director_approve": {"en": "director's approval", "zh-CN": "总监批准"},
    "verb.send_back": {"en": "send back", "zh-CN": "退回修改"},
    "x.awaiting_director": {"en": "awaiting a director", "zh-CN": "待总监批准"},
    "tl.awaiting_director": {"en": "approved by {by}; awaiting a director's approval",
                             "zh-CN": "已由 {by} 批准，待总监批准"},
    "tl.sent_back": {"en": "sent back for rework by {by}: {comment}",
                     "zh-CN": "由 {by} 退回修改：{comment}"},
    "kind.rework": {"en": "sent back for rework", "zh-CN": "退回修改"},
    "reason.director_approval": {"en": "awaiting a director's approval", "zh-CN": "待总监批准"},
    "reason.rework": {"en": "sent back for rework", "zh-CN": "退回修改"},
}
