"""Amazon Payment Services sandbox: the signed `paymentPage` form POST, the KNET page, the
signed return and direct-feedback notifications, and `paymentApi` (CHECK_STATUS, REFUND,
PAYMENT_LINK) with APS's response codes (providers.md section 1)."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter, SkipValidation
from litestar.response import Template

from shop.sandbox import engine, knet_page
from shop.sandbox.engine import Store, Webhook
from shop.sandbox.knet_page import KnetReceipt, Outcome, PageState, PageView
from shop.settings import Settings

PROVIDER = "aps"
MOUNT_PATH = "/aps"  # under the sandbox router's /sandbox
MERCHANT_NAME = "Dira Market"
OPERATIONS = ("page", "check_status", "refund", "payment_link", "api")  # names `fail_next` takes
RETURN_TEMPLATE = "sandbox/aps_return.html"
store = Store(PROVIDER)

SettingsParam = NamedDependency[SkipValidation[Settings]]  # injected by the router, not parsed

# -- APS's vocabulary -----------------------------------------------------------------------------

MESSAGES: dict[str, tuple[str, str]] = {  # message code -> (English, Arabic)
    "000": ("Success", "عملية ناجحة"),
    "001": ("Missing parameter", "معامل مفقود"),
    "002": ("Invalid parameter format", "صيغة معامل غير صحيحة"),
    "003": ("Payment option is not available for this merchant's account",
            "خيار الدفع غير متاح لحساب التاجر"),
    "004": ("Invalid command", "أمر غير صالح"),
    "005": ("Invalid amount", "مبلغ غير صالح"),
    "008": ("Signature mismatch", "عدم تطابق التوقيع"),
    "009": ("Invalid merchant identifier", "معرف التاجر غير صالح"),
    "010": ("Invalid access code", "رمز الدخول غير صالح"),
    "013": ("Invalid currency", "عملة غير صالحة"),
    "017": ("Operation not allowed by the acquirer", "العملية غير مسموحة من البنك المحصل"),
    "034": ("Operation not allowed", "العملية غير مسموحة"),
    "036": ("Order not found", "الطلب غير موجود"),
    "037": ("Missing return URL", "رابط العودة مفقود"),
    "048": ("Operation amount exceeds captured amount", "مبلغ العملية يتجاوز المبلغ المحصل"),
    "049": ("Operation not valid for this payment option", "العملية غير صالحة لخيار الدفع هذا"),
    "065": ("Transaction waiting for customer's action", "العملية بانتظار إجراء العميل"),
    "066": ("Merchant reference already exists", "مرجع التاجر موجود مسبقا"),
    "072": ("Transaction has been cancelled by the consumer", "تم إلغاء العملية من قبل العميل"),
    "073": ("Invalid request format", "صيغة طلب غير صالحة"),
    "100": ("Invalid expiry date", "تاريخ انتهاء غير صالح"),
    "115": ("Expired invoice payment link", "رابط الدفع منتهي الصلاحية"),
    "117": ("Invoice payment link already processed", "تمت معالجة رابط الدفع مسبقا"),
    "666": ("Transaction declined", "تم رفض العملية"),
    "778": ("Session timed-out", "انتهت مهلة الجلسة"),
}
SUCCESS, DECLINED, CANCELLED, TIMED_OUT = "14000", "13666", "00072", "13778"
OUTCOME_CODES = {Outcome.CAPTURED: SUCCESS, Outcome.DECLINED: DECLINED,
                 Outcome.CANCELED: CANCELLED, Outcome.EXPIRED: TIMED_OUT}
WAITING = "19065"  # pending: the customer has not finished on the KNET page
CHECK_OK, CHECK_FAILED = "12000", "11036"  # an unknown reference: check status failed, order not found
REFUND_OK, REFUND_REFUSED = "06000", "07017"
LINK_OK = "48000"

PAGE_FIELDS = ("command", "access_code", "merchant_identifier", "merchant_reference", "amount", "currency",
               "language", "customer_email", "signature")
REFERENCE = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")
EMAIL = re.compile(r"^[A-Za-z0-9_.+\-]+@[A-Za-z0-9_.\-]+\.[A-Za-z]{2,}$")
AMOUNT = re.compile(r"^[0-9]{1,10}$")
PHONE = re.compile(r"^[0-9+]{6,19}$")
TEXTS = {
    "en": {"redirecting": "Returning you to the merchant…", "continue": "Continue", "done": "Payment processed",
           "title": "Amazon Payment Services", "error": "The payment request was refused"},
    "ar": {"redirecting": "جارٍ إعادتك إلى التاجر…", "continue": "متابعة", "done": "تمت معالجة الدفع",
           "title": "خدمات الدفع من أمازون", "error": "تم رفض طلب الدفع"},
}

# SHA Type as the dashboard and SDKs spell it -> (hash | hmac, digest). "SHA-128" is SHA-1.
SHA_TYPES = {
    "sha128": ("hash", "sha1"), "sha1": ("hash", "sha1"), "sha256": ("hash", "sha256"),
    "sha512": ("hash", "sha512"), "hmac256": ("hmac", "sha256"), "hmacsha256": ("hmac", "sha256"),
    "hmac512": ("hmac", "sha512"), "hmacsha512": ("hmac", "sha512"),
}


# -- signing (APS's own algorithm, written here independently of the shop's adapter) -------------

def aps_signature(fields: Mapping[str, str], phrase: str, sha_type: str = "") -> str:
    """phrase + sorted `key=value` (all but `signature`) + phrase, hashed as the SHA Type says."""
    mode, digest = SHA_TYPES.get(re.sub(r"[\s_\-]", "", sha_type or "sha256").lower(), ("hash", "sha256"))
    text = phrase + "".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature") + phrase
    if mode == "hmac":
        return hmac.new(phrase.encode(), text.encode(), getattr(hashlib, digest)).hexdigest()
    return hashlib.new(digest, text.encode()).hexdigest()


def _request_ok(fields: Mapping[str, str], settings: Settings) -> bool:
    phrase = settings.provider_value("APS_SHA_REQUEST_PHRASE")
    expected = aps_signature(fields, phrase, settings.provider_value("APS_SHA_TYPE"))
    given = str(fields.get("signature", "")).strip().lower()
    return bool(phrase) and hmac.compare_digest(expected.encode(), given.encode())


def sign_response(fields: dict[str, str], settings: Settings) -> dict[str, str]:
    """`fields` plus their signature with the SHA response phrase."""
    fields.pop("signature", None)
    fields["signature"] = aps_signature(fields, settings.provider_value("APS_SHA_RESPONSE_PHRASE"),
                                        settings.provider_value("APS_SHA_TYPE"))
    return fields


def _answer(code: str, language: str) -> dict[str, str]:
    english, arabic = MESSAGES[code[2:]]
    return {"response_code": code, "response_message": arabic if language == "ar" else english, "status": code[:2]}


def _echo(fields: Mapping[str, str], *drop: str) -> dict[str, str]:
    """What APS sends back: every request parameter, minus the request's own signature."""
    return {k: v for k, v in fields.items() if k not in ("signature", *drop)}


