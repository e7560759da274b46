"""Checkout.com Payment Setup API: create a setup, confirm it with KNET, then as `checkout`.

Only the start differs (two calls instead of one); details, returns, webhooks and refunds are
the same payment object, so they are inherited, not repeated."""
from __future__ import annotations

from typing import Any, ClassVar

from shop.payments.providers.base import PaymentRequest, ProviderRejected, StartedPayment
from shop.payments.providers.checkout import CheckoutProvider
from shop.payments.providers.http import call_json


class CheckoutSetupProvider(CheckoutProvider):
    slug: ClassVar[str] = "checkout_setup"

    def settings_prefix(self) -> str:
        return "CHECKOUT_"

    def setup_body(self, request: PaymentRequest) -> dict[str, Any]:
        payment = self.payment_body(request)
        body: dict[str, Any] = {
            "amount": payment["amount"],
            "currency": payment["currency"],
            "reference": payment["reference"],
            "description": payment["description"],
            "payment_methods": {"knet": {"language": payment["source"]["language"]}},
            "settings": {"success_url": request.return_url, "failure_url": request.return_url},
            "customer": payment["customer"],
            "metadata": payment["metadata"],
        }
        if "processing_channel_id" in payment:
            body["processing_channel_id"] = payment["processing_channel_id"]
        return body

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        _, setup = await call_json(self.client, "POST", f"{self.api_url}/payments/setups",
                                   headers=self._headers(request.idempotency_key), json_body=self.setup_body(request))
        knet = setup.get("payment_methods", {}).get("knet", {})
        if not setup.get("id") or knet.get("status") != "ready":
            raise ProviderRejected(f"payment setup not ready for KNET: {knet.get('status')!r} {setup.get('flags')}")
        # Confirming twice returns the same payment, so a retried confirm cannot pay twice.
        _, payment = await call_json(self.client, "POST", f"{self.api_url}/payments/setups/{setup['id']}/confirm/knet",
                                     headers=self._headers(f"{request.idempotency_key}-confirm"))
        return self.started({**payment, "setup_id": setup["id"]})
