"""Unsigned notifications (UPayments) are confirmed by a status call, but only while that call
can still change something: copies about money already taken spend none of the rate limit."""
from __future__ import annotations

from typing import Mapping

import pytest

from shop.payments import flows
from shop.payments.providers.base import Observation
from shop.payments.states import PaymentStatus as P
from shop.payments.tables import PaymentAttempt
from tests.integration.conftest import make_attempt, make_order, make_product
from tests.integration.test_pay_presses import CountingProvider

pytestmark = pytest.mark.asyncio


class UnsignedProvider(CountingProvider):
    def __init__(self, reference: str, amount_fils: int) -> None:
        super().__init__()
        self.reference, self.amount_fils, self.inquiries = reference, amount_fils, 0

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        return [Observation(status=P.CAPTURED, merchant_reference=self.reference, trusted=False)]

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        self.inquiries += 1
        return Observation(status=P.CAPTURED, merchant_reference=merchant_reference, amount_fils=self.amount_fils,
                           currency="KWD")


async def test_copies_after_the_capture_make_no_status_calls() -> None:
    order = await make_order([(await make_product(), 1)])
    attempt = await make_attempt(order)
    provider = UnsignedProvider(attempt["merchant_reference"], order["total_fils"])
    await flows.handle_webhook(provider, {}, b"{}")
    assert provider.inquiries == 1  # the first one is confirmed with the provider, and applied
    row = await PaymentAttempt.select(PaymentAttempt.status).where(PaymentAttempt.id == attempt["id"]).first()
    assert row["status"] == "captured"
    for _ in range(4):
        outcome = await flows.handle_webhook(provider, {}, b"{}")
        assert outcome.duplicates == 1
    assert provider.inquiries == 1
