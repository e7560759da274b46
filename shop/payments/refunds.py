"""Refunds: capped by what was captured, recorded before the provider is asked, settled by
the same `apply_observation` path as every other piece of provider news.

A refund is created `requested` (with a fresh idempotency key) in a transaction that holds the
attempt's lock, so two clicks can never together exceed captured minus refunded-or-pending.
The provider is called after that commit, outside any lock; its answer moves the row to
`pending`, `succeeded` or `failed`. No answer leaves it `requested`, to be sent again later
with the same idempotency key."""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from shop.db import write_transaction
from shop.i18n import current_language, gettext as _
from shop.money import format_kwd
from shop.payments.providers.base import Observation, Provider, ProviderRejected, ProviderUnavailable, RefundRequest
from shop.payments.service import lock_attempt, apply_observation, record_event, utcnow
from shop.payments.states import CAPTURED_PAYMENT, PaymentStatus
from shop.payments.tables import PaymentAttempt, Refund
from shop.staff.audit import audit
from shop.staff.auth import Staff

log = logging.getLogger("shop.payments")

# Refunds that count against the captured amount: everything not failed.
HOLDING = ("requested", "pending", "succeeded")
OPEN_REFUND = ("requested", "pending")
# Providers whose refund API takes no idempotency key: an unanswered refund may have gone
# through, so it is never re-sent automatically (check the merchant portal first).
NOT_IDEMPOTENT = frozenset({"knet"})
MAX_REASON = 2000
LOCAL_ID_PREFIX = "local-"  # stands in for a provider refund id the provider never gave
REFUND_RANK = {"requested": 0, "pending": 1, "succeeded": 2, "failed": 2}  # rows only move up


class RefundError(ValueError):
    """The refund cannot be made as asked; the message is for staff (in their language).
    `field` names the form field at fault ("amount" or "reason")."""

    def __init__(self, message: str, field: str = "amount") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    refund: dict[str, Any]
    status: str  # requested (provider did not answer) | pending | succeeded | failed

    @property
    def unanswered(self) -> bool:
        return self.status == "requested"


def _kwd(fils: int) -> str:
    return format_kwd(fils, current_language.get())


async def refund_totals(attempt_id: int) -> tuple[int, int]:
    """(succeeded, requested-or-pending) fils of an attempt's refunds."""
    rows = await Refund.select(Refund.amount_fils, Refund.status).where(Refund.attempt == attempt_id)
    done = sum(r["amount_fils"] for r in rows if r["status"] == "succeeded")
    waiting = sum(r["amount_fils"] for r in rows if r["status"] in OPEN_REFUND)
    return done, waiting


async def refundable_fils(attempt: dict[str, Any]) -> int:
    """What may still be refunded: captured minus everything refunded or on its way."""
    if PaymentStatus(attempt["status"]) not in CAPTURED_PAYMENT:
        return 0
    done, waiting = await refund_totals(attempt["id"])
    return max(attempt["captured_fils"] - done - waiting, 0)


def check_refund_input(provider: Provider, amount_fils: int, reason: str) -> str:
    """Refuse what no lock can fix. Returns the cleaned reason. Raises RefundError."""
    reason = reason.strip()
    if amount_fils <= 0:
        raise RefundError(_("Enter an amount greater than zero."))
    if not reason:
        raise RefundError(_("Give a reason for the refund."), "reason")
    if len(reason) > MAX_REASON:
        raise RefundError(_("The reason is too long."), "reason")
    if not provider.capabilities.refunds:
        raise RefundError(_("This payment provider does not take refunds through its API."))
    return reason


async def create_refund(provider: Provider, attempt: dict[str, Any], amount_fils: int, reason: str,
                        staff: Staff | None, action: str = "order.refund") -> dict[str, Any]:
    """Record a `requested` refund and its audit row. The caller holds the attempt's lock inside
    a write transaction (see `request_refund`). Raises RefundError; nothing is written then."""
    reason = check_refund_input(provider, amount_fils, reason)
    if PaymentStatus(attempt["status"]) not in CAPTURED_PAYMENT or not attempt["provider_payment_id"]:
        raise RefundError(_("Only a captured payment can be refunded."))
    remaining = await refundable_fils(attempt)
    if amount_fils > remaining:
        raise RefundError(_("At most %(amount)s can be refunded (captured, minus refunds made or under way).",
                            amount=_kwd(remaining)))
    if not provider.capabilities.partial_refunds and amount_fils != remaining:
        raise RefundError(_("This payment provider refunds only the whole remaining amount: %(amount)s.",
                            amount=_kwd(remaining)))
    now = utcnow()
    rows = await Refund.insert(Refund(
        attempt=attempt["id"], amount_fils=amount_fils, status="requested", idempotency_key=secrets.token_hex(16),
        requested_by=staff.email if staff else "", reason=reason, created_at=now, updated_at=now,
    )).returning(*Refund.all_columns())
    refund = rows[0]
    await record_event(attempt["id"], attempt["provider"], "refund",
                       {"refund": refund["id"], "amount_fils": amount_fils, "requested_by": refund["requested_by"]},
                       event_type="refund requested", status_before=attempt["status"],
                       status_after=attempt["status"], note=reason[:200])
    done, waiting = await refund_totals(attempt["id"])
    order = await PaymentAttempt.select(PaymentAttempt.order.reference.as_alias("reference")).where(
        PaymentAttempt.id == attempt["id"]).first()
    await audit(staff, action, "order", order["reference"] if order else attempt["order"],
                before={"attempt": attempt["merchant_reference"], "captured_fils": attempt["captured_fils"],
                        "refundable_fils": remaining},
                after={"refund": refund["id"], "amount_fils": amount_fils, "status": "requested",
                       "refunded_or_pending_fils": done + waiting},
                reason=reason)
    return refund


