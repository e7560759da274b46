"""Checkout.com sandbox: the KNET Payments and Payment Setup APIs, refunds, signed webhooks, page."""
from __future__ import annotations

import asyncio
import re
import secrets
from typing import Annotated, Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import Request, Response, Router, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter, SkipValidation

from shop.sandbox import engine, knet_page
from shop.sandbox.engine import IdempotentOutcome, Store, Webhook
from shop.sandbox.knet_page import KnetReceipt, Outcome, PageState, PageView
from shop.settings import Settings

PROVIDER = "checkout"
MOUNT_PATH = "/checkout"  # under the sandbox router's /sandbox
MERCHANT_NAME = "Dira Market"
OPERATIONS = ("create", "setup", "confirm", "details", "actions", "refund")  # names `fail_next` takes
store = Store(PROVIDER)

PENDING, CAPTURED, DECLINED, CANCELED, EXPIRED = "Pending", "Captured", "Declined", "Canceled", "Expired"
PARTIALLY_REFUNDED, REFUNDED = "Partially Refunded", "Refunded"
REFUNDABLE = frozenset({CAPTURED, PARTIALLY_REFUNDED})
APPROVED_STATUSES = frozenset({CAPTURED, PARTIALLY_REFUNDED, REFUNDED})
OUTCOME_STATUS = {
    Outcome.CAPTURED: CAPTURED, Outcome.DECLINED: DECLINED, Outcome.CANCELED: CANCELED, Outcome.EXPIRED: EXPIRED,
}
OUTCOME_EVENTS = {
    Outcome.CAPTURED: ("payment_capture_pending", "payment_captured"),
    Outcome.DECLINED: ("payment_capture_declined",),
    Outcome.CANCELED: ("payment_canceled",),
    Outcome.EXPIRED: ("payment_expired",),
}
KNET_RESULTS = {"CAPTURED": "Captured", "NOT CAPTURED": "NOT CAPTURED", "CANCELED": "CANCELED"}  # note the casing
APPROVED = ("10000", "Approved")
DO_NOT_HONOUR = ("20005", "Declined - Do Not Honour")
EVENT_RESPONSE_CODES = {
    "payment_captured": APPROVED,
    "payment_refunded": APPROVED,
    "payment_capture_declined": DO_NOT_HONOUR,
    "payment_refund_declined": DO_NOT_HONOUR,
}
REQUEST_SOURCE_FIELDS = (
    "type", "language", "user_defined_field1", "user_defined_field2", "user_defined_field3",
    "user_defined_field4", "user_defined_field5", "card_token", "ptlf",
)
UDF_PATTERN = re.compile(r"^[A-Za-z0-9 ]{0,255}$")
CARD_TOKEN_PATTERN = re.compile(r"^[0-9]{8}$")
CHANNEL_PATTERN = re.compile(r"^pc_\w{1,64}$")

SettingsParam = NamedDependency[SkipValidation[Settings]]  # injected by the router, not parsed


# -- helpers ------------------------------------------------------------------------------------

def base_url(settings: Settings) -> str:
    return f"{settings.public_url}/sandbox{MOUNT_PATH}"


def webhook_target(settings: Settings, controls: Mapping[str, Any]) -> str:
    return str(controls.get("webhook_url") or f"{settings.public_url}/webhooks/{PROVIDER}")


def sign_webhook(body: bytes, secret: str) -> str:
    """`Cko-Signature`: lower-case hex HMAC-SHA256 of the exact body bytes (providers.md 2.7)."""
    return engine.hmac_sha256_hex(secret, body)


def _authorized(request: Request, settings: Settings) -> bool:
    """`Bearer sk_...` (current platform) or the bare key (previous platform), in constant time."""
    header = request.headers.get("authorization", "").strip()
    token = header[7:].strip() if header[:7].lower() == "bearer " else header
    return engine.secrets_equal(token, settings.provider_value("CHECKOUT_SECRET_KEY"))


def _previous_platform(settings: Settings) -> bool:
    return settings.provider_value("CHECKOUT_SECRET_KEY").startswith("sk_test_")


def _request_id() -> str:
    return secrets.token_hex(8).upper() + ":" + secrets.token_hex(4).upper()


def _invalid(codes: list[str]) -> Response:
    return engine.json_response(
        {"request_id": _request_id(), "error_type": "request_invalid", "error_codes": codes}, 422
    )


def _malformed() -> Response:
    return engine.json_response(
        {"request_id": _request_id(), "error_type": "request_malformed", "error_codes": ["payload_invalid"]}, 400
    )


