"""What staff do to an order: fulfil it, cancel it, ask the provider about it again.

One function per business event. Each checks the role and the state, changes state only
through the state tables (`check_order_move`), the stock module's arithmetic, the refund
service and `apply_observation`, and writes its audit row in the same transaction."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from shop.db import is_postgres, write_transaction
from shop.i18n import current_language, gettext as _
from shop.money import format_kwd
from shop.orders import stock
from shop.orders.tables import Order, OrderLine
from shop.payments.flows import OrderError, send_payment_link as start_link
from shop.payments.providers.base import Provider, ProviderError, ProviderRejected
from shop.payments.refunds import RefundError, RefundOutcome, create_refund, refundable_fils, retry_requested_refunds, send_refund
from shop.payments.registry import UnknownProvider
from shop.payments.service import Applied, apply_observation, latest_attempt, record_event, utcnow
from shop.payments.states import CAPTURED_PAYMENT, OrderStatus, PaymentStatus, check_order_move
from shop.payments.tables import PaymentAttempt, Refund
from shop.staff.audit import audit
from shop.staff.auth import Role, Staff

Providers = Callable[[str], Provider]  # slug -> adapter (raises UnknownProvider)
UNPAID_CANCELLABLE = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAYMENT_FAILED})
PAID_CANCELLABLE = frozenset({OrderStatus.PAID})  # paid and not yet sent out
RETURNED = "returned"  # stock_state of a paid order cancelled before dispatch: goods back on the shelf


class ActionError(Exception):
    """The action does not apply to this order now; the message is for staff."""

    status_code = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionForbidden(ActionError):
    """The staff member's role may not do this to an order in this state."""

    status_code = 403


class ProviderDown(ActionError):
    """The provider did not answer (or refused the question); nothing was changed."""

    status_code = 503


def _kwd(fils: int) -> str:
    return format_kwd(fils, current_language.get())


async def lock_order(order_id: int) -> dict[str, Any] | None:
    """Inside a write transaction: the order, with its attempts locked first and then itself.

    Same order as `apply_observation` (attempt, then order), so a provider signal and a staff
    action on one order queue one behind the other instead of interleaving. SQLite's
    immediate transaction already serialises every writer."""
    if not is_postgres(Order._meta.db):
        return await Order.select().where(Order.id == order_id).first()
    await PaymentAttempt.select(PaymentAttempt.id).where(PaymentAttempt.order == order_id).order_by(
        PaymentAttempt.id).lock_rows()
    return await Order.select().where(Order.id == order_id).lock_rows().first()


async def _lines(order_id: int) -> list[dict[str, Any]]:
    return await OrderLine.select(OrderLine.product, OrderLine.quantity).where(OrderLine.order == order_id)


async def _open_refunds(order_id: int) -> int:
    return await Refund.count().where((Refund.attempt.order == order_id) & Refund.status.is_in(["requested", "pending"]))


# ---------------------------------------------------------------- fulfil


async def fulfil(order_id: int, staff: Staff) -> dict[str, Any]:
    """Paid -> fulfilled (owner, operations). Raises ActionError / ActionForbidden. Idempotent
    in effect: a second call finds the order fulfilled and refuses, changing nothing."""
    if not staff.can(Role.OPERATIONS):
        raise ActionForbidden(_("Only operations staff can mark orders fulfilled."))
    async with write_transaction(Order._meta.db):
        order = await lock_order(order_id)
        if order is None:
            raise ActionError(_("No such order."))
        if order["status"] != OrderStatus.PAID:
            raise ActionError(_("Only a paid order can be marked fulfilled."))
        if order["stock_state"] == RETURNED:
            raise ActionError(_("This order was cancelled and its items went back to stock."))
        if await _open_refunds(order_id):
            raise ActionError(_("A refund of this order is under way; wait for it before fulfilling."))
        check_order_move(OrderStatus.PAID, OrderStatus.FULFILLED)
        await Order.update({Order.status: OrderStatus.FULFILLED.value, Order.updated_at: utcnow()}).where(
            Order.id == order_id)
        await audit(staff, "order.fulfil", "order", order["reference"], before={"status": order["status"]},
                    after={"status": OrderStatus.FULFILLED.value})
    return {**order, "status": OrderStatus.FULFILLED.value}


