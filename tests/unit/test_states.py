"""Property tests for the pure order/payment state machines (design.md, "States (contract)").

The expected outcomes are computed here from the contract, independently of the code under test.
"""
from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop.payments.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    IllegalTransition,
    OrderStatus,
    PaymentStatus,
    check_order_move,
    check_payment_move,
    next_payment_status,
    order_status_for_payment,
    refund_state,
    settle_order_status,
)

P, O = PaymentStatus, OrderStatus
SETTINGS = settings(max_examples=300, deadline=None)

# Spelled out literally from the contract rather than imported from the module.
OBSERVABLE = [P.PENDING, P.CAPTURED, P.DECLINED, P.CANCELLED, P.EXPIRED, P.FAILED]
FAILURES = {P.DECLINED, P.CANCELLED, P.EXPIRED, P.FAILED}
CAPTURED_SIDE = {P.CAPTURED, P.REFUND_PENDING, P.PARTIALLY_REFUNDED, P.REFUNDED}
UNPAID_ORDERS = [O.PENDING_PAYMENT, O.PAYMENT_FAILED, O.EXPIRED, O.CANCELLED]

observation = st.sampled_from(OBSERVABLE)
observations = st.lists(observation, min_size=0, max_size=30)
no_capture_observations = st.lists(
    st.sampled_from([o for o in OBSERVABLE if o != P.CAPTURED]), min_size=0, max_size=30
)


def expected_payment(seen: list[PaymentStatus]) -> PaymentStatus:
    """The state the strongest observation implies (written from the contract, not the code)."""
    if "captured" in seen:
        return P.CAPTURED
    for status in seen:
        if status in ("declined", "cancelled", "expired", "failed"):
            return status
    if "pending" in seen:
        return P.PENDING
    return P.INITIATED


def payment_trace(seen: list[PaymentStatus], start: PaymentStatus = P.INITIATED) -> list[PaymentStatus]:
    """Every state the fold passes through, starting state included."""
    trace = [start]
    for status in seen:
        trace.append(next_payment_status(trace[-1], status))
    return trace


def fold(seen: list[PaymentStatus], start: PaymentStatus = P.INITIATED) -> PaymentStatus:
    return reduce(next_payment_status, seen, start)


def order_trace(payments: list[PaymentStatus], start: OrderStatus) -> list[OrderStatus]:
    trace = [start]
    for payment in payments:
        trace.append(order_status_for_payment(trace[-1], payment))
    return trace


def assert_order_moves_allowed(trace: list[OrderStatus]) -> None:
    for before, after in zip(trace, trace[1:]):
        check_order_move(before, after)  # raises IllegalTransition on a forbidden move
        assert after == before or after in ORDER_TRANSITIONS[before]
        assert not (before == O.FULFILLED and after == O.PAID), trace


# ---------------------------------------------------------------- 1. the fold ends where the contract says


def test_expected_payment_examples() -> None:
    # Sanity checks of the independent oracle itself.
    assert expected_payment([]) == P.INITIATED
    assert expected_payment([P.PENDING, P.PENDING]) == P.PENDING
    assert expected_payment([P.PENDING, P.EXPIRED, P.DECLINED, P.PENDING]) == P.EXPIRED
    assert expected_payment([P.DECLINED, P.PENDING, P.CAPTURED, P.FAILED]) == P.CAPTURED
    assert fold([P.PENDING, P.EXPIRED, P.DECLINED, P.PENDING]) == P.EXPIRED
    assert fold([P.CAPTURED, P.DECLINED, P.PENDING]) == P.CAPTURED


# ---------------------------------------------------------------- 2. every step legal, no regression, idempotent


@SETTINGS
@given(observations)
def test_fold_ends_in_strongest_observation_through_legal_moves(seen: list[PaymentStatus]) -> None:
    trace = payment_trace(seen)
    # 1. The end state is the one the strongest observation implies.
    assert trace[-1] == expected_payment(seen)
    for i, (before, after) in enumerate(zip(trace, trace[1:])):
        # 2a. Every step is no change or an allowed move.
        check_payment_move(before, after)
        assert after == before or after in PAYMENT_TRANSITIONS[before]
        # 2b. Terminal never regresses; a decision is kept or upgraded by a capture only.
        later = trace[i:]
        if before in CAPTURED_SIDE:
            assert all(s == before for s in later), trace
        if before in FAILURES:
            assert all(s in (before, P.CAPTURED) for s in later), trace
        if before == P.PENDING:
            assert P.INITIATED not in later, trace


