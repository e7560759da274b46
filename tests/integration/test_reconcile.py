"""Reconciliation leadership is decided in the database: one holder at a time, taken over on expiry."""
import asyncio

import pytest

from shop.payments.reconcile import acquire_lease
from shop.payments.tables import Lease

pytestmark = pytest.mark.asyncio


async def test_one_leader_among_many_processes() -> None:
    await Lease.delete(force=True)
    results = await asyncio.gather(*[acquire_lease(f"worker-{n}", ttl_s=30) for n in range(10)])
    assert sum(results) == 1
    leader = f"worker-{results.index(True)}"
    assert await acquire_lease(leader, ttl_s=30)  # the leader renews
    assert not await acquire_lease("worker-late", ttl_s=30)


async def test_an_expired_lease_is_taken_over() -> None:
    await Lease.delete(force=True)
    assert await acquire_lease("worker-a", ttl_s=-1)  # already expired when written
    assert await acquire_lease("worker-b", ttl_s=30)
    assert not await acquire_lease("worker-a", ttl_s=30)


# -- payments whose create call never answered -------------------------------------------------

from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from shop.orders.tables import Order  # noqa: E402
from shop.payments import reconcile  # noqa: E402
from shop.payments.providers.base import Observation, PaymentRequest, ProviderUnavailable  # noqa: E402
from shop.payments.service import start_attempt, utcnow  # noqa: E402
from shop.payments.tables import PaymentAttempt  # noqa: E402
from shop.settings import Settings  # noqa: E402
from tests.integration.conftest import make_order, make_product, product_row  # noqa: E402
from tests.integration.test_pay_presses import CountingProvider  # noqa: E402


class UnknownToProvider(CountingProvider):
    """A provider whose create call times out and which, asked later, knows no such payment."""

    async def start_payment(self, request: PaymentRequest) -> Any:
        raise ProviderUnavailable("POST /payments: timed out")

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        return Observation(status=None, merchant_reference=merchant_reference, event_type="not found",
                           unknown_to_provider=True)


async def _reconcile_with(provider: UnknownToProvider, monkeypatch: pytest.MonkeyPatch, due_only: bool = True) -> None:
    monkeypatch.setattr(reconcile, "provider_for", lambda slug, settings, client: provider)
    async with httpx.AsyncClient() as client:
        await reconcile.reconcile_once(Settings(secret_key="x" * 40), client, due_only=due_only)


async def test_a_create_that_never_answered_is_asked_about_at_the_next_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    product = await make_product(stock=3)
    order = await make_order([(product, 2)])
    outcome = await start_attempt(order, UnknownToProvider(), "http://shop.test", number=1)
    attempt = await PaymentAttempt.select().where(PaymentAttempt.id == outcome.attempt["id"]).first()
    assert attempt["status"] == "pending" and attempt["next_check_at"] <= utcnow()
    # The provider never heard of it and no customer ever saw a page: failed, stock back, retry offered.
    await _reconcile_with(UnknownToProvider(), monkeypatch)
    attempt = await PaymentAttempt.select().where(PaymentAttempt.id == attempt["id"]).first()
    assert attempt["status"] == "failed" and "never started" in attempt["failure_reason"]
    assert (await Order.select(Order.status).where(Order.id == order["id"]).first())["status"] == "payment_failed"
    assert (await product_row(product["id"]))["reserved"] == 0


async def test_an_unknown_payment_with_a_page_or_a_create_under_way_stays_open(monkeypatch: pytest.MonkeyPatch) -> None:
    order = await make_order([(await make_product(), 1)])
    shown = await start_attempt(order, CountingProvider(), "http://shop.test", number=1)  # the customer has a page
    other = await make_order([(await make_product(), 1)])
    under_way = (await PaymentAttempt.insert(PaymentAttempt(
        order=other["id"], number=1, provider="checkout", status="initiated", amount_fils=other["total_fils"],
        currency="KWD", merchant_reference=f"{other['reference']}01", idempotency_key="k" * 32,
    )).returning(PaymentAttempt.id))[0]
    await _reconcile_with(UnknownToProvider(), monkeypatch)
    for attempt_id in (shown.attempt["id"], under_way["id"]):
        row = await PaymentAttempt.select(PaymentAttempt.status).where(PaymentAttempt.id == attempt_id).first()
        assert row["status"] in ("pending", "initiated")
    # A process that died in the middle of the create call, long ago: failed too (`shop reconcile`).
    await PaymentAttempt.update({PaymentAttempt.created_at: utcnow() - timedelta(minutes=10)}).where(
        PaymentAttempt.id == under_way["id"])
    await _reconcile_with(UnknownToProvider(), monkeypatch, due_only=False)
    row = await PaymentAttempt.select(PaymentAttempt.status).where(PaymentAttempt.id == under_way["id"]).first()
    assert row["status"] == "failed"


async def test_a_pass_by_hand_asks_about_every_open_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    # After a crash every open payment must be asked about, not only the first batch.
    await PaymentAttempt.update({PaymentAttempt.status: "failed"}, force=True).where(
        PaymentAttempt.status.is_in(["initiated", "pending"]))
    orders = [await make_order([(await make_product(), 1)]) for _ in range(reconcile.BATCH + 5)]
    for order in orders:
        await start_attempt(order, UnknownToProvider(), "http://shop.test", number=1)
    await _reconcile_with(UnknownToProvider(), monkeypatch, due_only=False)
    still_open = await PaymentAttempt.count().where(PaymentAttempt.status.is_in(["initiated", "pending"]))
    assert still_open == 0


# -- a customer back from the provider while the payment is still open ------------------------

from shop.payments.flows import RETURN_RECHECK, handle_return  # noqa: E402
from shop.payments.providers.base import ReturnHint  # noqa: E402
from shop.payments.states import PaymentStatus  # noqa: E402


class ReturnsTo(CountingProvider):
    """A provider whose return names the attempt and whose inquiry answers `pending`, or not at all."""

    def __init__(self, answers: bool) -> None:
        super().__init__()
        self.answers = answers

    def parse_return(self, params: Any) -> ReturnHint:
        return ReturnHint(provider_payment_id=None, merchant_reference=params["ref"], payload=dict(params))

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        if not self.answers:
            raise ProviderUnavailable("GET /payments: timed out")
        return Observation(status=PaymentStatus.PENDING, merchant_reference=merchant_reference)


@pytest.mark.parametrize("answers", [True, False])
async def test_an_open_payment_after_the_return_is_asked_about_again_soon(answers: bool) -> None:
    """The customer watches "verifying": a provider that said pending is asked again in a few
    seconds; one that did not answer, at the reconciler's very next pass."""
    order = await make_order([(await make_product(), 1)])
    provider = ReturnsTo(answers)
    started = await start_attempt(order, provider, "http://shop.test", number=1)
    before = utcnow()
    await handle_return(provider, {"ref": started.attempt["merchant_reference"]})
    attempt = await PaymentAttempt.select().where(PaymentAttempt.id == started.attempt["id"]).first()
    assert attempt["status"] == "pending"
    if answers:
        assert before + RETURN_RECHECK <= attempt["next_check_at"] <= utcnow() + RETURN_RECHECK
    else:
        assert attempt["next_check_at"] <= utcnow()
