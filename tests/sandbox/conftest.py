"""Fixtures for sandbox tests: a live shop per database, a webhook receiver, a sandbox client."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import httpx
import pytest

from shop.settings import SANDBOX_CREDENTIALS
from tests.webhook_receiver import WebhookReceiver, webhook_receiver
from tests.support import wait_until, live_server

SECRET_KEY = SANDBOX_CREDENTIALS["CHECKOUT_SECRET_KEY"]
WEBHOOK_SECRET = SANDBOX_CREDENTIALS["CHECKOUT_WEBHOOK_SECRET"]
CHANNEL = SANDBOX_CREDENTIALS["CHECKOUT_PROCESSING_CHANNEL_ID"]
APPROVED_CARD = "8888880000000001"
DECLINED_CARD = "8888880000000002"
PIN = "1234"


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as state:
        yield state


@pytest.fixture(scope="module")
def shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url) as base_url:
        yield base_url


class Sandbox:
    """A client for the Checkout.com sandbox of one live shop."""

    def __init__(self, shop_url: str, receiver: WebhookReceiver) -> None:
        self.shop_url = shop_url
        self.api = f"{shop_url}/sandbox/checkout"
        self.receiver = receiver
        self.client = httpx.Client(timeout=15, headers={"Authorization": f"Bearer {SECRET_KEY}"})

    def payment_body(self, **changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "amount": 12500,
            "currency": "KWD",
            "source": {"type": "knet", "language": "en", "user_defined_field1": "ORD 1"},
            "reference": "ORD-TEST-1",
            "description": "Dira Market order",
            "success_url": f"{self.shop_url}/payments/checkout/return?ref=ORD-TEST-1",
            "failure_url": f"{self.shop_url}/payments/checkout/return?ref=ORD-TEST-1&failed=1",
            "processing_channel_id": CHANNEL,
            "metadata": {"order_reference": "ORD-TEST-1"},
            "customer": {"name": "Test Customer", "email": "customer@example.com"},
        }
        body.update(changes)
        return body

    def create(self, idempotency_key: str | None = None, **changes: Any) -> dict[str, Any]:
        headers = {"Cko-Idempotency-Key": idempotency_key} if idempotency_key else {}
        response = self.client.post(f"{self.api}/payments", json=self.payment_body(**changes), headers=headers)
        assert response.status_code == 202, response.text
        return response.json()

    def details(self, payment_id: str) -> dict[str, Any]:
        response = self.client.get(f"{self.api}/payments/{payment_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, redirect_url: str, *, card: str = APPROVED_CARD, pin: str = PIN, bank: str = "KNET1",
               month: str = "09", year: str = "2025", action: str = "pay") -> httpx.Response:
        """The customer on the hosted page: land (GET), then submit the form."""
        with httpx.Client(timeout=15, follow_redirects=False) as browser:
            page = browser.get(redirect_url)
            assert page.status_code == 200, page.text
            return browser.post(redirect_url, data={
                "bank": bank, "card_number": card, "expiry_month": month, "expiry_year": year,
                "pin": pin, "action": action,
            })

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.api}/_control", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.client.get(f"{self.api}/_stats").json()

    def wait_until(self, check: Callable[[], bool], timeout_s: float = 8.0) -> None:
        wait_until(check, timeout_s)


@pytest.fixture()
def sandbox(shop_url: str, receiver: WebhookReceiver) -> Iterator[Sandbox]:
    client = Sandbox(shop_url, receiver)
    assert client.client.delete(f"{client.api}/_control").status_code == 200
    receiver.clear()
    client.control(webhook_url=receiver.url, webhook_backoff_ms=50, refund_delay_ms=100)
    try:
        yield client
    finally:
        client.client.close()


@pytest.fixture(scope="module")
def two_process_shop_url(database_url: str) -> Iterator[str]:
    """The same shop served by two worker processes: sandbox state must live in the database."""
    with live_server(database_url, SHOP_WORKERS="2") as base_url:
        yield base_url


@pytest.fixture()
def sandbox_two_processes(two_process_shop_url: str, receiver: WebhookReceiver) -> Iterator[Sandbox]:
    client = Sandbox(two_process_shop_url, receiver)
    assert client.client.delete(f"{client.api}/_control").status_code == 200
    receiver.clear()
    client.control(webhook_url=receiver.url, webhook_backoff_ms=50, refund_delay_ms=100)
    try:
        yield client
    finally:
        client.client.close()