@SETTINGS
@given(st.sampled_from(sorted(CAPTURED_SIDE)), observations)
def test_captured_side_ignores_every_observation(start: PaymentStatus, seen: list[PaymentStatus]) -> None:
    assert all(s == start for s in payment_trace(seen, start))


def test_idempotent_from_any_state() -> None:
    # Exhaustive over the (small) domain: every state, every observation.
    for state in PaymentStatus:
        for obs in OBSERVABLE:
            once = next_payment_status(state, obs)
            assert next_payment_status(once, obs) == once, (state, obs)


@SETTINGS
@given(observations, st.data())
def test_same_observation_twice_equals_once(seen: list[PaymentStatus], data: st.DataObject) -> None:
    state = fold(seen)
    obs = data.draw(observation)
    once = next_payment_status(state, obs)
    assert next_payment_status(once, obs) == once
    # Webhooks can be delivered twice: repeating any items in place gives the same end state.
    doubled = [s for item in seen for s in ([item, item] if data.draw(st.booleans()) else [item])]
    assert fold(doubled) == fold(seen)


@SETTINGS
@given(observations, st.data())
def test_capture_is_order_independent(seen: list[PaymentStatus], data: st.DataObject) -> None:
    with_capture = seen + [P.CAPTURED]
    shuffled = data.draw(st.permutations(with_capture))
    assert fold(shuffled) == P.CAPTURED
    if P.CAPTURED in seen:
        assert fold(data.draw(st.permutations(seen))) == P.CAPTURED


# ---------------------------------------------------------------- 3. refund_state


@SETTINGS
@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_refund_state_classification(captured: int, data: st.DataObject) -> None:
    partial = data.draw(st.integers(min_value=1, max_value=captured - 1)) if captured > 1 else None
    full = data.draw(st.integers(min_value=captured, max_value=captured * 3))
    any_refunded = data.draw(st.integers(min_value=0, max_value=captured * 3))

    if partial is not None:
        assert refund_state(captured, partial, False) == P.PARTIALLY_REFUNDED
    assert refund_state(captured, full, False) == P.REFUNDED
    assert refund_state(captured, 0, False) == P.CAPTURED
    assert refund_state(captured, any_refunded, True) == P.REFUND_PENDING

    for state in {refund_state(captured, any_refunded, pending) for pending in (False, True)}:
        if state != P.CAPTURED:
            check_payment_move(P.CAPTURED, state)


@st.composite
def refund_plan(draw: st.DrawFn) -> tuple[int, list[tuple[int, bool, bool]]]:
    """A captured amount and refunds as (amount, announced pending first, then failed instead)."""
    captured = draw(st.integers(min_value=1, max_value=100_000))
    steps: list[tuple[int, bool, bool]] = []
    total = 0
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        if total >= captured:
            break
        amount = draw(st.integers(min_value=1, max_value=captured - total))
        pending_first = draw(st.booleans())
        fails = pending_first and draw(st.booleans())
        steps.append((amount, pending_first, fails))
        if not fails:
            total += amount
    if total < captured and draw(st.booleans()):
        steps.append((captured - total, draw(st.booleans()), False))  # often end fully refunded
    return captured, steps


def refund_states(captured: int, steps: list[tuple[int, bool, bool]]) -> list[PaymentStatus]:
    states = [refund_state(captured, 0, False)]
    refunded = 0
    for amount, pending_first, fails in steps:
        if pending_first:
            states.append(refund_state(captured, refunded, True))
        if not fails:
            refunded += amount
        states.append(refund_state(captured, refunded, False))
    return states