# ---------------------------------------------------------------- cancel


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    needs_confirmation: bool = False  # a paid order: say what will be refunded, then ask again
    refund_fils: int = 0  # what the cancellation refunds (or would refund)
    refunds: list[RefundOutcome] = field(default_factory=list)

    @property
    def unanswered(self) -> bool:
        return any(r.unanswered for r in self.refunds)


async def _captured_attempts(order_id: int) -> list[dict[str, Any]]:
    rows = await PaymentAttempt.select().where(PaymentAttempt.order == order_id).order_by(PaymentAttempt.id)
    return [a for a in rows if PaymentStatus(a["status"]) in CAPTURED_PAYMENT]


async def cancellation_refund(order_id: int) -> int:
    """What cancelling a paid order would refund: every captured attempt's remainder."""
    return sum([await refundable_fils(a) for a in await _captured_attempts(order_id)])


async def cancel(order_id: int, staff: Staff, reason: str, confirmed: bool, providers: Providers) -> CancelOutcome:
    """Cancel an order.

    Unpaid (pending_payment, payment_failed; owner, operations): cancelled, its reserved stock
    released exactly once. Paid and not fulfilled (owner, finance): needs `confirmed` and a
    reason; refunds what is left of every captured payment first, and puts the items back on
    the shelf; the order becomes refunded as the refunds succeed. Raises ActionError,
    ActionForbidden or RefundError, with nothing changed."""
    reason = reason.strip()[:2000]
    order = await Order.select(Order.status).where(Order.id == order_id).first()
    if order is None:
        raise ActionError(_("No such order."))
    status = OrderStatus(order["status"])
    if status in UNPAID_CANCELLABLE:
        if not staff.can(Role.OPERATIONS):
            raise ActionForbidden(_("Only operations staff can cancel an unpaid order."))
        await _cancel_unpaid(order_id, staff, reason)
        return CancelOutcome()
    if status in PAID_CANCELLABLE:
        if not staff.can(Role.FINANCE):
            raise ActionForbidden(_("Cancelling a paid order refunds it: only owners and finance staff can."))
        if not confirmed:
            return CancelOutcome(needs_confirmation=True, refund_fils=await cancellation_refund(order_id))
        if not reason:
            raise RefundError(_("Give a reason for the refund."), "reason")
        return await _cancel_paid(order_id, staff, reason, providers)
    raise ActionError(_("An order in this state cannot be cancelled."))


async def _cancel_unpaid(order_id: int, staff: Staff, reason: str) -> None:
    async with write_transaction(Order._meta.db):
        order = await lock_order(order_id)
        assert order is not None
        current = OrderStatus(order["status"])
        if current not in UNPAID_CANCELLABLE:  # a payment landed meanwhile
            raise ActionError(_("The order changed meanwhile; reload it and try again."))
        check_order_move(current, OrderStatus.CANCELLED)
        values: dict[Any, Any] = {Order.status: OrderStatus.CANCELLED.value, Order.updated_at: utcnow()}
        # Under the lock, "reserved" means not yet given back: released here, once.
        if order["stock_state"] == "reserved":
            await stock.release(await _lines(order_id))
            values[Order.stock_state] = "released"
        await Order.update(values).where(Order.id == order_id)
        await audit(staff, "order.cancel", "order", order["reference"],
                    before={"status": current.value, "stock_state": order["stock_state"]},
                    after={"status": OrderStatus.CANCELLED.value,
                           "stock_state": values.get(Order.stock_state, order["stock_state"])},
                    reason=reason)