# -- helpers ------------------------------------------------------------------------------------

def base_url(settings: Settings) -> str:
    return f"{settings.public_url}/sandbox{MOUNT_PATH}"


def webhook_target(settings: Settings, controls: Mapping[str, Any]) -> str:
    return str(controls.get("webhook_url") or f"{settings.public_url}/webhooks/{PROVIDER}")


def _digits(length: int) -> str:
    return secrets.choice("123456789") + "".join(secrets.choice("0123456789") for _ in range(length - 1))


def _is_url(value: str) -> bool:
    return (len(value) <= 400 and value.startswith(("http://", "https://"))
            and not any(ch.isspace() for ch in value) and "://" in value and len(value.split("/", 3)[2]) > 0)


def _credentials_error(fields: Mapping[str, str], settings: Settings, required: tuple[str, ...]) -> str | None:
    """The message code of the first thing APS would refuse about who is asking, or None."""
    if any(not fields.get(name) for name in required):
        return "001"
    if not engine.secrets_equal(fields["merchant_identifier"], settings.provider_value("APS_MERCHANT_IDENTIFIER")):
        return "009"
    if not engine.secrets_equal(fields["access_code"], settings.provider_value("APS_ACCESS_CODE")):
        return "010"
    if not _request_ok(fields, settings):
        return "008"
    return None