@SETTINGS
@given(refund_plan())
def test_refund_sequence_moves_are_allowed(plan: tuple[int, list[tuple[int, bool, bool]]]) -> None:
    captured, steps = plan
    states = refund_states(captured, steps)
    assert states[0] == P.CAPTURED
    for before, after in zip(states, states[1:]):
        check_payment_move(before, after)
    refunded = sum(a for a, _, fails in steps if not fails)
    expected = P.CAPTURED if refunded == 0 else P.REFUNDED if refunded >= captured else P.PARTIALLY_REFUNDED
    assert states[-1] == expected


def test_refund_state_examples() -> None:
    assert refund_state(10_000, 0, False) == P.CAPTURED
    assert refund_state(10_000, 1, False) == P.PARTIALLY_REFUNDED
    assert refund_state(10_000, 9_999, False) == P.PARTIALLY_REFUNDED
    assert refund_state(10_000, 10_000, False) == P.REFUNDED
    assert refund_state(10_000, 12_000, False) == P.REFUNDED
    assert refund_state(10_000, 0, True) == P.REFUND_PENDING
    assert refund_state(10_000, 5_000, True) == P.REFUND_PENDING


# ---------------------------------------------------------------- 4. order_status_for_payment


def expected_order(final_payment: PaymentStatus) -> OrderStatus:
    if final_payment in CAPTURED_SIDE:
        return O.PAID
    if final_payment in FAILURES:  # a timed-out page too: the customer may retry
        return O.PAYMENT_FAILED
    return O.PENDING_PAYMENT


@SETTINGS
@given(observations)
def test_order_follows_the_payment_fold(seen: list[PaymentStatus]) -> None:
    payments = payment_trace(seen)
    orders = order_trace(payments, O.PENDING_PAYMENT)
    assert_order_moves_allowed(orders)
    final = orders[-1]
    assert final == expected_order(expected_payment(seen))
    assert (final == O.PAID) == (expected_payment(seen) in CAPTURED_SIDE)
    assert final != O.EXPIRED  # only reconciliation expires orders, never a payment report


@SETTINGS
@given(no_capture_observations, st.booleans(), observations)
def test_late_capture_marks_unpaid_order_paid(
    before: list[PaymentStatus], staff_cancels: bool, after: list[PaymentStatus]
) -> None:
    payments = payment_trace(before)
    orders = order_trace(payments, O.PENDING_PAYMENT)
    if staff_cancels and orders[-1] in (O.PENDING_PAYMENT, O.PAYMENT_FAILED):
        orders.append(O.CANCELLED)
    unpaid = orders[-1]
    assert unpaid in UNPAID_ORDERS
    late = payment_trace([P.CAPTURED, *after], payments[-1])[1:]
    orders += order_trace(late, unpaid)[1:]
    assert_order_moves_allowed(orders)
    assert orders[-1] == O.PAID


@pytest.mark.parametrize("order", [O.EXPIRED, O.CANCELLED, O.PAYMENT_FAILED, O.PENDING_PAYMENT])
def test_late_capture_examples(order: OrderStatus) -> None:
    assert order_status_for_payment(order, P.CAPTURED) == O.PAID
    check_order_move(order, O.PAID)


@SETTINGS
@given(observations, st.data(), st.booleans(), st.integers(0, 20), refund_plan())
def test_refunds_move_paid_and_fulfilled_orders(
    seen: list[PaymentStatus],
    data: st.DataObject,
    fulfil: bool,
    fulfil_at: int,
    plan: tuple[int, list[tuple[int, bool, bool]]],
) -> None:
    seen = seen.copy()
    seen.insert(data.draw(st.integers(0, len(seen))), P.CAPTURED)
    payments = payment_trace(seen)
    orders = order_trace(payments, O.PENDING_PAYMENT)
    assert orders[-1] == O.PAID
    captured, steps = plan
    refunds = refund_states(captured, steps)
    fulfil_at = min(fulfil_at, len(refunds))
    for i, payment in enumerate(refunds):
        if fulfil and i == fulfil_at and orders[-1] == O.PAID:
            check_order_move(O.PAID, O.FULFILLED)
            orders.append(O.FULFILLED)
        orders.append(order_status_for_payment(orders[-1], payment))
    assert_order_moves_allowed(orders)
    final_payment = refunds[-1]
    if final_payment == P.REFUNDED:
        assert orders[-1] == O.REFUNDED
    elif final_payment == P.PARTIALLY_REFUNDED:
        assert orders[-1] == O.PARTIALLY_REFUNDED
    else:
        assert orders[-1] in (O.PAID, O.FULFILLED)


