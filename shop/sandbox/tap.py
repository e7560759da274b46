"""Tap Payments sandbox: KNET charges (`src_kw.knet`), the hosted page, refunds, signed posts.

Speaks Tap's v2 API under `/sandbox/tap/v2/...`: `POST /charges` (amount a JSON number in major
units, `reference.idempotent` honoured), `GET /charges/{id}`, `POST /charges/list`,
`POST /refunds`, `GET /refunds/{id}`; the payment page at Tap's sandbox path
`/test_gosell/v2/payment/tap_process.aspx?chg=...`; the charge (or refund) object POSTed to its
`post.url` with the `hashstring` header. Choices where Tap's documentation is silent (all
[unconfirmed] in providers.md, kept here in one place):

- error bodies are `{"errors": [{"code", "description"}]}` (the shape Tap's plugin reads); the
  codes are this sandbox's own;
- a charge nobody finished within `transaction.expiry` becomes ABANDONED (response 301) and,
  like every ABANDONED charge, is not posted; a KNET page submitted or reloaded after the window
  is TIMEDOUT (response 304 "Expired") and is posted;
- a refund answers PENDING and settles `refund_delay_ms` later as REFUNDED or DECLINED, posted
  to the refund's `post.url`, signed like a charge but with `x_created` = the refund's `created`;
- the `hash` header (meaning undocumented) is an HMAC-SHA256 of the raw body with the secret key.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter, SkipValidation

from shop.money import fils_to_str
from shop.sandbox import engine, knet_page
from shop.sandbox.engine import IdempotentOutcome, Store, Webhook
from shop.sandbox.knet_page import KnetReceipt, Outcome, PageState, PageView
from shop.settings import Settings

PROVIDER = "tap"
MOUNT_PATH = "/tap"  # under the sandbox router's /sandbox
PAGE_PATH = "/test_gosell/v2/payment/tap_process.aspx"  # as on sandbox.payments.tap.company
MERCHANT_NAME = "Dira Market"
MERCHANT_ID = "25145693"
KNET_SOURCE = "src_kw.knet"
OPERATIONS = ("create", "retrieve", "list", "refund", "refund_retrieve")  # names `fail_next` takes
# Tap's own numbers where the engine's defaults are KNET's: the charge lives 30 minutes
# (`transaction.expiry`), and a failed post is tried "two more" times.
TAP_CONTROLS: dict[str, Any] = {"expire_after_s": 30 * 60, "webhook_retries": 2}
EXPIRY = {"period": 30, "type": "MINUTE"}
store = Store(PROVIDER)

INITIATED, CAPTURED, DECLINED, CANCELLED = "INITIATED", "CAPTURED", "DECLINED", "CANCELLED"
ABANDONED, TIMEDOUT = "ABANDONED", "TIMEDOUT"
REFUND_PENDING, REFUNDED, REFUND_DECLINED = "PENDING", "REFUNDED", "DECLINED"
# (status, response.code, response.message) per page outcome; gateway.response is KNET's result.
OUTCOMES = {
    Outcome.CAPTURED: (CAPTURED, "000", "Captured"),
    Outcome.DECLINED: (DECLINED, "507", "Declined, Card Issuer"),
    Outcome.CANCELED: (CANCELLED, "302", "Canceled"),
    Outcome.EXPIRED: (TIMEDOUT, "304", "Expired"),
}
KNET_CODES = {"CAPTURED": "00", "NOT CAPTURED": "05"}
NOT_POSTED = frozenset({INITIATED, ABANDONED})  # Tap posts final outcomes only
WEBHOOK_ACCEPT = "text/plain, application/json, application/cbor, application/*+json, */*"
LANGUAGES = ("en", "ar")

SettingsParam = NamedDependency[SkipValidation[Settings]]  # injected by the router, not parsed


# -- small helpers ------------------------------------------------------------------------------

def base_url(settings: Settings) -> str:
    return f"{settings.public_url}/sandbox{MOUNT_PATH}"


def wire_amount(fils: int) -> Decimal:
    """How Tap prints an amount: a JSON number, trailing zeros dropped but one decimal kept
    (`0.5`, `1.0`, `12.125`), built from the integer fils, never through a float."""
    text = fils_to_str(fils).rstrip("0")
    return Decimal(text + "0" if text.endswith(".") else text)


def hash_string(obj: Mapping[str, Any]) -> str:
    """The field string Tap signs (its webhook page); KWD amounts with 3 decimals."""
    reference = obj.get("reference") or {}
    created = obj.get("created") if obj.get("object") == "refund" else (obj.get("transaction") or {}).get("created")
    amount = Decimal(obj["amount"]).quantize(Decimal("0.001"))
    return (f"x_id{obj['id']}x_amount{amount:f}x_currency{obj['currency']}"
            f"x_gateway_reference{reference.get('gateway') or ''}x_payment_reference{reference.get('payment') or ''}"
            f"x_status{obj['status']}x_created{created if created is not None else ''}")


def sign(obj: Mapping[str, Any], secret_key: str) -> str:
    """`hashstring`: lower-case hex HMAC-SHA256 of the field string, keyed with the secret API key."""
    return engine.hmac_sha256_hex(secret_key, hash_string(obj).encode())


def _now_ms(now: float) -> int:
    return int(now * 1000)


def tap_id(prefix: str, now: float) -> str:
    """Tap-shaped ids, e.g. `chg_TS05A1320231018Hy56070Mk3q`: prefix, "TS", digits, time, letters."""
    stamp = time.strftime("%Y%H%M", time.gmtime(now))
    letters = "".join(secrets.choice("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
    return (f"{prefix}_TS{engine.random_digits(2)}A{engine.random_digits(2)}{stamp}"
            f"{letters}{engine.random_digits(1)}{engine.random_digits(7)}")


def _with_query(url: str, **params: str) -> str:
    """`url` with `params` appended, keeping any query it already has."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode([*parse_qsl(parts.query, keep_blank_values=True),
                                                      *params.items()])))


