"""Notify's rules, without a broker or a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from orderflow.notify import domain
from orderflow.notify.domain import Contact, Preferences

pytestmark = pytest.mark.unit

ANNA = Contact("Anna", "anna@example.com", "13800001234")
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def plan(kind: domain.Kind = "order_received", *, contact: Contact | None = ANNA,
         prefs: Preferences | None = None, sales_channel: str | None = "canonical",
         webhooks: tuple[str, ...] = (), suppress: str | None = None) -> list[domain.Planned]:
    return domain.plan_notifications(kind, contact=contact, preferences=prefs or Preferences(),
                                     sales_channel=sales_channel, webhook_channels=webhooks,
                                     suppress=suppress)


@pytest.mark.parametrize(("raw", "expected"), [
    ("zh-CN", "zh-CN"), ("zh", "zh-CN"), ("zh_Hans", "zh-CN"), ("en", "en"), ("en-GB", "en"),
    ("fr", "zh-CN"), (None, "zh-CN"), ("", "zh-CN"),
])
def test_languages_are_normalised_to_the_two_we_write(raw: str | None, expected: str) -> None:
    assert domain.normalise_language(raw) == expected


def test_language_falls_back_to_the_configured_default() -> None:
    assert domain.normalise_language("de", "en") == "en"


def test_the_customer_is_told_on_the_preferred_channel() -> None:
    assert plan() == [domain.Planned("email", "anna@example.com", "pending")]
    assert plan(prefs=Preferences(channel="sms")) == [domain.Planned("sms", "13800001234", "pending")]


def test_the_sales_channel_gets_a_webhook_when_one_is_configured() -> None:
    plans = plan(sales_channel="shopify", webhooks=("shopify",))
    assert [(p.channel, p.recipient, p.status) for p in plans] == [
        ("webhook", "shopify", "pending"), ("email", "anna@example.com", "pending")]
    assert [p.channel for p in plan(sales_channel="douyin", webhooks=("shopify",))] == ["email"]


def test_a_webhook_preference_means_the_channel_tells_the_customer() -> None:
    plans = plan(prefs=Preferences(channel="webhook"), sales_channel="shopify", webhooks=("shopify",))
    assert [p.channel for p in plans] == ["webhook"]


def test_an_unusable_preference_falls_back_to_email_then_sms() -> None:
    no_webhook = plan(prefs=Preferences(channel="webhook"), sales_channel="douyin")
    assert [(p.channel, p.status) for p in no_webhook] == [("email", "pending")]
    assert "not usable" in no_webhook[0].detail
    no_phone = plan(contact=Contact("Anna", "anna@example.com", None), prefs=Preferences(channel="sms"))
    assert [(p.channel, p.recipient) for p in no_phone] == [("email", "anna@example.com")]
    no_email = plan(contact=Contact("Anna", None, "13800001234"))
    assert [(p.channel, p.recipient) for p in no_email] == [("sms", "13800001234")]


def test_without_any_address_the_message_is_suppressed_and_says_why() -> None:
    [only] = plan(contact=Contact("Anna", None, None))
    assert (only.channel, only.status) == ("email", "suppressed")
    assert "no e-mail address or phone" in only.detail
    [unknown] = plan(contact=None)
    assert unknown.status == "suppressed" and "no contact" in unknown.detail


@pytest.mark.parametrize("kind", sorted(domain.NON_ESSENTIAL))
def test_opted_out_customers_get_no_non_essential_messages(kind: domain.Kind) -> None:
    opted_out = Preferences(opt_out_marketing=True)
    [customer] = plan(kind, prefs=opted_out)
    assert customer.status == "suppressed" and "opted out" in customer.detail
    # the sales channel still learns the status
    plans = plan(kind, prefs=opted_out, sales_channel="shopify", webhooks=("shopify",))
    assert [(p.channel, p.status) for p in plans] == [("webhook", "pending"), ("email", "suppressed")]


@pytest.mark.parametrize("kind", sorted(set(domain.KINDS) - domain.NON_ESSENTIAL))
def test_essential_messages_reach_opted_out_customers(kind: domain.Kind) -> None:
    [customer] = plan(kind, prefs=Preferences(opt_out_marketing=True))
    assert customer.status == "pending"


def test_a_prepayment_hold_asks_for_payment() -> None:
    notice = domain.held_notice(["prepayment_due", "credit_limit"], review_notice_already_sent=True)
    assert notice == domain.HeldNotice("payment_due")


@pytest.mark.parametrize("codes", [["credit_limit"], ["overdue"], ["manager_approval"],
                                   ["price_deviation", "promo_invalid"], ["blocked_customer"]])
def test_internal_holds_get_one_neutral_review_notice_per_order(codes: list[str]) -> None:
    first = domain.held_notice(codes, review_notice_already_sent=False)
    assert first == domain.HeldNotice("under_review")
    again = domain.held_notice(codes, review_notice_already_sent=True)
    assert again.notice == "under_review" and again.suppress is not None


def test_a_hold_for_a_directors_approval_is_never_told_to_the_customer() -> None:
    # the customer heard of the order's first hold, whatever it was
    for sent in (False, True):
        notice = domain.held_notice(["director_approval"], review_notice_already_sent=sent)
        assert notice.suppress is not None and "second approval" in notice.suppress


def test_an_order_sent_back_for_rework_is_not_told_as_a_rejection() -> None:
    assert domain.rejected_suppression(["rework"]) is not None
    assert domain.rejected_suppression(["rework", "blocked_customer"]) is None
    assert domain.rejected_suppression(["rejected_by_reviewer"]) is None


def test_a_suppressed_hold_still_reaches_the_sales_channel() -> None:
    plans = plan("order_held", suppress="already told", sales_channel="shopify", webhooks=("shopify",))
    assert [(p.channel, p.status, p.detail) for p in plans] == [
        ("webhook", "pending", ""), ("email", "suppressed", "already told")]


def test_contacts_from_the_order_win_and_master_data_fills_gaps() -> None:
    merged = domain.merge_contact(Contact("Order Name", None, "139"), Contact("Master", "m@x.cn", "138"))
    assert merged == Contact("Order Name", "m@x.cn", "139")
    assert domain.merge_contact(None, None) is None


def test_only_dispatches_are_coalesced() -> None:
    assert domain.coalesce_key("o1", "shipment_dispatched") == "o1:shipment_dispatched"
    assert domain.coalesce_key("o1", "shipment_delivered") is None


def test_a_dispatch_waits_for_its_siblings_within_the_window() -> None:
    window = timedelta(seconds=2)
    due, release = domain.dispatch_due_at(NOW, window=window, already_waiting=0, shipment_count=3)
    assert (due, release) == (NOW + window, False)
    due, release = domain.dispatch_due_at(NOW, window=window, already_waiting=1, shipment_count=3)
    assert not release
    due, release = domain.dispatch_due_at(NOW, window=window, already_waiting=2, shipment_count=3)
    assert (due, release) == (NOW, True)


def test_a_single_shipment_goes_at_once() -> None:
    assert domain.dispatch_due_at(NOW, window=timedelta(seconds=2), already_waiting=0,
                                  shipment_count=1) == (NOW, True)


def test_a_run_of_dispatches_waits_until_its_order_is_complete_then_goes_together() -> None:
    """In batch order: the first dispatches of an order wait the window; the one completing its
    shipments lets the stored waiting rows and the run's own earlier ones go now; a dispatch
    already staged (not new) is not counted as waiting."""
    window = timedelta(seconds=60)
    x = [domain.Dispatch("x", "email", NOW, 3), domain.Dispatch("y", "email", NOW, 2),
         domain.Dispatch("x", "email", NOW, 3), domain.Dispatch("z", "email", NOW, 2, new=False),
         domain.Dispatch("z", "email", NOW, 2), domain.Dispatch("y", "sms", NOW, 2)]
    waits = domain.dispatch_waits(x, window=window, waiting={("x", "email"): [7]})
    assert waits.due_at == [None, NOW + window, NOW, NOW + window, NOW + window, NOW + window]
    assert waits.released == [7]


def test_the_first_claimed_row_of_a_key_carries_the_others() -> None:
    @dataclass(frozen=True)
    class Row:
        id: int
        notification_id: str
        coalesce_key: str | None

    claimed = [Row(5, "n5", "k"), Row(3, "n3", "k"), Row(4, "n4", None), Row(6, "n6", "j")]
    carriers = domain.carriers(claimed)
    assert {k: r.id for k, r in carriers.items()} == {"k": 3, "j": 6}
    folds = domain.folds(carriers, [*claimed, Row(9, "n9", "k"), Row(8, "n8", "other")])
    assert folds == [domain.Fold(5, 3, "told together with notification n3"),
                     domain.Fold(9, 3, "told together with notification n3")]


def test_merged_shipments_are_listed_once_oldest_first() -> None:
    a = {"shipment_id": "A", "dispatched_at": "2026-11-20T10:00:00+00:00"}
    b = {"shipment_id": "B", "dispatched_at": "2026-11-20T09:00:00+00:00"}
    merged = domain.merge_shipments([{"event": {"shipments": [a]}}, {"event": {"shipments": [b, a]}}])
    assert [s["shipment_id"] for s in merged] == ["B", "A"]


def test_failed_sends_back_off_exponentially_then_give_up() -> None:
    kwargs = {"max_attempts": 4, "permanent": False, "error": "HTTP 500", "initial_s": 1.0,
              "maximum_s": 3.0}
    delays = [domain.after_failure(n, **kwargs) for n in (1, 2, 3)]  # type: ignore[arg-type]
    assert delays == [domain.RetryLater(1.0), domain.RetryLater(2.0), domain.RetryLater(3.0)]
    final = domain.after_failure(4, **kwargs)  # type: ignore[arg-type]
    assert isinstance(final, domain.GiveUp) and "4 attempts" in final.reason and "HTTP 500" in final.reason


def test_permanent_failures_are_not_retried() -> None:
    decision = domain.after_failure(1, max_attempts=5, permanent=True, error="recipient refused",
                                    initial_s=1, maximum_s=60)
    assert isinstance(decision, domain.GiveUp) and "permanent" in decision.reason


def test_tracking_links_use_the_carrier_template_or_the_default() -> None:
    per_carrier = {"SF": "https://sf.example/{tracking_number}"}
    assert domain.tracking_url("SF", "SF1", default_template="https://t/{carrier}/{tracking_number}",
                               per_carrier=per_carrier) == "https://sf.example/SF1"
    assert domain.tracking_url("JD", "JD1", default_template="https://t/{carrier}/{tracking_number}",
                               per_carrier=per_carrier) == "https://t/JD/JD1"
