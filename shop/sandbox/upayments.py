"""UPayments sandbox: the charge / status / refund API, invoices, multi-vendor splits, the KNET page.

Speaks UPayments' API as providers.md 4 and seed 004 describe it: `Bearer` key, `/api/v1/...`
paths, `{"status": true|false, "message", "data"}` envelopes, amounts as JSON numbers in dinars,
`get-payment-status` answering 201 and limited to 30 calls a minute. White-label KNET charges
answer KNET's own `PaymentHTTP.htm?param=paymentInit&trandata=...` link, imitated here on the
shared hosted page. Notifications are unsigned, as UPayments' are. Card data is never kept.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter, SkipValidation

from shop.sandbox import engine, knet_page
from shop.sandbox.engine import Store, Webhook
from shop.sandbox.knet_page import KnetReceipt, Outcome, PageState, PageView
from shop.settings import Settings

PROVIDER = "upayments"
MOUNT_PATH = "/upayments"  # under the sandbox router's /sandbox
API = "/api/v1"
MERCHANT_NAME = "Dira Market"
TRANPORTAL_ID = "606501"  # the sandbox UPayments' own KNET tranportal
OPERATIONS = ("charge", "status", "refund", "refund_status")  # names `fail_next` takes
store = Store(PROVIDER)

# Sandbox switches for what providers.md leaves unconfirmed, next to the engine's controls.
OPTIONS: dict[str, Any] = {
    "append_quirk": False,  # append `?fields` to return URLs that already have a query (4.3)
    "notification_format": "json",  # "json" or "form": the plugins read either (4.4)
    "status_rate_limit": 30,  # get-payment-status calls per minute and key; 0: unlimited (4.5)
}
OPTIONS_KEY = "options"
NOTIFICATION_FORMATS = ("json", "form")

OPEN, DONE, EXPIRED = "open", "done", "expired"
CAPTURED, NOT_CAPTURED, CANCELED = "CAPTURED", "NOT CAPTURED", "CANCELED"
OUTCOME_RESULT = {
    Outcome.CAPTURED: CAPTURED, Outcome.DECLINED: NOT_CAPTURED, Outcome.CANCELED: CANCELED,
    # The customer was on KNET's page when its window closed: KNET voids it, UPayments reports a
    # cancel [unconfirmed]. A link nobody opened keeps `result: null` (see `_lazy_changes`).
    Outcome.EXPIRED: CANCELED,
}
SOURCES = ("knet", "create-invoice")  # white-label sources this sandbox merchant has enabled
KNOWN_SOURCES = ("knet", "cc", "samsung-pay", "apple-pay", "apple-pay-knet", "google-pay", "create-invoice")
NOTIFICATION_TYPES = ("email", "sms", "link", "all")
CHARGE_TYPES = ("fixed", "percentage")
REFUND_PENDING, REFUND_DONE, REFUND_REJECTED = "PENDING", "REFUNDED", "REJECTED"
IBAN = re.compile(r"^KW\d{2}[A-Z]{4}[A-Z0-9]{22}$")  # Kuwait: 30 characters
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MOBILE = re.compile(r"^\+?\d{8,15}$")
RATE_WINDOW_S = 60.0

SettingsParam = NamedDependency[SkipValidation[Settings]]  # injected by the router, not parsed


# -- small helpers ------------------------------------------------------------------------------

def root_url(settings: Settings) -> str:
    return f"{settings.public_url}/sandbox{MOUNT_PATH}"


def _reply(message: str, data: Mapping[str, Any] | None = None, status_code: int = 200) -> Response:
    body: dict[str, Any] = {"status": True, "message": message}
    if data is not None:
        body["data"] = data
    return engine.json_response(body, status_code)


def _refuse(message: str, status_code: int = 400, errors: Mapping[str, list[str]] | None = None) -> Response:
    """UPayments' failure shape: `status: false` and a message (validation adds `errors`)."""
    body: dict[str, Any] = {"status": False, "message": message}
    if errors:
        body["errors"] = dict(errors)
    return engine.json_response(body, status_code)


def kwd_text(fils: int) -> str:
    return f"{fils // 1000}.{fils % 1000:03d}"


def to_fils(value: Any) -> int | None:
    """A JSON number (read as int or Decimal) with at most 3 decimals, in fils; None otherwise.

    Strings are refused: the API's amounts are numbers ("float")."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    try:
        fils = Decimal(value) * 1000
    except InvalidOperation:
        return None
    if not fils.is_finite() or fils != fils.to_integral_value():
        return None
    return int(fils)


def iban_ok(iban: Any) -> bool:
    """A Kuwaiti IBAN whose ISO 13616 check digits hold (mod 97 == 1)."""
    if not isinstance(iban, str) or not IBAN.match(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _is_url(value: Any, limit: int = 250) -> bool:
    return (isinstance(value, str) and len(value) <= limit and value.startswith(("http://", "https://"))
            and not any(ch.isspace() for ch in value) and bool(urlsplit(value).netloc))


def _text_ok(value: Any, limit: int, required: bool) -> bool:
    if value is None:
        return not required
    return isinstance(value, str) and (bool(value.strip()) or not required) and len(value) <= limit


def _dated_digits(length: int) -> str:
    """Ids like UPayments' (`2022064759...`): the date, then random digits."""
    return time.strftime("%Y%m%d", time.gmtime()) + engine.random_digits(length - 8)


def _nonzero_digits(length: int) -> str:
    return secrets.choice("123456789") + engine.random_digits(length - 1)


