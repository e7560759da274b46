"""Payment attempts and the one function that applies what a provider tells us.

Returns, webhooks, inquiries and refund results all go through `apply_observation`, which
runs in one transaction: lock the attempt, skip what was already seen, move the payment and
order state machines, move stock exactly once, queue the receipt, and append the event.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from shop.db import is_postgres, is_unique_violation, write_transaction
from shop.notifications.outbox import queue_receipt
from shop.orders import stock
from shop.orders.tables import Order, OrderLine
from shop.payments.providers.base import (
    Observation,
    PaymentRequest,
    Provider,
    ProviderRejected,
    ProviderUnavailable,
    VendorSplit,
)
from shop.payments.redact import redact
from shop.payments.states import (
    CAPTURED_PAYMENT,
    FAILED_PAYMENT,
    OPEN_PAYMENT,
    OrderStatus,
    PaymentStatus,
    check_payment_move,
    next_payment_status,
    refund_state,
    settle_order_status,
)
from shop.payments.tables import PaymentAttempt, PaymentEvent, Refund
from shop.sql import Insert, Statement, Update
from shop.vendors.splits import SplitError, plan_split, provider_splits

log = logging.getLogger("shop.payments")

FIRST_CHECK_AFTER = timedelta(seconds=20)
# How long a payment link sent by staff stays payable (APS needs an expiry; UPayments states none).
LINK_VALIDITY = timedelta(hours=48)
MAX_CHECK_INTERVAL = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def next_check(checks: int, now: datetime | None = None) -> datetime:
    """Back off between inquiries: 20 s, 40 s, 80 s ... at most 5 minutes apart."""
    delay = min(FIRST_CHECK_AFTER * (2 ** min(checks, 10)), MAX_CHECK_INTERVAL)
    return (now or utcnow()) + delay


_EVENT = Insert(PaymentEvent)


async def record_event(
    attempt_id: int | None,
    provider: str,
    kind: str,
    payload: Any,
    *,
    event_type: str = "",
    provider_event_id: str | None = None,
    signature_ok: bool | None = None,
    status_before: str = "",
    status_after: str = "",
    note: str = "",
) -> None:
    await _EVENT.row(
        attempt=attempt_id,
        provider=provider,
        kind=kind,
        provider_event_id=provider_event_id,
        event_type=event_type[:60],
        signature_ok=signature_ok,
        status_before=status_before,
        status_after=status_after,
        payload=json.dumps(redact(payload), default=str),
        note=note,
    )


# ---------------------------------------------------------------- starting a payment


@dataclass(frozen=True, slots=True)
class StartOutcome:
    attempt: dict[str, Any] | None  # None: another request is starting this order's payment
    redirect_url: str = ""
    form_fields: dict[str, str] | None = None
    error: str = ""  # "unavailable" | "rejected"


async def start_attempt(order: dict[str, Any], provider: Provider, settings_public_url: str,
                        number: int, link_channel: str | None = None) -> StartOutcome:
    """Create attempt `number` for the order and ask the provider to start it: as a checkout
    redirect, or with `link_channel` as a payment link staff send (open for LINK_VALIDITY).

    The caller names the number after the last attempt it saw, never a fresh count: two Pay
    presses that both saw no attempt both ask for number 1, and the second gets `attempt=None`
    (counting again would have let it start attempt 2 and a second provider payment).
    A timeout leaves the attempt pending for the reconciler; it never fails it."""
    merchant_reference = f"{order['reference']}{number:02d}"
    # Vendor shares come from the order's lines: read before the attempt's transaction.
    splits = await _splits(order, provider)
    return_url = f"{settings_public_url}/payments/{provider.slug}/return?ref={merchant_reference}"
    engine = PaymentAttempt._meta.db
    try:
        # The attempt and the request it is about to make are stored together (one commit).
        async with write_transaction(engine):
            attempt = await _ATTEMPT.row(
                order=order["id"], number=number, provider=provider.slug, status=PaymentStatus.INITIATED.value,
                amount_fils=order["total_fils"], currency=order["currency"], merchant_reference=merchant_reference,
                idempotency_key=secrets.token_hex(16),
            )
            await record_event(attempt["id"], provider.slug, "request", {
                "merchant_reference": merchant_reference, "amount_fils": attempt["amount_fils"],
                "currency": attempt["currency"], "language": order["language"], "return_url": return_url,
                "link_channel": link_channel or "",
                "splits": [{"to": s.vendor_reference, "amount_fils": s.amount_fils,
                            "commission_fils": s.commission_fils} for s in splits]})
    except Exception as exc:
        if is_unique_violation(exc):
            return StartOutcome(attempt=None)
        raise
    request = PaymentRequest(
        merchant_reference=merchant_reference,
        order_reference=order["reference"],
        amount_fils=attempt["amount_fils"],
        currency=attempt["currency"],
        language=order["language"],
        idempotency_key=attempt["idempotency_key"],
        return_url=return_url,
        webhook_url=f"{settings_public_url}/webhooks/{provider.slug}",
        customer_name=order["customer_name"],
        customer_email=order["email"],
        customer_phone=order["phone"],
        description=f"Order {order['reference']}",
        splits=splits,
    )
    now = utcnow()
    window = LINK_VALIDITY if link_channel else timedelta(seconds=provider.capabilities.expiry_seconds)
    try:
        if link_channel:
            started = await provider.create_link(request, link_channel, now + window)
        else:
            started = await provider.start_payment(request)
    except ProviderUnavailable as exc:
        # Unknown outcome: the provider may have created it. Pending, and the reconciler asks at
        # its next pass: the customer is waiting on the order page for the answer.
        await _record_answer(attempt["id"], provider.slug, {
            "status": PaymentStatus.PENDING.value, "next_check_at": now,
            "expires_at": now + window,
            "failure_reason": "provider did not answer when the payment was created",
        }, {"error": str(exc)}, note="no answer")
        return StartOutcome(attempt=attempt, error="unavailable")
    except ProviderRejected as exc:
        await _record_answer(attempt["id"], provider.slug, {
            "status": PaymentStatus.FAILED.value, "failure_reason": str(exc)[:500], "finalized_at": now,
        }, {"error": str(exc)}, note="rejected")
        await _after_payment_move(attempt | {"status": "failed"}, PaymentStatus.FAILED)
        return StartOutcome(attempt=attempt, error="rejected")
    await _record_answer(attempt["id"], provider.slug, {
        "status": PaymentStatus.PENDING.value,
        "provider_payment_id": started.provider_payment_id,
        "redirect_url": started.redirect_url,
        "redirect_form": json.dumps(dict(started.form_fields)),
        "expires_at": now + window,
        # A link is paid whenever the customer gets to it: ask soon and keep asking (backing off).
        "next_check_at": now + (FIRST_CHECK_AFTER if link_channel else window + FIRST_CHECK_AFTER),
    }, started.raw)
    return StartOutcome(attempt=attempt, redirect_url=started.redirect_url, form_fields=dict(started.form_fields))


async def _record_answer(attempt_id: int, provider: str, values: dict[str, Any], payload: Any,
                         note: str = "") -> None:
    """The provider's answer to the create call: the attempt's new state and its event, one commit."""
    async with write_transaction(PaymentAttempt._meta.db):
        await _update_attempt(attempt_id, values)
        await record_event(attempt_id, provider, "response", payload, status_before=PaymentStatus.INITIATED.value,
                           status_after=values["status"], note=note)


async def _splits(order: dict[str, Any], provider: Provider) -> tuple[VendorSplit, ...]:
    """Vendor shares from the order lines' vendor snapshots, for providers that pay vendors out.

    Other providers, and orders without vendor lines, get none. A mixed order with no shop IBAN
    configured is charged whole to the shop's account and flagged, so staff pay the vendors."""
    if not provider.capabilities.vendor_splits:
        return ()
    lines = await OrderLine.select(OrderLine.line_total_fils, OrderLine.vendor_id, OrderLine.vendor_name,
                                   OrderLine.vendor_iban, OrderLine.vendor_commission_bps).where(
        OrderLine.order == order["id"])
    try:
        plan = plan_split(lines, order["total_fils"])
        return provider_splits(plan, provider.settings.merchant_iban) if plan else ()
    except SplitError as exc:
        await _flag_order(order["id"], f"vendor split not sent: {exc}")
        log.warning("order %s: vendor split not sent: %s", order["reference"], exc)
        return ()


