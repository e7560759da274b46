"""Checkout.com Payments API with a KNET source (`POST /payments`, `source.type = "knet"`)."""
from __future__ import annotations

import json
import re
from urllib.parse import urlencode
from typing import Any, ClassVar, Mapping

from shop.payments.providers.base import (
    BadSignature,
    Capabilities,
    KnetReceipt,
    Observation,
    PaymentRequest,
    Provider,
    ProviderRejected,
    RefundRequest,
    RefundResult,
    ReturnHint,
    StartedPayment,
)
from shop.payments.providers.http import call_json
from shop.payments.providers.signing import hmac_sha256_hex, same_text
from shop.payments.states import PaymentStatus as P

# Current-platform (NAS) secret keys are sent as Bearer tokens; previous-platform keys are not.
NAS_KEY = re.compile(r"^sk_(sbox_)?[a-z2-7]{26}[a-z2-7*#$=]$")
STATUS = {
    "Pending": P.PENDING, "Authorized": P.PENDING, "Card Verified": P.PENDING,
    "Authentication Requested": P.PENDING, "Requested": P.PENDING, "Active": P.PENDING,
    "Captured": P.CAPTURED, "Partially Captured": P.CAPTURED, "Paid": P.CAPTURED,
    "Partially Refunded": P.CAPTURED, "Refunded": P.CAPTURED,
    "Declined": P.DECLINED, "Canceled": P.CANCELLED, "Voided": P.CANCELLED, "Expired": P.EXPIRED,
}
WEBHOOK_STATUS = {
    "payment_pending": P.PENDING, "payment_capture_pending": P.PENDING,
    "payment_captured": P.CAPTURED, "payment_capture_declined": P.DECLINED,
    # Checkout.com uses the same event for a customer's cancel and for a failed payment.
    "payment_canceled": P.CANCELLED, "payment_expired": P.EXPIRED,
}
REFUND_EVENTS = {"payment_refund_pending": "pending", "payment_refunded": "succeeded",
                 "payment_refund_declined": "failed"}
UDF_ALLOWED = re.compile(r"[^A-Za-z0-9 ]")