def _is_url(value: object) -> bool:
    return (isinstance(value, str) and 0 < len(value) <= 2048 and value.startswith(("http://", "https://"))
            and not any(ch.isspace() for ch in value) and bool(urlsplit(value).netloc))


def _exact_response(value: object, status_code: int) -> Response:
    return Response(content=engine.exact_json(value), status_code=status_code, media_type=engine.JSON_MEDIA_TYPE)


def _errors(status_code: int, *errors: tuple[str, str]) -> Response:
    body = {"errors": [{"code": code, "description": description} for code, description in errors]}
    return engine.json_response(body, status_code)


def _respond(outcome: IdempotentOutcome) -> Response:
    # Bodies are kept pre-encoded (exact numbers survive the idempotency store's plain JSON).
    return Response(content=str(outcome.body).encode(), status_code=outcome.status_code,
                    media_type=engine.JSON_MEDIA_TYPE)


def _amount_fils(value: object) -> int | None:
    """A KWD amount (JSON number or numeric string) in fils; None unless positive and exact."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        return None
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    fils = amount * 1000
    return int(fils) if fils == fils.to_integral_value() else None


def _plain(value: object) -> object:
    """Request values as plain JSON (a Decimal in metadata is kept as its text)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def tap_controls() -> dict[str, Any]:
    """The controls, with Tap's own defaults written the first time they are needed."""
    if await store.get(engine.CONTROL_KEY) is None:
        await engine.update_controls(store, TAP_CONTROLS, OPERATIONS)
    return await engine.get_controls(store)


def _target(controls: Mapping[str, Any], post_url: str | None) -> str | None:
    return str(controls.get("webhook_url") or post_url or "") or None


# -- validation ---------------------------------------------------------------------------------

def _check_text(value: object, limit: int) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= limit)


