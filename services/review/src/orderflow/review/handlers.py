"""Review's handlers: decode, lock and load through the repository, call the domain, store, emit.

Locks are always taken in one order: an order's key, then its customer's credit account, then the
order's row, then promotions. The same steps serve the consumer and the manual queue's HTTP API
(``decide_manually``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from orderflow.contracts.events import (
    CustomerUpdated,
    InvoiceIssued,
    OrderCancelled,
    OrderChangeAdmitted,
    OrderChangeRejected,
    OrderReceived,
    PaymentReceived,
    ProductUpdated,
)
from orderflow.review import domain
from orderflow.review.repository import ChangeRecord, ReviewRepository
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)


async def lock_accounts(repo: ReviewRepository, customer_ids: Iterable[str],
                        policy: domain.ReviewPolicy) -> dict[str, domain.CreditAccount]:
    """The customers' credit accounts, locked in sorted order; a customer review has no account
    for gets the domain's default one (stored, then locked like the others)."""
    wanted = sorted(set(customer_ids))
    found = await repo.lock_accounts(wanted)
    missing = [c for c in wanted if c not in found]
    if missing:
        await repo.add_accounts([domain.CreditAccount.unknown(c, policy) for c in missing])
        found.update(await repo.lock_accounts(missing))
    return found


async def lock_order(repo: ReviewRepository, order_id: str, policy: domain.ReviewPolicy,
                     ) -> tuple[domain.CreditAccount, domain.OrderLedger] | None:
    """An order review decided and its customer's account, locked (the account first); None
    when review has not seen the order."""
    peek = await repo.ledger(order_id)
    if peek is None:
        return None
    account = (await lock_accounts(repo, [peek.customer_id], policy))[peek.customer_id]
    ledger = await repo.ledger(order_id, lock=True)
    assert ledger is not None  # an order review decided stays
    return account, ledger


async def count_promotion_use(repo: ReviewRepository, code: str | None, order_id: str,
                              policy: domain.ReviewPolicy) -> None:
    """An approved order's use of its promotion, counted when the policy knows the code."""
    promotions = await repo.lock_promotions(domain.known_promotions([code], policy))
    await repo.use_promotions([(promotion.code, order_id) for promotion in promotions.values()])