def _respond(outcome: IdempotentOutcome) -> Response:
    if outcome.body is None:
        return engine.empty_response(outcome.status_code)
    return engine.json_response(outcome.body, outcome.status_code)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_url(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) <= 1024 and value.startswith(("http://", "https://"))
        and not any(ch.isspace() for ch in value) and bool(urlsplit(value).netloc)
    )


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    return urlunsplit(parts._replace(query=query))


def _check_text(body: Mapping[str, Any], name: str, limit: int, codes: list[str]) -> None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        codes.append(f"{name}_invalid")


def _check_channel(body: Mapping[str, Any], settings: Settings, codes: list[str]) -> None:
    """Current-platform keys need the account's processing channel; previous ones have none."""
    channel = body.get("processing_channel_id")
    if channel is None:
        if not _previous_platform(settings):
            codes.append("processing_channel_id_required")
        return
    configured = settings.provider_value("CHECKOUT_PROCESSING_CHANNEL_ID")
    if not isinstance(channel, str) or not CHANNEL_PATTERN.match(channel) or (configured and channel != configured):
        codes.append("processing_channel_id_invalid")


def _check_amount_currency(body: Mapping[str, Any], codes: list[str]) -> None:
    amount = body.get("amount")
    if amount is None:
        codes.append("amount_required")
    elif not _is_int(amount) or amount <= 0:
        codes.append("amount_invalid")
    currency = body.get("currency")
    if currency in (None, ""):
        codes.append("currency_required")
    elif currency != "KWD":  # KNET settles in Kuwaiti dinars only
        codes.append("currency_invalid")


def _check_customer_metadata(body: Mapping[str, Any], codes: list[str]) -> None:
    if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
        codes.append("metadata_invalid")
    customer = body.get("customer")
    if customer is not None and not isinstance(customer, dict):
        codes.append("customer_invalid")


def _validate_source(source: object, codes: list[str]) -> dict[str, Any]:
    if source is None:
        codes.append("payment_source_required")
        return {}
    if not isinstance(source, dict) or source.get("type") != "knet":
        codes.append("source_type_invalid")
        return {}
    language = source.get("language")
    if language is None:
        codes.append("language_required")
    elif language not in knet_page.LANGUAGES:
        codes.append("language_invalid")
    for index in range(1, 6):
        value = source.get(f"user_defined_field{index}")
        if value is not None and (not isinstance(value, str) or not UDF_PATTERN.match(value)):
            codes.append(f"user_defined_field{index}_invalid")
    card_token = source.get("card_token")
    if card_token is not None:
        if not isinstance(card_token, str) or not CARD_TOKEN_PATTERN.match(card_token):
            codes.append("card_token_invalid")
        elif source.get("user_defined_field3") is not None:
            codes.append("user_defined_field3_invalid")  # KNET carries the KFAST token in UDF3
    if source.get("ptlf") is not None and (not isinstance(source["ptlf"], str) or len(source["ptlf"]) > 255):
        codes.append("ptlf_invalid")
    return {name: source[name] for name in REQUEST_SOURCE_FIELDS if source.get(name) is not None}


def validate_payment_request(body: Mapping[str, Any], settings: Settings) -> tuple[dict[str, Any], list[str]]:
    """The request as the sandbox keeps it, and the error codes the real API would give."""
    codes: list[str] = []
    _check_amount_currency(body, codes)
    source = _validate_source(body.get("source"), codes)
    for name in ("success_url", "failure_url"):
        if body.get(name) is None:
            codes.append(f"{name}_required")  # no dashboard defaults in the sandbox to fall back on
        elif not _is_url(body.get(name)):
            codes.append(f"{name}_invalid")
    _check_text(body, "reference", 80, codes)
    _check_text(body, "description", 100, codes)
    _check_channel(body, settings, codes)
    _check_customer_metadata(body, codes)
    request = {
        "amount": body.get("amount"),
        "currency": body.get("currency"),
        "source": source,
        "reference": body.get("reference"),
        "description": body.get("description"),
        "metadata": body.get("metadata") or {},
        "customer": body.get("customer") or {},
        "success_url": body.get("success_url"),
        "failure_url": body.get("failure_url"),
        "processing_channel_id": body.get("processing_channel_id"),
    }
    return request, codes


# -- the payment object -------------------------------------------------------------------------