def validate_charge(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The request as kept, and the errors Tap's API answers with (400)."""
    errors: list[tuple[str, str]] = []
    fils = None
    if body.get("amount") is None:
        errors.append(("1102", "amount is required"))
    else:
        fils = _amount_fils(body.get("amount"))
        if fils is None:
            errors.append(("1103", "amount is invalid: a positive KWD amount with at most 3 decimals"))
    if body.get("currency") in (None, ""):
        errors.append(("1104", "currency is required"))
    elif body.get("currency") != "KWD":
        errors.append(("1105", "currency is not supported by the source: KNET accepts KWD only"))
    source = body.get("source")
    if not isinstance(source, dict) or not source.get("id"):
        errors.append(("1106", "source.id is required"))
    elif source.get("id") != KNET_SOURCE:
        errors.append(("1107", f"source.id is not enabled in this sandbox (only {KNET_SOURCE})"))
    customer = body.get("customer")
    if not isinstance(customer, dict):
        errors.append(("1108", "customer is required"))
    elif customer.get("id") is not None:
        errors.append(("1109", "customer.id (KFAST) is not available in the sandbox"))
    else:
        if not isinstance(customer.get("first_name"), str) or not customer["first_name"].strip():
            errors.append(("1110", "customer.first_name is required"))
        phone = customer.get("phone")
        if not customer.get("email") and not phone:
            errors.append(("1111", "customer.email or customer.phone is required"))
        if phone is not None and (not isinstance(phone, dict) or not str(phone.get("number", "")).isdigit()
                                  or not str(phone.get("country_code", "")).isdigit()):
            errors.append(("1112", "customer.phone is invalid"))
        if not _check_text(customer.get("email"), 254):
            errors.append(("1113", "customer.email is invalid"))
    redirect = body.get("redirect")
    if not isinstance(redirect, dict) or not _is_url(redirect.get("url")):
        errors.append(("1114", "redirect.url is required and must be an http(s) URL"))
    post_to = body.get("post")
    if post_to is not None and (not isinstance(post_to, dict) or not _is_url(post_to.get("url"))):
        errors.append(("1115", "post.url must be an http(s) URL"))
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, dict) or not all(
            _check_text(reference.get(name), 64) for name in ("transaction", "order", "idempotent"))):
        errors.append(("1116", "reference is invalid"))
    for name, limit in (("description", 1000), ("statement_descriptor", 100)):
        if not _check_text(body.get(name), limit):
            errors.append(("1117", f"{name} is invalid"))
    if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
        errors.append(("1118", "metadata is invalid"))
    if errors:
        return {}, errors
    customer = dict(customer)  # type: ignore[arg-type]
    request = {
        "amount_fils": fils,
        "currency": "KWD",
        "customer_initiated": bool(body.get("customer_initiated", True)),
        "threeDSecure": bool(body.get("threeDSecure", True)),
        "save_card": bool(body.get("save_card", False)),
        "description": body.get("description") or "",
        "statement_descriptor": body.get("statement_descriptor") or "",
        "metadata": _plain(body.get("metadata") or {}),
        "reference": {k: reference[k] for k in ("transaction", "order") if isinstance(reference, dict) and reference.get(k)},
        "receipt": {"email": bool((body.get("receipt") or {}).get("email", False)),
                    "sms": bool((body.get("receipt") or {}).get("sms", False))},
        "customer": _plain({k: customer[k] for k in ("first_name", "middle_name", "last_name", "email", "phone")
                            if customer.get(k)}),
        "redirect_url": redirect["url"],  # type: ignore[index]
        "post_url": (post_to or {}).get("url"),
    }
    return request, []


# -- the charge object --------------------------------------------------------------------------

def _activity(status: str, fils: int, now: float, remarks: str) -> dict[str, Any]:
    return {"id": tap_id("activity", now), "created": _now_ms(now), "status": status, "amount_fils": fils,
            "remarks": remarks}


def new_charge(request: Mapping[str, Any], language: str, now: float) -> dict[str, Any]:
    return {
        **request,
        "id": tap_id("chg", now),
        "object": "charge",
        "token": secrets.token_urlsafe(24),
        "language": language,
        "created_at": now,
        "created_ms": _now_ms(now),
        "landed_at": None,
        "status": INITIATED,
        "response": {"code": "100", "message": "Initiated"},
        "track": tap_id("tck", now),
        "receipt_id": engine.random_digits(18),
        "customer_id": tap_id("cus", now),
        "knet": None,
        "activities": [_activity(INITIATED, request["amount_fils"], now, "charge - created")],
        "refunds": [],
    }


