"""Reconciliation: ask providers about attempts still open, expire those past their window.

Runs as a loop in every app process, but only the holder of the database lease works, so
several processes never inquire twice; `shop reconcile` runs one pass by hand."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx

from shop.notifications.outbox import deliver_pending
from shop.payments.providers.base import Observation, ProviderError
from shop.payments.registry import UnknownProvider, provider_for
from shop.payments.service import apply_observation, next_check, record_event, utcnow
from shop.orders.tables import Order
from shop.payments.states import OPEN_PAYMENT, OrderStatus, PaymentStatus, check_order_move
from shop.payments.tables import Lease, PaymentAttempt, Refund
from shop.settings import Settings

log = logging.getLogger("shop.reconcile")
LEASE_NAME = "reconciler"
NEVER_HELD = datetime(2000, 1, 1, tzinfo=timezone.utc)
# Past the provider's window we wait this long for late news before expiring locally.
EXPIRY_GRACE = timedelta(minutes=2)
BATCH = 50
# A failed order may be retried this long; after that it expires (its stock went back already).
ABANDONED_AFTER = timedelta(hours=24)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def acquire_lease(holder: str, ttl_s: int) -> bool:
    """Take or renew the lease; True if this process leads until it expires."""
    now = utcnow()
    # A new lease row starts long expired, so the first process to ask takes it.
    await Lease.insert(Lease(name=LEASE_NAME, holder="", expires_at=NEVER_HELD)).on_conflict(action="DO NOTHING")
    rows = await Lease.update({Lease.holder: holder, Lease.expires_at: now + timedelta(seconds=ttl_s)}).where(
        (Lease.name == LEASE_NAME) & ((Lease.expires_at < now) | (Lease.holder == holder))
    ).returning(Lease.id)
    return bool(rows)


@dataclass(slots=True)
class PassReport:
    checked: int = 0
    settled: int = 0
    expired: int = 0
    unreachable: int = 0
    errors: list[str] = field(default_factory=list)


async def reconcile_once(settings: Settings, client: httpx.AsyncClient, due_only: bool = True) -> PassReport:
    """One pass over open attempts (those whose check is due, or all). Safe to run concurrently."""
    now = utcnow()
    report = PassReport()
    condition = PaymentAttempt.status.is_in([s.value for s in OPEN_PAYMENT])
    if due_only:
        condition &= (PaymentAttempt.next_check_at <= now) | PaymentAttempt.next_check_at.is_null()
    query = PaymentAttempt.select().where(condition).order_by(PaymentAttempt.next_check_at)
    # The background loop works in batches; a pass by hand (after a crash) asks about every one.
    due = await (query.limit(BATCH) if due_only else query)
    for attempt in due:
        if creating(attempt, now, settings):
            continue  # its create call is still under way: that call's answer decides
        report.checked += 1
        try:
            provider = provider_for(attempt["provider"], settings, client)
        except UnknownProvider:
            report.errors.append(f"attempt {attempt['id']}: unknown provider {attempt['provider']}")
            continue
        observation: Observation | None
        try:
            observation = await provider.inquire(attempt["provider_payment_id"], attempt["merchant_reference"])
        except ProviderError as exc:
            report.unreachable += 1
            observation = None
            await record_event(attempt["id"], attempt["provider"], "inquiry", {"error": str(exc)}, note="no answer")
        if observation is not None and observation.status is not None:
            applied = await apply_observation(attempt["id"], observation, "inquiry")
            if applied.status_after and PaymentStatus(applied.status_after) not in OPEN_PAYMENT:
                report.settled += 1
                continue
        if observation is not None and observation.unknown_to_provider and never_started(attempt, now, settings):
            report.settled += await _close(attempt["id"], PaymentStatus.FAILED,
                                           "the provider never started this payment", "not started")
            continue
        expires_at = attempt["expires_at"]
        if expires_at is not None and now > expires_at + EXPIRY_GRACE and observation is not None:
            # The provider answered and still has nothing final, long after its window closed.
            report.expired += await _close(attempt["id"], PaymentStatus.EXPIRED,
                                           "expired: no result within the payment window", "expired by reconciliation")
            continue
        # Back off, unless the attempt moved meanwhile (a create that just failed asks to be
        # checked at once; pushing that back would leave the customer waiting).
        await PaymentAttempt.update({
            PaymentAttempt.checks: attempt["checks"] + 1,
            PaymentAttempt.next_check_at: next_check(attempt["checks"] + 1, now),
        }).where((PaymentAttempt.id == attempt["id"]) & (PaymentAttempt.status == attempt["status"]))
    return report


async def _close(attempt_id: int, status: PaymentStatus, reason: str, event_type: str) -> int:
    """Settle an attempt on the shop's own word (1 if it moved): recorded as a note."""
    applied = await apply_observation(attempt_id, Observation(status=status, failure_reason=reason,
                                                              event_type=event_type), "note")
    return int(applied.changed)