_ATTEMPT = Insert(PaymentAttempt, returning="*")
_ATTEMPT_UPDATE = Update(PaymentAttempt)
_ORDER_UPDATE = Update(Order)


async def _update_attempt(attempt_id: int, values: dict[str, Any]) -> None:
    await _ATTEMPT_UPDATE.row(attempt_id, {**values, "updated_at": utcnow()})


async def _after_payment_move(attempt: dict[str, Any], payment_status: PaymentStatus) -> None:
    """Outside a provider call: apply a locally decided failure to the order in a transaction."""
    async with write_transaction(Order._meta.db):
        await _move_order(attempt, payment_status)


# ---------------------------------------------------------------- applying observations


@dataclass(frozen=True, slots=True)
class Applied:
    attempt_id: int | None
    duplicate: bool = False
    changed: bool = False
    status_before: str = ""
    status_after: str = ""
    flagged: str = ""


# References and payment ids are unique across providers; the caller names whose attempts count.
_ATTEMPT_BY_REFERENCE = Statement(PaymentAttempt, "SELECT * FROM payment_attempt WHERE merchant_reference = {}")
_ATTEMPT_BY_PAYMENT_ID = Statement(PaymentAttempt, "SELECT * FROM payment_attempt WHERE provider_payment_id = {}")