def charge_view(settings: Settings, charge: Mapping[str, Any], method: str = "GET") -> dict[str, Any]:
    """A charge as `GET /v2/charges/{id}` shows it (seed 003)."""
    amount = wire_amount(int(charge["amount_fils"]))
    knet = charge.get("knet") or {}
    transaction: dict[str, Any] = {}
    if knet.get("auth_code"):
        transaction["authorization_id"] = knet["auth_code"]
    transaction.update({"timezone": "UTC+03:00", "created": str(charge["created_ms"]), "expiry": dict(EXPIRY),
                        "asynchronous": False, "amount": amount, "currency": charge["currency"]})
    if charge["status"] == INITIATED:
        transaction["url"] = f"{base_url(settings)}{PAGE_PATH}?chg={charge['token']}"
    reference: dict[str, Any] = {"track": charge["track"]}
    for name, field in (("payment", "payment_id"), ("gateway", "transaction_id"), ("acquirer", "bank_reference")):
        if knet.get(field):
            reference[name] = knet[field]
    reference.update(charge.get("reference") or {})
    view: dict[str, Any] = {
        "id": charge["id"], "object": "charge", "live_mode": False,
        "customer_initiated": charge["customer_initiated"], "api_version": "V2", "method": method,
        "status": charge["status"], "amount": amount, "currency": charge["currency"],
        "threeDSecure": charge["threeDSecure"], "card_threeDSecure": False, "save_card": charge["save_card"],
        "merchant_id": "", "product": "", "statement_descriptor": charge["statement_descriptor"],
        "description": charge["description"], "metadata": charge["metadata"],
        "transaction": transaction, "reference": reference, "response": dict(charge["response"]),
    }
    if knet:
        view["gateway"] = {"response": {"code": KNET_CODES.get(knet["result"], ""), "message": knet["result"]}}
    view.update({
        "receipt": {"id": charge["receipt_id"], **charge["receipt"]},
        "customer": {"id": charge["customer_id"], **charge["customer"]},
        "merchant": {"country": "KW", "currency": "KWD", "id": MERCHANT_ID},
        "source": {"object": "source", "type": "CARD_NOT_PRESENT", "payment_type": "DEBIT",
                   "payment_method": "KNET", "channel": "INTERNET", "id": KNET_SOURCE},
        "redirect": {"status": "PENDING", "url": charge["redirect_url"]},
        "post": {"status": "PENDING", "url": charge.get("post_url") or ""},
        "activities": [
            {"id": a["id"], "object": "activity", "created": a["created"], "status": a["status"],
             "currency": charge["currency"], "amount": wire_amount(int(a["amount_fils"])), "remarks": a["remarks"]}
            for a in charge["activities"]
        ],
        "auto_reversed": False,
    })
    return view


def refund_view(refund: Mapping[str, Any]) -> dict[str, Any]:
    """A refund as `POST /v2/refunds` answers and `GET /v2/refunds/{id}` shows it."""
    reference = {k: v for k, v in refund["reference"].items() if v}
    return {
        "id": refund["id"], "object": "refund", "api_version": "V2", "live_mode": False,
        "amount": wire_amount(int(refund["amount_fils"])), "currency": refund["currency"],
        "charge_id": refund["charge_id"], "created": refund["created_ms"], "status": refund["status"],
        "reason": refund["reason"], "description": refund.get("description") or "",
        "reference": reference, "response": dict(refund["response"]), "metadata": refund.get("metadata") or {},
        "post": {"status": "PENDING", "url": refund.get("post_url") or ""},
    }


def _webhook(view: dict[str, Any], settings: Settings, target: str) -> tuple[str, Webhook]:
    """The object as Tap posts it: its exact bytes, `hashstring` over its fields."""
    view = {**view, "post": {"attempt": 1, "status": "PENDING", "url": view["post"]["url"]}}
    body = engine.exact_json(view)
    secret = settings.provider_value("TAP_SECRET_KEY")
    headers = {
        "Content-Type": "application/json",
        "Accept": WEBHOOK_ACCEPT,
        "hashstring": sign(view, secret),
        "hash": engine.hmac_sha256_hex(secret, body),
    }
    return target, Webhook(event_id=f"{view['id']}:{view['status']}", event_type=f"{view['object']} {view['status']}",
                           body=body, headers=headers)


def _charge_hook(settings: Settings, charge: Mapping[str, Any], controls: Mapping[str, Any]) -> list[tuple[str, Webhook]]:
    target = _target(controls, charge.get("post_url"))
    if target is None or charge["status"] in NOT_POSTED:
        return []
    return [_webhook(charge_view(settings, charge, method="POST"), settings, target)]


def _refunded_fils(charge: Mapping[str, Any], states: tuple[str, ...]) -> int:
    return sum(int(r["amount_fils"]) for r in charge["refunds"] if r["status"] in states)


def _lazy_changes(settings: Settings, charge: dict[str, Any], controls: Mapping[str, Any],
                  now: float) -> list[tuple[str, Webhook]]:
    """Time-driven changes applied when someone looks: the charge's 30 minutes running out
    (ABANDONED, not posted) and pending refunds settling (posted). Mutates `charge`."""
    hooks: list[tuple[str, Webhook]] = []
    if charge["status"] == INITIATED and knet_page.is_expired(charge["created_at"], now, float(controls["expire_after_s"])):
        charge["status"] = ABANDONED
        charge["response"] = {"code": "301", "message": "Abandoned"}
        charge["activities"].append(_activity(ABANDONED, charge["amount_fils"], now, "charge - abandoned"))
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    for refund in charge["refunds"]:
        if refund["status"] != REFUND_PENDING or now - float(refund["created_at"]) < settle_after_s:
            continue
        if refund["decision"] == "approve":
            refund["status"] = REFUNDED
            refund["response"] = {"code": "000", "message": "Refunded"}
            refund["reference"]["gateway"] = engine.random_digits(15)  # KNET's tranid of the refund
        else:
            refund["status"] = REFUND_DECLINED
            refund["response"] = {"code": "501", "message": "Declined"}
        target = _target(controls, refund.get("post_url"))
        if target:
            hooks.append(_webhook(refund_view(refund), settings, target))
    return hooks


