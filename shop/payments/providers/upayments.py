"""UPayments charge API with KNET (`POST /api/v1/charge`, `paymentGateway.src = "knet"`).

UPayments signs nothing: the browser return and the `notificationUrl` call carry only ids, so
both are hints, and `GET get-payment-status/{track_id}` is the only word we trust
(providers.md 4.3-4.5). Amounts are JSON numbers in dinars, sent as exact decimals (`10.500`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Mapping
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from shop.money import fils_to_decimal
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
    VendorSplit,
)
from shop.payments.providers.http import call_json
from shop.payments.states import PaymentStatus as P
from shop.vendors.splits import SplitError, allocate_refund

# `result` of a transaction (providers.md 4.7). Anything else, null included, is still open.
STATUS = {
    "CAPTURED": P.CAPTURED, "SUCCESS": P.CAPTURED,  # SUCCESS: the legacy plugin's word
    "NOT CAPTURED": P.DECLINED,
    "CANCELED": P.CANCELLED, "CANCELLED": P.CANCELLED,
    "ERROR": P.FAILED, "FAILURE": P.FAILED,
}
# `refundStatus` of a refund [unconfirmed vocabulary; the sandbox uses the first of each].
REFUND_STATUS = {
    "PENDING": "pending", "PROCESSING": "pending", "APPROVED": "pending",
    "REFUNDED": "succeeded", "SUCCESS": "succeeded", "COMPLETED": "succeeded",
    "REJECTED": "failed", "FAILED": "failed", "DELETED": "failed", "CANCELED": "failed", "CANCELLED": "failed",
}
INVOICE_NOTIFICATIONS = ("email", "sms", "link", "all")
# The return and the notification carry these (providers.md 4.3); nothing else is read from them.
RETURN_FIELDS = ("result", "payment_id", "track_id", "payment_type", "post_date", "tran_id", "ref", "auth",
                 "requested_order_id")
ORDER_ID_LIMIT = 40  # 50 in seed 004, 40 in the current reference: keep to the stricter
AMOUNT_TEXT = re.compile(r"^(\d{1,12})(?:\.(\d{1,3}))?$")
# Attempts started without a track id keep what else can be looked up, prefixed.
SESSION_PREFIX, INVOICE_PREFIX = "session:", "invoice:"
HTTP_STATUS = re.compile(r": HTTP (\d{3}) ")  # how call_json names the status in a refusal


def refusal_status(exc: ProviderRejected) -> int | None:
    match = HTTP_STATUS.search(str(exc))
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class InvoiceLink:
    """A UPayments invoice (`paymentGateway.src = "create-invoice"`): a link the customer pays later."""

    url: str
    invoice_id: str | None
    notification_type: str
    # What `inquire` takes for this invoice (the attempt's provider payment id).
    provider_payment_id: str | None
    raw: Mapping[str, Any] = field(default_factory=dict)


def amount_to_fils(value: Any) -> int | None:
    """An amount as UPayments writes it (`"10.500"`, `10.5`, `10`) in fils; None if not exact.

    Numbers arrive as Decimal (`call_json(..., exact_decimals=True)`), never float."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            return None
        fils = value * 1000
        return int(fils) if fils == fils.to_integral_value() else None
    if isinstance(value, str):
        match = AMOUNT_TEXT.match(value.strip())
        if not match:
            return None
        return int(match.group(1)) * 1000 + int((match.group(2) or "").ljust(3, "0"))
    return None


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        return ""
    return str(value)


def receipt_from(fields: Mapping[str, Any]) -> KnetReceipt:
    """KNET's receipt as UPayments names it (providers.md 0: `payment_id`, `tran_id`, `auth`, ...)."""
    return KnetReceipt(
        payment_id=_text(fields.get("payment_id")),
        transaction_id=_text(fields.get("tran_id")),
        auth_code=_text(fields.get("auth")),
        bank_reference=_text(fields.get("ref")),
        track_id=_text(fields.get("track_id")),
        result=_text(fields.get("result")),
        post_date=_text(fields.get("post_date")),
    )


