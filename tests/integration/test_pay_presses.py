"""Pressing Pay several times at once: one order, one payment attempt, one provider payment."""
from __future__ import annotations

import asyncio
from typing import ClassVar, Mapping

import pytest

from shop.cart.services import add_item, new_cart_token
from shop.checkout.forms import validate_checkout
from shop.payments import flows
from shop.payments.providers.base import (
    Capabilities,
    Observation,
    PaymentRequest,
    Provider,
    RefundRequest,
    RefundResult,
    ReturnHint,
    StartedPayment,
)
from shop.payments.service import start_attempt
from shop.payments.tables import PaymentAttempt
from tests.integration.conftest import make_order, make_product
from tests.unit.test_forms import VALID

pytestmark = pytest.mark.asyncio


class CountingProvider(Provider):
    """Starts payments slowly, like a real API, and counts how many it was asked to start."""

    slug: ClassVar[str] = "checkout"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get", return_verification="-", webhook_verification="-", inquiry=True, refunds=True,
        partial_refunds=True, expiry_seconds=420,
    )

    def __init__(self) -> None:
        super().__init__(None, None)  # type: ignore[arg-type]
        self.started: list[str] = []

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        self.started.append(request.merchant_reference)
        await asyncio.sleep(0.05)
        return StartedPayment(f"pay_{request.merchant_reference}", f"https://pay.example/{request.merchant_reference}")

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        raise NotImplementedError

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        raise NotImplementedError

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        raise NotImplementedError

    async def refund(self, request: RefundRequest) -> RefundResult:
        raise NotImplementedError


async def test_a_second_start_of_the_same_attempt_number_starts_nothing() -> None:
    # The press that lost the race asks for the number it expected (1), never for "one more".
    order = await make_order([(await make_product(), 1)])
    provider = CountingProvider()
    first = await start_attempt(order, provider, "http://shop.test", number=1)
    second = await start_attempt(order, provider, "http://shop.test", number=1)
    assert first.attempt is not None and second.attempt is None
    assert await PaymentAttempt.count().where(PaymentAttempt.order == order["id"]) == 1
    assert len(provider.started) == 1


async def test_five_concurrent_presses_make_one_attempt_and_one_provider_payment() -> None:
    product = await make_product()
    cart = new_cart_token()
    await add_item(cart, product["id"], 1)
    details, _, _ = validate_checkout(VALID)
    provider = CountingProvider()
    results = await asyncio.gather(*(flows.checkout(cart, details, "en", provider, "http://shop.test")
                                     for _ in range(5)))
    assert len({result.order["id"] for result in results}) == 1
    assert await PaymentAttempt.count().where(PaymentAttempt.order == results[0].order["id"]) == 1
    assert len(provider.started) == 1
    # Every press either goes to the one payment page or to the order page, never elsewhere.
    assert {result.redirect_url for result in results} <= {"", f"https://pay.example/{provider.started[0]}"}
