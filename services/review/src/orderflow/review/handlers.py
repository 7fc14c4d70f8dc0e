"""Review's handlers: decode, lock the customer's credit account, call the domain, stage events.

The same steps serve the consumer (``order.received``, master data, finance events) and the manual
queue's HTTP API (``decide_manually``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import structlog

from orderflow.contracts.events import (
    CustomerUpdated,
    HoldReason,
    InvoiceIssued,
    OrderApproved,
    OrderCancelled,
    OrderChangeAdmitted,
    OrderChangeApproved,
    OrderChangeRejected,
    OrderHeld,
    OrderReceived,
    OrderRejected,
    PaymentReceived,
    ProductUpdated,
    Reason,
    ReviewStatus,
    RuleOutcome,
)
from orderflow.review import domain
from orderflow.review.policy import ReviewPolicy
from orderflow.review.repository import EarlyChange, ReviewedRow, ReviewRepository
from orderflow.runtime.unit_of_work import IncomingEvent, UnitOfWork

log = structlog.get_logger(__name__)

AUTO = "auto"


def _approved_event(received: OrderReceived, rules: Sequence[RuleOutcome], approved_by: str,
                    comment: str | None) -> OrderApproved:
    return OrderApproved(order_id=received.order_id, channel=received.channel,
                         external_id=received.external_id, order=received.order,
                         totals=received.totals, approved_by=approved_by, comment=comment,
                         rules=tuple(rules))


def _rejected_event(received: OrderReceived, reasons: Sequence[HoldReason], decided_by: str,
                    comment: str | None) -> OrderRejected:
    why = tuple(Reason(code=r.code, message=r.message) for r in reasons) or (
        Reason(code="rejected_by_reviewer", message=comment or "rejected by a reviewer"),)
    return OrderRejected(order_id=received.order_id, channel=received.channel,
                         external_id=received.external_id, stage="review", reasons=why,
                         customer=received.order.customer, decided_by=decided_by, comment=comment)


@dataclass(frozen=True)
class ReviewHandlers:
    """The consumer's handlers, bound to the company's policy."""

    policy: ReviewPolicy

    async def on_order_received(self, uow: UnitOfWork,
                                incoming: IncomingEvent[OrderReceived]) -> None:
        """One order: a run of one."""
        await self.on_orders_received(uow, [incoming])

    async def on_orders_received(self, uow: UnitOfWork,
                                 run: list[IncomingEvent[OrderReceived]]) -> None:
        """A run of orders, set-based: every order's key lock, then the accounts (locked in
        sorted order, as one order at a time would lock them: the customers of the orders not
        cancelled), the promotions, prices and advance payments, each with one statement; then
        each order decided in the run's order by the domain against the account as the run's
        earlier orders left it (as if they had been reviewed one after another); then one
        statement writes the orders, their audit rows, the moved accounts and the promotions'
        uses. The log lines of each order are written after that, in order, with its event's
        context."""
        repo = ReviewRepository(uow.session)
        await repo.lock_order_keys(i.event.order_id for i in run)
        # cancelled? reviewed? changed early? one round trip, under the orders' key locks
        contexts = await repo.order_contexts(i.event.order_id for i in run)
        accounts = await repo.lock_accounts(
            (i.event.order.customer.id for i in run if not contexts[i.event.order_id].cancelled),
            self.policy)
        # what each order to review is reviewed as: its own content, or an earlier change's
        to_review: list[tuple[IncomingEvent[OrderReceived], OrderReceived,
                              EarlyChange | None]] = []
        skipped: dict[int, str] = {}  # index in the run -> why (cancelled or reviewed)
        seen: set[str] = set()
        for index, incoming in enumerate(run):
            received = incoming.event
            context = contexts[received.order_id]
            if context.cancelled:
                skipped[index] = "cancelled"
                continue
            if context.reviewed or received.order_id in seen:
                skipped[index] = "reviewed"
                continue
            seen.add(received.order_id)
            early = context.early
            if early is not None and early.revision > received.order.revision:
                # a change came before the order: review the order as changed
                changed = OrderReceived.model_validate(early.received)
                received = received.model_copy(update={"order": changed.order,
                                                       "totals": changed.totals})
            else:
                early = None
            to_review.append((incoming, received, early))
        promotions = await repo.lock_promotions(
            (r.order.promo_code for _, r, _ in to_review if r.order.promo_code), self.policy)
        prices, advances = await repo.prices_and_advances(
            (line.sku for _, r, _ in to_review for line in r.order.lines),
            (r.order_id for _, r, _ in to_review)) if to_review else ({}, {})

        lines: dict[str, list[tuple[Callable[..., Any], str, dict[str, Any]]]] = {}
        reviewed: list[ReviewedRow] = []
        moved: dict[str, domain.CreditAccount] = {}
        early_change_ids: list[str] = []
        uses: list[tuple[str, str]] = []
        for incoming, received, early in to_review:
            said = lines.setdefault(incoming.headers.event_id, [])
            order = received.order
            if early is not None:
                early_change_ids.append(early.change_id)
                said.append((log.info, "order reviewed with the content of an earlier change",
                             {"change_id": early.change_id, "revision": order.revision}))
            promotion = None
            if order.promo_code:
                known = self.policy.promotion(order.promo_code)
                promotion = promotions[known.code] if known is not None else None
            # the account as the run's earlier orders left it
            decision, ledger, account = self._decide(
                received, accounts[incoming.event.order.customer.id], promotion,
                {line.sku: prices[line.sku] for line in order.lines if line.sku in prices},
                advances.get(received.order_id, domain.ZERO))
            if decision.outcome == "approved":
                accounts[account.customer_id] = moved[account.customer_id] = account
                if promotion is not None:
                    uses.append((promotion.code, received.order_id))
                    promotions[promotion.code] = replace(promotion, used=promotion.used + 1)
            reviewed.append(ReviewedRow(ledger, received, decision.rules, decision.amount_due,
                                        decision.reasons))
            _emit_decision(uow, incoming, received, decision)
            # approvals are the hot path (debug); holds and rejections stay at info
            said.append((log.debug if decision.outcome == "approved" else log.info,
                         "order reviewed", {
                             "outcome": decision.outcome, "reasons": decision.codes,
                             "grand_total": str(received.totals.grand_total),
                             "terms": decision.kind}))
        if reviewed:
            await repo.add_reviewed_run(reviewed, list(moved.values()), early_change_ids, uses)
        for index, incoming in enumerate(run):
            why = skipped.get(index)
            with uow.handling(incoming):
                if why == "cancelled":
                    log.info("order cancelled before review saw it; skipped")
                elif why == "reviewed":
                    log.info("order already reviewed; ignored")
                for say, message, fields in lines.get(incoming.headers.event_id, ()):
                    say(message, **fields)

    def _decide(self, received: OrderReceived, account: domain.CreditAccount,
                promotion: domain.PromotionState | None, prices: dict[str, domain.ListPrice],
                advance_paid: Decimal,
                ) -> tuple[domain.Decision, domain.OrderLedger, domain.CreditAccount]:
        """The domain's decision on one order, its ledger, and the account (as an approval
        moves it)."""
        order = received.order
        review = domain.OrderUnderReview(
            order=order, totals=received.totals, account=account, prices=prices,
            promotion=promotion,
            # money paid to us in advance, plus what the channel collected at checkout
            paid_in_advance=advance_paid + order.amount_paid,
        )
        decision = domain.review_order(review, self.policy)
        ledger = domain.OrderLedger(
            order_id=received.order_id, customer_id=order.customer.id, status=decision.outcome,
            kind=decision.kind, grand_total=received.totals.grand_total,
            paid=review.paid_in_advance if decision.kind == "prepaid" else domain.ZERO,
            reasons=decision.reasons,
        )
        if decision.outcome == "approved":
            account, ledger = domain.approve(account, ledger)
        return decision, ledger, account

    async def on_order_cancelled(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderCancelled]) -> None:
        cancelled = incoming.event
        repo = ReviewRepository(uow.session)
        await repo.lock_order_key(cancelled.order_id)
        peek = await repo.ledger(cancelled.order_id)
        if peek is None:
            await repo.add_cancelled(cancelled.order_id, cancelled.reason, cancelled.requested_by)
            log.info("order cancelled before review saw it; tombstone kept")
            return
        account = await repo.lock_account(peek.customer_id, self.policy)
        ledger = await repo.ledger(cancelled.order_id, lock=True)
        assert ledger is not None
        outcome = domain.cancel(account, ledger)
        if outcome is None:
            log.info("order cancelled after review refused it; nothing to release",
                     status=ledger.status)
            return
        account, cancelled_ledger = outcome
        await repo.save_account(account)
        comment = f"cancelled: {cancelled.reason}"[:500]
        await repo.save_ledger(cancelled_ledger, decided_by=cancelled.requested_by, comment=comment)
        reviewed = await repo.reviewed_order(cancelled.order_id)
        await repo.record_decision(cancelled.order_id, "cancelled", cancelled.requested_by,
                                   comment, (), reviewed.rules if reviewed else ())
        log.info("order cancelled; exposure released", was=ledger.status,
                 released=str(ledger.uninvoiced) if ledger.kind == "credit" else ledger.kind)

    # -- changes -----------------------------------------------------------------------------------
    async def on_change_admitted(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeAdmitted]) -> None:
        """Credit for the difference, prices, terms, promotion and date checked again on the new
        content: an approved order stays approved (its exposure moves by the difference) or the
        change is refused; a held order is reviewed again on the new content (approved if it now
        passes every rule, else still held with the new reasons); an order review has not seen
        yet will be reviewed with the new content."""
        change = incoming.event
        new = change.order
        repo = ReviewRepository(uow.session)
        await repo.lock_order_key(change.order_id)

        def refuse(codes: Sequence[tuple[str, str]]) -> None:
            uow.emit(OrderChangeRejected(
                order_id=change.order_id, change_id=change.change_id, revision=new.revision,
                stage="review", reasons=tuple(Reason(code=c, message=m) for c, m in codes),
                requested_by=change.requested_by, customer=new.customer))
            log.info("change refused", change_id=change.change_id, reasons=[c for c, _ in codes])

        if await repo.change(change.change_id) is not None:
            log.info("change already decided; ignored", change_id=change.change_id)
            return
        changed = OrderReceived(order_id=change.order_id, channel=change.channel,
                                external_id=change.external_id, order=new, totals=change.totals)
        if await repo.is_cancelled(change.order_id):
            await repo.add_change(change.change_id, change.order_id, new.revision, "refused",
                                  changed)
            refuse([("order_cancelled", "the order is cancelled")])
            return
        peek = await repo.ledger(change.order_id)
        if peek is None:
            await repo.add_change(change.change_id, change.order_id, new.revision, "early",
                                  changed)
            uow.emit(self._change_approved(change, "not_reviewed", (), None, domain.ZERO))
            log.info("change before the order; it will be reviewed as changed",
                     change_id=change.change_id)
            return
        account = await repo.lock_account(peek.customer_id, self.policy)
        ledger = await repo.ledger(change.order_id, lock=True)
        reviewed = await repo.reviewed_order(change.order_id)
        assert ledger is not None and reviewed is not None
        old = reviewed.received.order
        refusal = domain.refuse_change(ledger, old.revision, new.revision, new.customer.id,
                                       old.currency, new.currency)
        if refusal is not None:
            await repo.add_change(change.change_id, change.order_id, new.revision, "refused",
                                  changed)
            refuse([refusal])
            return
        changes = domain.describe_changes(old, new)
        changed = changed.model_copy(update={"channel": reviewed.received.channel,
                                             "external_id": reviewed.received.external_id})
        promotion = await repo.lock_promotion(new.promo_code, self.policy) \
            if new.promo_code else None
        same_promo = (new.promo_code or "").strip().upper() == (reviewed.promo_code or "")
        if promotion is not None and same_promo and ledger.status == "approved":
            promotion = replace(promotion, used=max(0, promotion.used - 1))  # its own use
        weighed = domain.without_order(account, ledger)
        # money paid to us for the order, plus what the channel collected at checkout
        paid = max(ledger.paid, await repo.advance_paid(change.order_id) + new.amount_paid)
        review = domain.OrderUnderReview(
            order=new, totals=change.totals, account=weighed,
            prices=await repo.prices(line.sku for line in new.lines), promotion=promotion,
            paid_in_advance=paid)
        decision = domain.review_order(review, self.policy)
        before = await repo.snapshot(change.order_id)
        if ledger.status == "approved":
            if decision.outcome != "approved":
                await repo.add_change(change.change_id, change.order_id, new.revision,
                                      "refused", changed)
                refuse([(r.code, r.message) for r in decision.reasons])
                return
            moved = domain.change_exposure(account, ledger, change.totals.grand_total,
                                           decision.kind)
            await repo.save_account(moved.account)
            await repo.save_content(moved.ledger, changed, decision.rules, None)
            if promotion is not None and not same_promo:
                await repo.use_promotion(promotion.code, change.order_id)
            await repo.add_change(change.change_id, change.order_id, new.revision, "applied",
                                  changed, before, moved.credit_delta, moved.cod_delta)
            await repo.record_decision(change.order_id, "changed", change.requested_by,
                                       f"revision {new.revision}: {', '.join(changes)}"[:500],
                                       (), decision.rules)
            uow.emit(self._change_approved(change, "approved", changes, reviewed.received,
                                           moved.credit_delta + moved.cod_delta,
                                           changed=changed))
            log.info("change approved", change_id=change.change_id, changes=list(changes),
                     exposure_delta=str(moved.credit_delta + moved.cod_delta))
            return
        # held: reviewed again on the new content
        if decision.outcome == "rejected":
            await repo.add_change(change.change_id, change.order_id, new.revision, "refused",
                                  changed)
            refuse([(r.code, r.message) for r in decision.reasons])
            return
        held = replace(ledger, grand_total=change.totals.grand_total, kind=decision.kind,
                       reasons=decision.reasons,
                       paid=paid if decision.kind == "prepaid" else domain.ZERO)
        await repo.save_content(held, changed, decision.rules, decision.amount_due)
        status = "held"
        if decision.outcome == "approved":
            account, approved = domain.approve(account, held)
            await repo.save_account(account)
            await repo.save_ledger(approved, decided_by=AUTO,
                                   comment="released: the changed order passes every rule")
            if promotion is not None:
                await repo.use_promotion(promotion.code, change.order_id)
            await repo.record_decision(change.order_id, "approved", AUTO,
                                       "released: the changed order passes every rule", (),
                                       decision.rules)
            uow.emit(_approved_event(changed, decision.rules, AUTO,
                                     "released: the changed order passes every rule"))
            status = "approved"
        await repo.add_change(change.change_id, change.order_id, new.revision,
                              "released" if status == "approved" else "applied", changed, before)
        await repo.record_decision(change.order_id, "changed", change.requested_by,
                                   f"revision {new.revision}: {', '.join(changes)}"[:500],
                                   decision.reasons, decision.rules)
        uow.emit(self._change_approved(change, "approved" if status == "approved" else "held",
                                       changes, reviewed.received, domain.ZERO, changed=changed))
        log.info("held order changed", change_id=change.change_id, now=status,
                 reasons=decision.codes)

    @staticmethod
    def _change_approved(change: OrderChangeAdmitted, status: ReviewStatus,
                         changes: tuple[str, ...], previous: OrderReceived | None,
                         delta: Decimal, changed: OrderReceived | None = None,
                         ) -> OrderChangeApproved:
        return OrderChangeApproved(
            order_id=change.order_id, change_id=change.change_id,
            channel=changed.channel if changed else change.channel,
            external_id=changed.external_id if changed else change.external_id,
            previous_revision=previous.order.revision if previous else change.previous_revision,
            order=change.order, totals=change.totals,
            previous_totals=previous.totals if previous else None, changes=changes,
            review_status=status, exposure_delta=delta, requested_by=change.requested_by)

    async def on_change_rejected(self, uow: UnitOfWork,
                                 incoming: IncomingEvent[OrderChangeRejected]) -> None:
        """Compensation: a change refused after review applied it (by inventory, or by logistics
        because the order was cancelled meanwhile) is undone: content, figures and exposure."""
        refused = incoming.event
        if refused.stage not in ("inventory", "logistics"):
            return
        repo = ReviewRepository(uow.session)
        await repo.lock_order_key(refused.order_id)
        record = await repo.change(refused.change_id)
        if record is None:
            return  # refused by logistics before review saw it
        if record.status == "early":
            await repo.set_change_status(refused.change_id, "refused")
            return
        if record.status == "released":
            log.warning("change refused after it released a held order; the approval stands",
                        change_id=refused.change_id)
            return
        if record.status != "applied":
            return
        peek = await repo.ledger(refused.order_id)
        assert peek is not None
        account = await repo.lock_account(peek.customer_id, self.policy)
        ledger = await repo.ledger(refused.order_id, lock=True)
        assert ledger is not None
        await repo.set_change_status(refused.change_id, "undone")
        if ledger.status == "cancelled":
            log.info("changed order cancelled meanwhile; nothing to undo")
            return
        await repo.save_account(domain.undo_exposure(account, record.credit_delta,
                                                     record.cod_delta))
        await repo.restore(refused.order_id, record.before)
        await repo.record_decision(refused.order_id, "change_undone", "auto",
                                   f"change {refused.change_id} refused by {refused.stage}", (), ())
        log.info("change undone", change_id=refused.change_id, stage=refused.stage,
                 credit_delta=str(record.credit_delta))

    async def on_customer_updated(self, uow: UnitOfWork,
                                  incoming: IncomingEvent[CustomerUpdated]) -> None:
        repo = ReviewRepository(uow.session)
        profile = incoming.event
        account = await repo.lock_account(profile.customer_id, self.policy)
        await repo.save_account(account.with_profile(profile))

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
        account = await repo.lock_account(invoice.customer_id, self.policy)
        ledger = await repo.ledger(invoice.order_id, lock=True) if invoice.order_id else None
        if ledger is not None and ledger.customer_id != invoice.customer_id:
            raise ValueError(f"invoice {invoice.invoice_id} names customer {invoice.customer_id} "
                             f"but its order belongs to {ledger.customer_id}")
        applied = domain.apply_invoice(account, ledger, invoice.amount)
        await repo.save_account(applied.account)
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
        account = await repo.lock_account(payment.customer_id, self.policy)
        ledger = await repo.ledger(payment.order_id, lock=True) if payment.order_id else None
        if ledger is not None and ledger.customer_id != payment.customer_id:
            raise ValueError(f"payment {payment.payment_id} names customer {payment.customer_id} "
                             f"but its order belongs to {ledger.customer_id}")
        applied = domain.apply_payment(account, ledger, payment.amount,
                                       for_order=payment.order_id is not None)
        await repo.settle_payment(payment.payment_id, applied.applied_as)
        account, ledger = applied.account, applied.ledger
        if ledger is None:
            await repo.save_account(account)
            log.info("payment applied", payment_id=payment.payment_id, applied_as=applied.applied_as)
            return
        if not applied.release:
            await repo.save_account(account)
            due = max(domain.ZERO, ledger.grand_total - ledger.paid) \
                if any(r.code == "prepayment_due" for r in ledger.reasons) else None
            await repo.save_ledger(ledger, amount_due=due)
            log.info("payment applied", payment_id=payment.payment_id,
                     applied_as=applied.applied_as, order_status=ledger.status)
            return
        # the prepayment covered the order and was its only hold: release it
        reviewed = await repo.reviewed_order(ledger.order_id)
        assert reviewed is not None
        rules = tuple(domain.prepayment_rule_after_payment(ledger) if r.rule == "prepayment" else r
                      for r in reviewed.rules)
        account, ledger = domain.approve(account, ledger)
        await repo.save_account(account)
        await repo.save_ledger(ledger, rules=rules, decided_by=AUTO,
                               comment="released: prepayment received")
        if reviewed.promo_code and await repo.lock_promotion(reviewed.promo_code, self.policy):
            await repo.use_promotion(reviewed.promo_code, ledger.order_id)
        await repo.record_decision(ledger.order_id, "approved", AUTO,
                                   f"released: payment {payment.payment_id} covered the prepayment",
                                   (), rules)
        uow.emit(_approved_event(reviewed.received, rules, AUTO, "released: prepayment received"),
                 correlation_id=ledger.order_id)
        log.info("prepaid order released", order_id=ledger.order_id,
                 payment_id=payment.payment_id)


def _emit_decision(uow: UnitOfWork, incoming: IncomingEvent[OrderReceived],
                   received: OrderReceived, decision: domain.Decision) -> None:
    """Review's own decision on an order, answering ``incoming``."""
    if decision.outcome == "approved":
        uow.emit(_approved_event(received, decision.rules, AUTO, None), cause=incoming)
    elif decision.outcome == "held":
        uow.emit(OrderHeld(order_id=received.order_id, reasons=decision.reasons,
                           rules=decision.rules, customer=received.order.customer,
                           amount_due=decision.amount_due, currency=received.order.currency),
                 cause=incoming)
    else:
        uow.emit(_rejected_event(received, decision.reasons, AUTO,
                                 "rejected by policy (reject_on)"), cause=incoming)



