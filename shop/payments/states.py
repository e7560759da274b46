"""The order and payment state machines: states, allowed moves, and how an observation lands.

Everything here is pure; `shop.payments.service.apply_observation` applies it to the database.
"""
from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    INITIATED = "initiated"
    PENDING = "pending"
    CAPTURED = "captured"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"
    REFUND_PENDING = "refund_pending"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    PAYMENT_FAILED = "payment_failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


P, O = PaymentStatus, OrderStatus

# Before money moved: the attempt may still go anywhere.
OPEN_PAYMENT = frozenset({P.INITIATED, P.PENDING})
# The provider said no. Still upgradable to captured: money reported captured is never ignored.
FAILED_PAYMENT = frozenset({P.DECLINED, P.CANCELLED, P.EXPIRED, P.FAILED})
# Money was taken; only refunds move it from here.
CAPTURED_PAYMENT = frozenset({P.CAPTURED, P.REFUND_PENDING, P.PARTIALLY_REFUNDED, P.REFUNDED})
FINAL_PAYMENT = FAILED_PAYMENT | CAPTURED_PAYMENT

PAYMENT_TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    P.INITIATED: frozenset({P.PENDING}) | FAILED_PAYMENT | {P.CAPTURED},
    P.PENDING: FAILED_PAYMENT | {P.CAPTURED},
    **{s: frozenset({P.CAPTURED}) for s in FAILED_PAYMENT},
    P.CAPTURED: frozenset({P.REFUND_PENDING, P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.REFUND_PENDING: frozenset({P.CAPTURED, P.PARTIALLY_REFUNDED, P.REFUNDED}),
    P.PARTIALLY_REFUNDED: frozenset({P.REFUND_PENDING, P.REFUNDED}),
    P.REFUNDED: frozenset(),
}

ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    O.PENDING_PAYMENT: frozenset({O.PAID, O.PAYMENT_FAILED, O.CANCELLED, O.EXPIRED}),
    # A failed order may be retried; a late capture still makes any unpaid order paid.
    O.PAYMENT_FAILED: frozenset({O.PENDING_PAYMENT, O.PAID, O.CANCELLED, O.EXPIRED}),
    O.EXPIRED: frozenset({O.PAID}),
    O.CANCELLED: frozenset({O.PAID}),
    O.PAID: frozenset({O.FULFILLED, O.PARTIALLY_REFUNDED, O.REFUNDED}),
    O.FULFILLED: frozenset({O.PARTIALLY_REFUNDED, O.REFUNDED}),
    O.PARTIALLY_REFUNDED: frozenset({O.REFUNDED}),
    O.REFUNDED: frozenset(),
}
UNPAID_ORDER = frozenset({O.PENDING_PAYMENT, O.PAYMENT_FAILED, O.EXPIRED, O.CANCELLED})


class IllegalTransition(ValueError):
    """A move the state machine does not allow (a programming error, never customer input)."""


def check_payment_move(current: PaymentStatus, new: PaymentStatus) -> None:
    if new != current and new not in PAYMENT_TRANSITIONS[current]:
        raise IllegalTransition(f"payment {current} -> {new}")


def check_order_move(current: OrderStatus, new: OrderStatus) -> None:
    if new != current and new not in ORDER_TRANSITIONS[current]:
        raise IllegalTransition(f"order {current} -> {new}")


def next_payment_status(current: PaymentStatus, observed: PaymentStatus) -> PaymentStatus:
    """Where an attempt goes when the provider reports `observed` (a capture-side status).

    The strongest news wins and nothing regresses: captured beats any failure, the first
    failure beats later ones and any pending, and a pending report never undoes a decision.
    Refund states are derived from refund amounts instead (see `refund_state`).
    """
    if current in CAPTURED_PAYMENT:
        return current
    if observed == P.CAPTURED:
        return P.CAPTURED
    if current in FAILED_PAYMENT:
        return current
    if observed in FAILED_PAYMENT:
        return observed
    if observed == P.PENDING:
        return P.PENDING
    return current


def refund_state(captured_fils: int, refunded_fils: int, refunds_pending: bool) -> PaymentStatus:
    """The captured-side status from the money: what was refunded, and whether more is on its way."""
    if refunds_pending:
        return P.REFUND_PENDING
    if captured_fils > 0 and refunded_fils >= captured_fils:
        return P.REFUNDED
    if refunded_fils > 0:
        return P.PARTIALLY_REFUNDED
    return P.CAPTURED


def order_status_for_payment(current: OrderStatus, payment: PaymentStatus) -> OrderStatus:
    """The order's state after its latest attempt reached `payment`."""
    if payment in CAPTURED_PAYMENT:
        if current in UNPAID_ORDER:
            return O.PAID
        if payment == P.REFUNDED:
            return O.REFUNDED
        if payment == P.PARTIALLY_REFUNDED and current in (O.PAID, O.FULFILLED):
            return O.PARTIALLY_REFUNDED
        return current
    # Any failed attempt, a timed-out KNET page included, leaves the order open to a retry;
    # the order itself expires only when the customer never comes back (see reconciliation).
    if current == O.PENDING_PAYMENT and payment in FAILED_PAYMENT:
        return O.PAYMENT_FAILED
    return current


def settle_order_status(current: OrderStatus, payment: PaymentStatus) -> list[OrderStatus]:
    """The legal moves that bring an order in line with its payment, in order (often none).

    Usually one step; an unpaid order whose payment is already refunded takes two (paid first)."""
    path: list[OrderStatus] = []
    state = current
    for _ in range(len(OrderStatus)):
        following = order_status_for_payment(state, payment)
        if following == state:
            break
        check_order_move(state, following)
        path.append(following)
        state = following
    return path