async def find_attempt(providers: tuple[str, ...], provider_payment_id: str | None,
                       merchant_reference: str | None) -> dict[str, Any] | None:
    """The attempt a return or notification is about, if it belongs to one of `providers`."""
    for statement, key in ((_ATTEMPT_BY_REFERENCE, merchant_reference), (_ATTEMPT_BY_PAYMENT_ID, provider_payment_id)):
        if key:
            found = await statement.first(key)
            if found and found["provider"] in providers:
                return found
    return None


async def apply_observation(
    attempt_id: int,
    observation: Observation,
    kind: str,
    signature_ok: bool | None = None,
) -> Applied:
    """Apply one provider observation to an attempt, its order and stock. Idempotent.

    Duplicates (same provider event id) change nothing. Terminal states never regress.
    An amount or currency that differs from the attempt's is recorded and flagged, not paid."""
    engine = PaymentAttempt._meta.db
    try:
        async with write_transaction(engine):
            return await _apply(attempt_id, observation, kind, signature_ok)
    except Exception as exc:
        if observation.event_id and is_unique_violation(exc):
            # The same event was applied by a concurrent request: nothing left to do.
            return Applied(attempt_id, duplicate=True)
        raise


_ATTEMPT_BY_ID = Statement(PaymentAttempt, "SELECT * FROM payment_attempt WHERE id = {}")
# SQLite has one writer at a time: the write transaction already holds the whole database.
_LOCK_ATTEMPT = Statement(PaymentAttempt, _ATTEMPT_BY_ID.template + " FOR UPDATE")
_EVENT_SEEN = Statement(PaymentEvent, "SELECT 1 AS seen FROM payment_event WHERE provider = {} AND provider_event_id = {}")


async def lock_attempt(attempt_id: int) -> dict[str, Any] | None:
    if is_postgres(PaymentAttempt._meta.db):
        # Every observation of one attempt queues here, so checks below see committed events.
        return await _LOCK_ATTEMPT.first(attempt_id)
    return await _ATTEMPT_BY_ID.first(attempt_id)


async def _apply(attempt_id: int, obs: Observation, kind: str, signature_ok: bool | None) -> Applied:
    attempt = await lock_attempt(attempt_id)
    if attempt is None:
        raise LookupError(f"no payment attempt {attempt_id}")
    provider = attempt["provider"]
    before = attempt["status"]
    if obs.event_id:
        if await _EVENT_SEEN.first(provider, obs.event_id):
            return Applied(attempt_id, duplicate=True, status_before=before, status_after=before)

    def event(status_after: str, note: str = "") -> Any:
        return record_event(attempt_id, provider, kind, obs.payload, event_type=obs.event_type,
                            provider_event_id=obs.event_id, signature_ok=signature_ok,
                            status_before=before, status_after=status_after, note=note)

    if obs.provider_payment_id and attempt["provider_payment_id"] and obs.provider_payment_id != attempt["provider_payment_id"]:
        await event(before, note="ignored: reported payment id is not this attempt's")
        return Applied(attempt_id, status_before=before, status_after=before)

    if obs.refund_status is not None:
        after = await _apply_refund(attempt, obs)
        await event(after)
        return Applied(attempt_id, changed=after != before, status_before=before, status_after=after)

    mismatch = _mismatch(attempt, obs)
    if mismatch:
        await _flag_order(attempt["order"], mismatch)
        await event(before, note=mismatch)
        log.warning("payment %s flagged: %s", attempt["merchant_reference"], mismatch)
        return Applied(attempt_id, status_before=before, status_after=before, flagged=mismatch)

    current = PaymentStatus(before)
    new = next_payment_status(current, obs.status) if obs.status else current
    if new == current:
        # Late or repeated news: recorded, nothing moves. Still fill receipt fields we lacked.
        if current in CAPTURED_PAYMENT and obs.status == PaymentStatus.CAPTURED:
            await _store_receipt(attempt, obs)
        await event(before)
        return Applied(attempt_id, status_before=before, status_after=before)

    check_payment_move(current, new)
    values: dict[str, Any] = {"status": new.value}
    if obs.provider_payment_id and not attempt["provider_payment_id"]:
        values["provider_payment_id"] = obs.provider_payment_id
    if new in FAILED_PAYMENT or new in CAPTURED_PAYMENT:
        values["finalized_at"] = utcnow()
        values["next_check_at"] = None
    if new in FAILED_PAYMENT:
        values["failure_reason"] = (obs.failure_reason or obs.receipt.result or new.value)[:500]
    if new == PaymentStatus.CAPTURED:
        values["captured_fils"] = attempt["amount_fils"]
        values["failure_reason"] = ""
    values.update(_receipt_values(obs))
    await _update_attempt(attempt_id, values)
    await _move_order({**attempt, **values}, new)
    after = await _settle_refunds(attempt_id) if new == PaymentStatus.CAPTURED else new.value
    await event(after)
    return Applied(attempt_id, changed=True, status_before=before, status_after=after)