def _new_payment(request: Mapping[str, Any], now: float, setup_id: str | None = None) -> dict[str, Any]:
    customer = dict(request.get("customer") or {})
    customer_id = customer.get("id") if str(customer.get("id", "")).startswith("cus_") else engine.new_id("cus")
    return {
        "id": engine.new_id("pay"),
        "token": engine.new_id("tok"),
        "action_id": engine.new_id("act"),
        "requested_on": engine.iso_z(now),
        "created_at": now,
        "landed_at": None,
        "status": PENDING,
        "amount": request["amount"],
        "currency": request["currency"],
        "reference": request.get("reference"),
        "description": request.get("description"),
        "metadata": dict(request.get("metadata") or {}),
        "customer": {"id": customer_id, **{k: customer[k] for k in ("email", "name") if isinstance(customer.get(k), str)}},
        "source": dict(request["source"]),
        "knet": None,
        "success_url": request["success_url"],
        "failure_url": request["failure_url"],
        "processing_channel_id": request.get("processing_channel_id"),
        "setup_id": setup_id,
        "session_id": None,
        "payment_action": None,
        "refunds": [],
    }


def _public_source(payment: Mapping[str, Any]) -> dict[str, Any]:
    source = dict(payment["source"])
    knet = payment.get("knet")
    if knet:
        fields = {
            "knet_payment_id": knet.get("payment_id"),
            "knet_result": KNET_RESULTS.get(knet["result"], knet["result"]),
            "bank_reference": knet.get("bank_reference"),
            "knet_transaction_id": knet.get("transaction_id"),
            "auth_code": knet.get("auth_code"),
            "post_date": knet.get("post_date"),
            "avr": "N",
        }
        source.update({key: value for key, value in fields.items() if value is not None})
    return source


def _links(settings: Settings, payment: Mapping[str, Any]) -> dict[str, Any]:
    base = base_url(settings)
    self_href = f"{base}/payments/{payment['id']}"
    links: dict[str, Any] = {"self": {"href": self_href}, "actions": {"href": f"{self_href}/actions"}}
    if payment["status"] == PENDING:
        links["redirect"] = {"href": f"{base}/knet-external/redirect/{payment['token']}/pay"}
    if payment["status"] in REFUNDABLE:
        links["refund"] = {"href": f"{self_href}/refunds"}
    return links


def created_view(settings: Settings, payment: Mapping[str, Any]) -> dict[str, Any]:
    """The 202 answer to a payment request (seed 001)."""
    base = base_url(settings)
    view: dict[str, Any] = {"id": payment["id"], "status": PENDING}
    if payment.get("reference"):
        view["reference"] = payment["reference"]
    view["customer"] = {"id": payment["customer"]["id"]}
    view["_links"] = {
        "self": {"href": f"{base}/payments/{payment['id']}"},
        "redirect": {"href": f"{base}/knet-external/redirect/{payment['token']}/pay"},
    }
    return view


def payment_view(settings: Settings, payment: Mapping[str, Any]) -> dict[str, Any]:
    """GET /payments/{id} (seed 001, providers.md 2.5)."""
    view: dict[str, Any] = {
        "id": payment["id"],
        "requested_on": payment["requested_on"],
        "source": _public_source(payment),
        "amount": payment["amount"],
        "currency": payment["currency"],
        "payment_type": "Regular",
    }
    for name in ("reference", "description"):
        if payment.get(name):
            view[name] = payment[name]
    view.update({
        "status": payment["status"],
        "approved": payment["status"] in APPROVED_STATUSES,
        "risk": {"flagged": False},
        "customer": dict(payment["customer"]),
    })
    if payment.get("processing_channel_id"):
        view["processing_channel_id"] = payment["processing_channel_id"]
    if payment.get("metadata"):
        view["metadata"] = payment["metadata"]
    view["_links"] = _links(settings, payment)
    return view


def _public_action(action: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in action.items() if not key.startswith("_") and value is not None}


