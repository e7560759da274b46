"""`create_link` per provider: the link is made for the attempt's own reference and return URL,
so its payment comes back like any other; providers without links refuse before any call."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from shop.payments.providers.aps import ApsProvider
from shop.payments.providers.base import PaymentRequest, ProviderRejected
from shop.payments.providers.tap import TapProvider
from shop.payments.providers.upayments import UpaymentsProvider
from shop.settings import Settings

SETTINGS = Settings(secret_key="x" * 40, public_url="https://shop.example")
EXPIRES = datetime(2026, 12, 8, 9, 0, tzinfo=timezone.utc)
REQUEST = PaymentRequest(
    merchant_reference="DM26120600AB02", order_reference="DM26120600AB", amount_fils=12_500, currency="KWD",
    language="ar", idempotency_key="k", return_url="https://shop.example/payments/aps/return?ref=DM26120600AB02",
    webhook_url="https://shop.example/webhooks/aps", customer_name="Fatima Al-Sabah",
    customer_email="fatima@example.com", customer_phone="+96555123456", description="Order DM26120600AB",
)


def refusing_client() -> httpx.AsyncClient:
    def no_call(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no call expected, got {request.url}")
    return httpx.AsyncClient(transport=httpx.MockTransport(no_call))


@pytest.mark.parametrize("channel, kind", [("link", "NONE"), ("email", "EMAIL"), ("sms", "SMS")])
async def test_aps_makes_a_payment_link_under_the_attempts_reference(monkeypatch, channel: str, kind: str) -> None:
    seen: dict[str, Any] = {}

    async def create_payment_link(self: ApsProvider, *args: Any, **kwargs: Any) -> str:
        seen.update(args=args, kwargs=kwargs)
        return "https://aps.example/link/1a2b3c4d"

    monkeypatch.setattr(ApsProvider, "create_payment_link", create_payment_link)
    started = await ApsProvider(SETTINGS, refusing_client()).create_link(REQUEST, channel, EXPIRES)
    assert started.redirect_url == "https://aps.example/link/1a2b3c4d" and started.provider_payment_id is None
    assert seen["args"] == ("DM26120600AB02", 12_500, "ar", "fatima@example.com", EXPIRES)
    assert seen["kwargs"]["notification_type"] == kind and seen["kwargs"]["return_url"] == REQUEST.return_url
    assert seen["kwargs"]["customer_phone"] == "+96555123456"


async def test_upayments_makes_an_invoice_looked_up_by_its_id() -> None:
    bodies: list[dict[str, Any]] = []

    def api(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"status": True, "message": "Invoice link generated successfully",
                                         "data": {"link": "https://upay.example/invoice/4455667788",
                                                  "invoiceId": "4455667788"}})

    adapter = UpaymentsProvider(SETTINGS, httpx.AsyncClient(transport=httpx.MockTransport(api)))
    started = await adapter.create_link(REQUEST, "sms", EXPIRES + timedelta(days=1))
    assert started.redirect_url == "https://upay.example/invoice/4455667788"
    assert started.provider_payment_id == "invoice:4455667788"  # what get-payment-status?invoice_id= takes
    [body] = bodies
    assert body["paymentGateway"] == {"src": "create-invoice"} and body["notificationType"] == "sms"
    assert body["order"]["id"] == "DM26120600AB02" and body["returnUrl"] == REQUEST.return_url


async def test_unknown_channels_and_providers_without_links_are_refused_before_any_call() -> None:
    with pytest.raises(ProviderRejected, match="fax"):
        await ApsProvider(SETTINGS, refusing_client()).create_link(REQUEST, "fax", EXPIRES)
    with pytest.raises(ProviderRejected, match="notificationType"):
        await UpaymentsProvider(SETTINGS, refusing_client()).create_link(REQUEST, "fax", EXPIRES)
    with pytest.raises(ProviderRejected, match="no payment links"):
        await TapProvider(SETTINGS, refusing_client()).create_link(REQUEST, "link", EXPIRES)
