"""Tap Payments charges with the KNET source (`POST /v2/charges`, `source.id = "src_kw.knet"`)."""
from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar, Mapping

from shop.money import fils_to_decimal
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

KNET_SOURCE = "src_kw.knet"
# Charge `status` (providers.md 3.5). Spellings of IN_PROGRESS / TIMEDOUT are unconfirmed, so
# the variants seen in Tap's own pages are all accepted.
STATUS: dict[str, P | None] = {
    "INITIATED": P.PENDING, "IN_PROGRESS": P.PENDING, "IN PROGRESS": P.PENDING,
    # UNKNOWN: Tap does not know yet either; stay pending and ask again (then expire).
    "UNKNOWN": P.PENDING,
    "CAPTURED": P.CAPTURED,
    "DECLINED": P.DECLINED, "RESTRICTED": P.DECLINED,
    "CANCELLED": P.CANCELLED, "CANCELED": P.CANCELLED, "VOID": P.CANCELLED,
    "ABANDONED": P.EXPIRED, "TIMEDOUT": P.EXPIRED, "TIMED_OUT": P.EXPIRED, "TIMED OUT": P.EXPIRED,
    "FAILED": P.FAILED,
    "AUTHORIZED": None,  # we charge, never authorize: not news we act on
}
EXPIRED_RESPONSE_CODE = "304"  # response.code "Expired", whatever the status says
# Refund `status` (providers.md 3.6, including "refund logic v2").
REFUND_STATUS = {
    "PENDING": "pending", "IN_PROGRESS": "pending", "ACCEPTED": "pending", "INITIATED": "pending",
    "UNKNOWN": "pending",
    "REFUNDED": "succeeded", "SUCCEEDED": "succeeded",
    "DECLINED": "failed", "FAILED": "failed", "RESTRICTED": "failed", "CANCELLED": "failed",
    "CANCELED": "failed", "TIMED_OUT": "failed", "TIMEDOUT": "failed",
}
# Decimals of the amount in `hashstring` (Tap's webhook page: "KWD - 3.000, SAR - 2.00").
THREE_DECIMALS = frozenset({"KWD", "BHD", "OMR", "JOD", "IQD", "LYD", "TND"})
ZERO_DECIMALS = frozenset({"JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XAF", "XOF"})
CHARGE_ID = re.compile(r"^chg_[A-Za-z0-9]{8,64}$")
PHONE = re.compile(r"^\+?(965)?(\d{8})$")
FILS = Decimal("0.001")


def currency_decimals(currency: str) -> int:
    if currency in THREE_DECIMALS:
        return 3
    return 0 if currency in ZERO_DECIMALS else 2


def _decimal(value: Any) -> Decimal | None:
    """A JSON amount (Decimal/int as parsed exactly, or a numeric string) as a Decimal."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (Decimal, int)):
        return Decimal(value)
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip())
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None  # a float can only come from a careless parser: never trusted as money


def _fils(value: Any, currency: str | None) -> int | None:
    """Major units -> fils, only when exact (a KWD amount with at most 3 decimals)."""
    amount = _decimal(value)
    if amount is None or currency != "KWD":
        return None
    fils = amount * 1000
    return int(fils) if fils == fils.to_integral_value() else None


def hash_amount(value: Any, currency: str) -> str:
    """The amount as `hashstring` carries it: rounded to the currency's decimals (`10.500`)."""
    amount = _decimal(value)
    if amount is None:
        return ""
    places = currency_decimals(currency)
    return format(amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), f".{places}f")