def actions_view(payment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Processed actions, most recent first; a refund is listed once it has been processed."""
    actions = [a for a in payment.get("refunds", []) if a.get("_state") != "pending"]
    if payment.get("payment_action"):
        actions.append(payment["payment_action"])
    actions.sort(key=lambda action: float(action.get("_ts", 0)), reverse=True)
    return [_public_action(action) for action in actions]


def _webhook(settings: Settings, payment: Mapping[str, Any], event_type: str, now: float,
             action: Mapping[str, Any] | None = None) -> Webhook:
    """A previous-platform shaped notification, signed over its exact compact bytes."""
    data: dict[str, Any] = {
        "id": payment["id"],
        "action_id": action["id"] if action else payment["action_id"],
        "amount": action["amount"] if action else payment["amount"],
        "currency": payment["currency"],
        "reference": payment.get("reference"),
    }
    if event_type in EVENT_RESPONSE_CODES:
        data["response_code"], data["response_summary"] = EVENT_RESPONSE_CODES[event_type]
    data["processed_on"] = engine.iso_z(now)
    data["source"] = _public_source(payment)
    data["metadata"] = payment.get("metadata") or {}
    event_id = engine.new_id("evt")
    body = engine.compact_json({
        "id": event_id,
        "type": event_type,
        "created_on": engine.iso_z(now),
        "data": data,
        "_links": {"payment": {"href": f"{base_url(settings)}/payments/{payment['id']}"}},
    })
    headers = {
        "Content-Type": "application/json",
        "Cko-Signature": sign_webhook(body, settings.provider_value("CHECKOUT_WEBHOOK_SECRET")),
    }
    return Webhook(event_id=event_id, event_type=event_type, body=body, headers=headers)


def _refunded_total(payment: Mapping[str, Any], states: tuple[str, ...]) -> int:
    return sum(int(r["amount"]) for r in payment.get("refunds", []) if r.get("_state") in states)


def _lazy_changes(settings: Settings, payment: dict[str, Any], controls: Mapping[str, Any], now: float) -> list[Webhook]:
    """Time-driven changes, applied when someone looks: the KNET window running out (the
    customer never finished) and pending refunds settling. Mutates `payment`."""
    hooks: list[Webhook] = []
    started_at = payment.get("landed_at") or payment["created_at"]
    if payment["status"] == PENDING and knet_page.is_expired(started_at, now, float(controls["expire_after_s"])):
        payment["status"] = EXPIRED
        hooks.append(_webhook(settings, payment, "payment_expired", now))
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    for refund in payment.get("refunds", []):
        if refund.get("_state") != "pending" or now - float(refund["_ts"]) < settle_after_s:
            continue
        approved = refund["_decision"] == "approve"
        refund["_state"] = "approved" if approved else "declined"
        refund["_ts"] = now
        refund["approved"] = approved
        refund["processed_on"] = engine.iso_z(now)
        refund["response_code"], refund["response_summary"] = APPROVED if approved else DO_NOT_HONOUR
        if approved:
            total = _refunded_total(payment, ("approved",))
            payment["status"] = REFUNDED if total >= int(payment["amount"]) else PARTIALLY_REFUNDED
        event = "payment_refunded" if approved else "payment_refund_declined"
        hooks.append(_webhook(settings, payment, event, now, refund))
    return hooks


def _needs_lazy_change(payment: Mapping[str, Any], controls: Mapping[str, Any], now: float) -> bool:
    """Whether `_lazy_changes` would change anything (so plain reads take no write lock)."""
    started_at = payment.get("landed_at") or payment["created_at"]
    if payment["status"] == PENDING and knet_page.is_expired(started_at, now, float(controls["expire_after_s"])):
        return True
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    return any(
        refund.get("_state") == "pending" and now - float(refund["_ts"]) >= settle_after_s
        for refund in payment.get("refunds", [])
    )


async def _resolve(reference: str) -> str | None:
    """A `pay_` id as is; a `sid_` session id (from the return URL) to its payment's id."""
    if reference.startswith("sid_"):
        session = await store.get(f"sid:{reference}")
        return str(session["payment_id"]) if session else None
    return reference if reference.startswith("pay_") else None


async def load_payment(settings: Settings, reference: str, controls: Mapping[str, Any]) -> dict[str, Any] | None:
    """The payment behind a `pay_`/`sid_` id, time-driven changes applied (and notified)."""
    payment_id = await _resolve(reference)
    if payment_id is None:
        return None
    payment = await store.get(f"payment:{payment_id}")
    now = engine.now_ts()
    if payment is None or not _needs_lazy_change(payment, controls, now):
        return payment
    async with store.locked(f"payment:{payment_id}") as record:
        if record is None:
            return None
        hooks = _lazy_changes(settings, record.data, controls, now)
        await engine.record_webhooks(store, payment_id, hooks)
        payment = record.data
    engine.dispatch(store, webhook_target(settings, controls), hooks, controls)
    return payment


async def _create_payment(settings: Settings, request: Mapping[str, Any], controls: Mapping[str, Any],
                          setup_id: str | None = None) -> IdempotentOutcome:
    """Store a new Pending payment with its page token; `payment_pending` goes out after commit."""
    now = engine.now_ts()
    payment = _new_payment(request, now, setup_id)
    hooks = [_webhook(settings, payment, "payment_pending", now)]
    await store.put("payment", f"payment:{payment['id']}", payment)
    await store.put("token", f"token:{payment['token']}", {"payment_id": payment["id"]})
    if payment.get("reference"):
        async with store.locked(f"ref:{payment['reference']}", kind="reference", create={"payments": []}) as index:
            assert index is not None
            index.data["payments"] = [*index.data["payments"], payment["id"]]
    await engine.record_webhooks(store, payment["id"], hooks)
    target = webhook_target(settings, controls)
    return IdempotentOutcome(
        status_code=202,
        body=created_view(settings, payment),
        created=1,
        after_commit=[lambda: engine.dispatch(store, target, hooks, controls)],
    )


# -- the hosted page's backend ------------------------------------------------------------------

class CheckoutPage:
    """Runs the shared KNET page over Checkout.com payments."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def expire_after_s(self) -> float:
        return float((await engine.get_controls(store))["expire_after_s"])

    async def _payment_id(self, token: str) -> str | None:
        record = await store.get(f"token:{token}")
        return str(record["payment_id"]) if record else None

    async def land(self, token: str, now: float) -> PageState | None:
        payment_id = await self._payment_id(token)
        payment = await store.get(f"payment:{payment_id}") if payment_id else None
        if payment is None:
            return None
        payment = await store.land_once(f"payment:{payment_id}", payment, payment["status"] == PENDING, now)
        view = PageView(
            language=payment["source"].get("language", "en"),
            merchant_name=MERCHANT_NAME,
            amount_fils=int(payment["amount"]),
            reference=payment.get("reference") or "",
            action_url=f"/sandbox{MOUNT_PATH}/knet-external/redirect/{token}/pay",
        )
        return PageState(view=view, open=payment["status"] == PENDING,
                         started_at=float(payment.get("landed_at") or now))

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        payment_id = await self._payment_id(token)
        if payment_id is None:
            return None
        controls = await engine.get_controls(store)
        async with store.locked(f"payment:{payment_id}") as record:
            if record is None or record.data["status"] != PENDING:
                return None  # decided already: a double submit must not decide twice
            payment = record.data
            payment["status"] = OUTCOME_STATUS[outcome]
            if receipt is not None:
                payment["knet"] = {
                    "result": receipt.result, "payment_id": receipt.payment_id,
                    "transaction_id": receipt.transaction_id, "bank_reference": receipt.bank_reference,
                    "auth_code": receipt.auth_code, "post_date": receipt.post_date,
                }
            if outcome in (Outcome.CAPTURED, Outcome.DECLINED):
                code, summary = APPROVED if outcome is Outcome.CAPTURED else DO_NOT_HONOUR
                payment["payment_action"] = {
                    "id": payment["action_id"], "type": "Payment", "processed_on": engine.iso_z(now),
                    "amount": payment["amount"], "approved": outcome is Outcome.CAPTURED,
                    "response_code": code, "response_summary": summary,
                    "reference": payment.get("reference"), "_ts": now,
                }
            session_id = engine.new_id("sid")
            payment["session_id"] = session_id
            await store.put("session", f"sid:{session_id}", {"payment_id": payment_id})
            hooks = [_webhook(self.settings, payment, event, now) for event in OUTCOME_EVENTS[outcome]]
            await engine.record_webhooks(store, payment_id, hooks)
            url = payment["success_url"] if outcome is Outcome.CAPTURED else payment["failure_url"]
        engine.dispatch(store, webhook_target(self.settings, controls), hooks, controls)
        return _with_query(url, **{"cko-session-id": session_id})


# -- payment setups -----------------------------------------------------------------------------

def _validate_setup(body: Mapping[str, Any], settings: Settings, partial: bool) -> list[str]:
    codes: list[str] = []
    if not partial or "processing_channel_id" in body:
        _check_channel(body, settings, codes)
    if not partial or "amount" in body or "currency" in body:
        _check_amount_currency({"amount": body.get("amount", 1), "currency": body.get("currency", "KWD")}
                               if partial else body, codes)
    _check_text(body, "reference", 80, codes)
    _check_text(body, "description", 100, codes)
    _check_customer_metadata(body, codes)
    methods = body.get("payment_methods")
    if methods is not None:
        knet = methods.get("knet") if isinstance(methods, dict) else None
        if not isinstance(methods, dict) or (knet is not None and not isinstance(knet, dict)):
            codes.append("payment_methods_invalid")
        elif knet and knet.get("language") is not None and knet["language"] not in knet_page.LANGUAGES:
            codes.append("payment_methods_knet_language_invalid")
    setup_settings = body.get("settings")
    if setup_settings is not None:
        if not isinstance(setup_settings, dict):
            codes.append("settings_invalid")
        else:
            for name in ("success_url", "failure_url"):
                if setup_settings.get(name) is not None and not _is_url(setup_settings[name]):
                    codes.append(f"{name}_invalid")
    return codes


def _merge_setup(setup: dict[str, Any], body: Mapping[str, Any]) -> None:
    for name in ("processing_channel_id", "amount", "currency", "payment_type", "reference", "description",
                 "customer", "metadata"):
        if name in body:
            setup[name] = body[name]
    knet = ((body.get("payment_methods") or {}).get("knet") or {})
    if "language" in knet:
        setup["knet_language"] = knet["language"]
    for name, value in (body.get("settings") or {}).items():
        if name in ("success_url", "failure_url"):
            setup["settings"][name] = value


def _setup_flags(setup: Mapping[str, Any]) -> list[str]:
    """What still stops KNET being `ready` for this setup."""
    return [f"{name}_required" for name in ("success_url", "failure_url") if not setup["settings"].get(name)]


def setup_view(setup: Mapping[str, Any]) -> dict[str, Any]:
    """A payment setup as the API returns it (seed 002)."""
    flags = _setup_flags(setup)
    knet: dict[str, Any] = {"status": "ready" if not flags else "action_required", "flags": flags}
    if setup.get("knet_language"):
        knet["language"] = setup["knet_language"]
    view: dict[str, Any] = {
        "id": setup["id"],
        "processing_channel_id": setup.get("processing_channel_id"),
        "amount": setup["amount"],
        "currency": setup["currency"],
        "payment_type": setup.get("payment_type") or "Regular",
    }
    for name in ("reference", "description", "customer", "metadata"):
        if setup.get(name):
            view[name] = setup[name]
    view["payment_methods"] = {"knet": knet}
    view["available_payment_methods"] = ["knet"]
    view["settings"] = {name: value for name, value in setup["settings"].items() if value}
    return view


# -- route handlers -----------------------------------------------------------------------------

async def _api_call(request: Request, settings: Settings, operation: str,
                    work: Callable[[Mapping[str, Any]], Awaitable[Response]]) -> Response:
    """Authenticate, then answer through whatever fault is armed for `operation`."""
    if not _authorized(request, settings):
        return engine.empty_response(401)  # the real API: 401 with an empty body
    controls = await engine.get_controls(store)
    fault = await engine.take_fault(store, operation)
    return await engine.with_fault(fault, controls, lambda: work(controls))


@post("/payments", status_code=202, exclude_from_csrf=True)
async def request_payment(request: Request, settings: SettingsParam) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        try:
            body = await engine.read_json_object(request)
        except engine.BadJson:
            return _malformed()
        payment_request, codes = validate_payment_request(body, settings)
        if codes:
            return _invalid(codes)
        outcome = await engine.idempotent(
            store, "create", request.headers.get("cko-idempotency-key"),
            lambda: _create_payment(settings, payment_request, controls),
        )
        return _respond(outcome)

    return await _api_call(request, settings, "create", work)


@get("/payments", exclude_from_csrf=True)
async def list_payments(request: Request, settings: SettingsParam) -> Response:
    """GET /payments?reference=...&limit=&skip=: the payments with that reference, newest first."""
    async def work(controls: Mapping[str, Any]) -> Response:
        reference = request.query_params.get("reference")
        limit_text = request.query_params.get("limit", "10")
        skip_text = request.query_params.get("skip", "0")
        codes: list[str] = []
        if not reference:
            codes.append("reference_required")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            codes.append("limit_invalid")
        if not skip_text.isdigit():
            codes.append("skip_invalid")
        if codes:
            return _invalid(codes)
        index = await store.get(f"ref:{reference}") or {}
        payment_ids = list(reversed(index.get("payments", [])))
        limit, skip = int(limit_text), int(skip_text)
        page = []
        for payment_id in payment_ids[skip:skip + limit]:
            payment = await load_payment(settings, payment_id, controls)
            if payment is not None:
                page.append(payment_view(settings, payment))
        body = {"limit": limit, "skip": skip, "total_count": len(payment_ids), "data": page}
        return engine.json_response(body, 200)

    return await _api_call(request, settings, "details", work)


@get("/payments/{payment_id:str}", exclude_from_csrf=True)
async def get_payment(request: Request, settings: SettingsParam, payment_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        payment = await load_payment(settings, payment_id, controls)
        if payment is None:
            return engine.empty_response(404)
        return engine.json_response(payment_view(settings, payment), 200)

    return await _api_call(request, settings, "details", work)


@get("/payments/{payment_id:str}/actions", exclude_from_csrf=True)
async def get_payment_actions(request: Request, settings: SettingsParam, payment_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        payment = await load_payment(settings, payment_id, controls)
        if payment is None:
            return engine.empty_response(404)
        return engine.json_response(actions_view(payment), 200)

    return await _api_call(request, settings, "actions", work)


def _validate_refund(body: Mapping[str, Any]) -> list[str]:
    codes: list[str] = []
    amount = body.get("amount")
    if amount is not None and (not _is_int(amount) or amount <= 0):
        codes.append("amount_invalid")
    _check_text(body, "reference", 80, codes)
    if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
        codes.append("metadata_invalid")
    return codes


async def _settle_later(settings: Settings, payment_id: str, delay_s: float) -> None:
    """Settle a refund once its pending time is over, even if nobody asks about the payment."""
    await asyncio.sleep(delay_s + 0.05)
    try:
        await load_payment(settings, payment_id, await engine.get_controls(store))
    except Exception:  # background work: log it, and the next read settles the refund anyway
        engine.log.exception("sandbox checkout: settling refunds of %s failed", payment_id)


async def _refund(settings: Settings, payment_id: str, body: Mapping[str, Any],
                  controls: Mapping[str, Any]) -> IdempotentOutcome:
    now = engine.now_ts()
    target = webhook_target(settings, controls)
    async with store.locked(f"payment:{payment_id}") as record:
        if record is None:
            return IdempotentOutcome(404, None)
        payment = record.data
        hooks = _lazy_changes(settings, payment, controls, now)
        outcome: IdempotentOutcome
        if payment["status"] not in REFUNDABLE:
            outcome = IdempotentOutcome(403, None)  # the API's "Refund not allowed"
        else:
            remaining = int(payment["amount"]) - _refunded_total(payment, ("approved", "pending"))
            amount = body["amount"] if body.get("amount") is not None else remaining  # omitted: all that is left
            if amount <= 0 or amount > remaining:
                outcome = IdempotentOutcome(422, {
                    "request_id": _request_id(), "error_type": "request_invalid",
                    "error_codes": ["refund_amount_exceeds_balance"],
                })
            else:
                refund = {
                    "id": engine.new_id("act"), "type": "Refund", "processed_on": None, "amount": amount,
                    "approved": None, "response_code": None, "response_summary": None,
                    "reference": body.get("reference"), "metadata": body.get("metadata"),
                    "_state": "pending", "_decision": controls["refunds"], "_ts": now,
                }
                payment["refunds"].append(refund)
                hooks.append(_webhook(settings, payment, "payment_refund_pending", now, refund))
                base = base_url(settings)
                reply: dict[str, Any] = {"action_id": refund["id"]}
                if refund["reference"]:
                    reply["reference"] = refund["reference"]
                reply["_links"] = {"payment": {"href": f"{base}/payments/{payment_id}"}}
                outcome = IdempotentOutcome(202, reply, created=1)
                delay_s = float(controls["refund_delay_ms"]) / 1000
                outcome.after_commit.append(lambda: engine.spawn(_settle_later(settings, payment_id, delay_s)))
        await engine.record_webhooks(store, payment_id, hooks)
    outcome.after_commit.insert(0, lambda: engine.dispatch(store, target, hooks, controls))
    return outcome


@post("/payments/{payment_id:str}/refunds", status_code=202, exclude_from_csrf=True)
async def refund_payment(request: Request, settings: SettingsParam, payment_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        try:
            body = await engine.read_json_object(request)
        except engine.BadJson:
            return _malformed()
        codes = _validate_refund(body)
        if codes:
            return _invalid(codes)
        resolved = await _resolve(payment_id)
        if resolved is None or await store.get(f"payment:{resolved}") is None:
            return engine.empty_response(404)
        outcome = await engine.idempotent(
            store, f"refund:{resolved}", request.headers.get("cko-idempotency-key"),
            lambda: _refund(settings, resolved, body, controls),
        )
        return _respond(outcome)

    return await _api_call(request, settings, "refund", work)


@post("/payments/setups", status_code=200, exclude_from_csrf=True)
async def create_setup(request: Request, settings: SettingsParam) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        try:
            body = await engine.read_json_object(request)
        except engine.BadJson:
            return _malformed()
        codes = _validate_setup(body, settings, partial=False)
        if codes:
            return _invalid(codes)
        setup: dict[str, Any] = {"id": engine.new_id("set"), "settings": {}, "payment_id": None, "confirmed": None}
        _merge_setup(setup, body)
        await store.put("setup", f"setup:{setup['id']}", setup)
        return engine.json_response(setup_view(setup), 200)

    return await _api_call(request, settings, "setup", work)


@get("/payments/setups/{setup_id:str}", exclude_from_csrf=True)
async def get_setup(request: Request, settings: SettingsParam, setup_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        setup = await store.get(f"setup:{setup_id}")
        if setup is None:
            return engine.empty_response(404)
        return engine.json_response(setup_view(setup), 200)

    return await _api_call(request, settings, "details", work)


@put("/payments/setups/{setup_id:str}", status_code=200, exclude_from_csrf=True)
async def update_setup(request: Request, settings: SettingsParam, setup_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        try:
            body = await engine.read_json_object(request)
        except engine.BadJson:
            return _malformed()
        codes = _validate_setup(body, settings, partial=True)
        if codes:
            return _invalid(codes)
        async with store.locked(f"setup:{setup_id}") as record:
            if record is None:
                return engine.empty_response(404)
            if record.data.get("payment_id"):
                return _invalid(["payment_setup_already_confirmed"])
            _merge_setup(record.data, body)
            view = setup_view(record.data)
        return engine.json_response(view, 200)

    return await _api_call(request, settings, "setup", work)


@post("/payments/setups/{setup_id:str}/confirm/{method:str}", status_code=202, exclude_from_csrf=True)
async def confirm_setup(
    request: Request, settings: SettingsParam, setup_id: FromPath[str], method: FromPath[str]
) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        if method != "knet":
            return _invalid(["payment_method_not_available"])
        outcome: IdempotentOutcome | None = None
        async with store.locked(f"setup:{setup_id}") as record:
            if record is None:
                return engine.empty_response(404)
            setup = record.data
            if setup.get("confirmed"):
                # Confirming twice answers the same payment: one setup never pays twice.
                return engine.json_response(setup["confirmed"], 202)
            flags = _setup_flags(setup)
            if flags:
                return _invalid(flags)
            payment_request = {
                "amount": setup["amount"], "currency": setup["currency"],
                "source": {"type": "knet", "language": setup.get("knet_language") or "en"},
                "reference": setup.get("reference"), "description": setup.get("description"),
                "metadata": setup.get("metadata") or {}, "customer": setup.get("customer") or {},
                "success_url": setup["settings"]["success_url"], "failure_url": setup["settings"]["failure_url"],
                "processing_channel_id": setup.get("processing_channel_id"),
            }
            outcome = await _create_payment(settings, payment_request, controls, setup_id=setup_id)
            setup["payment_id"] = outcome.body["id"]
            setup["confirmed"] = outcome.body
        for callback in outcome.after_commit:
            callback()
        return _respond(outcome)

    return await _api_call(request, settings, "confirm", work)


@get("/knet-external/redirect/{token:str}/pay", exclude_from_csrf=True)
async def hosted_page(
    settings: SettingsParam, token: FromPath[str],
    language: Annotated[str | None, QueryParameter(name="language", max_length=5)] = None,
) -> Response:
    return await knet_page.show_page(CheckoutPage(settings), token, language)


@post("/knet-external/redirect/{token:str}/pay", status_code=303, exclude_from_csrf=True)
async def hosted_page_submit(request: Request, settings: SettingsParam, token: FromPath[str]) -> Response:
    form = await request.form()
    # Read into plain strings and passed straight to the decision: never stored or logged.
    fields = {name: str(form.get(name, "")) for name in
              ("bank", "card_number", "expiry_month", "expiry_year", "pin", "action", "language")}
    return await knet_page.submit_page(CheckoutPage(settings), token, fields)


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
        return _malformed()
    except engine.ControlError as exc:
        return engine.json_response({"error": str(exc)}, 422)
    return engine.json_response(controls, 200)


@delete("/_control", status_code=200, exclude_from_csrf=True)
async def reset_controls() -> Response:
    return engine.json_response(await engine.reset_controls(store), 200)


@get("/_stats", exclude_from_csrf=True)
async def stats() -> Response:
    return engine.json_response({
        "creates_by_idempotency_key": await engine.idempotency_stats(store, "create"),
        "refunds_by_idempotency_key": await engine.idempotency_stats(store, "refund"),
        "webhook_deliveries": await engine.delivery_log(store),
        "events": await engine.list_events(store),
        "payments": await store.count("payment"),
    }, 200)


@post("/_webhooks/replay/{payment_id:str}", status_code=202, exclude_from_csrf=True)
async def replay_webhooks(settings: SettingsParam, payment_id: FromPath[str]) -> Response:
    """Send every notification of a payment again, same ids and bytes (for dedupe tests)."""
    resolved = await _resolve(payment_id)
    if resolved is None or await store.get(f"payment:{resolved}") is None:
        return engine.empty_response(404)
    controls = await engine.get_controls(store)
    webhooks = await engine.load_webhooks(store, resolved)
    engine.dispatch(store, webhook_target(settings, controls), webhooks, controls, honour_mode=False)
    return engine.json_response({"payment_id": resolved, "events": [w.event_id for w in webhooks]}, 202)


def create_router(settings: Settings) -> Router:
    """The Checkout.com sandbox, mounted at /sandbox/checkout."""
    return Router(
        path=MOUNT_PATH,
        route_handlers=[
            request_payment, list_payments, get_payment, get_payment_actions, refund_payment,
            create_setup, get_setup, update_setup, confirm_setup,
            hosted_page, hosted_page_submit,
            read_controls, change_controls, reset_controls, stats, replay_webhooks,
        ],
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        include_in_schema=False,
    )
