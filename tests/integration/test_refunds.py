"""Refunds and staff order actions as services: caps (also under concurrent clicks), the
provider's answers, lost answers retried with the same key, stock on cancel, audit rows."""
from __future__ import annotations

import asyncio
import secrets
from typing import Any, ClassVar, Mapping

import pytest

from shop.orders import actions
from shop.orders.tables import Order
from shop.payments import refunds
from shop.payments.providers.base import (
    Capabilities,
    KnetReceipt,
    Observation,
    PaymentRequest,
    Provider,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
    RefundResult,
    ReturnHint,
    StartedPayment,
)
from shop.payments.service import apply_observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt, PaymentEvent, Refund
from shop.staff.auth import Role, Staff, create_staff
from shop.staff.tables import AuditLog
from tests.integration.conftest import make_attempt, make_order, make_product, product_row

pytestmark = pytest.mark.asyncio
PASSWORD = "refund tests password"


class FakeProvider(Provider):
    """The adapter contract, scripted: each refund call takes the next behaviour from `script`."""

    slug: ClassVar[str] = "checkout"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get", return_verification="-", webhook_verification="-", inquiry=True, refunds=True,
        partial_refunds=True, expiry_seconds=420,
    )

    def __init__(self, *script: str, delay: float = 0.0, inquiry: Observation | None = None) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.script = list(script)
        self.delay = delay
        self.inquiry = inquiry
        self.calls: list[RefundRequest] = []

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        raise NotImplementedError

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        raise NotImplementedError

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        raise NotImplementedError

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        if self.inquiry is None:
            raise ProviderUnavailable("timed out")
        return self.inquiry

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.calls.append(request)
        await asyncio.sleep(self.delay)
        behaviour = self.script.pop(0) if self.script else "pending"
        if behaviour == "timeout":
            raise ProviderUnavailable("POST /refunds: timed out")
        if behaviour == "reject":
            raise ProviderRejected("HTTP 422 refund_amount_exceeds_balance")
        action_id = "act_" + request.idempotency_key[:12]
        if behaviour == "webhook_first":
            # The provider's notification lands before its answer does.
            attempt = await PaymentAttempt.select(PaymentAttempt.id).where(
                PaymentAttempt.provider_payment_id == request.provider_payment_id).first()
            await apply_observation(attempt["id"], Observation(
                status=None, refund_id=action_id, refund_status="pending", refund_amount_fils=request.amount_fils,
                event_id="evt_" + secrets.token_hex(6)), "webhook", signature_ok=True)
            behaviour = "pending"
        return RefundResult(provider_refund_id=action_id, status=behaviour, raw={"action_id": action_id})


@pytest.fixture(scope="module")
async def finance(database_url: str, bound_tables: None) -> Staff:
    user = await create_staff(f"finance-{secrets.token_hex(4)}@example.com", PASSWORD, Role.FINANCE)
    return Staff(user["id"], user["email"], Role.FINANCE, 0)


@pytest.fixture(scope="module")
async def operations(database_url: str, bound_tables: None) -> Staff:
    user = await create_staff(f"ops-{secrets.token_hex(4)}@example.com", PASSWORD, Role.OPERATIONS)
    return Staff(user["id"], user["email"], Role.OPERATIONS, 0)


async def paid_order(quantity: int = 2, price_fils: int = 5000) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    product = await make_product(stock=10, price_fils=price_fils)
    order = await make_order([(product, quantity)])
    attempt = await make_attempt(order)
    await apply_observation(attempt["id"], Observation(
        status=P.CAPTURED, amount_fils=order["total_fils"], currency="KWD",
        receipt=KnetReceipt(payment_id="100201914315601265", result="CAPTURED")), "inquiry")
    return product, order, await attempt_row(attempt["id"])


async def attempt_row(attempt_id: int) -> dict[str, Any]:
    return await PaymentAttempt.select().where(PaymentAttempt.id == attempt_id).first()


async def order_row(order_id: int) -> dict[str, Any]:
    return await Order.select().where(Order.id == order_id).first()


async def refund_rows(attempt_id: int) -> list[dict[str, Any]]:
    return await Refund.select().where(Refund.attempt == attempt_id).order_by(Refund.id)