async def _cancel_paid(order_id: int, staff: Staff, reason: str, providers: Providers) -> CancelOutcome:
    created: list[tuple[Provider, dict[str, Any]]] = []
    async with write_transaction(Order._meta.db):
        order = await lock_order(order_id)
        assert order is not None
        if OrderStatus(order["status"]) not in PAID_CANCELLABLE:
            raise ActionError(_("The order changed meanwhile; reload it and try again."))
        total = 0
        for attempt in await _captured_attempts(order_id):
            remaining = await refundable_fils(attempt)
            if remaining <= 0:
                continue
            try:
                provider = providers(attempt["provider"])
            except UnknownProvider:
                raise ActionError(_("The payment provider of this order is not available.")) from None
            refund = await create_refund(provider, attempt, remaining, reason, staff)
            created.append((provider, refund))
            total += remaining
        restocked = order["stock_state"] == "sold"
        if restocked:
            await stock.restock(await _lines(order_id))
            await Order.update({Order.stock_state: RETURNED, Order.updated_at: utcnow()}).where(Order.id == order_id)
        await audit(staff, "order.cancel", "order", order["reference"],
                    before={"status": order["status"], "stock_state": order["stock_state"]},
                    after={"refund_fils": total, "refunds": [r["id"] for _p, r in created],
                           "stock_state": RETURNED if restocked else order["stock_state"]},
                    reason=reason)
    # Committed: now the provider calls, outside every lock.
    outcomes = [await send_refund(provider, refund["id"]) for provider, refund in created]
    return CancelOutcome(refund_fils=total, refunds=outcomes)


# ---------------------------------------------------------------- re-check


@dataclass(frozen=True, slots=True)
class RecheckOutcome:
    applied: Applied | None
    ignored: str = ""  # why the provider's answer was not applied
    refunds: list[RefundOutcome] = field(default_factory=list)


async def recheck(order_id: int, staff: Staff, providers: Providers) -> RecheckOutcome:
    """Ask the provider about the order's latest payment now and apply the answer like any
    inquiry; then send again refunds no provider answered. Idempotent. Raises ProviderDown
    (nothing changed) or ActionError."""
    order = await Order.select().where(Order.id == order_id).first()
    if order is None:
        raise ActionError(_("No such order."))
    attempt = await latest_attempt(order_id)
    if attempt is None:
        raise ActionError(_("This order has no payment to check."))
    try:
        provider = providers(attempt["provider"])
    except UnknownProvider:
        raise ActionError(_("The payment provider of this order is not available.")) from None
    try:
        observation = await provider.inquire(attempt["provider_payment_id"], attempt["merchant_reference"])
    except ProviderRejected:
        raise ProviderDown(_("The payment provider refused the status check. Nothing was changed.")) from None
    except ProviderError:
        raise ProviderDown(_("The payment provider did not answer. Nothing was changed; try again in a moment.")) from None
    if observation.merchant_reference and observation.merchant_reference != attempt["merchant_reference"]:
        await record_event(attempt["id"], provider.slug, "inquiry", observation.payload,
                           note="ignored: the provider's payment belongs to another reference")
        return RecheckOutcome(None, ignored=_("The provider answered about another payment; nothing was changed."))
    async with write_transaction(Order._meta.db):
        applied = await apply_observation(attempt["id"], observation, "inquiry")
        after = await Order.select(Order.status).where(Order.id == order_id).first()
        await audit(staff, "order.recheck", "order", order["reference"],
                    before={"order": order["status"], "payment": applied.status_before},
                    after={"order": after["status"] if after else "", "payment": applied.status_after,
                           "flagged": applied.flagged})
    refunds = await retry_requested_refunds(order_id, providers)
    return RecheckOutcome(applied, refunds=refunds)


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    url: str  # "" when the provider did not answer (the link may exist: the re-check will tell)
    unanswered: bool = False


async def send_payment_link(order_id: int, staff: Staff, provider: Provider, public_url: str,
                            channel: str) -> LinkOutcome:
    """A payment link for an order awaiting payment, through the active provider (its own new
    attempt, settled like any other). Raises ActionError."""
    order = await Order.select().where(Order.id == order_id).first()
    if order is None:
        raise ActionError(_("This order no longer exists."))
    try:
        outcome = await start_link(order, provider, public_url, channel)
    except OrderError as exc:
        raise ActionError(str(exc)) from None
    assert outcome.attempt is not None
    await audit(staff, "order.payment_link", "order", order["reference"],
                after={"provider": provider.slug, "channel": channel,
                       "merchant_reference": outcome.attempt["merchant_reference"], "url": outcome.redirect_url,
                       "outcome": outcome.error or "sent"})
    if outcome.error == "rejected":
        raise ActionError(_("The payment provider refused to make a link for this order."))
    return LinkOutcome(url=outcome.redirect_url, unanswered=outcome.error == "unavailable")
