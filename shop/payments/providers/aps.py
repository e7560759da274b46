"""Amazon Payment Services (ex-PayFort) hosted checkout with KNET: a signed form POST to
`paymentPage`, signed returns and feedback, `CHECK_STATUS` / `REFUND` / `PAYMENT_LINK` on
`paymentApi` (providers.md section 1)."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from shop.payments.providers.base import (
    BadSignature,
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
from shop.clock import KUWAIT_TIME
from shop.payments.providers.http import call_json
from shop.payments.providers.signing import same_text
from shop.payments.states import PaymentStatus as P

PAGE_PATH = "/FortAPI/paymentPage"
API_PATH = "/FortAPI/paymentApi"
# The shop's own query parameter on `return_url` (service.start_attempt): APS never signed it.
OWN_RETURN_PARAMS = frozenset({"ref"})

# "SHA Type" from the dashboard -> how the phrase-wrapped string is hashed. APS's "SHA-128"
# is SHA-1; the HMAC variants (key = the phrase) come from the official WooCommerce plugin.
_DIGESTS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
SHA_TYPES: dict[str, tuple[str, str]] = {
    "sha128": ("hash", "sha1"), "sha1": ("hash", "sha1"),
    "sha256": ("hash", "sha256"), "sha512": ("hash", "sha512"),
    "hmac256": ("hmac", "sha256"), "hmacsha256": ("hmac", "sha256"),
    "hmac512": ("hmac", "sha512"), "hmacsha512": ("hmac", "sha512"),
}

# Response codes are 2-digit status + 3-digit message (providers.md 1.9).
ON_HOLD = frozenset({"15777", "15778", "15779", "15780", "15781"})
EXACT_STATUS: dict[str, P] = {
    "14000": P.CAPTURED,   # purchase success
    "04000": P.CAPTURED,   # capture success (never for KNET, which is PURCHASE only)
    "00072": P.CANCELLED,  # "Transaction has been cancelled by the consumer"
    # Message 778 is "Session timed-out": the customer let the KNET page run out. Our reading
    # (the digest maps 13xxx to declined); expiring releases the order the same way.
    "13778": P.EXPIRED,
}
STATUS_FAMILIES: dict[str, P] = {
    "13": P.DECLINED,  # purchase failure
    "15": P.PENDING,   # uncertain transaction
    "19": P.PENDING,   # transaction pending
    "20": P.PENDING,   # on hold
    "02": P.PENDING,   # authorization only: no money taken (KNET never authorizes)
    "00": P.FAILED,    # invalid request (signature mismatch, bad parameter, ...)
    # A refund, or a refund that failed, exists only on a purchase that was captured.
    "06": P.CAPTURED,
    "07": P.CAPTURED,
}
REFUND_OK, REFUND_FAILED = "06", "07"
CHECK_STATUS_OK = "12000"
PAYMENT_LINK_OK = "48"
# APS field formats (docs): references take letters, digits and - _ . ; descriptions a bit more.
REFERENCE_ALLOWED = re.compile(r"[^A-Za-z0-9_.\-]")
DESCRIPTION_ALLOWED = re.compile(r"[^A-Za-z0-9 '/._\-#:$]")
DIGITS = re.compile(r"^[0-9]{1,10}$")


class SignatureConfigError(ValueError):
    """`SHOP_APS_SHA_TYPE` names no hash APS offers."""


def sha_type(name: str) -> tuple[str, str]:
    """('hash' | 'hmac', digest name) for a SHA Type as the dashboard or SDKs spell it.

    Empty means SHA-256 (the dashboard default). Raises SignatureConfigError."""
    key = re.sub(r"[\s_\-]", "", name or "sha256").lower()
    try:
        return SHA_TYPES[key]
    except KeyError:
        raise SignatureConfigError(f"unknown APS SHA type {name!r}") from None


def signature_string(params: Mapping[str, str], phrase: str) -> str:
    """PHRASE + key=value of every parameter but `signature`, sorted by key (byte order) + PHRASE."""
    pairs = sorted((key, value) for key, value in params.items() if key != "signature")
    return phrase + "".join(f"{key}={value}" for key, value in pairs) + phrase


def sign(params: Mapping[str, str], phrase: str, kind: str = "SHA-256") -> str:
    """Lower-case hex signature of `params` (providers.md 1.5). Raises SignatureConfigError."""
    mode, digest = sha_type(kind)
    message = signature_string(params, phrase).encode("utf-8")
    if mode == "hmac":
        return hmac.new(phrase.encode("utf-8"), message, _DIGESTS[digest]).hexdigest()
    return _DIGESTS[digest](message).hexdigest()


def status_for(response_code: str) -> P | None:
    """Our payment state for an APS response code; None for codes that say nothing about it."""
    code = str(response_code or "")
    if len(code) != 5 or not code.isdigit():
        return None
    if code in EXACT_STATUS:
        return EXACT_STATUS[code]
    if code in ON_HOLD or code.endswith("006"):  # on hold: "technical problem", ask again later
        return P.PENDING
    return STATUS_FAMILIES.get(code[:2])


def _amount(value: object) -> int | None:
    """Integer minor units as APS sends them ("10500"); anything else is no amount."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and DIGITS.match(value):
        return int(value)
    return None


