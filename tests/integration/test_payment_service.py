"""apply_observation: the one path every provider signal takes. Money, stock and state must end right."""
import asyncio
from datetime import timedelta

import pytest

from shop.notifications.tables import OutboxEmail
from shop.orders.tables import Order
from shop.payments.providers.base import KnetReceipt, Observation
from shop.payments.reconcile import expire_abandoned_orders
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt, PaymentEvent, Refund
from tests.integration.conftest import make_attempt, make_order, make_product, product_row

pytestmark = pytest.mark.asyncio


def seen(status: P, event_id: str | None = None, amount: int | None = None, **extra) -> Observation:
    return Observation(status=status, amount_fils=amount, currency="KWD", event_id=event_id,
                       receipt=KnetReceipt(payment_id="100201914315601265", result="CAPTURED"), **extra)


async def state(order_id: int, attempt_id: int) -> tuple[str, str, str]:
    order = await Order.select(Order.status, Order.stock_state).where(Order.id == order_id).first()
    attempt = await PaymentAttempt.select(PaymentAttempt.status).where(PaymentAttempt.id == attempt_id).first()
    return order["status"], order["stock_state"], attempt["status"]


async def test_placing_an_order_reserves_stock_and_empties_the_cart() -> None:
    product = await make_product(stock=5)
    order = await make_order([(product, 2)])
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (5, 2)
    assert order["total_fils"] == 2 * product["price_fils"]
    assert order["status"] == "pending_payment" and order["stock_state"] == "reserved"


async def test_capture_sells_the_reserved_stock_once_and_queues_one_receipt() -> None:
    product = await make_product(stock=5)
    order = await make_order([(product, 2)])
    attempt = await make_attempt(order)
    for n in range(3):
        await apply_observation(attempt["id"], seen(P.CAPTURED, f"evt_cap_{attempt['id']}_{n}", order["total_fils"]), "webhook")
    assert await state(order["id"], attempt["id"]) == ("paid", "sold", "captured")
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (3, 0)
    assert await OutboxEmail.count().where(OutboxEmail.order == order["id"]) == 1
    stored = await PaymentAttempt.select().where(PaymentAttempt.id == attempt["id"]).first()
    assert stored["knet_payment_id"] == "100201914315601265"


async def test_duplicate_events_are_applied_once() -> None:
    product = await make_product()
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    observation = seen(P.DECLINED, f"evt_dup_{attempt['id']}")
    results = [await apply_observation(attempt["id"], observation, "webhook") for _ in range(5)]
    assert [r.duplicate for r in results] == [False, True, True, True, True]
    assert await PaymentEvent.count().where(PaymentEvent.provider_event_id == observation.event_id) == 1
    assert await state(order["id"], attempt["id"]) == ("payment_failed", "released", "declined")
    assert (await product_row(product["id"]))["reserved"] == 0


async def test_twenty_concurrent_copies_make_one_transition() -> None:
    product = await make_product(stock=3)
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    observation = seen(P.CAPTURED, f"evt_conc_{attempt['id']}", order["total_fils"])
    results = await asyncio.gather(*[apply_observation(attempt["id"], observation, "webhook") for _ in range(20)])
    assert sum(r.changed for r in results) == 1
    assert await state(order["id"], attempt["id"]) == ("paid", "sold", "captured")
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (2, 0)
    assert await OutboxEmail.count().where(OutboxEmail.order == order["id"]) == 1


async def test_late_pending_or_decline_after_capture_changes_nothing() -> None:
    product = await make_product()
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], seen(P.CAPTURED, None, order["total_fils"]), "webhook")
    for status in (P.PENDING, P.DECLINED, P.CANCELLED, P.EXPIRED):
        await apply_observation(attempt["id"], seen(status, f"evt_late_{status}_{attempt['id']}"), "webhook")
    assert await state(order["id"], attempt["id"]) == ("paid", "sold", "captured")
    assert await PaymentEvent.count().where(PaymentEvent.attempt == attempt["id"]) == 5


async def test_amount_mismatch_is_flagged_and_not_paid() -> None:
    product = await make_product()
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    result = await apply_observation(attempt["id"], seen(P.CAPTURED, None, order["total_fils"] - 10), "webhook")
    assert "amount mismatch" in result.flagged
    assert await state(order["id"], attempt["id"]) == ("pending_payment", "reserved", "pending")
    flagged = await Order.select(Order.needs_attention, Order.attention_reason).where(Order.id == order["id"]).first()
    assert flagged["needs_attention"] and "amount mismatch" in flagged["attention_reason"]
    currency = Observation(status=P.CAPTURED, amount_fils=order["total_fils"], currency="USD")
    assert "currency mismatch" in (await apply_observation(attempt["id"], currency, "webhook")).flagged