def _mismatch(attempt: dict[str, Any], obs: Observation) -> str:
    if obs.status != PaymentStatus.CAPTURED:
        return ""
    if obs.amount_fils is not None and obs.amount_fils != attempt["amount_fils"]:
        return f"amount mismatch: provider reported {obs.amount_fils} fils, attempt is {attempt['amount_fils']}"
    if obs.currency is not None and obs.currency.upper() != attempt["currency"]:
        return f"currency mismatch: provider reported {obs.currency}, attempt is {attempt['currency']}"
    if obs.amount_fils is None:
        return "capture reported without an amount; not trusted"
    return ""


def _receipt_values(obs: Observation) -> dict[str, Any]:
    receipt = obs.receipt
    pairs = {
        "knet_payment_id": receipt.payment_id, "knet_transaction_id": receipt.transaction_id,
        "knet_auth_code": receipt.auth_code, "knet_bank_reference": receipt.bank_reference,
        "knet_track_id": receipt.track_id, "knet_result": receipt.result, "knet_post_date": receipt.post_date,
    }
    return {k: v[:40] for k, v in pairs.items() if v}


async def _store_receipt(attempt: dict[str, Any], obs: Observation) -> None:
    missing = {k: v for k, v in _receipt_values(obs).items() if not attempt.get(k)}
    if missing:
        await _update_attempt(attempt["id"], missing)


async def _flag_order(order_id: int, reason: str) -> None:
    order = await Order.select(Order.attention_reason).where(Order.id == order_id).first()
    reasons = [r for r in (order or {}).get("attention_reason", "").split("\n") if r]
    if reason not in reasons:
        reasons.append(reason)
    await _ORDER_UPDATE.row(order_id, {"needs_attention": True, "attention_reason": "\n".join(reasons)[-2000:],
                                       "updated_at": utcnow()})


_ORDER_BY_ID = Statement(Order, "SELECT * FROM shop_order WHERE id = {}")
_ORDER_LINES = Statement(OrderLine, 'SELECT * FROM order_line WHERE "order" = {} ORDER BY id')
_OTHER_CAPTURES = Statement(PaymentAttempt, 'SELECT count(*) AS n FROM payment_attempt WHERE "order" = {} AND id <> {} '
                            f"AND status IN ({', '.join('{}' for _ in CAPTURED_PAYMENT)})")


