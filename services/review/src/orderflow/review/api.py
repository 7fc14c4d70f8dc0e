"""The manual review queue over HTTP: list held orders (filtered by reason), look at one order's
review and audit trail, approve, reject or send back a held order with a comment, and give the
director's approval to one a reviewer approved above the director thresholds.

Deciding needs a service credential (``orderflow.runtime.service_auth``) of the reviewer's right
(the director's approval: the director's right): the console signs one for the operator it
signed in, and the decision is recorded in that operator's name, never in a name the body
gives."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from orderflow.contracts.events import HoldCode
from orderflow.review import handlers
from orderflow.review.domain import (
    Decider,
    ManualAction,
    ReviewedOrder,
    ReviewPolicy,
    awaiting_director,
)
from orderflow.review.repository import ReviewRepository
from orderflow.runtime.http import BodyText
from orderflow.runtime.service import ServiceContext
from orderflow.runtime.service_auth import Actor, require_actor

HOLD_CODES: tuple[str, ...] = get_args(HoldCode)
# the operator a verified service credential names, of the reviewer role at least (module level:
# the annotations are strings, resolved in this module's globals)
Reviewer = Annotated[Actor, Depends(require_actor("reviewer"))]
# the second approval above the policy's director thresholds
Director = Annotated[Actor, Depends(require_actor("director"))]


class ReviewerDecision(BaseModel):
    """The body of an approve or reject request. The reviewer is whoever the service credential
    names: a body naming one is refused (422)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    comment: BodyText | None = Field(default=None, max_length=2000,
                                     description="Why, in the reviewer's words (required to "
                                                 "reject or send back: 422 without)")


def _queue_entry(o: ReviewedOrder, now: datetime) -> dict[str, Any]:
    received = o.received
    return {
        "order_id": o.ledger.order_id,
        "channel": received.channel,
        "external_id": received.external_id,
        "customer_id": o.ledger.customer_id,
        "customer_name": received.order.customer.name,
        "grand_total": str(o.ledger.grand_total),
        "currency": received.order.currency,
        "payment_terms": received.order.payment_terms,
        "reasons": [r.model_dump(mode="json") for r in o.ledger.reasons],
        "amount_due": str(o.amount_due) if o.amount_due is not None else None,
        "held_at": o.reviewed_at.isoformat(),
        "age_seconds": max(0, int((now - o.reviewed_at).total_seconds())),
    }


def create_router(ctx: ServiceContext, policy: ReviewPolicy) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["review"])

    @router.get("/review-queue", summary="Held orders, oldest first, with reasons and age")
    async def review_queue(
        reason: str | None = Query(default=None, description="Only orders held for this reason"),
        limit: int = Query(default=200, ge=1, le=1000),
    ) -> dict[str, Any]:
        if reason is not None and reason not in HOLD_CODES:
            raise HTTPException(422, f"unknown reason {reason!r}; one of: {', '.join(HOLD_CODES)}")
        async with ctx.units() as uow:
            repo = ReviewRepository(uow.session)
            held = await repo.held_orders(reason, limit)
            counts = await repo.held_counts()
        now = datetime.now(UTC)
        return {"reason": reason, "count": len(held), "held_by_reason": counts,
                "orders": [_queue_entry(o, now) for o in held]}

    @router.get("/orders/{order_id}", summary="One order's review: rules, reasons, audit trail")
    async def order_review(order_id: str) -> dict[str, Any]:
        async with ctx.units() as uow:
            repo = ReviewRepository(uow.session)
            reviewed = await repo.reviewed_order(order_id)
            trail = await repo.decisions_of(order_id) if reviewed else []
        if reviewed is None:
            raise HTTPException(404, f"order {order_id} is not known to review")
        return {
            **_queue_entry(reviewed, datetime.now(UTC)),
            "status": reviewed.ledger.status,
            "decided_by": reviewed.decided_by,
            "comment": reviewed.comment,
            "decided_at": reviewed.decided_at.isoformat() if reviewed.decided_at else None,
            "paid": str(reviewed.ledger.paid),
            "rules": [r.model_dump(mode="json") for r in reviewed.rules],
            "decisions": [{"decision": d["decision"], "decided_by": d["decided_by"],
                           "comment": d["comment"], "reasons": d["reasons"],
                           "decided_at": d["decided_at"].isoformat()} for d in trail],
        }

    async def decide(order_id: str, action: ManualAction, body: ReviewerDecision,
                     actor: Actor) -> dict[str, Any]:
        decider = Decider(actor.name, director=actor.at_least("director"))
        try:
            async with ctx.units() as uow:
                decided = await handlers.decide_manually(uow, policy, order_id, action, decider,
                                                         body.comment or None)
        except handlers.DecisionRefused as refused:
            raise HTTPException(refused.status, refused.message) from refused
        awaiting = awaiting_director(decided.ledger)
        return {"order_id": order_id, "status": decided.ledger.status,
                "decision": decided.decision, "decided_by": actor.name,
                "comment": body.comment or None,
                "awaiting": "director" if awaiting is not None else None}

    @router.post("/orders/{order_id}/approve",
                 summary="Approve a held order (above the director thresholds: the first of two "
                         "approvals)")
    async def approve(order_id: str, actor: Reviewer,
                      body: Annotated[ReviewerDecision, Body()] = ReviewerDecision()) -> dict[str, Any]:
        return await decide(order_id, "approve", body, actor)

    @router.post("/orders/{order_id}/director-approve",
                 summary="A director's approval: the second, after a reviewer's, of a held order "
                         "above the director thresholds")
    async def director_approve(order_id: str, actor: Director,
                               body: Annotated[ReviewerDecision, Body()] = ReviewerDecision(),
                               ) -> dict[str, Any]:
        return await decide(order_id, "director_approve", body, actor)

    @router.post("/orders/{order_id}/reject", summary="Reject a held order")
    async def reject(order_id: str, actor: Reviewer,
                     body: Annotated[ReviewerDecision, Body()] = ReviewerDecision()) -> dict[str, Any]:
        return await decide(order_id, "reject", body, actor)

    @router.post("/orders/{order_id}/send-back",
                 summary="Send a held order back for rework: refused with reason rework (the "
                         "comment says what to rework); its next revision is reviewed again")
    async def send_back(order_id: str, actor: Reviewer,
                        body: Annotated[ReviewerDecision, Body()] = ReviewerDecision(),
                        ) -> dict[str, Any]:
        return await decide(order_id, "send_back", body, actor)

    @router.get("/credit-accounts/{customer_id}",
                summary="A customer's credit account: profile, exposure and review's running figures")
    async def credit_account(customer_id: str) -> dict[str, Any]:
        async with ctx.units() as uow:
            row = await ReviewRepository(uow.session).account(customer_id)
        if row is None:
            raise HTTPException(404, f"customer {customer_id} has no credit account in review")
        exposure = row["open_receivables"] + row["approved_not_invoiced"]
        return {k: (str(v) if isinstance(v, Decimal) else
                    v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()} | {
            "exposure": str(exposure)}

    @router.get("/review-policy", summary="The policy in force (every threshold)")
    async def review_policy() -> dict[str, Any]:
        return policy.model_dump(mode="json")

    return router