class DecisionRefused(Exception):
    """A manual decision that cannot be taken; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def decide_manually(uow: UnitOfWork, policy: ReviewPolicy, order_id: str,
                          action: domain.ManualAction, reviewer: str,
                          comment: str | None) -> domain.OrderLedger:
    """A reviewer approves or rejects a held order: the customer's account is locked first (as
    everywhere), then the order; an order that is not held is refused."""
    repo = ReviewRepository(uow.session)
    peek = await repo.ledger(order_id)
    if peek is None:
        raise DecisionRefused(404, domain.refuse_manual_decision(None, order_id, action) or "")
    account = await repo.lock_account(peek.customer_id, policy)
    ledger = await repo.ledger(order_id, lock=True)
    refusal = domain.refuse_manual_decision(ledger, order_id, action)
    if refusal is not None or ledger is None:
        raise DecisionRefused(409, refusal or f"order {order_id} cannot be decided")
    reviewed = await repo.reviewed_order(order_id)
    assert reviewed is not None
    reasons = ledger.reasons
    if action == "approve":
        account, ledger = domain.approve(account, ledger)
        await repo.save_account(account)
        if reviewed.promo_code and await repo.lock_promotion(reviewed.promo_code, policy):
            await repo.use_promotion(reviewed.promo_code, order_id)
        await repo.save_ledger(ledger, decided_by=reviewer, comment=comment)
        uow.emit(_approved_event(reviewed.received, reviewed.rules, reviewer, comment))
    else:
        ledger = replace(ledger, status="rejected")
        await repo.save_ledger(ledger, decided_by=reviewer, comment=comment)
        uow.emit(_rejected_event(reviewed.received, reasons, reviewer, comment))
    decision = "approved" if action == "approve" else "rejected"
    await repo.record_decision(order_id, decision, reviewer, comment, reasons, reviewed.rules)
    log.info("manual decision", order_id=order_id, decision=decision,
             reasons=sorted({r.code for r in reasons}))
    return ledger