async def _move_order(attempt: dict[str, Any], payment: PaymentStatus) -> None:
    """Carry a payment move to its order: state, stock (exactly once), receipt email."""
    order = await _ORDER_BY_ID.first(attempt["order"])
    assert order is not None
    latest = await _LATEST_ATTEMPT.first(order["id"])
    is_latest = latest is not None and latest["id"] == attempt["id"]
    if payment in FAILED_PAYMENT and not is_latest:
        return  # an older attempt failing after a retry says nothing about the order
    current = OrderStatus(order["status"])
    if payment == PaymentStatus.CAPTURED:
        others = await _OTHER_CAPTURES.first(order["id"], attempt["id"], *(s.value for s in CAPTURED_PAYMENT))
        if others and others["n"]:
            await _flag_order(order["id"], "paid more than once: refund the extra payment")
    path = settle_order_status(current, payment)
    new = path[-1] if path else current
    values: dict[str, Any] = {}
    lines = await _ORDER_LINES.rows(order["id"])
    if OrderStatus.PAID in path:
        values["paid_at"] = utcnow()
        if order["stock_state"] == "reserved":
            await stock.sell_reserved(lines)
            values["stock_state"] = "sold"
        elif order["stock_state"] == "released":
            short = await stock.sell_unreserved(lines)
            values["stock_state"] = "short" if short else "sold"
            if short:
                await _flag_order(order["id"], "captured after the order expired; stock no longer available")
        await queue_receipt(order, lines)
    elif new in (OrderStatus.PAYMENT_FAILED, OrderStatus.EXPIRED, OrderStatus.CANCELLED) and order["stock_state"] == "reserved":
        await stock.release(lines)
        values["stock_state"] = "released"
    if new != current:
        values["status"] = new.value
    if values:
        values["updated_at"] = utcnow()
        await _ORDER_UPDATE.row(order["id"], values)


async def _apply_refund(attempt: dict[str, Any], obs: Observation) -> str:
    """Refund news: move the refund row forward once, then derive the attempt's state from money."""
    refund = None
    if obs.refund_id:
        refund = await Refund.select().where(
            (Refund.attempt == attempt["id"]) & (Refund.provider_refund_id == obs.refund_id)
        ).first()
    if refund is None and obs.refund_status in ("pending", "succeeded") and obs.refund_id and obs.refund_amount_fils:
        # A refund made outside the shop (provider dashboard): keep track of it too.
        created = await Refund.insert(Refund(
            attempt=attempt["id"], amount_fils=obs.refund_amount_fils, status=obs.refund_status,
            provider_refund_id=obs.refund_id, idempotency_key=f"external-{obs.refund_id}"[:64],
            reason="made at the provider",
        )).returning(*Refund.all_columns())
        refund = created[0]
    if refund is None:
        return attempt["status"]
    order_of_refund = {"requested": 0, "pending": 1, "succeeded": 2, "failed": 2}
    new_status = obs.refund_status or refund["status"]
    if order_of_refund[new_status] > order_of_refund[refund["status"]]:
        await Refund.update({Refund.status: new_status, Refund.updated_at: utcnow(),
                             Refund.failure_reason: obs.failure_reason[:500] if new_status == "failed" else ""}
                            ).where(Refund.id == refund["id"])
    return await _settle_refunds(attempt["id"])


_REFUNDS_OF_ATTEMPT = Statement(Refund, "SELECT amount_fils, status FROM refund WHERE attempt = {}")


async def _settle_refunds(attempt_id: int) -> str:
    """Derive a captured attempt's state from its refunds' money. Before the capture is known
    (a refund reported first, out of order) nothing moves: the capture settles it later."""
    attempt = await _ATTEMPT_BY_ID.first(attempt_id)
    assert attempt is not None
    current = PaymentStatus(attempt["status"])
    if current not in CAPTURED_PAYMENT:
        return current.value
    refunds = await _REFUNDS_OF_ATTEMPT.rows(attempt_id)
    refunded = sum(r["amount_fils"] for r in refunds if r["status"] == "succeeded")
    pending = any(r["status"] in ("requested", "pending") for r in refunds)
    new = refund_state(attempt["captured_fils"], refunded, pending)
    if new != current:
        check_payment_move(current, new)
        await _update_attempt(attempt_id, {"status": new.value, "refunded_fils": refunded})
        await _move_order({**attempt, "status": new.value}, new)
    elif refunded != attempt["refunded_fils"]:
        await _update_attempt(attempt_id, {"refunded_fils": refunded})
    return new.value


_LATEST_ATTEMPT = Statement(PaymentAttempt, 'SELECT * FROM payment_attempt WHERE "order" = {} ORDER BY number DESC LIMIT 1')


async def latest_attempt(order_id: int) -> dict[str, Any] | None:
    return await _LATEST_ATTEMPT.first(order_id)


def is_open(attempt: dict[str, Any] | None) -> bool:
    return attempt is not None and PaymentStatus(attempt["status"]) in OPEN_PAYMENT


def with_event(obs: Observation, **changes: Any) -> Observation:
    return replace(obs, **changes)