def with_fields(url: str, fields: Mapping[str, str], quirk: bool) -> str:
    """The merchant's URL with the result fields appended. With the quirk, UPayments' own way:
    `?` appended even when the URL already has a query (providers.md 4.3)."""
    if quirk:
        return f"{url}?{urlencode(fields)}"
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *fields.items()])
    return urlunsplit(parts._replace(query=query))


async def read_body(request: Request) -> dict[str, Any] | None:
    """The JSON object sent, numbers with a fraction as Decimal (never float); None if not one."""
    raw = await request.body()
    try:
        value = json.loads(raw, parse_float=Decimal) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


# -- options (the provider-specific controls) ---------------------------------------------------

class OptionError(ValueError):
    """An option value the sandbox does not understand."""


def validate_options(changes: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "append_quirk" and not isinstance(value, bool):
            raise OptionError("append_quirk must be true or false")
        if name == "notification_format" and value not in NOTIFICATION_FORMATS:
            raise OptionError(f"notification_format must be one of {list(NOTIFICATION_FORMATS)}")
        if name == "status_rate_limit" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise OptionError("status_rate_limit must be a whole number >= 0 (0: unlimited)")
        clean[name] = value
    return clean


async def get_options() -> dict[str, Any]:
    return {**OPTIONS, **(await store.get(OPTIONS_KEY) or {})}


async def all_controls() -> dict[str, Any]:
    return {**await engine.get_controls(store), **await get_options()}


# -- the payment record -------------------------------------------------------------------------

def _public_fields(payment: Mapping[str, Any]) -> dict[str, str]:
    """What the return and the notification carry (providers.md 4.3), in that order."""
    knet = payment.get("knet") or {}
    return {
        "payment_id": knet.get("payment_id") or "",
        "result": payment.get("result") or "",
        "post_date": knet.get("post_date") or "",
        "tran_id": knet.get("tran_id") or "",
        "ref": knet.get("ref") or "",
        "track_id": payment["track_id"],
        "auth": knet.get("auth") or "",
        "payment_type": "knet",
        "requested_order_id": payment["order"]["id"],
    }


def transaction_view(payment: Mapping[str, Any]) -> dict[str, Any]:
    """`data.transaction` of get-payment-status (providers.md 4.5)."""
    knet = payment.get("knet") or {}
    return {
        "payment_id": knet.get("payment_id"),
        "result": payment.get("result"),
        "post_date": knet.get("post_date"),
        "tran_id": knet.get("tran_id"),
        "ref": knet.get("ref"),
        "track_id": payment["track_id"],
        "auth": knet.get("auth"),
        "payment_type": "knet",
        "merchant_requested_order_id": payment["order"]["id"],
        "reference": payment["reference"],
        "total_price": kwd_text(payment["order"]["amount_fils"]),
        "currency_type": payment["order"]["currency"],
        "refund_order_id": payment["refund_order_id"],
    }


def _refund_fields(payment: Mapping[str, Any], refund: Mapping[str, Any]) -> dict[str, str]:
    return {
        "orderId": payment["refund_order_id"],
        "refundOrderId": refund["refundOrderId"],
        "refundArn": refund["refundArn"],
        "refundStatus": refund["status"],
        "totalPrice": kwd_text(refund["amount_fils"]),
        "track_id": payment["track_id"],
        "requested_order_id": payment["order"]["id"],
    }


def notification(kind: str, fields: Mapping[str, str], fmt: str) -> Webhook:
    """An unsigned notification, as UPayments sends them: JSON, or a form when so configured."""
    if fmt == "form":
        body = urlencode(fields).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        body = engine.compact_json(dict(fields))
        content_type = "application/json"
    return Webhook(event_id=engine.new_id("ntf"), event_type=kind, body=body, headers={"Content-Type": content_type})


def notify_target(controls: Mapping[str, Any], url: str | None) -> str | None:
    return str(controls.get("webhook_url") or url or "") or None


def _settle_refunds(payment: dict[str, Any], controls: Mapping[str, Any], options: Mapping[str, Any],
                    now: float) -> list[tuple[str, Webhook]]:
    hooks: list[tuple[str, Webhook]] = []
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    for refund in payment["refunds"]:
        if refund["status"] != REFUND_PENDING or now - float(refund["created_at"]) < settle_after_s:
            continue
        refund["status"] = REFUND_DONE if refund["decision"] == "approve" else REFUND_REJECTED
        refund["settled_at"] = now
        target = notify_target(controls, refund.get("notifyUrl"))
        if target:
            hook = notification("refund." + refund["status"].lower(), _refund_fields(payment, refund),
                                options["notification_format"])
            hooks.append((target, hook))
    return hooks


def _lazy_changes(payment: dict[str, Any], controls: Mapping[str, Any], options: Mapping[str, Any],
                  now: float) -> list[tuple[str, Webhook]]:
    """Time-driven changes, applied when someone looks. A link whose KNET window ran out with
    nobody paying stays without a result (null is UPayments' "not final"); refunds settle."""
    started_at = payment.get("landed_at") or payment["created_at"]
    if payment["status"] == OPEN and knet_page.is_expired(started_at, now, float(controls["expire_after_s"])):
        payment["status"] = EXPIRED
    return _settle_refunds(payment, controls, options, now)


def _needs_change(payment: Mapping[str, Any], controls: Mapping[str, Any], now: float) -> bool:
    started_at = payment.get("landed_at") or payment["created_at"]
    if payment["status"] == OPEN and knet_page.is_expired(started_at, now, float(controls["expire_after_s"])):
        return True
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    return any(r["status"] == REFUND_PENDING and now - float(r["created_at"]) >= settle_after_s
               for r in payment["refunds"])


def _dispatch(pairs: list[tuple[str, Webhook]], controls: Mapping[str, Any]) -> None:
    """Send after commit, one batch per target (so "reorder" reverses what went out together)."""
    batches: dict[str, list[Webhook]] = {}
    for target, hook in pairs:
        batches.setdefault(target, []).append(hook)
    for target, hooks in batches.items():
        engine.dispatch(store, target, hooks, controls)


async def load_payment(track_id: str, controls: Mapping[str, Any]) -> dict[str, Any] | None:
    """The payment with its time-driven changes applied (and notified)."""
    payment = await store.get(f"payment:{track_id}")
    now = engine.now_ts()
    if payment is None or not _needs_change(payment, controls, now):
        return payment
    options = await get_options()
    async with store.locked(f"payment:{track_id}") as record:
        if record is None:
            return None
        pairs = _lazy_changes(record.data, controls, options, now)
        await engine.record_webhooks(store, track_id, [hook for _, hook in pairs])
        payment = record.data
    _dispatch(pairs, controls)
    return payment


async def _track_of(kind: str, value: str) -> str | None:
    found = await store.get(f"{kind}:{value}")
    return str(found["track_id"]) if found else None


# -- validating a charge --------------------------------------------------------------------------

def _check_products(products: Any, errors: dict[str, list[str]]) -> None:
    if products is None:
        return
    if not isinstance(products, list):
        errors["products"] = ["The products must be an array."]
        return
    for index, product in enumerate(products):
        if not isinstance(product, dict):
            errors[f"products.{index}"] = ["Each product must be an object."]
            continue
        for name in ("name", "description"):
            if not _text_ok(product.get(name), 255, required=False):
                errors[f"products.{index}.{name}"] = [f"The products.{index}.{name} may not be greater than 255 characters."]
        if product.get("price") is not None and (to_fils(product["price"]) is None or to_fils(product["price"]) < 0):
            errors[f"products.{index}.price"] = [f"The products.{index}.price must be a number."]
        quantity = product.get("quantity")
        if quantity is not None and (isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1):
            errors[f"products.{index}.quantity"] = [f"The products.{index}.quantity must be an integer."]


def _check_splits(entries: Any, amount_fils: int | None, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """`extraMerchantData` (seed 004), kept in fils; the shares must add up to the order amount."""
    if entries is None:
        return []
    if not isinstance(entries, list) or not entries:
        errors["extraMerchantData"] = ["The extraMerchantData must be a non-empty array."]
        return []
    kept: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        prefix = f"extraMerchantData.{index}"
        if not isinstance(entry, dict):
            errors[prefix] = ["Each extraMerchantData entry must be an object."]
            continue
        share = to_fils(entry.get("amount"))
        if share is None or share <= 0:
            errors[f"{prefix}.amount"] = [f"The {prefix}.amount must be a number greater than 0."]
        if not iban_ok(entry.get("ibanNumber")):
            errors[f"{prefix}.ibanNumber"] = [f"The {prefix}.ibanNumber must be a valid Kuwaiti IBAN."]
        charges = {}
        for method in ("knet", "cc"):
            charge, kind = entry.get(f"{method}Charge"), entry.get(f"{method}ChargeType")
            if charge is None and kind is None:
                continue
            value = to_fils(charge)
            if kind not in CHARGE_TYPES:
                errors[f"{prefix}.{method}ChargeType"] = [f"The {prefix}.{method}ChargeType must be fixed or percentage."]
            elif value is None or value < 0 or (kind == "percentage" and value > 100_000) or (
                    kind == "fixed" and share is not None and value > share):
                errors[f"{prefix}.{method}Charge"] = [f"The {prefix}.{method}Charge is not a valid charge."]
            charges[method] = {"charge_fils": value, "type": kind}
        kept.append({"amount_fils": share, "iban": entry.get("ibanNumber"), "charges": charges})
    if not errors and amount_fils is not None and sum(int(k["amount_fils"]) for k in kept) != amount_fils:
        errors["extraMerchantData"] = ["The sum of extraMerchantData amounts must be equal to the order amount."]
    return kept


def validate_charge(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The charge as the sandbox keeps it, and Laravel-style errors (field -> messages)."""
    errors: dict[str, list[str]] = {}
    order = body.get("order")
    if not isinstance(order, dict):
        errors["order"] = ["The order field is required."]
        order = {}
    order_id = order.get("id")
    if not isinstance(order_id, str) or not order_id.strip() or len(order_id) > 40 or not order_id.isprintable():
        errors["order.id"] = ["The order.id is required and may not be greater than 40 characters."]
    if not _text_ok(order.get("description"), 500, required=True):
        errors["order.description"] = ["The order.description is required."]
    if order.get("currency") != "KWD":
        errors["order.currency"] = ["The selected order.currency is invalid."]
    amount_fils = to_fils(order.get("amount"))
    if amount_fils is None or amount_fils <= 0:
        errors["order.amount"] = ["The order.amount must be a number greater than 0 with at most 3 decimals."]
        amount_fils = None
    if not _text_ok(order.get("reference"), 255, required=False):
        errors["order.reference"] = ["The order.reference may not be greater than 255 characters."]
    language = body.get("language")
    if not isinstance(language, str) or language.lower() not in knet_page.LANGUAGES:
        errors["language"] = ["The selected language is invalid."]
    reference = body.get("reference")
    if not isinstance(reference, dict) or not _text_ok(reference.get("id"), 150, required=True):
        errors["reference.id"] = ["The reference.id field is required."]
        reference = {}
    customer = body.get("customer")
    if not isinstance(customer, dict):
        errors["customer"] = ["The customer field is required."]
        customer = {}
    for name, limit in (("uniqueId", 150), ("name", 50), ("email", 50), ("mobile", 15)):
        if not _text_ok(customer.get(name), limit, required=True):
            errors[f"customer.{name}"] = [f"The customer.{name} field is required (at most {limit} characters)."]
    if "customer.email" not in errors and not EMAIL.match(customer["email"]):
        errors["customer.email"] = ["The customer.email must be a valid email address."]
    if "customer.mobile" not in errors and not MOBILE.match(customer["mobile"]):
        errors["customer.mobile"] = ["The customer.mobile format is invalid."]
    for name in ("returnUrl", "cancelUrl", "notificationUrl"):
        if not _is_url(body.get(name)):
            errors[name] = [f"The {name} must be a valid URL (at most 250 characters)."]
    gateway = body.get("paymentGateway")
    source = None
    if gateway is not None:
        source = gateway.get("src") if isinstance(gateway, dict) else None
        if source not in KNOWN_SOURCES:
            errors["paymentGateway.src"] = ["The selected paymentGateway.src is invalid."]
    notification_type = body.get("notificationType")
    if source == "create-invoice":
        if notification_type not in NOTIFICATION_TYPES:
            errors["notificationType"] = ["The notificationType must be email, sms, link or all."]
        elif notification_type in ("email", "all") and "customer.email" in errors:
            errors["notificationType"] = ["An email invoice needs customer.email."]
        elif notification_type in ("sms", "all") and "customer.mobile" in errors:
            errors["notificationType"] = ["An SMS invoice needs customer.mobile."]
    _check_products(body.get("products"), errors)
    tokens = body.get("tokens")
    if tokens is not None and not isinstance(tokens, dict):
        errors["tokens"] = ["The tokens must be an object."]
    splits = _check_splits(body.get("extraMerchantData"), amount_fils, errors)
    charge = {
        "order": {"id": order_id, "reference": order.get("reference"), "description": order.get("description"),
                  "currency": "KWD", "amount_fils": amount_fils},
        "reference": reference.get("id"),
        "language": language.lower() if isinstance(language, str) else "en",
        "customer": {k: customer.get(k) for k in ("uniqueId", "name", "email", "mobile")},
        "source": source,
        "notification_type": notification_type if source == "create-invoice" else None,
        "returnUrl": body.get("returnUrl"),
        "cancelUrl": body.get("cancelUrl"),
        "notificationUrl": body.get("notificationUrl"),
        "splits": splits,
    }
    return charge, errors


# -- the API --------------------------------------------------------------------------------------

def _authorized(request: Request, settings: Settings) -> bool:
    header = request.headers.get("authorization", "").strip()
    if header[:7].lower() != "bearer ":
        return False
    return engine.secrets_equal(header[7:].strip(), settings.provider_value("UPAYMENTS_API_KEY"))


async def _api_call(request: Request, settings: Settings, operation: str,
                    work: Callable[[Mapping[str, Any]], Awaitable[Response]]) -> Response:
    """Authenticate, then answer through whatever fault is armed for `operation`."""
    if not _authorized(request, settings):
        return _refuse("Unauthenticated.", 401)
    controls = await engine.get_controls(store)
    fault = await engine.take_fault(store, operation)
    return await engine.with_fault(fault, controls, lambda: work(controls))


def payment_link(settings: Settings, payment: Mapping[str, Any]) -> str:
    """KNET's own paymentInit URL, as a white-label KNET charge answers it (seed 004)."""
    root = root_url(settings)
    query = urlencode({
        "param": "paymentInit", "trandata": payment["trandata"], "tranportalId": TRANPORTAL_ID,
        "responseURL": f"{root}/get-knet-success-response", "errorURL": f"{root}/get-knet-error-response",
    })
    return f"{root}/kpg/PaymentHTTP.htm?{query}"


def _new_payment(charge: Mapping[str, Any], now: float) -> dict[str, Any]:
    payment = dict(charge)
    payment.update({
        "track_id": _dated_digits(29),
        "session_id": _dated_digits(47),
        "invoice_id": engine.random_digits(10) if charge["source"] == "create-invoice" else None,
        "knet_payment_id": _nonzero_digits(18),
        "trandata": secrets.token_hex(48),
        "refund_order_id": _nonzero_digits(12),
        "status": OPEN,
        "result": None,
        "knet": None,
        "created_at": now,
        "landed_at": None,
        "refunds": [],
    })
    return payment


def charge_answer(settings: Settings, payment: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    root = root_url(settings)
    if payment["source"] == "create-invoice":
        return "Invoice link generated successfully", {
            "link": f"{root}/invoice/{payment['invoice_id']}", "invoiceId": payment["invoice_id"],
        }
    if payment["source"] is None:
        # Not chosen by the merchant: UPayments' own page, found by its session id (seed 004).
        return "Payment link generated successfully", {"link": f"{root}/?session_id={payment['session_id']}"}
    return "Payment link generated successfully", {"link": payment_link(settings, payment), "trackId": payment["track_id"]}


async def _create(settings: Settings, charge: dict[str, Any], controls: Mapping[str, Any]) -> Response:
    """Store the payment once per `order.id`: a repeat of the same order answers the same link."""
    order_id = charge["order"]["id"]
    now = engine.now_ts()
    async with store.locked(f"order:{order_id}", kind="order", create={"requests": 0, "track_id": None}) as index:
        assert index is not None
        index.data["requests"] = int(index.data["requests"]) + 1
        if index.data["track_id"]:
            existing = await store.get(f"payment:{index.data['track_id']}")
            assert existing is not None
            if existing["order"]["amount_fils"] != charge["order"]["amount_fils"] or existing["source"] != charge["source"]:
                return _refuse("The order id has already been used for another payment.")
            message, data = charge_answer(settings, existing)
            return _reply(message, data)
        if charge["source"] not in (None, *SOURCES):
            return _refuse(f"The payment method {charge['source']} is not enabled for this merchant.")
        payment = _new_payment(charge, now)
        index.data["track_id"] = payment["track_id"]
        track_id = payment["track_id"]
        await store.put("payment", f"payment:{track_id}", payment)
        await store.put("trandata", f"trandata:{payment['trandata']}", {"track_id": track_id})
        await store.put("page", f"page:{payment['knet_payment_id']}", {"track_id": track_id})
        await store.put("session", f"session:{payment['session_id']}", {"track_id": track_id})
        await store.put("refundorder", f"refundorder:{payment['refund_order_id']}", {"track_id": track_id})
        if payment["invoice_id"]:
            await store.put("invoice", f"invoice:{payment['invoice_id']}", {"track_id": track_id})
            if payment["notification_type"] != "link":
                await _send_invoice(settings, payment, now)
    message, data = charge_answer(settings, payment)
    return _reply(message, data)


async def _send_invoice(settings: Settings, payment: Mapping[str, Any], now: float) -> None:
    """What UPayments would email or text: kept for the tests to read, never really sent."""
    channels = {"email": ("email",), "sms": ("sms",), "all": ("email", "sms")}[payment["notification_type"]]
    link = f"{root_url(settings)}/invoice/{payment['invoice_id']}"
    for channel in channels:
        to = payment["customer"]["email"] if channel == "email" else payment["customer"]["mobile"]
        await store.put("invoice_message", f"invoice_message:{payment['invoice_id']}:{channel}",
                        {"channel": channel, "to": to, "link": link, "invoice_id": payment["invoice_id"], "sent_at": now})


@post(f"{API}/charge", status_code=200, exclude_from_csrf=True)
async def charge(request: Request, settings: SettingsParam) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        body = await read_body(request)
        if body is None:
            return _refuse("The request body must be a JSON object.")
        payment_charge, errors = validate_charge(body)
        if errors:
            return _refuse(next(iter(errors.values()))[0], 400, errors)
        return await _create(settings, payment_charge, controls)

    return await _api_call(request, settings, "charge", work)


async def _rate_limited(limit: int) -> bool:
    """True once `limit` status calls were made in the last minute (all keys share one here)."""
    if limit <= 0:
        return False
    now = engine.now_ts()
    async with store.locked("ratelimit:status", kind="ratelimit", create={"hits": []}) as record:
        assert record is not None
        hits = [t for t in record.data["hits"] if now - float(t) < RATE_WINDOW_S]
        if len(hits) >= limit:
            record.data["hits"] = hits
            return True
        record.data["hits"] = [*hits, now]
    return False


async def _status(request: Request, settings: Settings, lookup: Callable[[], Awaitable[str | None]]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        if await _rate_limited(int((await get_options())["status_rate_limit"])):
            return engine.json_response({"status": False, "message": "Too Many Attempts."}, 429,
                                        headers={"Retry-After": "60"})
        track_id = await lookup()
        payment = await load_payment(track_id, controls) if track_id else None
        if payment is None:
            return _refuse("Transaction not found.", 404)
        return _reply("Payment status fetched successfully", {"transaction": transaction_view(payment)}, 201)

    return await _api_call(request, settings, "status", work)


@get(f"{API}/get-payment-status/{{track_id:str}}", exclude_from_csrf=True)
async def payment_status(request: Request, settings: SettingsParam, track_id: FromPath[str]) -> Response:
    async def lookup() -> str | None:
        return track_id if await store.get(f"payment:{track_id}") else None

    return await _status(request, settings, lookup)


@get(f"{API}/get-payment-status", exclude_from_csrf=True)
async def payment_status_by_query(
    request: Request, settings: SettingsParam,
    session_id: Annotated[str | None, QueryParameter(name="session_id", max_length=80)] = None,
    invoice_id: Annotated[str | None, QueryParameter(name="invoice_id", max_length=80)] = None,
) -> Response:
    async def lookup() -> str | None:
        if session_id:
            return await _track_of("session", session_id)
        if invoice_id:
            return await _track_of("invoice", invoice_id)
        return None

    return await _status(request, settings, lookup)


def _validate_refund(body: Mapping[str, Any], multivendor: bool = False) -> tuple[int | None, dict[str, list[str]]]:
    """A refund request's fields; a multi-vendor one takes its amount from `refundPayload` instead."""
    errors: dict[str, list[str]] = {}
    if not _text_ok(body.get("orderId"), 100, required=True):
        errors["orderId"] = ["The orderId field is required."]
    amount = to_fils(body.get("totalPrice"))
    if (amount is None or amount <= 0) and not (multivendor and body.get("totalPrice") is None):
        errors["totalPrice"] = ["The totalPrice must be a number greater than 0 with at most 3 decimals."]
    for name, limit in (("customerFirstName", 50), ("customerEmail", 50), ("customerMobileNumber", 15),
                        ("reference", 150)):
        if not _text_ok(body.get(name), limit, required=False):
            errors[name] = [f"The {name} may not be greater than {limit} characters."]
    if body.get("notifyUrl") is not None and not _is_url(body.get("notifyUrl")):
        errors["notifyUrl"] = ["The notifyUrl must be a valid URL."]
    approval = body.get("requireApproval")
    if approval is not None and not isinstance(approval, bool):
        errors["requireApproval"] = ["The requireApproval field must be true or false."]
    if approval is True and not _text_ok(body.get("refundReason"), 500, required=True):
        errors["refundReason"] = ["The refundReason field is required when requireApproval is true."]
    return amount, errors


async def _settle_later(track_id: str, delay_s: float) -> None:
    """Settle a refund once its time is over, even if nobody asks about it."""
    await asyncio.sleep(delay_s + 0.05)
    try:
        await load_payment(track_id, await engine.get_controls(store))
    except Exception:  # background work: log it; the next read settles the refund anyway
        engine.log.exception("sandbox upayments: settling refunds of %s failed", track_id)


def _vendor_refunded(payment: Mapping[str, Any]) -> list[int]:
    """Per `extraMerchantData` entry, what refunds not rejected have taken back from it."""
    taken = [0] * len(payment["splits"])
    for refund in payment["refunds"]:
        if refund["status"] != REFUND_REJECTED:
            for index, amount in enumerate(refund.get("allocations") or []):
                taken[index] += amount
    return taken


def refund_payload(payment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A split payment's `refundPayload` (providers.md 4.8): one entry per vendor IBAN, with what it was
    paid, what was refunded from it and what still can be; the merchant fills `amountToRefund`."""
    taken = _vendor_refunded(payment)
    return [{
        "refundRequestId": f"{payment['refund_order_id']}{index + 1:02d}",
        "ibanNumber": split["iban"],
        "totalPaid": kwd_text(split["amount_fils"]),
        "refundedAmount": kwd_text(taken[index]),
        "remainingLimit": kwd_text(split["amount_fils"] - taken[index]),
        "amountToRefund": "0.000",
        "merchantType": "vendor",
    } for index, split in enumerate(payment["splits"])]


def _allocations(payment: Mapping[str, Any], entries: Any, errors: dict[str, list[str]]) -> list[int]:
    """`create-multivendor-refund`'s `refundPayload`: each entry known, within its remaining limit."""
    wanted = [0] * len(payment["splits"])
    if not isinstance(entries, list) or not entries:
        errors["refundPayload"] = ["The refundPayload must be a non-empty array."]
        return wanted
    ids = {entry["refundRequestId"]: index for index, entry in enumerate(refund_payload(payment))}
    remaining = [split["amount_fils"] - taken for split, taken in zip(payment["splits"], _vendor_refunded(payment))]
    for number, entry in enumerate(entries):
        prefix = f"refundPayload.{number}"
        index = ids.get(entry.get("refundRequestId")) if isinstance(entry, dict) else None
        if index is None or entry.get("ibanNumber") != payment["splits"][index]["iban"]:
            errors[prefix] = [f"The {prefix} does not match a vendor of this order."]
            continue
        amount = to_fils(entry.get("amountToRefund"))
        if amount is None or amount < 0 or amount > remaining[index]:
            errors[f"{prefix}.amountToRefund"] = [f"The {prefix}.amountToRefund exceeds the remaining limit."]
            continue
        wanted[index] += amount
    if not errors and not sum(wanted):
        errors["refundPayload"] = ["Nothing to refund."]
    return wanted


async def _refund(request: Request, settings: Settings, multivendor: bool) -> Response:
    """`create-refund`, and `create-multivendor-refund` for payments split between vendors."""
    async def work(controls: Mapping[str, Any]) -> Response:
        body = await read_body(request)
        if body is None:
            return _refuse("The request body must be a JSON object.")
        amount, errors = _validate_refund(body, multivendor)
        if errors:
            return _refuse(next(iter(errors.values()))[0], 400, errors)
        track_id = await _track_of("refundorder", str(body["orderId"]))
        if track_id is None:
            return _refuse("Order not found.", 404)
        await load_payment(track_id, controls)  # settle what is due first
        now = engine.now_ts()
        async with store.locked(f"payment:{track_id}") as record:
            assert record is not None
            payment = record.data
            if payment.get("result") != CAPTURED:
                return _refuse("Only a paid order can be refunded.")
            allocations: list[int] = []
            if multivendor:
                if not payment["splits"]:
                    return _refuse("This order was not split between vendors.")
                allocations = _allocations(payment, body.get("refundPayload"), errors)
                if errors:
                    return _refuse(next(iter(errors.values()))[0], 400, errors)
                if amount is not None and amount != sum(allocations):
                    return _refuse("The totalPrice must equal the sum of amountToRefund.")
                amount = sum(allocations)
            elif payment["splits"]:
                # A split payment is refunded vendor by vendor: say how much each can give back.
                return _reply("Multivendor refund: choose the amount to refund per vendor", {
                    "isMultivendorRefund": True, "orderId": payment["refund_order_id"],
                    "refundPayload": refund_payload(payment),
                })
            assert amount is not None
            committed = sum(r["amount_fils"] for r in payment["refunds"] if r["status"] != REFUND_REJECTED)
            if amount > payment["order"]["amount_fils"] - committed:
                return _refuse("The refund amount exceeds the refundable amount.")
            refund = {
                "refundOrderId": _nonzero_digits(12), "refundArn": engine.random_digits(23),
                "amount_fils": amount, "status": REFUND_PENDING, "decision": controls["refunds"],
                "created_at": now, "notifyUrl": body.get("notifyUrl"), "reference": body.get("reference"),
                "allocations": allocations,
            }
            payment["refunds"].append(refund)
            await store.put("refund", f"refund:{refund['refundOrderId']}", {"track_id": track_id})
        engine.spawn(_settle_later(track_id, float(controls["refund_delay_ms"]) / 1000))
        return _reply("Refund invoice generated successfully", {
            "orderId": payment["refund_order_id"], "refundOrderId": refund["refundOrderId"],
            "refundArn": refund["refundArn"],
        })

    return await _api_call(request, settings, "refund", work)


@post(f"{API}/create-refund", status_code=200, exclude_from_csrf=True)
async def create_refund(request: Request, settings: SettingsParam) -> Response:
    return await _refund(request, settings, multivendor=False)


@post(f"{API}/create-multivendor-refund", status_code=200, exclude_from_csrf=True)
async def create_multivendor_refund(request: Request, settings: SettingsParam) -> Response:
    return await _refund(request, settings, multivendor=True)


def refund_view(payment: Mapping[str, Any], refund: Mapping[str, Any]) -> dict[str, Any]:
    fields = _refund_fields(payment, refund)
    return {key: fields[key] for key in ("orderId", "refundOrderId", "refundArn", "refundStatus", "totalPrice")}


@get(f"{API}/check-refund-status/{{refund_order_id:str}}", exclude_from_csrf=True)
async def refund_status(request: Request, settings: SettingsParam, refund_order_id: FromPath[str]) -> Response:
    """One refund, by the `refundOrderId` create-refund answered."""
    async def work(controls: Mapping[str, Any]) -> Response:
        track_id = await _track_of("refund", refund_order_id)
        payment = await load_payment(track_id, controls) if track_id else None
        refund = next((r for r in (payment or {}).get("refunds", []) if r["refundOrderId"] == refund_order_id), None)
        if payment is None or refund is None:
            return _refuse("Refund not found.", 404)
        return _reply("Refund status fetched successfully", refund_view(payment, refund))

    return await _api_call(request, settings, "refund_status", work)


@get(f"{API}/check-refund/{{order_id:str}}", exclude_from_csrf=True)
async def refunds_of_order(request: Request, settings: SettingsParam, order_id: FromPath[str]) -> Response:
    """Every refund of a payment, by the payment's refund order id."""
    async def work(controls: Mapping[str, Any]) -> Response:
        track_id = await _track_of("refundorder", order_id)
        payment = await load_payment(track_id, controls) if track_id else None
        if payment is None:
            return _refuse("Order not found.", 404)
        return _reply("Refunds fetched successfully",
                      {"orderId": order_id, "refunds": [refund_view(payment, r) for r in payment["refunds"]]})

    return await _api_call(request, settings, "refund_status", work)


# -- the customer's side: links and the KNET page -------------------------------------------------

def _see(url: str, status_code: int = 303) -> Response:
    return Response(content=b"", status_code=status_code, headers={"Location": url}, media_type="text/plain")


async def _to_payment_page(settings: Settings, track_id: str | None) -> Response:
    payment = await store.get(f"payment:{track_id}") if track_id else None
    if payment is None:
        return knet_page.render_message("en", "not_found", 404)
    return _see(payment_link(settings, payment))


@get("/", exclude_from_csrf=True)
async def selection_page(
    settings: SettingsParam, session_id: Annotated[str | None, QueryParameter(name="session_id", max_length=80)] = None,
) -> Response:
    """UPayments' own page for merchants who do not choose the method: only KNET here."""
    return await _to_payment_page(settings, await _track_of("session", session_id) if session_id else None)


@get("/invoice/{invoice_id:str}", exclude_from_csrf=True)
async def invoice_page(settings: SettingsParam, invoice_id: FromPath[str]) -> Response:
    return await _to_payment_page(settings, await _track_of("invoice", invoice_id))


@get("/kpg/PaymentHTTP.htm", exclude_from_csrf=True)
async def payment_init(
    param: Annotated[str, QueryParameter(name="param", max_length=20)] = "",
    trandata: Annotated[str, QueryParameter(name="trandata", max_length=200)] = "",
    tranportal_id: Annotated[str, QueryParameter(name="tranportalId", max_length=20)] = "",
) -> Response:
    """KNET's paymentInit: read the (here opaque) trandata, then on to the payment page."""
    found = await store.get(f"trandata:{trandata}") if trandata and param == "paymentInit" else None
    payment = await store.get(f"payment:{found['track_id']}") if found else None
    if payment is None or not engine.secrets_equal(tranportal_id, TRANPORTAL_ID):
        return knet_page.render_message("en", "not_found", 404)
    return _see(f"/sandbox{MOUNT_PATH}/kpg/paymentpage/{payment['knet_payment_id']}", 302)


@get("/kpg/paymentpage/{token:str}", exclude_from_csrf=True)
async def hosted_page(
    settings: SettingsParam, token: FromPath[str],
    language: Annotated[str | None, QueryParameter(name="language", max_length=5)] = None,
) -> Response:
    return await knet_page.show_page(UpaymentsPage(settings), token, language)


@post("/kpg/paymentpage/{token:str}", status_code=303, exclude_from_csrf=True)
async def hosted_page_submit(request: Request, settings: SettingsParam, token: FromPath[str]) -> Response:
    form = await request.form()
    # Plain strings, straight to the decision: the card number and PIN are never stored or logged.
    fields = {name: str(form.get(name, "")) for name in
              ("bank", "card_number", "expiry_month", "expiry_year", "pin", "action", "language")}
    return await knet_page.submit_page(UpaymentsPage(settings), token, fields)


class UpaymentsPage:
    """Runs the shared KNET page over UPayments payments; the token is KNET's PaymentID."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def expire_after_s(self) -> float:
        return float((await engine.get_controls(store))["expire_after_s"])

    async def land(self, token: str, now: float) -> PageState | None:
        track_id = await _track_of("page", token)
        payment = await store.get(f"payment:{track_id}") if track_id else None
        if payment is None:
            return None
        payment = await store.land_once(f"payment:{track_id}", payment, payment["status"] == OPEN, now)
        view = PageView(
            language=payment["language"], merchant_name=MERCHANT_NAME,
            amount_fils=int(payment["order"]["amount_fils"]), reference=str(payment["order"]["id"]),
            action_url=f"/sandbox{MOUNT_PATH}/kpg/paymentpage/{token}",
        )
        return PageState(view=view, open=payment["status"] == OPEN, started_at=float(payment.get("landed_at") or now))

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        track_id = await _track_of("page", token)
        if track_id is None:
            return None
        controls = await engine.get_controls(store)
        options = await get_options()
        async with store.locked(f"payment:{track_id}") as record:
            if record is None or record.data["status"] != OPEN:
                return None  # decided already: a double submit must not decide twice
            payment = record.data
            payment["status"] = DONE
            payment["result"] = OUTCOME_RESULT[outcome]
            payment["finished_at"] = now
            payment["knet"] = {
                "payment_id": payment["knet_payment_id"],  # KNET's PaymentID, given at paymentInit
                "tran_id": receipt.transaction_id if receipt else None,
                "ref": receipt.bank_reference if receipt else None,
                "auth": receipt.auth_code if receipt else None,
                "post_date": receipt.post_date if receipt else None,
            }
            fields = _public_fields(payment)
            pairs = []
            target = notify_target(controls, payment["notificationUrl"])
            if target:
                pairs.append((target, notification("payment." + payment["result"].lower().replace(" ", "_"),
                                                   fields, options["notification_format"])))
            await engine.record_webhooks(store, track_id, [hook for _, hook in pairs])
            url = payment["returnUrl"] if payment["result"] == CAPTURED else payment["cancelUrl"]
        _dispatch(pairs, controls)
        return with_fields(url, fields, bool(options["append_quirk"]))


# -- test controls (the sandbox only; production never mounts it) ------------------------------

@get("/_control", exclude_from_csrf=True)
async def read_controls() -> Response:
    return engine.json_response(await all_controls(), 200)


@post("/_control", status_code=200, exclude_from_csrf=True)
async def change_controls(request: Request) -> Response:
    body = await read_body(request)
    if body is None:
        return engine.json_response({"error": "body must be a JSON object"}, 400)
    mine = {k: v for k, v in body.items() if k in OPTIONS}
    rest = {k: (float(v) if isinstance(v, Decimal) else v) for k, v in body.items() if k not in OPTIONS}
    try:
        engine.validate_controls(rest, OPERATIONS)
        options = validate_options(mine)
        await engine.update_controls(store, rest, OPERATIONS)
    except (engine.ControlError, OptionError) as exc:
        return engine.json_response({"error": str(exc)}, 422)
    if options:
        async with store.locked(OPTIONS_KEY, kind="control", create={}) as record:
            assert record is not None
            record.data.update(options)
    return engine.json_response(await all_controls(), 200)


@delete("/_control", status_code=200, exclude_from_csrf=True)
async def reset_controls() -> Response:
    await engine.reset_controls(store)
    await store.delete(OPTIONS_KEY)
    await store.delete("ratelimit:status")
    return engine.json_response(await all_controls(), 200)


@get("/_stats", exclude_from_csrf=True)
async def stats() -> Response:
    charges = {key.removeprefix("order:"): {"requests": int(data["requests"]), "payments": int(bool(data["track_id"]))}
               for key, data in await store.records("order")}
    return engine.json_response({
        "charges_by_order_id": charges,
        "payments": await store.count("payment"),
        "refunds": await store.count("refund"),
        # What each split payment's `extraMerchantData` said, and what refunds took back per IBAN.
        "vendor_splits_by_order_id": {
            data["order"]["id"]: [{"iban": split["iban"], "amount_fils": split["amount_fils"],
                                   "charges": split["charges"], "refunded_fils": refunded}
                                  for split, refunded in zip(data["splits"], _vendor_refunded(data))]
            for _, data in await store.records("payment") if data["splits"]
        },
        "invoice_messages": [data for _, data in await store.records("invoice_message")],
        "webhook_deliveries": await engine.delivery_log(store),
        "events": await engine.list_events(store),
    }, 200)


@post("/_webhooks/replay/{track_id:str}", status_code=202, exclude_from_csrf=True)
async def replay_webhooks(track_id: FromPath[str]) -> Response:
    """Send every notification of a payment again, same bytes (for dedupe tests)."""
    payment = await store.get(f"payment:{track_id}")
    if payment is None:
        return engine.empty_response(404)
    controls = await engine.get_controls(store)
    webhooks = await engine.load_webhooks(store, track_id)
    target = notify_target(controls, payment["notificationUrl"])
    if target:
        engine.dispatch(store, target, webhooks, controls, honour_mode=False)
    return engine.json_response({"track_id": track_id, "events": [w.event_id for w in webhooks]}, 202)


def create_router(settings: Settings) -> Router:
    """The UPayments sandbox, mounted at /sandbox/upayments."""
    return Router(
        path=MOUNT_PATH,
        route_handlers=[
            charge, payment_status, payment_status_by_query, create_refund, create_multivendor_refund, refund_status, refunds_of_order,
            selection_page, invoice_page, payment_init, hosted_page, hosted_page_submit,
            read_controls, change_controls, reset_controls, stats, replay_webhooks,
        ],
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        include_in_schema=False,
    )