def _needs_lazy_change(charge: Mapping[str, Any], controls: Mapping[str, Any], now: float) -> bool:
    if charge["status"] == INITIATED and knet_page.is_expired(charge["created_at"], now, float(controls["expire_after_s"])):
        return True
    settle_after_s = float(controls["refund_delay_ms"]) / 1000
    return any(r["status"] == REFUND_PENDING and now - float(r["created_at"]) >= settle_after_s
               for r in charge["refunds"])


def _send(hooks: list[tuple[str, Webhook]], controls: Mapping[str, Any]) -> None:
    """Dispatch after commit, each group to its own `post.url` (a charge's and its refunds' may differ)."""
    targets: dict[str, list[Webhook]] = {}
    for target, hook in hooks:
        targets.setdefault(target, []).append(hook)
    for target, webhooks in targets.items():
        engine.dispatch(store, target, webhooks, controls)


async def load_charge(settings: Settings, charge_id: str, controls: Mapping[str, Any]) -> dict[str, Any] | None:
    """The charge with time-driven changes applied (and posted)."""
    charge = await store.get(f"charge:{charge_id}")
    now = engine.now_ts()
    if charge is None or not _needs_lazy_change(charge, controls, now):
        return charge
    async with store.locked(f"charge:{charge_id}") as record:
        if record is None:
            return None
        hooks = _lazy_changes(settings, record.data, controls, now)
        await engine.record_webhooks(store, charge_id, [hook for _, hook in hooks])
        charge = record.data
    _send(hooks, controls)
    return charge


async def _create_charge(settings: Settings, request: Mapping[str, Any], language: str) -> IdempotentOutcome:
    now = engine.now_ts()
    charge = new_charge(request, language, now)
    await store.put("charge", f"charge:{charge['id']}", charge)
    await store.put("token", f"token:{charge['token']}", {"charge_id": charge["id"]})
    body = engine.exact_json(charge_view(settings, charge, method="POST")).decode()
    return IdempotentOutcome(status_code=200, body=body, created=1)


# -- the hosted page's backend ------------------------------------------------------------------