def _receipt(source: Mapping[str, Any], reference: str) -> KnetReceipt:
    return KnetReceipt(
        payment_id=str(source.get("knet_payment_id") or ""),
        transaction_id=str(source.get("knet_transaction_id") or ""),
        auth_code=str(source.get("auth_code") or ""),
        bank_reference=str(source.get("bank_reference") or ""),
        track_id=reference,
        result=str(source.get("knet_result") or ""),
        post_date=str(source.get("post_date") or ""),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class CheckoutProvider(Provider):
    slug: ClassVar[str] = "checkout"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get", return_verification="GET /payments/{cko-session-id}",
        webhook_verification="Cko-Signature: HMAC-SHA256 of the raw body", inquiry=True,
        refunds=True, partial_refunds=True, expiry_seconds=7 * 60,
        # Checkout.com's amount rules want the last minor-unit digit of 3-decimal currencies to
        # be 0. Whether that binds KWD over KNET is unconfirmed, so we refuse rather than round.
        amount_step_fils=10,
    )

    @property
    def attempt_slugs(self) -> tuple[str, ...]:
        # Both Checkout.com APIs make the same payment objects on one account, whose notifications
        # go to the one URL configured for it: either URL may hear about either kind of attempt.
        return ("checkout", "checkout_setup")

    @property
    def api_url(self) -> str:
        return self.settings.provider_value("CHECKOUT_API_URL")

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        key = self.settings.provider_value("CHECKOUT_SECRET_KEY")
        headers = {"Authorization": f"Bearer {key}" if NAS_KEY.match(key) else key}
        if idempotency_key:
            headers["Cko-Idempotency-Key"] = idempotency_key
        return headers

    def missing_credentials(self) -> list[str]:
        names = ["CHECKOUT_API_URL", "CHECKOUT_SECRET_KEY", "CHECKOUT_WEBHOOK_SECRET"]
        return [f"SHOP_{n}" for n in names if not self.settings.provider_value(n)]

    def payment_body(self, request: PaymentRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "amount": request.amount_fils,  # KWD minor units are fils
            "currency": request.currency,
            "source": {
                "type": "knet",
                "language": request.language if request.language in ("en", "ar") else "en",
                # UDFs take letters, digits and spaces only.
                "user_defined_field1": UDF_ALLOWED.sub("", request.order_reference)[:255],
            },
            "reference": request.merchant_reference,
            "description": request.description[:100],
            "success_url": request.return_url,
            "failure_url": request.return_url,
            "customer": {"name": request.customer_name[:100], "email": request.customer_email},
            "metadata": {"order_reference": request.order_reference},
        }
        channel = self.settings.provider_value("CHECKOUT_PROCESSING_CHANNEL_ID")
        if channel:
            body["processing_channel_id"] = channel
        return body

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        _, body = await call_json(self.client, "POST", f"{self.api_url}/payments",
                                  headers=self._headers(request.idempotency_key), json_body=self.payment_body(request))
        return self.started(body)

    @staticmethod
    def started(body: Mapping[str, Any]) -> StartedPayment:
        redirect = body.get("_links", {}).get("redirect", {}).get("href")
        if not body.get("id") or not redirect:
            raise ProviderRejected(f"payment not started: status {body.get('status')!r}, no redirect link")
        return StartedPayment(provider_payment_id=str(body["id"]), redirect_url=str(redirect), raw=body)

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        # Unsigned: only an id to look up. Which URL the customer landed on proves nothing.
        return ReturnHint(provider_payment_id=params.get("cko-session-id") or None,
                          merchant_reference=params.get("ref") or None, payload=dict(params))

    def observation_from_details(self, body: Mapping[str, Any]) -> Observation:
        source = body.get("source") or {}
        reference = str(body.get("reference") or "")
        status = STATUS.get(str(body.get("status")))
        if status == P.CAPTURED and body.get("approved") is False:
            status = P.DECLINED
        return Observation(
            status=status,
            provider_payment_id=str(body.get("id") or "") or None,
            merchant_reference=reference or None,
            amount_fils=_int_or_none(body.get("amount")),
            currency=body.get("currency"),
            receipt=_receipt(source, reference),
            event_type=f"status {body.get('status')}",
            failure_reason=str(source.get("knet_result") or body.get("status") or ""),
            payload=body,
        )

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        if provider_payment_id:
            _, body = await call_json(self.client, "GET", f"{self.api_url}/payments/{provider_payment_id}",
                                      headers=self._headers(), ok=(200,))
            return self.observation_from_details(body)
        # The create call never answered: look the payment up by our reference.
        _, listing = await call_json(
            self.client, "GET", f"{self.api_url}/payments?{urlencode({'reference': merchant_reference})}",
            headers=self._headers(), ok=(200,),
        )
        found = [p for p in listing.get("data", []) if p.get("reference") == merchant_reference]
        if not found:
            return Observation(status=None, merchant_reference=merchant_reference, event_type="not found",
                               payload=listing, unknown_to_provider=True)
        return self.observation_from_details(found[0])

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        secret = self.settings.provider_value("CHECKOUT_WEBHOOK_SECRET")
        if not secret or not same_text(hmac_sha256_hex(secret, body), headers.get("cko-signature")):
            raise BadSignature("Cko-Signature does not match the body")
        try:
            event = json.loads(body)
        except ValueError as exc:
            raise BadSignature("signed body is not JSON") from exc
        if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
            raise BadSignature("signed body is not a webhook event")
        data = event["data"]
        kind = str(event.get("type") or "")
        reference = str(data.get("reference") or "")
        common = dict(
            provider_payment_id=str(data.get("id") or "") or None,
            merchant_reference=reference or None,
            event_id=str(event.get("id") or "") or None,
            event_type=kind,
            payload=event,
        )
        if kind in REFUND_EVENTS:
            return [Observation(status=None, refund_id=str(data.get("action_id") or "") or None,
                                refund_status=REFUND_EVENTS[kind], refund_amount_fils=_int_or_none(data.get("amount")),
                                failure_reason=str(data.get("response_summary") or ""), **common)]
        return [Observation(
            status=WEBHOOK_STATUS.get(kind),
            amount_fils=_int_or_none(data.get("amount")),
            currency=data.get("currency"),
            receipt=_receipt(data.get("source") or {}, reference),
            failure_reason=str(data.get("response_summary") or kind),
            **common,
        )]

    async def refund(self, request: RefundRequest) -> RefundResult:
        _, body = await call_json(
            self.client, "POST", f"{self.api_url}/payments/{request.provider_payment_id}/refunds",
            headers=self._headers(request.idempotency_key),
            json_body={"amount": request.amount_fils, "reference": request.reference},
        )
        # Asynchronous: the outcome arrives as payment_refunded / payment_refund_declined.
        return RefundResult(provider_refund_id=str(body.get("action_id") or "") or None, status="pending", raw=body)