@dataclass(frozen=True)
class ReviewHandlers:
    """The consumer's handlers, bound to the company's policy."""

    policy: domain.ReviewPolicy

    async def on_orders_received(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[OrderReceived]]) -> None:
        """A run of orders, set-based (one order is a run of one): the orders' key locks, then
        the accounts, the promotions, the prices and advance payments, each with one statement;
        the domain decides each order in the run's order against what the earlier ones left;
        one statement writes them all; then each order's event and log lines, in its own
        event's context."""
        repo = ReviewRepository(uow.session)
        ids = [incoming.event.order_id for incoming in run]
        await repo.lock_order_keys(ids)
        admitted = domain.admit_orders([i.event for i in run], await repo.order_contexts(ids))
        accounts = await lock_accounts(repo, (a.account_id for a in admitted if a.account_id),
                                       self.policy)
        reviewing = [a.received for a in admitted if a.skip is None]
        promotions = await repo.lock_promotions(domain.known_promotions(
            (r.order.promo_code for r in reviewing), self.policy))
        prices, advances = await repo.prices_and_advances(
            (line.sku for r in reviewing for line in r.order.lines),
            (r.order_id for r in reviewing)) if reviewing else ({}, {})
        reviewed = domain.review_orders(admitted, accounts, promotions, prices, advances,
                                        self.policy)
        await repo.add_reviewed_run(reviewed)
        for incoming, admission, decision in zip(run, admitted, reviewed.decisions, strict=True):
            with uow.handling(incoming):
                _announce(uow, incoming, admission, decision)

    async def on_order_cancelled(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderCancelled]) -> None:
        """The order's exposure released (a held order leaves the queue); an order review has
        not seen yet keeps a tombstone, so its review is skipped."""
        cancelled = incoming.event
        repo = ReviewRepository(uow.session)
        await repo.lock_order_keys([cancelled.order_id])
        locked = await lock_order(repo, cancelled.order_id, self.policy)
        if locked is None:
            await repo.add_cancelled(cancelled.order_id, cancelled.reason, cancelled.requested_by)
            log.info("order cancelled before review saw it; tombstone kept")
            return
        outcome = domain.cancel(*locked)
        if outcome is None:
            log.info("order cancelled after review refused it; nothing to release",
                     status=locked[1].status)
            return
        account, ledger = outcome
        comment = f"cancelled: {cancelled.reason}"[:500]
        reviewed = await repo.reviewed_order(cancelled.order_id)
        await repo.save_accounts([account])
        await repo.save_ledger(ledger, decided_by=cancelled.requested_by, comment=comment)
        await repo.record_decision(cancelled.order_id, "cancelled", cancelled.requested_by,
                                   comment, (), reviewed.rules if reviewed else ())
        before = locked[1]
        log.info("order cancelled; exposure released", was=before.status,
                 released=str(before.uninvoiced) if before.kind == "credit" else before.kind)

    async def on_change_admitted(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeAdmitted]) -> None:
        """The domain's decision on a change (``domain.decide_change``), recorded and
        published."""
        change = incoming.event
        repo = ReviewRepository(uow.session)
        outcome = domain.decide_change(change, await self._change_state(repo, change),
                                       self.policy)
        await repo.record_change(change.change_id, outcome)
        for event in outcome.events:
            uow.emit(event)
        log.info(outcome.note, **outcome.details)

    async def _change_state(self, repo: ReviewRepository,
                            change: OrderChangeAdmitted) -> domain.ChangeState:
        """What a change is decided on, locked in review's order: the order's key, the change,
        then (an order review decided) the customer's account, the order, the promotion the new
        content names."""
        await repo.lock_order_keys([change.order_id])
        if await repo.change(change.change_id) is not None:
            return domain.ChangeState(recorded=True)
        if (await repo.order_contexts([change.order_id]))[change.order_id].cancelled:
            return domain.ChangeState(cancelled=True)
        locked = await lock_order(repo, change.order_id, self.policy)
        if locked is None:
            return domain.ChangeState()
        new = change.order
        promotions = await repo.lock_promotions(domain.known_promotions([new.promo_code],
                                                                        self.policy))
        prices, advances = await repo.prices_and_advances((line.sku for line in new.lines),
                                                          [change.order_id])
        code = domain.promo_code_key(new.promo_code)
        return domain.ChangeState(
            account=locked[0], ledger=locked[1],
            reviewed=await repo.reviewed_order(change.order_id),
            promotion=promotions.get(code) if code is not None else None, prices=prices,
            advance_paid=advances.get(change.order_id, domain.ZERO))

    async def on_change_rejected(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeRejected]) -> None:
        """Compensation: a change refused after review applied it (by inventory, or by logistics
        because the order was cancelled meanwhile) is undone: content, figures and exposure."""
        refused = incoming.event
        if not domain.compensates(refused.stage):
            return
        repo = ReviewRepository(uow.session)
        await repo.lock_order_keys([refused.order_id])
        record = await repo.change(refused.change_id)
        step = domain.compensation(record.status if record is not None else None)
        if step == "refuse_early":
            await repo.set_change_status(refused.change_id, "refused")
        elif step == "keep_release":
            log.warning("change refused after it released a held order; the approval stands",
                        change_id=refused.change_id)
        elif step == "undo" and record is not None:
            await self._undo(repo, refused, record)

    async def _undo(self, repo: ReviewRepository, refused: OrderChangeRejected,
                    record: ChangeRecord) -> None:
        locked = await lock_order(repo, refused.order_id, self.policy)
        assert locked is not None and record.before is not None  # an applied change's order
        await repo.set_change_status(refused.change_id, "undone")
        account = domain.undo_change(*locked, record.credit_delta, record.cod_delta)
        if account is None:
            log.info("changed order cancelled meanwhile; nothing to undo")
            return
        await repo.save_accounts([account])
        await repo.restore(refused.order_id, record.before)
        await repo.record_decision(refused.order_id, "change_undone", domain.AUTO,
                                   f"change {refused.change_id} refused by {refused.stage}", (), ())
        log.info("change undone", change_id=refused.change_id, stage=refused.stage,
                 credit_delta=str(record.credit_delta))

    async def on_customer_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[CustomerUpdated]) -> None:
        profile = incoming.event
        repo = ReviewRepository(uow.session)
        account = (await lock_accounts(repo, [profile.customer_id], self.policy))[
            profile.customer_id]
        await repo.save_accounts([account.with_profile(profile)])

    async def on_product_updated(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[ProductUpdated]) -> None:
        await ReviewRepository(uow.session).upsert_price(incoming.event)

    async def on_invoice_issued(self, uow: UnitOfWork,
                                incoming: IncomingEvent[InvoiceIssued]) -> None:
        invoice = incoming.event
        repo = ReviewRepository(uow.session)
        if not await repo.record_invoice(invoice):
            log.info("invoice already recorded; ignored", invoice_id=invoice.invoice_id)
            return
        account = (await lock_accounts(repo, [invoice.customer_id], self.policy))[
            invoice.customer_id]
        ledger = await repo.ledger(invoice.order_id, lock=True) if invoice.order_id else None
        domain.refuse_foreign_order(f"invoice {invoice.invoice_id}", invoice.customer_id, ledger)
        applied = domain.apply_invoice(account, ledger, invoice.amount)
        await repo.save_accounts([applied.account])
        if applied.ledger is not None:
            await repo.save_ledger(applied.ledger)
        await repo.settle_invoice(invoice.invoice_id, applied.to_receivables,
                                  applied.moved_from_approved)
        log.info("invoice applied", invoice_id=invoice.invoice_id,
                 to_receivables=str(applied.to_receivables),
                 moved_from_approved=str(applied.moved_from_approved))

    async def on_payment_received(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[PaymentReceived]) -> None:
        payment = incoming.event
        repo = ReviewRepository(uow.session)
        if not await repo.record_payment(payment):
            log.info("payment already recorded; ignored", payment_id=payment.payment_id)
            return
        account = (await lock_accounts(repo, [payment.customer_id], self.policy))[
            payment.customer_id]
        ledger = await repo.ledger(payment.order_id, lock=True) if payment.order_id else None
        domain.refuse_foreign_order(f"payment {payment.payment_id}", payment.customer_id, ledger)
        applied = domain.apply_payment(account, ledger, payment.amount,
                                       for_order=payment.order_id is not None)
        await repo.settle_payment(payment.payment_id, applied.applied_as)
        if applied.ledger is not None and applied.release:
            await self._release_prepaid(uow, repo, payment, applied.account, applied.ledger)
            return
        await repo.save_accounts([applied.account])
        if applied.ledger is None:
            log.info("payment applied", payment_id=payment.payment_id,
                     applied_as=applied.applied_as)
            return
        await repo.save_ledger(applied.ledger, amount_due=domain.amount_due(applied.ledger))
        log.info("payment applied", payment_id=payment.payment_id, applied_as=applied.applied_as,
                 order_status=applied.ledger.status)

    async def _release_prepaid(self, uow: UnitOfWork, repo: ReviewRepository,
                               payment: PaymentReceived, account: domain.CreditAccount,
                               ledger: domain.OrderLedger) -> None:
        """The prepayment covered the order and was its only hold: it is approved."""
        reviewed = await repo.reviewed_order(ledger.order_id)
        assert reviewed is not None
        account, ledger, rules = domain.release_prepaid(account, ledger, reviewed)
        await repo.save_accounts([account])
        await repo.save_ledger(ledger, rules=rules, decided_by=domain.AUTO,
                               comment=domain.RELEASED_BY_PAYMENT)
        await count_promotion_use(repo, reviewed.promo_code, ledger.order_id, self.policy)
        await repo.record_decision(ledger.order_id, "approved", domain.AUTO,
                                   f"released: payment {payment.payment_id} covered the prepayment",
                                   (), rules)
        uow.emit(domain.approved_event(reviewed.received, rules, domain.AUTO,
                                       domain.RELEASED_BY_PAYMENT), correlation_id=ledger.order_id)
        log.info("prepaid order released", order_id=ledger.order_id,
                 payment_id=payment.payment_id)