class TapPage:
    """Runs the shared KNET page over Tap charges; the window counts from the charge's creation."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def expire_after_s(self) -> float:
        return float((await tap_controls())["expire_after_s"])

    async def _charge_id(self, token: str) -> str | None:
        record = await store.get(f"token:{token}") if token else None
        return str(record["charge_id"]) if record else None

    async def land(self, token: str, now: float) -> PageState | None:
        charge_id = await self._charge_id(token)
        charge = await store.get(f"charge:{charge_id}") if charge_id else None
        if charge is None:
            return None
        charge = await store.land_once(f"charge:{charge_id}", charge, charge["status"] == INITIATED, now)
        reference = charge.get("reference") or {}
        view = PageView(
            language=charge.get("language") or "en",
            merchant_name=MERCHANT_NAME,
            amount_fils=int(charge["amount_fils"]),
            reference=reference.get("order") or reference.get("transaction") or "",
            action_url=f"/sandbox{MOUNT_PATH}{PAGE_PATH}?chg={token}",
        )
        return PageState(view=view, open=charge["status"] == INITIATED, started_at=float(charge["created_at"]))

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        charge_id = await self._charge_id(token)
        if charge_id is None:
            return None
        controls = await tap_controls()
        async with store.locked(f"charge:{charge_id}") as record:
            if record is None or record.data["status"] != INITIATED:
                return None  # decided already: a double submit must not decide twice
            charge = record.data
            status, code, message = OUTCOMES[outcome]
            charge["status"] = status
            charge["response"] = {"code": code, "message": message}
            if receipt is not None:
                charge["knet"] = {
                    "result": receipt.result, "payment_id": receipt.payment_id,
                    "transaction_id": receipt.transaction_id, "bank_reference": receipt.bank_reference,
                    "auth_code": receipt.auth_code,
                }
            charge["activities"].append(_activity(status, charge["amount_fils"], now, f"charge - {status.lower()}"))
            hooks = _charge_hook(self.settings, charge, controls)
            await engine.record_webhooks(store, charge_id, [hook for _, hook in hooks])
            url = charge["redirect_url"]
        _send(hooks, controls)
        return _with_query(url, tap_id=charge_id)


# -- refunds ------------------------------------------------------------------------------------

def validate_refund(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if not isinstance(body.get("charge_id"), str) or not body["charge_id"]:
        errors.append(("1301", "charge_id is required"))
    if body.get("amount") is None:
        errors.append(("1102", "amount is required"))
    elif _amount_fils(body.get("amount")) is None:
        errors.append(("1103", "amount is invalid: a positive KWD amount with at most 3 decimals"))
    if body.get("currency") in (None, ""):
        errors.append(("1104", "currency is required"))
    if not isinstance(body.get("reason"), str) or not body["reason"].strip():
        errors.append(("1302", "reason is required"))
    reference = body.get("reference")
    if reference is not None and (not isinstance(reference, dict) or not all(
            _check_text(reference.get(name), 64) for name in ("merchant", "idempotent"))):
        errors.append(("1116", "reference is invalid"))
    post_to = body.get("post")
    if post_to is not None and (not isinstance(post_to, dict) or not _is_url(post_to.get("url"))):
        errors.append(("1115", "post.url must be an http(s) URL"))
    if body.get("metadata") is not None and not isinstance(body.get("metadata"), dict):
        errors.append(("1118", "metadata is invalid"))
    return errors


async def _settle_later(settings: Settings, charge_id: str, delay_s: float) -> None:
    """Settle refunds once their pending time is over, even if nobody asks about the charge."""
    await asyncio.sleep(delay_s + 0.05)
    try:
        await load_charge(settings, charge_id, await tap_controls())
    except Exception:  # background work: log it; the next read settles the refund anyway
        engine.log.exception("sandbox tap: settling refunds of %s failed", charge_id)


async def _refund(settings: Settings, body: Mapping[str, Any], controls: Mapping[str, Any]) -> IdempotentOutcome:
    now = engine.now_ts()
    charge_id = str(body["charge_id"])
    fils = _amount_fils(body["amount"])
    assert fils is not None
    async with store.locked(f"charge:{charge_id}") as record:
        if record is None:
            return IdempotentOutcome(404, json.dumps({"errors": [{"code": "1303", "description": "charge not found"}]}))
        charge = record.data
        hooks = _lazy_changes(settings, charge, controls, now)
        remaining = int(charge["amount_fils"]) - _refunded_fils(charge, (REFUND_PENDING, REFUNDED))
        outcome: IdempotentOutcome
        if charge["status"] != CAPTURED:
            outcome = IdempotentOutcome(400, json.dumps({"errors": [
                {"code": "1304", "description": f"charge is {charge['status']}: only a CAPTURED charge can be refunded"}]}))
        elif body["currency"] != charge["currency"]:
            outcome = IdempotentOutcome(400, json.dumps({"errors": [
                {"code": "1305", "description": "currency differs from the charge's"}]}))
        elif fils > remaining:
            outcome = IdempotentOutcome(400, json.dumps({"errors": [
                {"code": "1306", "description": "refund amount exceeds the amount left to refund"}]}))
        else:
            reference = body.get("reference") or {}
            refund = {
                "id": tap_id("re", now), "charge_id": charge_id, "amount_fils": fils, "currency": charge["currency"],
                "created_at": now, "created_ms": _now_ms(now), "status": REFUND_PENDING,
                "response": {"code": "100", "message": "Pending"},
                "reason": body["reason"], "description": body.get("description") or "",
                "reference": {"merchant": reference.get("merchant") or "",
                              "payment": (charge.get("knet") or {}).get("payment_id") or ""},
                "metadata": _plain(body.get("metadata") or {}), "post_url": (body.get("post") or {}).get("url"),
                "decision": controls["refunds"],
            }
            charge["refunds"].append(refund)
            await store.put("refund", f"refund:{refund['id']}", {"charge_id": charge_id})
            outcome = IdempotentOutcome(200, engine.exact_json(refund_view(refund)).decode(), created=1)
            delay_s = float(controls["refund_delay_ms"]) / 1000
            outcome.after_commit.append(lambda: engine.spawn(_settle_later(settings, charge_id, delay_s)))
        await engine.record_webhooks(store, charge_id, [hook for _, hook in hooks])
    outcome.after_commit.insert(0, lambda: _send(hooks, controls))
    return outcome


# -- route handlers -----------------------------------------------------------------------------

def _authorized(request: Request, settings: Settings) -> bool:
    header = request.headers.get("authorization", "").strip()
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    return engine.secrets_equal(token, settings.provider_value("TAP_SECRET_KEY"))


async def _api_call(request: Request, settings: Settings, operation: str,
                    work: Callable[[Mapping[str, Any]], Awaitable[Response]]) -> Response:
    """Authenticate (Bearer secret key), then answer through whatever fault is armed."""
    if not _authorized(request, settings):
        return _errors(401, ("2107", "Authentication failed: invalid or missing secret key"))
    controls = await tap_controls()
    fault = await engine.take_fault(store, operation)
    return await engine.with_fault(fault, controls, lambda: work(controls))


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        return await engine.read_json_object(request, exact_numbers=True)
    except engine.BadJson:
        return _errors(400, ("1001", "request body is not a JSON object"))


@post("/v2/charges", status_code=200, exclude_from_csrf=True)
async def create_charge(request: Request, settings: SettingsParam) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        charge_request, errors = validate_charge(body)
        if errors:
            return _errors(400, *errors)
        language = request.headers.get("lang_code", "en").strip().lower()
        idempotent = (body.get("reference") or {}).get("idempotent")
        outcome = await engine.idempotent(
            store, "create", idempotent or None,
            lambda: _create_charge(settings, charge_request, language if language in LANGUAGES else "en"),
        )
        return _respond(outcome)

    return await _api_call(request, settings, "create", work)


@post("/v2/charges/list", status_code=200, exclude_from_csrf=True)
async def list_charges(request: Request, settings: SettingsParam) -> Response:
    """Charges, newest first, filtered by `period.date`, `status`, `reference`; `limit` <= 50."""
    async def work(controls: Mapping[str, Any]) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        limit_value = body.get("limit", 25)
        try:
            limit = int(limit_value)
        except (TypeError, ValueError):
            limit = 0
        if isinstance(limit_value, bool) or not 1 <= limit <= 50:
            return _errors(400, ("1201", "limit must be from 1 to 50"))
        date = ((body.get("period") or {}).get("date") or {}) if isinstance(body.get("period"), dict) else {}
        try:
            low = int(date.get("from", 0))
            high = int(date.get("to", 10 ** 15))
        except (TypeError, ValueError):
            return _errors(400, ("1202", "period.date.from / to must be epoch milliseconds"))
        wanted_status = body.get("status")
        wanted_reference = body.get("reference") if isinstance(body.get("reference"), dict) else {}
        found = []
        for _, charge in reversed(await store.records("charge")):
            reference = charge.get("reference") or {}
            if not low <= int(charge["created_ms"]) <= high:
                continue
            if any(reference.get(k) != v for k, v in wanted_reference.items() if v):
                continue
            charge = await load_charge(settings, charge["id"], controls) or charge
            if wanted_status and charge["status"] != wanted_status:
                continue
            found.append(charge)
        after = body.get("starting_after")
        if after:
            ids = [c["id"] for c in found]
            found = found[ids.index(after) + 1:] if after in ids else []
        page = found[:limit]
        return _exact_response({"object": "list", "live_mode": False, "api_version": "V2", "count": len(page),
                                "has_more": len(found) > limit,
                                "charges": [charge_view(settings, c) for c in page]}, 200)

    return await _api_call(request, settings, "list", work)


@get("/v2/charges/{charge_id:str}", exclude_from_csrf=True)
async def retrieve_charge(request: Request, settings: SettingsParam, charge_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        charge = await load_charge(settings, charge_id, controls)
        if charge is None:
            return _errors(404, ("1303", "charge not found"))
        return _exact_response(charge_view(settings, charge), 200)

    return await _api_call(request, settings, "retrieve", work)


@post("/v2/refunds", status_code=200, exclude_from_csrf=True)
async def create_refund(request: Request, settings: SettingsParam) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        body = await _body(request)
        if isinstance(body, Response):
            return body
        errors = validate_refund(body)
        if errors:
            return _errors(400, *errors)
        if await store.get(f"charge:{body['charge_id']}") is None:
            return _errors(404, ("1303", "charge not found"))
        idempotent = (body.get("reference") or {}).get("idempotent")
        outcome = await engine.idempotent(store, f"refund:{body['charge_id']}", idempotent or None,
                                          lambda: _refund(settings, body, controls))
        return _respond(outcome)

    return await _api_call(request, settings, "refund", work)


@get("/v2/refunds/{refund_id:str}", exclude_from_csrf=True)
async def retrieve_refund(request: Request, settings: SettingsParam, refund_id: FromPath[str]) -> Response:
    async def work(controls: Mapping[str, Any]) -> Response:
        index = await store.get(f"refund:{refund_id}")
        charge = await load_charge(settings, str(index["charge_id"]), controls) if index else None
        refund = next((r for r in (charge or {}).get("refunds", []) if r["id"] == refund_id), None)
        if refund is None:
            return _errors(404, ("1307", "refund not found"))
        return _exact_response(refund_view(refund), 200)

    return await _api_call(request, settings, "refund_retrieve", work)


@get(PAGE_PATH, exclude_from_csrf=True)
async def hosted_page(
    settings: SettingsParam,
    chg: Annotated[str, QueryParameter(name="chg", max_length=200)] = "",
    language: Annotated[str | None, QueryParameter(name="language", max_length=5)] = None,
) -> Response:
    return await knet_page.show_page(TapPage(settings), chg, language)


@post(PAGE_PATH, status_code=303, exclude_from_csrf=True)
async def hosted_page_submit(
    request: Request, settings: SettingsParam,
    chg: Annotated[str, QueryParameter(name="chg", max_length=200)] = "",
) -> Response:
    form = await request.form()
    # Read into plain strings and passed straight to the decision: never stored or logged.
    fields = {name: str(form.get(name, "")) for name in
              ("bank", "card_number", "expiry_month", "expiry_year", "pin", "action", "language")}
    return await knet_page.submit_page(TapPage(settings), chg, fields)


# -- test controls (the sandbox only; production never mounts it) ------------------------------

@get("/_control", exclude_from_csrf=True)
async def read_controls() -> Response:
    return engine.json_response(await tap_controls(), 200)


@post("/_control", status_code=200, exclude_from_csrf=True)
async def change_controls(request: Request) -> Response:
    try:
        body = await engine.read_json_object(request)
        await tap_controls()
        controls = await engine.update_controls(store, body, OPERATIONS)
    except engine.BadJson:
        return _errors(400, ("1001", "request body is not a JSON object"))
    except engine.ControlError as exc:
        return engine.json_response({"error": str(exc)}, 422)
    return engine.json_response(controls, 200)


@delete("/_control", status_code=200, exclude_from_csrf=True)
async def reset_controls() -> Response:
    await engine.reset_controls(store)
    return engine.json_response(await tap_controls(), 200)


@get("/_stats", exclude_from_csrf=True)
async def stats() -> Response:
    return engine.json_response({
        "creates_by_idempotency_key": await engine.idempotency_stats(store, "create"),
        "refunds_by_idempotency_key": await engine.idempotency_stats(store, "refund"),
        "webhook_deliveries": await engine.delivery_log(store),
        "events": await engine.list_events(store),
        "charges": await store.count("charge"),
        "refunds": await store.count("refund"),
    }, 200)


@post("/_webhooks/replay/{charge_id:str}", status_code=202, exclude_from_csrf=True)
async def replay_webhooks(charge_id: FromPath[str]) -> Response:
    """Post every notification of a charge (its refunds' included) again, same bytes, each to
    the `post.url` it carries (or the control `webhook_url`)."""
    if await store.get(f"charge:{charge_id}") is None:
        return _errors(404, ("1303", "charge not found"))
    controls = await tap_controls()
    webhooks = await engine.load_webhooks(store, charge_id)
    targets: dict[str, list[Webhook]] = {}
    for hook in webhooks:
        target = _target(controls, (json.loads(hook.body).get("post") or {}).get("url"))
        if target:
            targets.setdefault(target, []).append(hook)
    for target, hooks in targets.items():
        engine.dispatch(store, target, hooks, controls, honour_mode=False)
    return engine.json_response({"charge_id": charge_id, "events": [w.event_id for w in webhooks]}, 202)


def create_router(settings: Settings) -> Router:
    """The Tap sandbox, mounted at /sandbox/tap (API base: `SHOP_TAP_API_URL` + `/v2/...`)."""
    return Router(
        path=MOUNT_PATH,
        route_handlers=[
            create_charge, list_charges, retrieve_charge, create_refund, retrieve_refund,
            hosted_page, hosted_page_submit,
            read_controls, change_controls, reset_controls, stats, replay_webhooks,
        ],
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        include_in_schema=False,
    )