async def settle(attempt_id: int, refund: dict[str, Any], status: str = "succeeded") -> None:
    """The provider's later notification about a refund."""
    await apply_observation(attempt_id, Observation(
        status=None, refund_id=refund["provider_refund_id"], refund_status=status,
        refund_amount_fils=refund["amount_fils"], event_id="evt_" + secrets.token_hex(6)), "webhook", True)


async def test_a_partial_refund_goes_requested_pending_succeeded(finance) -> None:
    _, order, attempt = await paid_order()
    provider = FakeProvider("pending")
    outcome = await refunds.request_refund(provider, attempt["id"], 2500, "  damaged box  ", finance)
    assert outcome.status == "pending"
    [refund] = await refund_rows(attempt["id"])
    assert (refund["status"], refund["amount_fils"], refund["reason"]) == ("pending", 2500, "damaged box")
    assert refund["provider_refund_id"] == "act_" + refund["idempotency_key"][:12]
    assert refund["requested_by"] == finance.email
    assert provider.calls[0].idempotency_key == refund["idempotency_key"]
    assert provider.calls[0].amount_fils == 2500
    assert (await attempt_row(attempt["id"]))["status"] == "refund_pending"
    await settle(attempt["id"], refund)
    stored = await attempt_row(attempt["id"])
    assert (stored["status"], stored["refunded_fils"]) == ("partially_refunded", 2500)
    assert (await order_row(order["id"]))["status"] == "partially_refunded"
    assert (await refund_rows(attempt["id"]))[0]["status"] == "succeeded"
    audits = await AuditLog.select().where((AuditLog.action == "order.refund") & (AuditLog.target_id == order["reference"]))
    assert len(audits) == 1 and audits[0]["reason"] == "damaged box" and audits[0]["staff"] == finance.id
    kinds = await PaymentEvent.select(PaymentEvent.kind, PaymentEvent.event_type).where(
        PaymentEvent.attempt == attempt["id"]).order_by(PaymentEvent.id)
    assert [k["event_type"] for k in kinds if k["kind"] == "refund"] == ["refund requested", "refund pending"]


async def test_a_full_refund_makes_the_order_refunded(finance) -> None:
    _, order, attempt = await paid_order()
    await refunds.request_refund(FakeProvider("succeeded"), attempt["id"], order["total_fils"], "returned", finance)
    assert (await attempt_row(attempt["id"]))["status"] == "refunded"
    assert (await order_row(order["id"]))["status"] == "refunded"
    assert await refunds.refundable_fils(await attempt_row(attempt["id"])) == 0


async def test_the_cap_counts_refunds_made_and_under_way(finance) -> None:
    _, order, attempt = await paid_order()  # 10.000 KWD captured
    provider = FakeProvider("pending", "pending")
    await refunds.request_refund(provider, attempt["id"], 6000, "first", finance)
    with pytest.raises(refunds.RefundError) as refused:
        await refunds.request_refund(provider, attempt["id"], 4001, "second", finance)
    assert "4.000" in str(refused.value) and refused.value.field == "amount"
    assert len(await refund_rows(attempt["id"])) == 1 and len(provider.calls) == 1
    await refunds.request_refund(provider, attempt["id"], 4000, "the rest", finance)
    assert await refunds.refundable_fils(await attempt_row(attempt["id"])) == 0


@pytest.mark.parametrize("amount, reason, field", [(0, "why", "amount"), (-5, "why", "amount"), (100, "   ", "reason")])
async def test_bad_amounts_and_missing_reasons_change_nothing(finance, amount, reason, field) -> None:
    _, _, attempt = await paid_order()
    with pytest.raises(refunds.RefundError) as refused:
        await refunds.request_refund(FakeProvider(), attempt["id"], amount, reason, finance)
    assert refused.value.field == field
    assert await refund_rows(attempt["id"]) == []


async def test_an_unpaid_attempt_cannot_be_refunded(finance) -> None:
    order = await make_order([(await make_product(), 1)])
    attempt = await make_attempt(order)
    with pytest.raises(refunds.RefundError):
        await refunds.request_refund(FakeProvider(), attempt["id"], 100, "why", finance)
    assert await refund_rows(attempt["id"]) == []