async def request_refund(provider: Provider, attempt_id: int, amount_fils: int, reason: str,
                         staff: Staff | None) -> RefundOutcome:
    """Refund part or all of a captured attempt. Never more than captured minus refunded or
    pending, also under concurrent calls. Raises RefundError (nothing changed). Not idempotent:
    each call is a new refund (the cap is what protects against double clicks)."""
    async with write_transaction(PaymentAttempt._meta.db):
        # Locked: a concurrent refund of this attempt waits here and then sees this one.
        attempt = await lock_attempt(attempt_id)
        if attempt is None:
            raise RefundError(_("No such payment."))
        if attempt["provider"] != provider.slug:
            raise RefundError(_("This payment belongs to another provider."))
        refund = await create_refund(provider, attempt, amount_fils, reason, staff)
    return await send_refund(provider, refund["id"])


async def send_refund(provider: Provider, refund_id: int) -> RefundOutcome:
    """Ask the provider for a `requested` refund, with its own idempotency key, outside any lock.

    No answer: it stays `requested`. Refused: `failed` with the provider's reason. Accepted:
    the provider's refund id is stored and the row moves on through `apply_observation`."""
    refund = await Refund.select().where(Refund.id == refund_id).first()
    if refund is None or refund["status"] != "requested":
        return RefundOutcome(refund or {}, (refund or {}).get("status", ""))
    attempt = await PaymentAttempt.select().where(PaymentAttempt.id == refund["attempt"]).first()
    assert attempt is not None
    request = RefundRequest(
        provider_payment_id=attempt["provider_payment_id"] or "",
        amount_fils=refund["amount_fils"],
        currency=attempt["currency"],
        idempotency_key=refund["idempotency_key"],
        reference=f"{attempt['merchant_reference']}R{refund['id']}",
    )
    try:
        result = await provider.refund(request)
    except ProviderUnavailable as exc:
        await record_event(attempt["id"], provider.slug, "refund", {"refund": refund_id, "error": str(exc)},
                           event_type="refund not answered", status_before=attempt["status"],
                           status_after=attempt["status"], note="no answer: the refund stays requested")
        return RefundOutcome(refund, "requested")
    except ProviderRejected as exc:
        return await _settle(attempt, refund, None, "failed", {"error": str(exc)}, str(exc))
    return await _settle(attempt, refund, result.provider_refund_id, result.status, result.raw, "")


async def _settle(attempt: dict[str, Any], refund: dict[str, Any], provider_refund_id: str | None, status: str,
                  payload: Any, failure: str) -> RefundOutcome:
    """Store the provider's answer to a refund request and let `apply_observation` carry it."""
    if status not in ("pending", "succeeded", "failed"):
        status = "pending"  # accepted, outcome still to come
    async with write_transaction(PaymentAttempt._meta.db):
        await lock_attempt(attempt["id"])
        current = await Refund.select().where(Refund.id == refund["id"]).first()
        assert current is not None
        refund_key = current["provider_refund_id"]  # set already if a concurrent send answered first
        if refund_key is None:
            refund_key = provider_refund_id or f"{LOCAL_ID_PREFIX}{refund['id']}"
            status_now = current["status"]
            # The provider's notification may have beaten its answer here and been taken for a
            # refund made outside the shop (no row had its id yet): fold that row into ours.
            twin = await Refund.select().where(
                (Refund.attempt == attempt["id"]) & (Refund.provider_refund_id == refund_key)
                & (Refund.id != refund["id"])
            ).first()
            if twin is not None:
                if REFUND_RANK[twin["status"]] > REFUND_RANK[status_now]:
                    status_now = twin["status"]
                await Refund.delete().where(Refund.id == twin["id"])
            await Refund.update({Refund.provider_refund_id: refund_key, Refund.status: status_now,
                                 Refund.updated_at: utcnow()}).where(Refund.id == refund["id"])
        # Nested, so it joins this transaction: moves the row forward (never back) and derives
        # the attempt's and the order's state from the money, exactly as a webhook would.
        await apply_observation(attempt["id"], Observation(
            status=None, refund_id=refund_key, refund_status=status, refund_amount_fils=refund["amount_fils"],
            failure_reason=failure[:500], event_type=f"refund {status}", payload=payload or {},
        ), "refund")
    stored = await Refund.select().where(Refund.id == refund["id"]).first()
    assert stored is not None
    return RefundOutcome(stored, stored["status"])


async def retry_requested_refunds(order_id: int, providers: Callable[[str], Provider]) -> list[RefundOutcome]:
    """Send again, with their own idempotency keys, the refunds of an order no provider answered.

    Skips providers without idempotent refunds (a lost answer may hide a refund made)."""
    rows = await Refund.select(Refund.id, Refund.attempt.provider.as_alias("provider")).where(
        (Refund.attempt.order == order_id) & (Refund.status == "requested")
    ).order_by(Refund.id)
    outcomes = []
    for row in rows:
        if row["provider"] in NOT_IDEMPOTENT:
            continue
        outcomes.append(await send_refund(providers(row["provider"]), row["id"]))
    return outcomes