def _language(fields: Mapping[str, str]) -> str:
    return fields.get("language") if fields.get("language") in ("en", "ar") else "en"  # type: ignore[return-value]


def _feedback(settings: Settings, fields: dict[str, str], event_type: str) -> Webhook:
    """Direct transaction / notification feedback: the signed fields as a JSON body."""
    return Webhook(event_id=engine.new_id("evt"), event_type=event_type, body=engine.compact_json(fields),
                   headers={"Content-Type": "application/json"})


# -- the payment record -------------------------------------------------------------------------

def _result_fields(settings: Settings, payment: Mapping[str, Any]) -> dict[str, str]:
    """The signed response of a decided purchase: the request echoed (minus `return_url`),
    `fort_id`, the response code, and the KNET references when KNET processed it."""
    result = payment["result"]
    fields = _echo(payment["request"], "return_url")
    fields["fort_id"] = payment["fort_id"]
    if payment.get("payment_link_id"):
        fields["payment_link_id"] = payment["payment_link_id"]
    fields.update(_answer(result["response_code"], _language(payment["request"])))
    for name in ("authorization_code", "knet_ref_number", "third_party_transaction_number"):
        if result.get(name):
            fields[name] = result[name]
    return sign_response(fields, settings)


def _decide(settings: Settings, payment: dict[str, Any], outcome: Outcome, receipt: KnetReceipt | None,
            now: float) -> Webhook:
    """Record the outcome on `payment` (mutates it) and make its direct-feedback notification."""
    result: dict[str, Any] = {"response_code": OUTCOME_CODES[outcome], "decided_at": now}
    if receipt is not None:
        result["knet_ref_number"] = receipt.bank_reference
        result["third_party_transaction_number"] = receipt.transaction_id
        result["authorization_code"] = receipt.auth_code if outcome is Outcome.CAPTURED else None
    payment["result"] = result
    payment["state"] = "done"
    return _feedback(settings, _result_fields(settings, payment), f"PURCHASE {result['response_code']}")


def _window_over(payment: Mapping[str, Any], controls: Mapping[str, Any], now: float) -> bool:
    """An open purchase expires a KNET window after the customer landed (or after the form
    post); an unopened payment link lasts until its own expiry date."""
    if payment["state"] != "open":
        return False
    if payment.get("landed_at") is None and payment.get("link_expires_at") is not None:
        return now > float(payment["link_expires_at"])
    started = payment.get("landed_at") or payment["created_at"]
    return knet_page.is_expired(float(started), now, float(controls["expire_after_s"]))


async def load_payment(settings: Settings, reference: str, controls: Mapping[str, Any]) -> dict[str, Any] | None:
    """The purchase with this merchant reference, its KNET window applied (and notified)."""
    payment = await store.get(f"payment:{reference}")
    now = engine.now_ts()
    if payment is None or not _window_over(payment, controls, now):
        return payment
    hooks: list[Webhook] = []
    async with store.locked(f"payment:{reference}") as record:
        if record is None:
            return None
        if _window_over(record.data, controls, now):
            hooks.append(_decide(settings, record.data, Outcome.EXPIRED, None, now))
            await engine.record_webhooks(store, reference, hooks)
        payment = record.data
    engine.dispatch(store, webhook_target(settings, controls), hooks, controls)
    return payment


async def _reference_by_fort_id(fort_id: str) -> str | None:
    record = await store.get(f"fort:{fort_id}")
    return str(record["merchant_reference"]) if record else None