@pytest.mark.parametrize("order", [O.PAID, O.FULFILLED])
@pytest.mark.parametrize("payment", [P.PARTIALLY_REFUNDED, P.REFUNDED])
def test_refund_examples_on_paid_orders(order: OrderStatus, payment: PaymentStatus) -> None:
    result = order_status_for_payment(order, payment)
    assert result == (O.REFUNDED if payment == P.REFUNDED else O.PARTIALLY_REFUNDED)
    check_order_move(order, result)


@pytest.mark.parametrize("payment", list(PaymentStatus))
def test_fulfilled_is_never_moved_back_to_paid(payment: PaymentStatus) -> None:
    assert order_status_for_payment(O.FULFILLED, payment) != O.PAID


@SETTINGS
@given(observations, refund_plan(), st.booleans())
def test_order_mapping_is_idempotent_along_real_traces(
    seen: list[PaymentStatus], plan: tuple[int, list[tuple[int, bool, bool]]], fulfil: bool
) -> None:
    payments = payment_trace(seen)
    if payments[-1] == P.CAPTURED:
        payments += refund_states(*plan)[1:]
    order = O.PENDING_PAYMENT
    for payment in payments:
        order = order_status_for_payment(order, payment)
        assert order_status_for_payment(order, payment) == order, (order, payment)
        if fulfil and order == O.PAID:
            order = O.FULFILLED


# Outside the usual flow (an unpaid order whose attempt is already refunded, or a refunded
# order shown an older partially refunded attempt): settling is still legal and idempotent.
@pytest.mark.parametrize("order", UNPAID_ORDERS)
@pytest.mark.parametrize("payment", [P.PARTIALLY_REFUNDED, P.REFUNDED])
def test_unpaid_order_with_refunded_payment_settles_in_legal_steps(order: OrderStatus, payment: PaymentStatus) -> None:
    path = settle_order_status(order, payment)
    assert path[0] == O.PAID
    assert path[-1] == (O.REFUNDED if payment == P.REFUNDED else O.PARTIALLY_REFUNDED)
    assert settle_order_status(path[-1], payment) == []


def test_refunded_order_never_regresses_to_partially_refunded() -> None:
    assert order_status_for_payment(O.REFUNDED, P.PARTIALLY_REFUNDED) == O.REFUNDED
    assert settle_order_status(O.REFUNDED, P.PARTIALLY_REFUNDED) == []


# ---------------------------------------------------------------- 5. examples and the contract strings


def test_paid_order_cannot_return_to_pending_payment() -> None:
    with pytest.raises(IllegalTransition):
        check_order_move(OrderStatus.PAID, OrderStatus.PENDING_PAYMENT)


def test_captured_payment_cannot_be_declined() -> None:
    with pytest.raises(IllegalTransition):
        check_payment_move(PaymentStatus.CAPTURED, PaymentStatus.DECLINED)


def test_refunded_is_final_for_both() -> None:
    with pytest.raises(IllegalTransition):
        check_order_move(OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED)
    with pytest.raises(IllegalTransition):
        check_payment_move(PaymentStatus.REFUNDED, PaymentStatus.CAPTURED)


def test_order_status_values_are_the_contract_strings() -> None:
    assert [s.value for s in OrderStatus] == [
        "pending_payment", "paid", "fulfilled", "payment_failed",
        "cancelled", "expired", "partially_refunded", "refunded",
    ]  # fmt: skip


def test_payment_status_values_are_the_contract_strings() -> None:
    assert [s.value for s in PaymentStatus] == [
        "initiated", "pending", "captured", "declined", "cancelled",
        "expired", "failed", "refund_pending", "partially_refunded", "refunded",
    ]  # fmt: skip


def test_transition_tables_cover_every_state() -> None:
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    assert set(ORDER_TRANSITIONS) == set(OrderStatus)
