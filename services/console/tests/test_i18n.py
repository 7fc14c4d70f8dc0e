"""The console's two languages: every message id the templates, console.js and the Python use has
a text in English and in Chinese; a page rendered in Chinese keeps no English label; reason codes,
dates, money and the language's choice."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import get_args

import pytest
from console_factories import OrderStory

from orderflow.console import i18n
from orderflow.console.auth import Operator
from orderflow.console.domain import STAGES, timeline_said
from orderflow.console.exception_queue import KINDS
from orderflow.console.pages import PAGES, render
from orderflow.console.settings import ROLES
from orderflow.contracts import events as ev
from orderflow.contracts.order import OrderState

pytestmark = pytest.mark.unit

CONSOLE = Path(i18n.__file__).parent
TEMPLATES = CONSOLE / "templates"
SCRIPTS = sorted((CONSOLE / "static").glob("*.js"))
# a message id: a catalogue prefix, a dot, the rest (``nav.orders``, ``tl.held``)
PREFIXES = sorted({key.split(".")[0] for key in i18n.MESSAGES if "." in key})
MESSAGE_ID = re.compile(r"""["']((?:{})\.[a-z0-9_]+)["']""".format("|".join(PREFIXES)))
# a template's ``t("id")`` (not ``t("state." + s)``: those are checked by their codes)
TEMPLATE_ID = re.compile(r"""\bt\(\s*["']([^"']+[^."'])["']""")


def used_ids() -> dict[str, set[str]]:
    """Every literal message id, by the file that uses it."""
    found: dict[str, set[str]] = {}
    for path in TEMPLATES.glob("*.html"):
        found[path.name] = set(TEMPLATE_ID.findall(path.read_text()))
    for script in SCRIPTS:
        found[script.name] = set(MESSAGE_ID.findall(script.read_text()))
    for path in CONSOLE.glob("*.py"):
        if path.name != "i18n.py":
            found[path.name] = {m for m in MESSAGE_ID.findall(path.read_text())
                                if not m.endswith(".html")}
    return found


def test_every_entry_has_a_text_in_both_languages() -> None:
    assert i18n.missing() == []
    assert set(i18n.catalogue("en")) == set(i18n.catalogue("zh-CN")) == set(i18n.MESSAGES)


def test_every_message_id_used_is_in_the_catalogue() -> None:
    used = used_ids()
    assert used["base.html"] and used["console.js"] and used["domain.py"] and used["pages.py"]
    unknown = {name: sorted(ids - set(i18n.MESSAGES)) for name, ids in used.items()}
    assert {name: ids for name, ids in unknown.items() if ids} == {}


def test_every_id_made_from_a_code_is_in_the_catalogue() -> None:
    """The ids pages and console.js make from codes (``"state." + state``)."""
    made = ([f"nav.{p}" for p in PAGES] + [f"state.{s.value}" for s in OrderState]
            + ["state.submitted"] + [f"kind.{k}" for k in KINDS]
            + [f"role.{r}" for r in ROLES] + [f"stage.{s}" for s, _, _ in STAGES]
            + ["stage.intake", "stage.review", "page.login", "page.order", "page.dead_letter"]
            + ["verb.approve", "verb.reject"]
            + [f"reason.{c}" for c in get_args(ev.HoldCode)]
            + [f"tl.reserved_{how}" for how in ("backorder", "full", "partly")]
            + [f"tl.return_{o}" for o in ("requested", "approved", "refused", "received")])
    assert [key for key in made if key not in i18n.MESSAGES] == []


def test_every_timeline_summary_has_a_message() -> None:
    stories = [OrderStory("SO-I18N-1", lines=[("TEA-001", 2)]).happy(),
               OrderStory("SO-I18N-2").received().held(code="overdue")]
    for story in stories:
        for item, said in timeline_said(story.order_id, story.entries):
            assert said.key in i18n.MESSAGES, item.event_type
            assert said.text("en") == item.summary
            assert "{" not in said.text("zh-CN"), said


class _Text(HTMLParser):
    """A page's visible text (and the attributes a reader sees), without its scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._script = tag == "script"
        self.texts += [v for k, v in attrs if k in {"placeholder", "title", "aria-label"} and v]

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if not self._script and data.strip():
            self.texts.append(data.strip())


PAGE_VALUES = {"order_id": "0123", "dlq_topic": "orders.received", "dlq_partition": 0,
               "dlq_offset": 7, "next_url": "/", "error": None, "prefill_from": ""}
# what a Chinese page may show in Latin letters: names, abbreviations and the data it names
LATIN_ALLOWED = {"OrderFlow", "SLA", "SKU", "CSV", "XLSX", "English", "credit_limit", "rita",
                 "orders.received", "orders.received.dlq", "p50", "p95",
                 # the order desk: a key's name, the order sheet template's column names
                 "Ctrl", "order_number", "customer_id", "sku", "quantity"}


def rendered(page: str, lang: str) -> str:
    operator = None if page == "login" else Operator(name="rita", role="admin", via="session")
    response = render(f"{page}.html", lang, page=page, operator=operator, csrf="x", **PAGE_VALUES)
    return bytes(response.body).decode()


PAGE_NAMES = ["login", "dashboard", "orders", "order", "exceptions", "reports", "dead_letter",
              "desk", "desk_import", "desk_refused"]


@pytest.mark.parametrize("page", PAGE_NAMES)
def test_a_page_in_chinese_keeps_no_english_label(page: str) -> None:
    html = rendered(page, "zh-CN")
    assert '<html lang="zh-CN">' in html
    parser = _Text()
    parser.feed(html)
    english = {v: k for k, v in i18n.catalogue("en").items()
               if v != i18n.catalogue("zh-CN")[k] and re.search("[A-Za-z]{2}", v)}
    left = [text for text in parser.texts if text in english]
    assert left == []
    words = {w for text in parser.texts for w in re.findall(r"[A-Za-z][A-Za-z0-9_.]+", text)}
    assert words - LATIN_ALLOWED == set()
    assert '"nav.orders": "订单"' in html  # the catalogue console.js reads


@pytest.mark.parametrize("page", PAGE_NAMES)
def test_a_page_in_english_is_in_english(page: str) -> None:
    html = rendered(page, "en")
    assert '<html lang="en">' in html and "OrderFlow console" in html
    assert not re.search("[\u4e00-\u9fff]", html.replace("中文", "").split('id="i18n"')[0])


def test_reason_codes_have_a_text_and_an_unknown_one_shows_itself() -> None:
    assert i18n.reason_text("credit_limit", "zh-CN") == "超出信用额度"
    assert i18n.reason_text("credit_limit", "en") == "credit limit exceeded"
    assert i18n.reason_text("some_new_code", "zh-CN") == "some_new_code"
    assert i18n.translate("tl.cancel_refused", "zh-CN", codes=["order_already_shipped", "odd"]) \
        == "取消被拒绝：订单已发货、odd"
    assert i18n.translate("tl.cancel_refused", "en", codes=["order_already_shipped", "odd"]) \
        == "cancel refused: order_already_shipped, odd"
    assert i18n.translate("no.such.id", "zh-CN") == "no.such.id"
    assert i18n.translate("tl.refund", "en", id="R1") == "refund R1 issued: {amount} {currency}"


def test_dates_money_and_numbers_in_each_language() -> None:
    at = datetime(2026, 12, 7, 14, 5, tzinfo=UTC)
    assert i18n.format_datetime(at, "zh-CN") == "2026年12月7日 14:05"
    assert i18n.format_datetime(at, "en") == "Dec 7, 2026 14:05"
    assert i18n.format_date(date(2026, 1, 31), "zh-CN") == "2026年1月31日"
    assert i18n.format_date(date(2026, 1, 31), "en") == "Jan 31, 2026"
    assert i18n.format_money(Decimal("1234.5"), "CNY", "zh-CN") == "¥1,234.50"
    assert i18n.format_money("1234.5", "CNY", "en") == "CNY 1,234.50"
    assert i18n.format_money("1234", "JPY", "en") == "JPY 1,234"
    assert i18n.format_money("99", "XTS", "zh-CN") == "XTS99.00"
    assert i18n.format_money("99", "NOPE", "en") == "NOPE 99.00"
    assert i18n.format_number(1234567, "zh-CN") == "1,234,567"
    assert i18n.format_number("not a number", "en") == "not a number"


@pytest.mark.parametrize(("cookie", "header", "lang"), [
    (None, None, "en"),
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    (None, "zh-TW", "zh-CN"),
    (None, "en-GB,en;q=0.9,zh;q=0.8", "en"),
    (None, "en;q=0.5, zh;q=0.8", "zh-CN"),
    (None, "fr-FR,de;q=0.9", "en"),
    (None, "zh;q=0, en;q=0.1", "en"),
    ("en", "zh-CN", "en"),
    ("zh-CN", "en-US", "zh-CN"),
    ("klingon", "zh-CN", "zh-CN"),
])
def test_the_cookie_wins_over_the_browser(cookie: str | None, header: str | None,
                                          lang: str) -> None:
    assert i18n.choose(cookie, header) == lang