def _new_payment(request: Mapping[str, str], now: float, link: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A new open purchase: its fort_id (APS's id for it) and KNET page token."""
    payment: dict[str, Any] = {
        "request": dict(request),
        "fort_id": _digits(18),
        "token": secrets.token_urlsafe(24),
        "created_at": now,
        "landed_at": None,
        "state": "open",
        "result": None,
        "refunds": [],
        "maintenance": {},
        "posts": 1,
    }
    if link is not None:
        payment["payment_link_id"] = link["payment_link_id"]
        payment["link_expires_at"] = link["expires_at"]
    return payment


async def _index(payment: Mapping[str, Any]) -> None:
    """The lookups by page token and by fort_id (joins the caller's transaction)."""
    reference = payment["request"]["merchant_reference"]
    await store.put("token", f"token:{payment['token']}", {"merchant_reference": reference})
    await store.put("fort", f"fort:{payment['fort_id']}", {"merchant_reference": reference})


# -- browser pages -------------------------------------------------------------------------------

def _return_page(action: str | None, fields: Mapping[str, str], language: str, status_code: int = 200,
                 message: str = "") -> Template:
    """Back to the merchant: an auto-submitting POST of the signed fields (no inline script),
    or, without a return URL, a plain message."""
    texts = TEXTS["ar" if language == "ar" else "en"]
    return Template(RETURN_TEMPLATE, context={
        "t": texts, "language": language, "direction": "rtl" if language == "ar" else "ltr",
        "action": action, "fields": dict(fields), "message": message,
    }, status_code=status_code)


def _page_error(fields: Mapping[str, str], code: str, settings: Settings) -> Response:
    """A refused paymentPage request: a signed `00xxx` answer posted to `return_url` when it
    is usable, else an error page."""
    language = _language(fields)
    return_url = fields.get("return_url", "")
    answer = _answer(code, language)
    if return_url and _is_url(return_url):
        signed = sign_response({**_echo(fields, "return_url"), **answer}, settings)
        return _return_page(return_url, signed, language)
    return _return_page(None, {}, language, status_code=400,
                        message=f"{answer['response_code']}: {answer['response_message']}")


def _validate_page_request(fields: Mapping[str, str], settings: Settings) -> str | None:
    """The response code APS would answer a hosted-checkout request with, or None if it is good."""
    problem = _credentials_error(fields, settings, PAGE_FIELDS)
    if problem:
        return "00" + problem
    if fields["command"] != "PURCHASE":
        return "00049" if fields["command"] == "AUTHORIZATION" else "00004"  # KNET is PURCHASE only
    if not AMOUNT.match(fields["amount"]) or int(fields["amount"]) <= 0:
        return "00005"
    if fields["currency"] != "KWD":
        return "00013"
    if fields.get("payment_option", "KNET") != "KNET":
        return "00003"  # this sandbox account has KNET only
    if fields["language"] not in ("en", "ar") or not REFERENCE.match(fields["merchant_reference"]):
        return "00002"
    if not EMAIL.match(fields["customer_email"]) or len(fields["customer_email"]) > 254:
        return "00002"
    if not fields.get("return_url"):
        return "00037"  # no dashboard default in the sandbox to fall back on
    if not _is_url(fields["return_url"]):
        return "00002"
    return None


def _knet_url(settings: Settings, token: str) -> str:
    return f"{base_url(settings)}/knet/{token}"


async def _form_fields(request: Request) -> dict[str, str] | None:
    """The posted form as plain strings; None when a field is repeated (ambiguous to sign)."""
    form = await request.form()
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in fields or not isinstance(value, str):
            return None
        fields[key] = value
    return fields


async def _open_page(settings: Settings, fields: dict[str, str]) -> Response:
    code = _validate_page_request(fields, settings)
    if code:
        return _page_error(fields, code, settings)
    request_fields = _echo(fields)
    fresh = _new_payment(request_fields, engine.now_ts())
    token: str | None = None
    # Created under the record's lock: two posts of one form can never make two payments.
    async with store.locked(f"payment:{fields['merchant_reference']}", kind="payment", create=fresh) as record:
        assert record is not None
        if record.data["token"] == fresh["token"]:
            await _index(fresh)
            token = fresh["token"]
        elif (record.data["request"] == request_fields and record.data["state"] == "open"
              and not record.data.get("payment_link_id")):
            # The same signed form posted again (back button, Pay pressed twice): same payment.
            record.data["posts"] = int(record.data.get("posts", 1)) + 1
            token = record.data["token"]
    if token is None:
        return _page_error(fields, "00066", settings)  # a reference is good for one payment
    return Response(content=b"", status_code=303, headers={"Location": _knet_url(settings, token)},
                    media_type="text/plain")


@post("/FortAPI/paymentPage", exclude_from_csrf=True, status_code=303)
async def payment_page(request: Request, settings: SettingsParam) -> Response:
    """The browser's form POST (providers.md 1.2): check, store, on to the KNET page."""
    controls = await engine.get_controls(store)
    fault = await engine.take_fault(store, "page")

    async def work() -> Response:
        fields = await _form_fields(request)
        if fields is None:
            return _return_page(None, {}, "en", 400, "00002: " + MESSAGES["002"][0])
        return await _open_page(settings, fields)

    return await engine.with_fault(fault, controls, work)


class ApsPage:
    """Runs the shared KNET page over APS purchases."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def expire_after_s(self) -> float:
        return float((await engine.get_controls(store))["expire_after_s"])

    async def _reference(self, token: str) -> str | None:
        record = await store.get(f"token:{token}")
        return str(record["merchant_reference"]) if record else None

    async def land(self, token: str, now: float) -> PageState | None:
        reference = await self._reference(token)
        payment = await store.get(f"payment:{reference}") if reference else None
        if payment is None:
            return None
        payment = await store.land_once(f"payment:{reference}", payment, payment["state"] == "open", now)
        request = payment["request"]
        view = PageView(language=_language(request), merchant_name=MERCHANT_NAME, amount_fils=int(request["amount"]),
                        reference=str(reference), action_url=f"/sandbox{MOUNT_PATH}/knet/{token}")
        return PageState(view=view, open=payment["state"] == "open", started_at=float(payment.get("landed_at") or now))

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        reference = await self._reference(token)
        if reference is None:
            return None
        controls = await engine.get_controls(store)
        async with store.locked(f"payment:{reference}") as record:
            if record is None or record.data["state"] != "open":
                return None  # decided already: a double submit must not decide twice
            hooks = [_decide(self.settings, record.data, outcome, receipt, now)]
            await engine.record_webhooks(store, reference, hooks)
        engine.dispatch(store, webhook_target(self.settings, controls), hooks, controls)
        return f"{base_url(self.settings)}/FortAPI/paymentResult/{token}"


@get("/knet/{token:str}", exclude_from_csrf=True)
async def knet_form(
    settings: SettingsParam, token: FromPath[str],
    language: Annotated[str | None, QueryParameter(name="language", max_length=5)] = None,
) -> Response:
    return await knet_page.show_page(ApsPage(settings), token, language)


@post("/knet/{token:str}", status_code=303, exclude_from_csrf=True)
async def knet_submit(request: Request, settings: SettingsParam, token: FromPath[str]) -> Response:
    form = await request.form()
    # Read into plain strings and passed straight to the decision: never stored or logged.
    fields = {name: str(form.get(name, "")) for name in
              ("bank", "card_number", "expiry_month", "expiry_year", "pin", "action", "language")}
    return await knet_page.submit_page(ApsPage(settings), token, fields)


@get("/FortAPI/paymentResult/{token:str}", exclude_from_csrf=True)
async def payment_result(settings: SettingsParam, token: FromPath[str]) -> Response:
    """After KNET: the signed response auto-posted to the merchant's `return_url`."""
    record = await store.get(f"token:{token}")
    payment = await store.get(f"payment:{record['merchant_reference']}") if record else None
    if payment is None or payment["state"] != "done":
        return knet_page.render_message("en", "not_found", 404)
    language = _language(payment["request"])
    return_url = payment["request"].get("return_url")
    fields = _result_fields(settings, payment)
    if not return_url:  # a payment link without a return URL: APS shows its own result page
        return _return_page(None, {}, language, message=f"{fields['response_code']}: {fields['response_message']}")
    return _return_page(return_url, fields, language)


@get("/link/{code:str}", exclude_from_csrf=True)
async def open_link(settings: SettingsParam, code: FromPath[str]) -> Response:
    """A payment link: KNET is the option on a KWD link, so straight to the KNET page."""
    index = await store.get(f"link:{code}")
    if index is None:
        return knet_page.render_message("en", "not_found", 404)
    controls = await engine.get_controls(store)
    payment = await load_payment(settings, index["merchant_reference"], controls)
    if payment is None:
        return knet_page.render_message("en", "not_found", 404)
    language = _language(payment["request"])
    if payment["state"] != "open":
        code_key = "115" if payment["result"]["response_code"] == TIMED_OUT else "117"
        message = MESSAGES[code_key][1 if language == "ar" else 0]
        return _return_page(None, {}, language, status_code=410, message=message)
    return Response(content=b"", status_code=303, headers={"Location": _knet_url(settings, payment["token"])},
                    media_type="text/plain")


# -- paymentApi -----------------------------------------------------------------------------------

def _api_answer(fields: dict[str, str], settings: Settings) -> Response:
    return engine.json_response(sign_response(fields, settings), 200)


def _api_error(request_fields: Mapping[str, str], code: str, settings: Settings) -> Response:
    return _api_answer({**_echo(request_fields), **_answer(code, _language(request_fields))}, settings)


def _status_fields(payment: Mapping[str, Any]) -> dict[str, str]:
    """CHECK_STATUS's view of a purchase: its outcome in `transaction_code` (12000 is only the
    inquiry's own success) and the amounts APS reports."""
    request = payment["request"]
    result = payment.get("result")
    code = result["response_code"] if result else WAITING
    english, _ = MESSAGES[code[2:]]
    captured = int(request["amount"]) if code == SUCCESS else 0
    refunded = sum(int(r["amount"]) for r in payment.get("refunds", []))
    fields = {
        "fort_id": payment["fort_id"],
        "transaction_code": code,
        "transaction_status": code[:2],
        "transaction_message": english,
        "authorized_amount": str(captured),
        "captured_amount": str(captured),
        "refunded_amount": str(refunded),
    }
    if result and result.get("authorization_code"):
        fields["authorization_code"] = result["authorization_code"]
    return fields


async def _check_status(settings: Settings, fields: dict[str, str], controls: Mapping[str, Any]) -> Response:
    problem = _credentials_error(fields, settings, ("query_command", "access_code", "merchant_identifier",
                                                    "merchant_reference", "language", "signature"))
    if problem:
        return _api_error(fields, "00" + problem, settings)
    payment = await load_payment(settings, fields["merchant_reference"], controls)
    if payment is not None and fields.get("fort_id") and fields["fort_id"] != payment["fort_id"]:
        payment = None
    if payment is None:
        return _api_error(fields, CHECK_FAILED, settings)
    return _api_answer({**_echo(fields), **_answer(CHECK_OK, _language(fields)), **_status_fields(payment)}, settings)


async def _refund(settings: Settings, fields: dict[str, str], controls: Mapping[str, Any]) -> Response:
    problem = _credentials_error(fields, settings, ("command", "access_code", "merchant_identifier", "amount",
                                                    "currency", "language", "signature"))
    if problem:
        return _api_error(fields, "00" + problem, settings)
    # "You can send merchant_reference and/or fort_id in the REFUND request."
    reference = fields.get("merchant_reference")
    if fields.get("fort_id"):
        by_fort = await _reference_by_fort_id(fields["fort_id"])
        if reference and by_fort != reference:
            return _api_error(fields, "00036", settings)
        reference = by_fort
    if not reference:
        return _api_error(fields, "00001" if not fields.get("fort_id") else "00036", settings)
    if not AMOUNT.match(fields["amount"]) or int(fields["amount"]) <= 0:
        return _api_error(fields, "00005", settings)
    maintenance = fields.get("maintenance_reference", "")
    if maintenance and not re.match(r"^[A-Za-z0-9_.\-]{1,200}$", maintenance):
        return _api_error(fields, "00002", settings)
    await load_payment(settings, reference, controls)  # an unfinished window closes first
    hooks: list[Webhook] = []
    async with store.locked(f"payment:{reference}") as record:
        if record is None:
            return _api_error(fields, "00036", settings)
        payment = record.data
        echo = {**_echo(fields), "merchant_reference": reference, "fort_id": payment["fort_id"]}
        seen = payment["maintenance"].get(maintenance) if maintenance else None
        if seen is not None:
            seen["requests"] += 1
            if seen.get("answer") and str(seen["answer"]["response_code"]).startswith("06"):
                # The same maintenance reference again: the refund it made, not a second one.
                return engine.json_response(seen["answer"], 200)
        if fields["currency"] != payment["request"]["currency"]:
            return _api_error(echo, "00013", settings)
        if not payment.get("result") or payment["result"]["response_code"] != SUCCESS:
            return _api_error(echo, "00034", settings)  # nothing captured to refund
        refunded = sum(int(r["amount"]) for r in payment["refunds"])
        if int(fields["amount"]) > int(payment["request"]["amount"]) - refunded:
            return _api_error(echo, "00048", settings)
        code = REFUND_OK if controls["refunds"] == "approve" else REFUND_REFUSED
        answer = sign_response({**echo, **_answer(code, _language(fields))}, settings)
        if code == REFUND_OK:
            payment["refunds"].append({"amount": int(fields["amount"]), "maintenance_reference": maintenance,
                                       "at": engine.now_ts()})
        if maintenance:
            entry = payment["maintenance"].setdefault(maintenance, {"requests": 1, "refunds": 0})
            entry["answer"] = answer
            entry["refunds"] += int(code == REFUND_OK)
        # Notification feedback carries the refund's outcome too.
        hooks.append(_feedback(settings, dict(answer), f"REFUND {code}"))
        await engine.record_webhooks(store, reference, hooks)
    engine.dispatch(store, webhook_target(settings, controls), hooks, controls)
    return engine.json_response(answer, 200)


def _expiry_ts(value: str) -> float | None:
    """`2025-07-22T15:36:55+03:00`: ISO 8601 with an explicit offset, as APS requires."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


async def _payment_link(settings: Settings, fields: dict[str, str], controls: Mapping[str, Any]) -> Response:
    required = ("service_command", "access_code", "merchant_identifier", "merchant_reference", "amount",
                "currency", "language", "customer_email", "request_expiry_date", "notification_type", "signature")
    problem = _credentials_error(fields, settings, required)
    if problem:
        return _api_error(fields, "00" + problem, settings)
    if fields.get("link_command", "PURCHASE") != "PURCHASE":
        return _api_error(fields, "00049", settings)  # KNET takes purchases only
    if not AMOUNT.match(fields["amount"]) or int(fields["amount"]) <= 0:
        return _api_error(fields, "00005", settings)
    if fields["currency"] != "KWD" or fields.get("payment_option", "KNET") != "KNET":
        return _api_error(fields, "00003", settings)  # KNET appears on a link only in KWD
    if fields["language"] not in ("en", "ar") or not REFERENCE.match(fields["merchant_reference"]):
        return _api_error(fields, "00002", settings)
    if not EMAIL.match(fields["customer_email"]):
        return _api_error(fields, "00002", settings)
    kinds = fields["notification_type"].split(",")
    if not kinds or any(kind not in ("SMS", "EMAIL", "NONE") for kind in kinds):
        return _api_error(fields, "00002", settings)
    if "SMS" in kinds and "NONE" not in kinds and not PHONE.match(fields.get("customer_phone", "")):
        return _api_error(fields, "00001", settings)
    if fields.get("return_url") and not _is_url(fields["return_url"]):
        return _api_error(fields, "00002", settings)
    expires_at = _expiry_ts(fields["request_expiry_date"])
    if expires_at is None or expires_at <= engine.now_ts():
        return _api_error(fields, "00100", settings)
    reference = fields["merchant_reference"]
    link = {"payment_link_id": _digits(18), "code": secrets.token_hex(4), "expires_at": expires_at}
    purchase = {"command": "PURCHASE", **{k: fields[k] for k in (
        "access_code", "merchant_identifier", "merchant_reference", "amount", "currency", "language",
        "customer_email")}, "payment_option": "KNET"}
    for name in ("order_description", "customer_name", "return_url"):
        if fields.get(name):
            purchase[name] = fields[name]
    fresh = _new_payment(purchase, engine.now_ts(), link)
    async with store.locked(f"payment:{reference}", kind="payment", create=fresh) as record:
        assert record is not None
        created = record.data["token"] == fresh["token"]
        if created:
            await _index(fresh)
            await store.put("link", f"link:{link['code']}", {"merchant_reference": reference, **link})
    if not created:
        return _api_error(fields, "00066", settings)
    answer = {**_echo(fields), **_answer(LINK_OK, _language(fields)), "payment_link_id": link["payment_link_id"],
              "payment_link": f"{base_url(settings)}/link/{link['code']}"}
    return _api_answer(answer, settings)


API_COMMANDS: dict[tuple[str, str], tuple[str, Callable[..., Awaitable[Response]]]] = {
    ("query_command", "CHECK_STATUS"): ("check_status", _check_status),
    ("command", "REFUND"): ("refund", _refund),
    ("service_command", "PAYMENT_LINK"): ("payment_link", _payment_link),
}


@post("/FortAPI/paymentApi", exclude_from_csrf=True, status_code=200)
async def payment_api(request: Request, settings: SettingsParam) -> Response:
    """Server to server, JSON in and out; every answer is HTTP 200, signed, with APS's code."""
    controls = await engine.get_controls(store)
    try:
        body = await engine.read_json_object(request)
    except engine.BadJson:
        body = None
    fields: dict[str, str] | None = None
    if body is not None and all(isinstance(v, str) for v in body.values()):
        fields = {str(k): v for k, v in body.items()}
    handler = None
    operation = "api"
    for (name, value), (op, function) in API_COMMANDS.items():
        if fields is not None and fields.get(name) == value:
            operation, handler = op, function
    fault = await engine.take_fault(store, operation)

    async def work() -> Response:
        if fields is None:
            return _api_answer(_answer("00073", "en"), settings)
        if handler is None:
            return _api_error(fields, "00004", settings)
        return await handler(settings, fields, controls)

    return await engine.with_fault(fault, controls, work)


# -- test controls (the sandbox only; production never mounts it) ------------------------------

@get("/_control", exclude_from_csrf=True)
async def read_controls() -> Response:
    return engine.json_response(await engine.get_controls(store), 200)


@post("/_control", status_code=200, exclude_from_csrf=True)
async def change_controls(request: Request) -> Response:
    try:
        body = await engine.read_json_object(request)
        controls = await engine.update_controls(store, body, OPERATIONS)
    except engine.BadJson:
        return engine.json_response({"error": "body is not a JSON object"}, 400)
    except engine.ControlError as exc:
        return engine.json_response({"error": str(exc)}, 422)
    return engine.json_response(controls, 200)


@delete("/_control", status_code=200, exclude_from_csrf=True)
async def reset_controls() -> Response:
    return engine.json_response(await engine.reset_controls(store), 200)


@get("/_stats", exclude_from_csrf=True)
async def stats() -> Response:
    payments = await store.records("payment")
    return engine.json_response({
        "payments": len(payments),
        "links": await store.count("link"),
        "page_posts_by_reference": {data["request"]["merchant_reference"]: int(data.get("posts", 1))
                                    for _, data in payments},
        "refunds_by_maintenance_reference": {
            ref: {"requests": int(entry["requests"]), "refunds": int(entry["refunds"])}
            for _, data in payments for ref, entry in data.get("maintenance", {}).items()
        },
        "webhook_deliveries": await engine.delivery_log(store),
        "events": await engine.list_events(store),
    }, 200)


@post("/_webhooks/replay/{reference:str}", status_code=202, exclude_from_csrf=True)
async def replay_webhooks(
    settings: SettingsParam, reference: FromPath[str],
    honour_controls: Annotated[bool, QueryParameter(name="honour_controls")] = False,
) -> Response:
    """Send every notification of a purchase again, same bytes (for dedupe tests); with
    `?honour_controls=true` the webhook mode applies (e.g. `reorder` sends them newest first)."""
    if await store.get(f"payment:{reference}") is None:
        return engine.empty_response(404)
    controls = await engine.get_controls(store)
    webhooks = await engine.load_webhooks(store, reference)
    engine.dispatch(store, webhook_target(settings, controls), webhooks, controls, honour_mode=honour_controls)
    return engine.json_response({"merchant_reference": reference, "events": [w.event_id for w in webhooks]}, 202)


def create_router(settings: Settings) -> Router:
    """The APS sandbox, mounted at /sandbox/aps (both the page and the API base)."""
    return Router(
        path=MOUNT_PATH,
        route_handlers=[
            payment_page, knet_form, knet_submit, payment_result, open_link, payment_api,
            read_controls, change_controls, reset_controls, stats, replay_webhooks,
        ],
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        include_in_schema=False,
    )
