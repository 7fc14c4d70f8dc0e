"""The texts of the events page's frame (both languages); the page's content, generated from the
AsyncAPI documents, is English."""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    "nav.events": {"en": "Events", "zh-CN": "事件"},
    "events.title": {"en": "Events and topics", "zh-CN": "事件与主题"},
    "events.intro": {"en": ("What each service publishes and consumes on Kafka, generated from "
                            "the AsyncAPI documents. The contracts below are in English."),
                     "zh-CN": ("各服务在 Kafka 上发布与消费的事件，由 AsyncAPI 文档生成。"
                               "以下契约内容为英文。")},
}