def _announce(uow: UnitOfWork, incoming: IncomingEvent[OrderReceived],
              admission: domain.Admission, decision: domain.Decision | None) -> None:
    """An order of a run: review's decision published, answering its event, and logged."""
    if admission.skip == "cancelled":
        log.info("order cancelled before review saw it; skipped")
        return
    if admission.skip == "reviewed" or decision is None:
        log.info("order already reviewed; ignored")
        return
    received = admission.received
    if admission.early is not None:
        log.info("order reviewed with the content of an earlier change",
                 change_id=admission.early.change_id, revision=received.order.revision)
    uow.emit(domain.decision_event(received, decision), cause=incoming)
    # approvals are the hot path (debug); holds and rejections stay at info
    (log.debug if decision.outcome == "approved" else log.info)(
        "order reviewed", outcome=decision.outcome, reasons=decision.codes,
        grand_total=str(received.totals.grand_total), terms=decision.kind)


# the HTTP status of each kind of refusal the domain gives
REFUSAL_STATUS: dict[str, int] = {"unknown": 404, "conflict": 409, "forbidden": 403,
                                  "incomplete": 422}


class DecisionRefused(Exception):
    """A manual decision that cannot be taken; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def decide_manually(uow: UnitOfWork, policy: domain.ReviewPolicy, order_id: str,
                          action: domain.ManualAction, decider: domain.Decider,
                          comment: str | None) -> domain.ManualDecision:
    """A reviewer (or a director) approves, rejects or sends back a held order: the customer's
    account is locked first (as everywhere), then the order; the domain decides whether the
    approval is final or the first of two, and refuses what may not be done."""
    repo = ReviewRepository(uow.session)
    locked = await lock_order(repo, order_id, policy)
    refusal = domain.refuse_manual_decision(locked[1] if locked else None, order_id, action)
    if locked is None or refusal is not None:
        raise DecisionRefused(404 if locked is None else 409, refusal or "")
    reviewed = await repo.reviewed_order(order_id)
    assert reviewed is not None
    decided = domain.decide_manually(*locked, reviewed, action, decider, comment, policy)
    if isinstance(decided, domain.Refusal):
        raise DecisionRefused(REFUSAL_STATUS[decided.kind], decided.message)
    if decided.account is not None:
        await repo.save_accounts([decided.account])
        await count_promotion_use(repo, decided.promotion_code, order_id, policy)
    if decided.decided:
        await repo.save_ledger(decided.ledger, decided_by=decider.name, comment=comment)
    else:
        await repo.save_ledger(decided.ledger)
    uow.emit(decided.event)
    await repo.record_decision(order_id, decided.decision, decider.name, comment,
                               decided.reasons, reviewed.rules)
    log.info("manual decision", order_id=order_id, decision=decided.decision,
             reasons=sorted({r.code for r in decided.reasons}))
    return decided