def _text(value: Any) -> str:
    """A JSON scalar as Tap's integrations concatenate it; objects and null contribute nothing."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def hash_string(obj: Mapping[str, Any]) -> str:
    """The signed field string of a charge or refund (providers.md 3.4; Tap's webhook page).

    Charges take `x_created` from `transaction.created`, refunds from their top-level `created`."""
    reference = obj.get("reference") if isinstance(obj.get("reference"), dict) else {}
    currency = _text(obj.get("currency"))
    if obj.get("object") == "refund" or str(obj.get("id", "")).startswith("re_"):
        created = obj.get("created")
    else:
        transaction = obj.get("transaction") if isinstance(obj.get("transaction"), dict) else {}
        created = transaction.get("created")
    return (
        "x_id" + _text(obj.get("id"))
        + "x_amount" + hash_amount(obj.get("amount"), currency)
        + "x_currency" + currency
        + "x_gateway_reference" + _text(reference.get("gateway"))
        + "x_payment_reference" + _text(reference.get("payment"))
        + "x_status" + _text(obj.get("status"))
        + "x_created" + _text(created)
    )


def sign(obj: Mapping[str, Any], secret_key: str) -> str:
    """`hashstring`: lower-case hex HMAC-SHA256 of the field string, keyed with the secret key."""
    return hmac_sha256_hex(secret_key, hash_string(obj).encode())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, found in headers.items():
        if key.lower() == name:
            return found
    return None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def receipt(charge: Mapping[str, Any]) -> KnetReceipt:
    """KNET's receipt fields in a charge (providers.md section 0; the id mapping is inferred)."""
    reference = _dict(charge.get("reference"))
    transaction = _dict(charge.get("transaction"))
    gateway_response = _dict(_dict(charge.get("gateway")).get("response"))
    return KnetReceipt(
        payment_id=_text(reference.get("payment")),
        transaction_id=_text(reference.get("gateway")),
        auth_code=_text(transaction.get("authorization_id")),
        bank_reference=_text(reference.get("acquirer")),
        track_id=_text(reference.get("track")),
        result=_text(gateway_response.get("message")),
    )


def charge_status(charge: Mapping[str, Any]) -> P | None:
    if _text(_dict(charge.get("response")).get("code")) == EXPIRED_RESPONSE_CODE:
        return P.EXPIRED
    return STATUS.get(_text(charge.get("status")).upper())


def _split_name(full_name: str) -> tuple[str, str]:
    first, _, rest = full_name.strip().partition(" ")
    return first or full_name, rest.strip()


class TapProvider(Provider):
    slug: ClassVar[str] = "tap"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get", return_verification="GET /v2/charges/{tap_id}",
        webhook_verification="hashstring: HMAC-SHA256 of the x_id..x_created field string, keyed with the secret key",
        inquiry=True, refunds=True, partial_refunds=True,
        expiry_seconds=30 * 60,  # transaction.expiry: {"period": 30, "type": "MINUTE"}
    )

    @property
    def api_url(self) -> str:
        return self.settings.provider_value("TAP_API_URL")

    def _headers(self, language: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.settings.provider_value('TAP_SECRET_KEY')}"}
        if language:
            headers["lang_code"] = language if language in ("en", "ar") else "en"
        return headers

    def missing_credentials(self) -> list[str]:
        return [f"SHOP_{n}" for n in ("TAP_API_URL", "TAP_SECRET_KEY") if not self.settings.provider_value(n)]

    def charge_body(self, request: PaymentRequest) -> dict[str, Any]:
        """The `POST /v2/charges` body; the amount is an exact Decimal (sent as `10.500`)."""
        if request.currency != "KWD":
            raise ProviderRejected("KNET through Tap charges KWD only")
        first_name, last_name = _split_name(request.customer_name)
        customer: dict[str, Any] = {"first_name": first_name[:50]}
        if last_name:
            customer["last_name"] = last_name[:50]
        customer["email"] = request.customer_email
        phone = PHONE.match(request.customer_phone.replace(" ", ""))
        if phone:
            customer["phone"] = {"country_code": "965", "number": phone.group(2)}
        return {
            "amount": fils_to_decimal(request.amount_fils),
            "currency": request.currency,
            "customer_initiated": True,
            "threeDSecure": True,
            "save_card": False,
            "description": request.description[:100],
            "metadata": {"udf1": request.order_reference},
            # `idempotent`: Tap answers a repeat within 24 h with the first charge, never a second.
            "reference": {"transaction": request.merchant_reference, "order": request.order_reference,
                          "idempotent": request.idempotency_key},
            "receipt": {"email": False, "sms": False},
            "customer": customer,
            "source": {"id": KNET_SOURCE},
            "post": {"url": request.webhook_url},
            "redirect": {"url": request.return_url},
        }

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        _, body = await call_json(self.client, "POST", f"{self.api_url}/v2/charges",
                                  headers=self._headers(request.language), json_body=self.charge_body(request),
                                  exact_decimals=True)
        return self.started(body)

    @staticmethod
    def started(body: Mapping[str, Any]) -> StartedPayment:
        url = _dict(body.get("transaction")).get("url")
        charge_id = _text(body.get("id"))
        if not CHARGE_ID.match(charge_id) or body.get("status") != "INITIATED" or not isinstance(url, str) or not url:
            reason = _dict(body.get("response")).get("message") or body.get("status")
            raise ProviderRejected(f"charge not started: status {body.get('status')!r} ({reason}), no payment page")
        return StartedPayment(provider_payment_id=charge_id, redirect_url=url, raw=body)

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        # Unsigned: only an id to look up. An empty `tap_id` (the SDK's failover) is no payment.
        tap_id = (params.get("tap_id") or "").strip()
        return ReturnHint(provider_payment_id=tap_id if CHARGE_ID.match(tap_id) else None,
                          merchant_reference=params.get("ref") or None, payload=dict(params))

    def observation_from_charge(self, charge: Mapping[str, Any], event_id: str | None = None) -> Observation:
        currency = _text(charge.get("currency")) or None
        response = _dict(charge.get("response"))
        failure = _text(response.get("message")) or _text(charge.get("status"))
        return Observation(
            status=charge_status(charge),
            provider_payment_id=_text(charge.get("id")) or None,
            merchant_reference=_text(_dict(charge.get("reference")).get("transaction")) or None,
            amount_fils=_fils(charge.get("amount"), currency),
            currency=currency,
            receipt=receipt(charge),
            event_id=event_id,
            event_type=f"charge {charge.get('status')}",
            failure_reason=f"{failure} ({response.get('code')})" if response.get("code") else failure,
            payload=charge,
        )

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        if provider_payment_id:
            _, charge = await call_json(self.client, "GET", f"{self.api_url}/v2/charges/{provider_payment_id}",
                                        headers=self._headers(), ok=(200,), exact_decimals=True)
            return self.observation_from_charge(charge)
        # The create call never answered: look the charge up by our reference.
        now_ms = int(time.time() * 1000)
        query = {
            "period": {"date": {"from": str(now_ms - 2 * 24 * 3600 * 1000), "to": str(now_ms + 3600 * 1000)}},
            "reference": {"transaction": merchant_reference},
            "limit": 50,
        }
        _, listing = await call_json(self.client, "POST", f"{self.api_url}/v2/charges/list", headers=self._headers(),
                                     json_body=query, ok=(200,), exact_decimals=True)
        charges = listing.get("charges") if isinstance(listing.get("charges"), list) else []
        found = [c for c in charges if isinstance(c, dict)
                 and _dict(c.get("reference")).get("transaction") == merchant_reference]
        if not found:
            return Observation(status=None, merchant_reference=merchant_reference, event_type="not found",
                               payload=listing, unknown_to_provider=True)
        return self.observation_from_charge(found[0])

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """The charge (or refund) object POSTed to `post.url`, signed in `hashstring`.

        The signature covers fields, not bytes: the fields are read from the exact body received,
        amounts as exact decimals. Deduplicated on (id, status). Raises BadSignature."""
        secret = self.settings.provider_value("TAP_SECRET_KEY")
        given = _header(headers, "hashstring")
        try:
            obj = json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadSignature("notification body is not UTF-8 JSON") from exc
        if not isinstance(obj, dict) or not _text(obj.get("id")) or not _text(obj.get("status")):
            raise BadSignature("notification is not a Tap object")
        if not secret or not same_text(sign(obj, secret), given):
            raise BadSignature("hashstring does not match the notification")
        object_id, status = _text(obj["id"]), _text(obj["status"])
        event_id = f"{object_id}:{status}"
        if obj.get("object") == "refund" or object_id.startswith("re_"):
            response = _dict(obj.get("response"))
            return [Observation(
                status=None,
                provider_payment_id=_text(obj.get("charge_id")) or None,
                event_id=event_id,
                event_type=f"refund {status}",
                refund_id=object_id,
                refund_status=REFUND_STATUS.get(status.upper(), "pending"),
                refund_amount_fils=_fils(obj.get("amount"), _text(obj.get("currency")) or None),
                failure_reason=_text(response.get("message")) or status,
                payload=obj,
            )]
        # `reference.transaction` is outside the signed fields: the signed charge id alone says
        # which attempt this is (an attempt whose create never answered is found by inquiry).
        return [replace(self.observation_from_charge(obj, event_id=event_id), merchant_reference=None)]

    def refund_body(self, request: RefundRequest) -> dict[str, Any]:
        return {
            "charge_id": request.provider_payment_id,
            "amount": fils_to_decimal(request.amount_fils),
            "currency": request.currency,
            "description": f"Refund {request.reference}"[:100],
            "reason": "requested_by_customer",
            "reference": {"merchant": request.reference, "idempotent": request.idempotency_key},
            "metadata": {"udf1": request.reference},
            # The outcome arrives later at the same endpoint as the charge's notifications.
            "post": {"url": f"{self.settings.public_url}/webhooks/{self.slug}"},
        }

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Full once, or several partial refunds up to the charge; asynchronous (`PENDING` first)."""
        _, body = await call_json(self.client, "POST", f"{self.api_url}/v2/refunds", headers=self._headers(),
                                  json_body=self.refund_body(request), exact_decimals=True)
        refund_id = _text(body.get("id"))
        if not refund_id:
            raise ProviderRejected(f"refund not accepted: {body.get('response') or body.get('status')!r}")
        return RefundResult(provider_refund_id=refund_id,
                            status=REFUND_STATUS.get(_text(body.get("status")).upper(), "pending"), raw=body)