def _create_window(settings: Settings) -> timedelta:
    """Longer than any create call may take (connect, then the read timeout)."""
    return timedelta(seconds=2 * settings.provider_timeout_s + 5)


def creating(attempt: dict, now: datetime, settings: Settings) -> bool:
    """The attempt's create call may still be under way in some process."""
    created = attempt["created_at"]
    return (attempt["status"] == PaymentStatus.INITIATED and created is not None
            and now - created <= _create_window(settings))


def never_started(attempt: dict, now: datetime, settings: Settings) -> bool:
    """For a payment the provider says it does not know: its create call is over and no payment
    page was ever shown, so no customer can pay it; it has failed (a later capture still wins).

    Over means the shop recorded the unknown answer (`pending`), or a process died mid-call
    (`initiated`) longer ago than any call may take."""
    if attempt["redirect_url"]:
        return False
    return attempt["status"] == PaymentStatus.PENDING or not creating(attempt, now, settings)


async def settle_pending_refunds(settings: Settings, client: httpx.AsyncClient) -> int:
    """Ask about refunds still pending where the provider can be asked (unsigned refund news)."""
    pending = await Refund.select(
        Refund.id, Refund.provider_refund_id, Refund.attempt, Refund.attempt.provider.as_alias("provider")
    ).where((Refund.status == "pending") & Refund.provider_refund_id.is_not_null()).order_by(Refund.id).limit(BATCH)
    settled = 0
    for refund in pending:
        try:
            provider = provider_for(refund["provider"], settings, client)
            observation = await provider.inquire_refund(refund["provider_refund_id"])
        except (UnknownProvider, ProviderError):
            continue
        if observation is not None and observation.refund_status != "pending":
            await apply_observation(refund["attempt"], observation, "inquiry")
            settled += 1
    return settled


async def expire_abandoned_orders(after: timedelta = ABANDONED_AFTER) -> int:
    """Close failed orders nobody retried. Stock was released when the payment failed."""
    check_order_move(OrderStatus.PAYMENT_FAILED, OrderStatus.EXPIRED)
    cutoff = utcnow() - after
    rows = await Order.update({Order.status: OrderStatus.EXPIRED.value, Order.updated_at: utcnow()}).where(
        (Order.status == OrderStatus.PAYMENT_FAILED.value) & (Order.updated_at <= cutoff)
    ).returning(Order.id)
    return len(rows)


async def run_forever(settings: Settings, client: httpx.AsyncClient) -> None:
    """The background loop of one app process; only the lease holder does the work."""
    interval = settings.reconcile_interval_s
    me = holder_id()
    while True:
        try:
            if await acquire_lease(me, ttl_s=interval * 3):
                report = await reconcile_once(settings, client)
                await settle_pending_refunds(settings, client)
                await expire_abandoned_orders()
                if report.checked:
                    log.info("reconciled %s attempts: %s settled, %s expired, %s unreachable",
                             report.checked, report.settled, report.expired, report.unreachable)
                await deliver_pending(settings.smtp_url, settings.email_from)
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must survive a bad pass; the next one retries
            log.exception("reconciliation pass failed")
        await asyncio.sleep(interval)