async def test_capture_after_expiry_marks_paid_and_sells_if_stock_remains() -> None:
    product = await make_product(stock=2)
    order = await make_order([(product, 2)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], seen(P.EXPIRED), "note")
    await expire_abandoned_orders(timedelta(0))  # the customer never came back: the order expires
    assert await state(order["id"], attempt["id"]) == ("expired", "released", "expired")
    assert (await product_row(product["id"]))["reserved"] == 0
    await apply_observation(attempt["id"], seen(P.CAPTURED, None, order["total_fils"]), "inquiry")
    assert await state(order["id"], attempt["id"]) == ("paid", "sold", "captured")
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (0, 0)


async def test_capture_after_expiry_without_stock_is_paid_and_flagged() -> None:
    product = await make_product(stock=1)
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], seen(P.EXPIRED), "note")
    other = await make_order([(product, 1)])  # someone else bought the last unit meanwhile
    other_attempt = await make_attempt(other)
    await apply_observation(other_attempt["id"], seen(P.CAPTURED, None, other["total_fils"]), "webhook")
    await apply_observation(attempt["id"], seen(P.CAPTURED, None, order["total_fils"]), "webhook")
    assert await state(order["id"], attempt["id"]) == ("paid", "short", "captured")
    flagged = await Order.select(Order.needs_attention, Order.attention_reason).where(Order.id == order["id"]).first()
    assert flagged["needs_attention"] and "stock" in flagged["attention_reason"]
    row = await product_row(product["id"])
    assert row["stock"] == 0 and row["reserved"] == 0


async def test_refunds_move_payment_and_order_by_the_money() -> None:
    product = await make_product(stock=5, price_fils=3000)
    order = await make_order([(product, 2)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], seen(P.CAPTURED, None, 6000), "webhook")
    await Refund.insert(Refund(attempt=attempt["id"], amount_fils=1000, status="pending", provider_refund_id="act_1",
                               idempotency_key=f"r1-{attempt['id']}"))
    refund_news = lambda status, n: Observation(status=None, refund_id="act_1", refund_status=status,
                                                event_id=f"evt_r{n}_{attempt['id']}")
    await apply_observation(attempt["id"], refund_news("pending", 1), "webhook")
    assert (await state(order["id"], attempt["id"]))[2] == "refund_pending"
    await apply_observation(attempt["id"], refund_news("succeeded", 2), "webhook")
    assert await state(order["id"], attempt["id"]) == ("partially_refunded", "sold", "partially_refunded")
    await apply_observation(attempt["id"], refund_news("pending", 3), "webhook")  # late, out of order
    assert (await Refund.select(Refund.status).where(Refund.provider_refund_id == "act_1").first())["status"] == "succeeded"
    await Refund.insert(Refund(attempt=attempt["id"], amount_fils=5000, status="pending", provider_refund_id="act_2",
                               idempotency_key=f"r2-{attempt['id']}"))
    await apply_observation(attempt["id"], Observation(status=None, refund_id="act_2", refund_status="succeeded",
                                                       event_id=f"evt_r4_{attempt['id']}"), "webhook")
    assert await state(order["id"], attempt["id"]) == ("refunded", "sold", "refunded")


async def test_an_old_attempt_failing_after_a_retry_does_not_touch_the_order() -> None:
    product = await make_product()
    order = await make_order([(product, 1)])
    first = await make_attempt(order, 1)
    await apply_observation(first["id"], seen(P.DECLINED), "webhook")
    await Order.update({Order.status: "pending_payment", Order.stock_state: "released"}).where(Order.id == order["id"])
    second = await make_attempt(order, 2)
    await apply_observation(first["id"], seen(P.CANCELLED, "evt_old"), "webhook")
    assert (await state(order["id"], second["id"]))[0] == "pending_payment"


async def test_a_refund_reported_before_its_capture_settles_when_the_capture_arrives() -> None:
    product = await make_product(stock=5, price_fils=3000)
    order = await make_order([(product, 1)])
    attempt = await make_attempt(order)
    early = Observation(status=None, refund_id="act_early", refund_status="succeeded", refund_amount_fils=1000,
                        event_id=f"evt_early_{attempt['id']}")
    await apply_observation(attempt["id"], early, "webhook")
    assert await state(order["id"], attempt["id"]) == ("pending_payment", "reserved", "pending")
    await apply_observation(attempt["id"], seen(P.CAPTURED, None, 3000), "webhook")
    assert await state(order["id"], attempt["id"]) == ("partially_refunded", "sold", "partially_refunded")