def status_of(result: Any) -> P:
    """Our state for a transaction `result`; an unknown or missing one is still pending."""
    return STATUS.get(_text(result).strip().upper(), P.PENDING)


def _unglue(params: Mapping[str, str]) -> dict[str, str]:
    """Undo UPayments' `?`-append quirk: with `returnUrl=…?ref=R` it sends `…?ref=R?payment_id=…&…`,
    so the first appended field hides inside the previous value (providers.md 4.3)."""
    fields: dict[str, str] = {}
    for key, value in params.items():
        head, sep, tail = str(value).partition("?")
        fields[key] = head
        if sep:
            for inner_key, inner_value in parse_qsl(tail, keep_blank_values=True):
                fields.setdefault(inner_key, inner_value)
    return fields


def _decode_notification(body: bytes) -> dict[str, Any]:
    """A notification body: a JSON object, or a form (`$_REQUEST` in the plugins). Raises BadSignature."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadSignature("notification is not UTF-8") from exc
    stripped = text.strip()
    if not stripped:
        raise BadSignature("empty notification")
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped, parse_float=Decimal)
        except ValueError as exc:
            raise BadSignature("notification is not valid JSON") from exc
        if not isinstance(value, dict):
            raise BadSignature("notification is not a JSON object")
        return value
    try:
        pairs = parse_qsl(stripped, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise BadSignature("notification is neither JSON nor a form") from exc
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise BadSignature("notification repeats a field")
    return dict(pairs)


def _scalar_fields(value: Mapping[str, Any]) -> bool:
    return all(v is None or isinstance(v, (str, int, Decimal)) and not isinstance(v, bool) for v in value.values())


class UpaymentsProvider(Provider):
    slug: ClassVar[str] = "upayments"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get", return_verification="GET get-payment-status/{track_id} (the return is unsigned)",
        webhook_verification="none exists: every notification is confirmed by GET get-payment-status",
        inquiry=True, refunds=True, partial_refunds=True,
        # UPayments documents no window [unconfirmed]: the KNET page's 7 minutes (providers.md 4.9).
        expiry_seconds=7 * 60, payment_links=True, vendor_splits=True,
    )

    @property
    def api_url(self) -> str:
        return f"{self.settings.provider_value('UPAYMENTS_API_URL')}/api/v1"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.provider_value('UPAYMENTS_API_KEY')}"}

    def missing_credentials(self) -> list[str]:
        names = ["UPAYMENTS_API_URL", "UPAYMENTS_API_KEY"]
        return [f"SHOP_{n}" for n in names if not self.settings.provider_value(n)]

    async def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        """One API call; `status: false` is a refusal, a 429 (30 status calls a minute) a "later"."""
        try:
            _, answer = await call_json(self.client, method, f"{self.api_url}/{path}", headers=self._headers(),
                                        json_body=body, ok=ok, exact_decimals=True)
        except ProviderRejected as exc:
            if refusal_status(exc) == 429:
                raise ProviderUnavailable(f"rate limited by UPayments: {exc}") from exc
            raise
        if answer.get("status") is not True:
            raise ProviderRejected(f"{method} {path}: {answer.get('message') or 'status false'}")
        if not isinstance(answer.get("data"), dict):
            raise ProviderUnavailable(f"{method} {path}: answer without data")
        return answer

    # -- starting ---------------------------------------------------------------------------

    @staticmethod
    def split_body(split: VendorSplit) -> dict[str, Any]:
        """One vendor's `extraMerchantData` entry: its share and our fixed commission (seed 004)."""
        commission = fils_to_decimal(split.commission_fils)
        return {
            "amount": fils_to_decimal(split.amount_fils),
            "knetCharge": commission, "knetChargeType": "fixed",
            "ccCharge": commission, "ccChargeType": "fixed",
            "ibanNumber": split.iban,
        }

    def charge_body(self, request: PaymentRequest, source: str = "knet") -> dict[str, Any]:
        """The `charge` request (seed 004). Raises ProviderRejected for what UPayments cannot take."""
        if request.currency != "KWD":
            raise ProviderRejected(f"UPayments KNET charges are in KWD, not {request.currency}")
        if len(request.merchant_reference) > ORDER_ID_LIMIT:
            raise ProviderRejected(f"order.id is limited to {ORDER_ID_LIMIT} characters")
        if request.splits and sum(s.amount_fils for s in request.splits) != request.amount_fils:
            raise ProviderRejected("vendor shares do not add up to the order amount")
        amount = fils_to_decimal(request.amount_fils)
        body: dict[str, Any] = {
            # Optional; without order lines in PaymentRequest, one line that is the whole order.
            "products": [{"name": request.description[:255], "description": request.description[:255],
                          "price": amount, "quantity": 1}],
            "order": {
                "id": request.merchant_reference,  # unique per attempt: UPayments' only idempotency
                "reference": request.order_reference,
                "description": request.description[:500],
                "currency": "KWD",
                "amount": amount,
            },
            "language": request.language if request.language in ("en", "ar") else "en",
            "paymentGateway": {"src": source},
            "reference": {"id": request.order_reference},
            "customer": {
                "uniqueId": request.customer_email.lower()[:150],
                "name": request.customer_name[:50],
                "email": request.customer_email,
                "mobile": request.customer_phone,
            },
            # Success and failure both come back to one URL: the status call decides, not the URL.
            "returnUrl": request.return_url,
            "cancelUrl": request.return_url,
            "notificationUrl": request.webhook_url,
        }
        if request.splits:
            body["extraMerchantData"] = [self.split_body(split) for split in request.splits]
        return body

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        answer = await self._call("POST", "charge", self.charge_body(request))
        return self.started(answer)

    @staticmethod
    def started(answer: Mapping[str, Any]) -> StartedPayment:
        data = answer.get("data") or {}
        link = _text(data.get("link"))
        if not link.startswith(("https://", "http://")):
            raise ProviderRejected(f"no payment link: {answer.get('message')!r}")
        track_id = _text(data.get("trackId"))
        if not track_id:
            # Not white-label: UPayments' own page (`?session_id=`), looked up by that id instead.
            session = dict(parse_qsl(urlsplit(link).query)).get("session_id")
            track_id = f"{SESSION_PREFIX}{session}" if session else ""
        return StartedPayment(provider_payment_id=track_id or None, redirect_url=link, raw=answer)

    async def create_invoice(self, request: PaymentRequest, notification_type: str = "link") -> InvoiceLink:
        """An invoice link (`create-invoice`), sent by `email`, `sms`, `all` or only returned (`link`).

        Raises ProviderRejected (also for a channel without the contact it needs) or
        ProviderUnavailable. Not idempotent beyond UPayments' unique `order.id`."""
        if notification_type not in INVOICE_NOTIFICATIONS:
            raise ProviderRejected(f"notificationType must be one of {', '.join(INVOICE_NOTIFICATIONS)}")
        body = self.charge_body(request, source="create-invoice")
        body["notificationType"] = notification_type
        answer = await self._call("POST", "charge", body)
        data = answer["data"]
        link = _text(data.get("link"))
        if not link.startswith(("https://", "http://")):
            raise ProviderRejected(f"no invoice link: {answer.get('message')!r}")
        invoice_id = _text(data.get("invoiceId")) or None
        track_id = _text(data.get("trackId"))
        payment_id = track_id or (f"{INVOICE_PREFIX}{invoice_id}" if invoice_id else None)
        return InvoiceLink(url=link, invoice_id=invoice_id, notification_type=notification_type,
                           provider_payment_id=payment_id, raw=answer)

    async def create_link(self, request: PaymentRequest, channel: str, expires_at: datetime) -> StartedPayment:
        """An invoice (`create-invoice`); UPayments documents no expiry, so `expires_at` only bounds
        how long the shop keeps asking about it."""
        invoice = await self.create_invoice(request, channel)
        return StartedPayment(provider_payment_id=invoice.provider_payment_id, redirect_url=invoice.url,
                              raw=invoice.raw)

    # -- returns and notifications ----------------------------------------------------------

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        # Unsigned, and which URL the customer landed on proves nothing: ids to look up only.
        # Our order id comes back as `requested_order_id`. Not `ref`: UPayments' `ref` is KNET's
        # bank reference, and it collides with the `ref` our return URL already carries.
        fields = _unglue(params)
        return ReturnHint(
            provider_payment_id=fields.get("track_id") or None,
            merchant_reference=fields.get("requested_order_id") or None,
            payload=fields,
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """No signature exists (providers.md 4.4): check the shape, then hand back an untrusted hint.

        Raises BadSignature for anything that is not a UPayments notification, so nothing of it
        is stored or applied."""
        fields = _decode_notification(body)
        if not _scalar_fields(fields):
            raise BadSignature("notification fields must be plain values")
        if "refundOrderId" in fields:
            return [self._refund_notification(fields)]
        track_id = _text(fields.get("track_id")).strip()
        order_id = _text(fields.get("requested_order_id")).strip()
        if not track_id or not order_id or "result" not in fields:
            raise BadSignature("not a UPayments payment notification (track_id, requested_order_id, result)")
        payload = {name: _text(fields.get(name)) for name in RETURN_FIELDS if name in fields}
        return [Observation(
            status=status_of(fields.get("result")),
            provider_payment_id=track_id,
            merchant_reference=order_id,
            receipt=receipt_from(fields),
            event_type=f"notification {_text(fields.get('result')) or 'without result'}",
            payload=payload,
            trusted=False,
        )]

    @staticmethod
    def _refund_notification(fields: Mapping[str, Any]) -> Observation:
        refund_id = _text(fields.get("refundOrderId")).strip()
        order_id = _text(fields.get("requested_order_id")).strip()
        if not refund_id or not order_id:
            raise BadSignature("not a UPayments refund notification (refundOrderId, requested_order_id)")
        state = REFUND_STATUS.get(_text(fields.get("refundStatus")).strip().upper(), "pending")
        return Observation(
            status=None,
            provider_payment_id=_text(fields.get("track_id")).strip() or None,
            merchant_reference=order_id,
            refund_id=refund_id,
            refund_status=state,
            refund_amount_fils=amount_to_fils(fields.get("totalPrice")),
            event_type=f"refund {_text(fields.get('refundStatus')) or 'notification'}",
            payload=dict(fields),
            trusted=False,
        )

    # -- status -----------------------------------------------------------------------------

    def observation_from_status(self, answer: Mapping[str, Any], looked_up: str) -> Observation:
        transaction = (answer.get("data") or {}).get("transaction")
        if not isinstance(transaction, dict):
            raise ProviderUnavailable("get-payment-status answered without a transaction")
        track_id = _text(transaction.get("track_id"))
        if not looked_up.startswith((SESSION_PREFIX, INVOICE_PREFIX)) and track_id != looked_up:
            raise ProviderUnavailable("get-payment-status answered about another track id")
        result = _text(transaction.get("result"))
        return Observation(
            status=status_of(result),
            # Looked up by session or invoice id: report that id, which is the attempt's.
            provider_payment_id=looked_up,
            merchant_reference=_text(transaction.get("merchant_requested_order_id")) or None,
            amount_fils=amount_to_fils(transaction.get("total_price")),
            currency=_text(transaction.get("currency_type")) or None,
            receipt=receipt_from(transaction),
            event_type=f"status {result or 'open'}",
            failure_reason=result,
            payload=answer,
        )

    @staticmethod
    def _status_path(provider_payment_id: str) -> str:
        if provider_payment_id.startswith(SESSION_PREFIX):
            return "get-payment-status?" + urlencode({"session_id": provider_payment_id[len(SESSION_PREFIX):]})
        if provider_payment_id.startswith(INVOICE_PREFIX):
            return "get-payment-status?" + urlencode({"invoice_id": provider_payment_id[len(INVOICE_PREFIX):]})
        return f"get-payment-status/{quote(provider_payment_id, safe='')}"

    async def status(self, provider_payment_id: str) -> dict[str, Any]:
        """The raw `get-payment-status` answer (HTTP 201). Rate limited to 30 calls a minute."""
        return await self._call("GET", self._status_path(provider_payment_id), ok=(200, 201))

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        """The status call's word (idempotent; each call counts against 30 a minute).

        Raises ProviderUnavailable (no answer, rate limited) or ProviderRejected (key refused)."""
        if not provider_payment_id:
            # The charge call never answered: UPayments has no lookup by our order id.
            return Observation(status=None, merchant_reference=merchant_reference,
                               event_type="no track id to look up")
        try:
            answer = await self.status(provider_payment_id)
        except ProviderRejected as exc:
            if refusal_status(exc) != 404:
                raise  # a refused key is no news about the payment
            return Observation(status=None, provider_payment_id=provider_payment_id,
                               merchant_reference=merchant_reference, event_type="not found",
                               failure_reason=str(exc)[:200])
        return self.observation_from_status(answer, provider_payment_id)

    # -- refunds ----------------------------------------------------------------------------

    async def refund(self, request: RefundRequest) -> RefundResult:
        """`create-refund` against the payment's refund order id (from the status call); for a
        payment split between vendors, then `create-multivendor-refund` with each vendor's part.

        Asynchronous: KNET refunds complete within 4 hours; follow them with `inquire_refund`.
        Not idempotent (UPayments documents no key): a retry after a timeout must first look
        at `check-refund` rather than ask again."""
        if request.currency != "KWD":
            raise ProviderRejected(f"refunds are in KWD, not {request.currency}")
        answer = await self.status(request.provider_payment_id)
        transaction = answer["data"].get("transaction") or {}
        refund_order_id = _text(transaction.get("refund_order_id"))
        if not refund_order_id:
            raise ProviderRejected("the payment has no refund order id: nothing was captured to refund")
        body: dict[str, Any] = {
            "orderId": refund_order_id,
            "totalPrice": fils_to_decimal(request.amount_fils),
            "reference": request.reference,
            "notifyUrl": f"{self.settings.public_url}/webhooks/{self.slug}",
        }
        reply = await self._call("POST", "create-refund", body)
        data = reply["data"]
        if data.get("isMultivendorRefund") is True:
            # A split payment: UPayments answers what each vendor IBAN can give back, and the refund
            # is made by saying how much to take from each (providers.md 4.8).
            body["refundPayload"] = self.vendor_refund_payload(request.amount_fils, data.get("refundPayload"))
            reply = await self._call("POST", "create-multivendor-refund", body)
            data = reply["data"]
        return RefundResult(provider_refund_id=_text(data.get("refundOrderId")) or None, status="pending", raw=reply)

    @staticmethod
    def vendor_refund_payload(amount_fils: int, payload: Any) -> list[dict[str, Any]]:
        """`refundPayload` with `amountToRefund` filled in, shared in proportion to each entry's
        `remainingLimit` (see `allocate_refund`). Raises ProviderRejected for a payload we cannot use."""
        if not isinstance(payload, list) or not payload or not all(isinstance(e, dict) for e in payload):
            raise ProviderRejected("multi-vendor refund without a refundPayload")
        remaining = [amount_to_fils(entry.get("remainingLimit")) for entry in payload]
        if any(r is None for r in remaining):
            raise ProviderRejected("multi-vendor refund with an unreadable remainingLimit")
        try:
            parts = allocate_refund(amount_fils, [int(r) for r in remaining if r is not None])
        except SplitError as exc:
            raise ProviderRejected(f"the vendors cannot give back this much: {exc}") from exc
        return [{**entry, "amountToRefund": fils_to_decimal(part)} for entry, part in zip(payload, parts)]

    async def inquire_refund(self, refund_order_id: str) -> Observation:
        """One refund's state (`check-refund-status/{refundOrderId}`). Raises ProviderError."""
        answer = await self._call("GET", f"check-refund-status/{quote(refund_order_id, safe='')}")
        data = answer["data"]
        return Observation(
            status=None,
            refund_id=_text(data.get("refundOrderId")) or refund_order_id,
            refund_status=REFUND_STATUS.get(_text(data.get("refundStatus")).upper(), "pending"),
            refund_amount_fils=amount_to_fils(data.get("totalPrice")),
            event_type=f"refund status {_text(data.get('refundStatus'))}",
            payload=answer,
        )