async def test_two_concurrent_refunds_never_exceed_the_capture(finance) -> None:
    _, order, attempt = await paid_order()  # 10.000 captured; each click asks for 6.000
    provider = FakeProvider(delay=0.2)
    results = await asyncio.gather(
        *[refunds.request_refund(provider, attempt["id"], 6000, f"click {n}", finance) for n in range(2)],
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, refunds.RefundError)]
    assert len(refused) == 1, results
    assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, refunds.RefundError)] == []
    rows = await refund_rows(attempt["id"])
    assert [(r["amount_fils"], r["status"]) for r in rows] == [(6000, "pending")]
    assert len(provider.calls) == 1


async def test_many_concurrent_small_refunds_stop_exactly_at_the_capture(finance) -> None:
    _, _, attempt = await paid_order(quantity=1, price_fils=3000)
    results = await asyncio.gather(
        *[refunds.request_refund(FakeProvider(), attempt["id"], 1000, "split", finance) for _ in range(6)],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 3
    assert all(isinstance(r, refunds.RefundError) for r in results if isinstance(r, BaseException))
    assert sum(r["amount_fils"] for r in await refund_rows(attempt["id"])) == 3000


async def test_no_answer_leaves_it_requested_and_a_retry_reuses_the_key(finance) -> None:
    _, order, attempt = await paid_order()
    provider = FakeProvider("timeout", "pending")
    outcome = await refunds.request_refund(provider, attempt["id"], 3000, "late parcel", finance)
    assert outcome.unanswered
    [refund] = await refund_rows(attempt["id"])
    assert (refund["status"], refund["provider_refund_id"]) == ("requested", None)
    assert (await attempt_row(attempt["id"]))["status"] == "captured"
    # Still counts against the cap while its fate is unknown.
    assert await refunds.refundable_fils(await attempt_row(attempt["id"])) == 7000
    retried = await refunds.retry_requested_refunds(order["id"], lambda slug: provider)
    assert [r.status for r in retried] == ["pending"]
    assert [c.idempotency_key for c in provider.calls] == [refund["idempotency_key"]] * 2
    assert len(await refund_rows(attempt["id"])) == 1


async def test_a_refused_refund_fails_with_the_reason_and_frees_the_cap(finance) -> None:
    _, _, attempt = await paid_order()
    outcome = await refunds.request_refund(FakeProvider("reject"), attempt["id"], 10000, "oops", finance)
    assert outcome.status == "failed"
    [refund] = await refund_rows(attempt["id"])
    assert refund["status"] == "failed" and "refund_amount_exceeds_balance" in refund["failure_reason"]
    assert (await attempt_row(attempt["id"]))["status"] == "captured"
    assert await refunds.refundable_fils(await attempt_row(attempt["id"])) == 10000


async def test_a_notification_that_beats_the_answer_is_not_counted_twice(finance) -> None:
    _, _, attempt = await paid_order()
    await refunds.request_refund(FakeProvider("webhook_first"), attempt["id"], 4000, "race", finance)
    rows = await refund_rows(attempt["id"])
    assert [(r["amount_fils"], r["status"], r["reason"]) for r in rows] == [(4000, "pending", "race")]
    assert await refunds.refundable_fils(await attempt_row(attempt["id"])) == 6000
    await settle(attempt["id"], rows[0])
    assert (await attempt_row(attempt["id"]))["refunded_fils"] == 4000


# ---------------------------------------------------------------- order actions


async def test_fulfil_only_a_paid_order_and_only_with_the_role(operations, finance) -> None:
    _, order, _ = await paid_order()
    with pytest.raises(actions.ActionForbidden):
        await actions.fulfil(order["id"], finance)
    await actions.fulfil(order["id"], operations)
    assert (await order_row(order["id"]))["status"] == "fulfilled"
    with pytest.raises(actions.ActionError):
        await actions.fulfil(order["id"], operations)
    unpaid = await make_order([(await make_product(), 1)])
    with pytest.raises(actions.ActionError):
        await actions.fulfil(unpaid["id"], operations)
    assert await AuditLog.count().where((AuditLog.action == "order.fulfil") & (AuditLog.target_id == order["reference"])) == 1


async def test_cancelling_an_unpaid_order_releases_its_stock_exactly_once(operations) -> None:
    product = await make_product(stock=5)
    order = await make_order([(product, 3)])
    assert (await product_row(product["id"]))["reserved"] == 3
    results = await asyncio.gather(
        *[actions.cancel(order["id"], operations, "customer called", False, lambda s: FakeProvider()) for _ in range(3)],
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) >= 1
    assert all(isinstance(r, actions.ActionError) for r in results if isinstance(r, BaseException))
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (5, 0)
    stored = await order_row(order["id"])
    assert (stored["status"], stored["stock_state"]) == ("cancelled", "released")
    assert await AuditLog.count().where((AuditLog.action == "order.cancel") & (AuditLog.target_id == order["reference"])) == 1


async def test_finance_cannot_cancel_an_unpaid_order_and_operations_cannot_cancel_a_paid_one(operations, finance) -> None:
    unpaid = await make_order([(await make_product(), 1)])
    with pytest.raises(actions.ActionForbidden):
        await actions.cancel(unpaid["id"], finance, "", False, lambda s: FakeProvider())
    _, paid, _ = await paid_order()
    with pytest.raises(actions.ActionForbidden):
        await actions.cancel(paid["id"], operations, "why", True, lambda s: FakeProvider())
    assert (await order_row(unpaid["id"]))["status"] == "pending_payment"
    assert (await order_row(paid["id"]))["status"] == "paid"


async def test_cancelling_a_paid_order_asks_first_then_refunds_the_rest_and_restocks(finance) -> None:
    product, order, attempt = await paid_order(quantity=2, price_fils=5000)
    provider = FakeProvider("pending", "succeeded")
    await refunds.request_refund(provider, attempt["id"], 1500, "goodwill", finance)
    asked = await actions.cancel(order["id"], finance, "", False, lambda s: provider)
    assert asked.needs_confirmation and asked.refund_fils == 8500
    assert len(await refund_rows(attempt["id"])) == 1
    with pytest.raises(refunds.RefundError):
        await actions.cancel(order["id"], finance, "  ", True, lambda s: provider)
    before = await product_row(product["id"])
    done = await actions.cancel(order["id"], finance, "customer changed their mind", True, lambda s: provider)
    assert done.refund_fils == 8500 and [r.status for r in done.refunds] == ["succeeded"]
    rows = await refund_rows(attempt["id"])
    assert [(r["amount_fils"], r["status"]) for r in rows] == [(1500, "pending"), (8500, "succeeded")]
    assert (await product_row(product["id"]))["stock"] == before["stock"] + 2
    stored = await order_row(order["id"])
    assert stored["stock_state"] == "returned"
    await settle(attempt["id"], rows[0])
    assert (await order_row(order["id"]))["status"] == "refunded"
    # A second cancellation finds nothing to do and puts nothing back twice.
    with pytest.raises(actions.ActionError):
        await actions.cancel(order["id"], finance, "again", True, lambda s: provider)
    assert (await product_row(product["id"]))["stock"] == before["stock"] + 2


async def test_recheck_applies_the_providers_answer_and_retries_unanswered_refunds(operations, finance) -> None:
    order = await make_order([(await make_product(), 1)])
    attempt = await make_attempt(order)
    down = FakeProvider()
    with pytest.raises(actions.ProviderDown):
        await actions.recheck(order["id"], operations, lambda s: down)
    assert (await attempt_row(attempt["id"]))["status"] == "pending"
    assert await AuditLog.count().where((AuditLog.action == "order.recheck") & (AuditLog.target_id == order["reference"])) == 0
    captured = Observation(status=P.CAPTURED, amount_fils=order["total_fils"], currency="KWD",
                           provider_payment_id=attempt["provider_payment_id"],
                           merchant_reference=attempt["merchant_reference"])
    outcome = await actions.recheck(order["id"], operations, lambda s: FakeProvider(inquiry=captured))
    assert outcome.applied and outcome.applied.status_after == "captured"
    assert (await order_row(order["id"]))["status"] == "paid"
    lost = FakeProvider("timeout", "pending", inquiry=captured)
    await refunds.request_refund(lost, attempt["id"], 500, "retry me", finance)
    again = await actions.recheck(order["id"], operations, lambda s: lost)
    assert [r.status for r in again.refunds] == ["pending"]
    assert await AuditLog.count().where((AuditLog.action == "order.recheck") & (AuditLog.target_id == order["reference"])) == 2