def _receipt(fields: Mapping[str, Any]) -> KnetReceipt:
    """KNET receipt per providers.md section 0: the KNET payment id and post date are not exposed."""
    code = str(fields.get("response_code") or "")
    message = str(fields.get("response_message") or "")
    return KnetReceipt(
        transaction_id=str(fields.get("third_party_transaction_number") or ""),
        auth_code=str(fields.get("authorization_code") or ""),
        bank_reference=str(fields.get("knet_ref_number") or ""),
        track_id=str(fields.get("merchant_reference") or ""),
        result=f"{code} {message}".strip()[:40],
    )


def _signed_values(raw: Mapping[str, Any]) -> dict[str, str]:
    """The received fields as the strings that were signed. Raises BadSignature for shapes
    APS never signs (nested objects, lists, floats): they could not be verified as sent."""
    values: dict[str, str] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            if value is None:
                continue  # a null is omitted from the signature, like an absent field
            raise BadSignature(f"field {key!r} is not a plain value")
        values[str(key)] = str(value)
    return values


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise BadSignature("a field appears twice")
    return dict(pairs)


class ApsProvider(Provider):
    slug: ClassVar[str] = "aps"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="form_post",
        return_verification="SHA signature (response phrase) over the returned fields, then CHECK_STATUS",
        webhook_verification="SHA signature (response phrase) over the notification's fields",
        inquiry=True,
        # APS documents REFUND (partial by amount); KNET refunds through APS are unconfirmed,
        # so SHOP_APS_REFUNDS=0 turns them off and APS's own refusal is surfaced as is.
        refunds=True,
        partial_refunds=True,
        # No APS-specific KNET window is documented: KNET's own page limit (about 7 minutes)
        # plus the APS page in front of it. Late captures are still honoured after expiry.
        expiry_seconds=15 * 60,
        payment_links=True,
    )

    # -- settings ---------------------------------------------------------------------------

    @property
    def page_url(self) -> str:
        return self.settings.provider_value("APS_PAGE_URL")

    @property
    def api_url(self) -> str:
        return self.settings.provider_value("APS_API_URL")

    def _value(self, name: str) -> str:
        return self.settings.provider_value(name)

    def missing_credentials(self) -> list[str]:
        names = ["APS_PAGE_URL", "APS_API_URL", "APS_ACCESS_CODE", "APS_MERCHANT_IDENTIFIER",
                 "APS_SHA_REQUEST_PHRASE", "APS_SHA_RESPONSE_PHRASE"]
        missing = [f"SHOP_{n}" for n in names if not self._value(n)]
        try:
            sha_type(self._value("APS_SHA_TYPE"))
        except SignatureConfigError:
            missing.append("SHOP_APS_SHA_TYPE")
        return missing

    def refunds_enabled(self) -> bool:
        return self._value("APS_REFUNDS").lower() not in {"0", "false", "no", "off"}

    def sign_request(self, params: Mapping[str, str]) -> str:
        """Signature with the SHA request phrase. Raises ProviderRejected for a bad SHA type."""
        try:
            return sign(params, self._value("APS_SHA_REQUEST_PHRASE"), self._value("APS_SHA_TYPE"))
        except SignatureConfigError as exc:
            raise ProviderRejected(str(exc)) from None

    def response_signature_ok(self, fields: Mapping[str, str]) -> bool:
        """Constant-time check of `fields["signature"]` against the SHA response phrase."""
        phrase = self._value("APS_SHA_RESPONSE_PHRASE")
        try:
            expected = sign(fields, phrase, self._value("APS_SHA_TYPE"))
        except SignatureConfigError:
            return False
        return bool(phrase) and same_text(expected, fields.get("signature"))

    def _credentials(self) -> dict[str, str]:
        return {"access_code": self._value("APS_ACCESS_CODE"),
                "merchant_identifier": self._value("APS_MERCHANT_IDENTIFIER")}

    # -- starting a payment -----------------------------------------------------------------

    def form_fields(self, request: PaymentRequest) -> dict[str, str]:
        """The signed hosted-checkout form (providers.md 1.2); empty optional fields are left
        out, as the SDK does, so they are never signed."""
        if request.amount_fils <= 0:
            raise ProviderRejected("APS takes only positive amounts")
        if request.currency != "KWD":
            raise ProviderRejected("KNET through APS settles in KWD only")
        fields: dict[str, str] = {
            "command": "PURCHASE",
            **self._credentials(),
            "merchant_reference": request.merchant_reference,
            "amount": str(request.amount_fils),  # KWD minor units are fils: 10.500 KWD -> "10500"
            "currency": "KWD",
            "language": request.language if request.language in ("en", "ar") else "en",
            "customer_email": request.customer_email,
            "payment_option": "KNET",
            "return_url": request.return_url,
        }
        description = DESCRIPTION_ALLOWED.sub("", request.description)[:150].strip()
        if description:
            fields["order_description"] = description
        fields["signature"] = self.sign_request(fields)
        return fields

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        """No HTTP call: the browser posts the signed form. APS assigns `fort_id` later.

        Raises ProviderRejected for what APS would refuse (amount, currency, configuration)."""
        fields = self.form_fields(request)
        raw = {k: v for k, v in fields.items() if k not in ("signature", "access_code")}
        return StartedPayment(provider_payment_id=None, redirect_url=f"{self.page_url}{PAGE_PATH}",
                              form_fields=fields, raw=raw)

    # -- reading what APS signed ------------------------------------------------------------

    def observation_from_fields(self, fields: Mapping[str, str], event_id: str | None = None,
                                event_type: str = "") -> Observation:
        """A verified return or feedback (PURCHASE or REFUND) as an observation."""
        code = str(fields.get("response_code") or "")
        command = str(fields.get("command") or "")
        reference = str(fields.get("merchant_reference") or "")
        common: dict[str, Any] = dict(
            provider_payment_id=str(fields.get("fort_id") or "") or None,
            merchant_reference=reference or None,
            event_id=event_id,
            event_type=event_type or f"{command} {code}".strip(),
            failure_reason=str(fields.get("response_message") or code),
            payload=dict(fields),
        )
        if command == "REFUND":
            outcome = {REFUND_OK: "succeeded", REFUND_FAILED: "failed"}.get(code[:2])
            return Observation(status=None, refund_id=str(fields.get("maintenance_reference") or "") or None,
                               refund_status=outcome, refund_amount_fils=_amount(fields.get("amount")), **common)
        return Observation(
            status=status_for(code),
            amount_fils=_amount(fields.get("amount")),
            currency=str(fields.get("currency") or "") or None,
            receipt=_receipt(fields),
            **common,
        )

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        """Verify the response signature over every returned field (the shop's own `ref`
        excepted). Raises BadSignature: missing, altered, or signed with another phrase."""
        fields = {k: v for k, v in params.items() if k not in OWN_RETURN_PARAMS}
        if not fields.get("signature") or not self.response_signature_ok(fields):
            raise BadSignature("APS return signature does not verify")
        observation = self.observation_from_fields(fields, event_type=f"return {fields.get('response_code', '')}")
        return ReturnHint(provider_payment_id=observation.provider_payment_id,
                          merchant_reference=observation.merchant_reference, verified=observation,
                          payload=dict(fields))

    @staticmethod
    def _notification_fields(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
        """The notification as sent: a JSON object, or a form (the WooCommerce plugin accepts
        both). Strict UTF-8: another encoding would not be the bytes APS signed."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSignature("notification is not UTF-8") from None
        content_type = str(headers.get("content-type") or "").lower()
        if "application/x-www-form-urlencoded" in content_type:
            try:
                pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
            except (ValueError, UnicodeDecodeError):
                raise BadSignature("notification form is malformed") from None
            return _no_duplicate_keys(pairs)
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except ValueError:
            raise BadSignature("notification is not JSON") from None
        if not isinstance(value, dict):
            raise BadSignature("notification is not a JSON object")
        return value

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """Direct transaction feedback / notification feedback: verified like the return,
        over exactly the fields received. Deduplicated on (fort_id, command, response_code,
        refund reference). Raises BadSignature."""
        fields = _signed_values(self._notification_fields(headers, body))
        if not fields.get("signature") or not self.response_signature_ok(fields):
            raise BadSignature("APS notification signature does not verify")
        fort_id = fields.get("fort_id", "")
        event_id = None
        if fort_id:
            parts = [fort_id, fields.get("command", ""), fields.get("response_code", "")]
            if fields.get("command") == "REFUND":
                parts.append(fields.get("maintenance_reference") or fields.get("amount", ""))
            event_id = ":".join(parts)[:120]
        return [self.observation_from_fields(fields, event_id=event_id)]

    # -- server to server -------------------------------------------------------------------

    async def _api(self, body: dict[str, str]) -> dict[str, str]:
        """POST a signed JSON request to paymentApi; return the verified, stringified answer.

        ProviderUnavailable: no answer, or an answer whose signature does not hold that
        claims anything but an invalid request. ProviderRejected: APS refused the request."""
        body["signature"] = self.sign_request(body)
        _, answer = await call_json(self.client, "POST", f"{self.api_url}{API_PATH}", json_body=body, ok=(200,))
        try:
            fields = _signed_values(answer)
        except BadSignature as exc:
            raise ProviderUnavailable(f"APS answer has an unexpected shape: {exc}") from None
        code = fields.get("response_code", "")
        if not self.response_signature_ok(fields):
            if code.startswith("00"):
                # Some refusals (wrong access code, ...) come unsigned; they change nothing here.
                raise ProviderRejected(f"APS refused: {code} {fields.get('response_message', '')}".strip())
            raise ProviderUnavailable("APS answer signature does not verify")
        if code.startswith("00"):
            raise ProviderRejected(f"APS refused: {code} {fields.get('response_message', '')}".strip())
        return fields

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        """CHECK_STATUS (providers.md 1.6). `response_code` 12000 only says the inquiry worked;
        the payment's outcome is `transaction_code`. Idempotent.
        Raises ProviderUnavailable, or ProviderRejected for a refused inquiry."""
        body = {"query_command": "CHECK_STATUS", **self._credentials(),
                "merchant_reference": merchant_reference, "language": "en"}
        if provider_payment_id:
            body["fort_id"] = provider_payment_id
        fields = await self._api(body)
        code = fields.get("response_code", "")
        transaction_code = fields.get("transaction_code", "")
        if code != CHECK_STATUS_OK or not transaction_code:
            # Check status failed (11xxx) or APS has no such order: nothing to apply yet.
            return Observation(status=None, merchant_reference=merchant_reference, payload=fields,
                               event_type=f"check status {code}", failure_reason=fields.get("response_message", ""))
        status = status_for(transaction_code)
        amount = _amount(fields.get("captured_amount")) if status == P.CAPTURED else None
        if amount is None:
            amount = _amount(fields.get("amount"))
        receipt_fields = {**fields, "response_code": transaction_code,
                          "response_message": fields.get("transaction_message", "")}
        return Observation(
            status=status,
            provider_payment_id=fields.get("fort_id") or None,
            merchant_reference=fields.get("merchant_reference") or merchant_reference,
            amount_fils=amount,
            currency=fields.get("currency") or None,
            receipt=_receipt(receipt_fields),
            event_type=f"check status {transaction_code}",
            failure_reason=fields.get("transaction_message") or transaction_code,
            payload=fields,
        )

    async def refund(self, request: RefundRequest) -> RefundResult:
        """REFUND by `fort_id` ("merchant_reference and/or fort_id", APS maintenance docs), a
        smaller amount for a partial refund. `maintenance_reference` is the idempotency key:
        APS answers a repeated one instead of refunding twice. Synchronous: 06000 succeeded,
        07xxx failed. Raises ProviderUnavailable, or ProviderRejected (refunds disabled, or
        APS refused the request, its message included)."""
        if not self.refunds_enabled():
            raise ProviderRejected("refunds through APS are turned off (SHOP_APS_REFUNDS=0)")
        if request.amount_fils <= 0:
            raise ProviderRejected("refund amount must be positive")
        if not request.provider_payment_id:
            raise ProviderRejected("no APS fort_id known for this payment: nothing to refund")
        body = {"command": "REFUND", **self._credentials(), "fort_id": request.provider_payment_id,
                "amount": str(request.amount_fils), "currency": request.currency, "language": "en",
                "maintenance_reference": REFERENCE_ALLOWED.sub("", request.idempotency_key)[:200]}
        description = DESCRIPTION_ALLOWED.sub("", request.reference)[:49].strip()
        if description:
            body["order_description"] = description  # the plugin keeps it under 50 characters
        fields = await self._api(body)
        code = fields.get("response_code", "")
        refund_id = fields.get("maintenance_reference") or body["maintenance_reference"]
        if code.startswith(REFUND_OK):
            return RefundResult(provider_refund_id=refund_id, status="succeeded", raw=fields)
        if code.startswith(REFUND_FAILED):
            return RefundResult(provider_refund_id=refund_id, status="failed", raw=fields)
        raise ProviderUnavailable(f"APS refund answered {code!r}: outcome unknown")

    # -- payment links ----------------------------------------------------------------------

    async def create_link(self, request: PaymentRequest, channel: str, expires_at: datetime) -> StartedPayment:
        """A payment link under the attempt's merchant reference: its payment is a PURCHASE of that
        reference, so the return, the feedback and CHECK_STATUS find the attempt as usual."""
        kinds = {"link": "NONE", "email": "EMAIL", "sms": "SMS"}
        if channel not in kinds:
            raise ProviderRejected(f"a payment link is sent by {', '.join(kinds)}, not {channel!r}")
        link = await self.create_payment_link(
            request.merchant_reference, request.amount_fils, request.language, request.customer_email, expires_at,
            return_url=request.return_url, description=request.description, notification_type=kinds[channel],
            customer_phone=request.customer_phone)
        return StartedPayment(provider_payment_id=None, redirect_url=link, raw={"payment_link": link})

    async def create_payment_link(
        self,
        order_reference: str,
        amount_fils: int,
        language: str,
        customer_email: str,
        expires_at: datetime,
        *,
        return_url: str = "",
        description: str = "",
        notification_type: str = "NONE",
        customer_phone: str = "",
    ) -> str:
        """A KWD payment link (`service_command=PAYMENT_LINK`) on which APS offers KNET; returns
        its URL. `order_reference` becomes the link's merchant reference (unique per link).
        Not idempotent: a repeated reference is refused by APS.
        Raises ProviderUnavailable or ProviderRejected (APS refused, or bad arguments)."""
        if amount_fils <= 0:
            raise ProviderRejected("APS takes only positive amounts")
        if expires_at.tzinfo is None:
            raise ProviderRejected("the link expiry needs a time zone")
        if notification_type not in ("NONE", "EMAIL", "SMS"):
            raise ProviderRejected("notification_type is NONE, EMAIL or SMS")
        body = {
            "service_command": "PAYMENT_LINK", **self._credentials(),
            "merchant_reference": order_reference,
            "amount": str(amount_fils),
            "currency": "KWD",  # KNET appears on a link only when it is in KWD
            "language": language if language in ("en", "ar") else "en",
            "customer_email": customer_email,
            "request_expiry_date": expires_at.astimezone(KUWAIT_TIME).isoformat(timespec="seconds"),
            "notification_type": notification_type,
            "link_command": "PURCHASE",
            "payment_option": "KNET",
        }
        text = DESCRIPTION_ALLOWED.sub("", description)[:150].strip()
        if text:
            body["order_description"] = text
        if customer_phone:
            body["customer_phone"] = customer_phone
        if return_url:
            body["return_url"] = return_url
        fields = await self._api(body)
        link = fields.get("payment_link", "")
        if not fields.get("response_code", "").startswith(PAYMENT_LINK_OK) or not link:
            raise ProviderRejected(f"APS made no link: {fields.get('response_code')} {fields.get('response_message', '')}")
        return link
