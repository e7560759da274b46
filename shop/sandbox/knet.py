"""KNET tranportal sandbox (RAW integration): PaymentHTTP.htm, the hosted page, the encrypted
merchant notification answered with `REDIRECT=<url>`, and tranPipe.htm inquiry and refund.

What it imitates (providers.md §5): the browser arrives with AES-encrypted `trandata`; the
sandbox decrypts it with the terminal resource key and checks it as KNET does (IPAY error codes
to `errorURL`), shows the shared KNET page, then POSTs the encrypted result server to server to
`responseURL` and sends the browser wherever the merchant's one-line `REDIRECT=` reply says. A
missing or wrong reply reverses (voids) a captured payment and sends the browser to `errorURL`.

Notification controls: `normal`, `delay`, `duplicate` (the same POST several times; the first
good reply wins) and `drop` (responseURL unreachable: KNET voids). KNET sends exactly one
notification per transaction, so `reorder` has nothing to reorder and behaves as `normal`;
replays (`POST /_webhooks/replay/{id}`) deliver old notifications late, in any order.
"""
from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Annotated, Any, Mapping
from urllib.parse import quote_plus, urlencode, urlsplit
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from litestar.params import FromPath
from litestar import Request, Response, Router, delete, get, post, route
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter, SkipValidation
from litestar.response import Template

from shop.money import parse_kwd
from shop.sandbox import engine, knet_page
from shop.sandbox.engine import Store, Webhook
from shop.sandbox.knet_page import KnetReceipt, Outcome, PageState, PageView
from shop.settings import Settings

PROVIDER = "knet"
MOUNT_PATH = "/knet"  # under the sandbox router's /sandbox
MERCHANT_NAME = "Dira Market"
OPERATIONS = ("init", "inquiry", "refund")  # names `fail_next` takes
store = Store(PROVIDER)
POST_TEMPLATE = "sandbox/knet_post.html"

OPEN, DECIDED, EXPIRED, VOIDED = "open", "decided", "expired", "voided"
OUTCOME_RESULT = {Outcome.CAPTURED: "CAPTURED", Outcome.DECLINED: "NOT CAPTURED", Outcome.CANCELED: "CANCELED"}
AUTH_RESPONSE_CODE = {"CAPTURED": "00", "NOT CAPTURED": "05"}
LANGUAGE_OF = {"USA": "en", "AR": "ar"}
INQUIRY_MODES = {"trackid": "trackid", "paymentid": "paymentid", "transid": "tranid", "transactionid": "tranid",
                 "": "tranid", "seqnum": "ref", "refid": "ref"}
ERRORS = {
    "IPAY0100001": "Missing error URL", "IPAY0100002": "Invalid error URL",
    "IPAY0100003": "Missing response URL", "IPAY0100004": "Invalid response URL",
    "IPAY0100005": "Missing tranportal ID", "IPAY0100006": "Invalid tranportal ID",
    "IPAY0100007": "Missing transaction data", "IPAY0100013": "Invalid transaction data",
    "IPAY0100014": "Terminal Authentication requested with invalid tranportal ID data",
    "IPAY0100015": "Invalid tranportal password", "IPAY0100020": "Invalid action type",
    "IPAY0100021": "Missing currency", "IPAY0100022": "Invalid currency",
    "IPAY0100023": "Missing amount", "IPAY0100024": "Invalid amount",
    "IPAY0100025": "Invalid amount or currency", "IPAY0100026": "Invalid language ID",
    "IPAY0100027": "Invalid track id",
    **{f"IPAY01000{27 + n}": f"Invalid user defined field{n}" for n in range(1, 6)},
    "IPAY0100033": "Terminal action not enabled", "IPAY0100038": "Unable to process the request",
    "IPAY0100042": "Transaction time limit exceeds", "IPAY0100050": "Invalid terminal key",
    "IPAY0100055": "Invalid Payment Status", "IPAY0100114": "Duplicate record",
    "IPAY0100176": "Decrypting transaction data failed", "IPAY0100249": "Merchant response URL is down",
    "IPAY0100263": "Transaction not found.",
}
TRACK_ID = re.compile(r"^[A-Za-z0-9]{1,40}$")
AMOUNT = re.compile(r"^\d{1,6}\.\d{3}$")
PAYMENT_ID = re.compile(r"^\d{1,30}$")
HEX = re.compile(r"^(?:[0-9A-Fa-f]{32})+$")
MAX_XML_CHARS = 16 * 1024
# KNET-only controls, beside the engine's: the facts providers.md could not confirm.
EXTRA_KEY = "extra_control"
EXTRA_DEFAULTS: dict[str, Any] = {
    "approve_expiry": None,  # "MM/YYYY": the manual's rule (09/2021); None: card + PIN decide
    "error_url_method": "GET",  # how the browser reaches errorURL: "GET" (redirect) or "POST" (form)
    "multiple_partial_refunds": True,  # several partial refunds of one payment through action 2
}

SettingsParam = NamedDependency[SkipValidation[Settings]]  # injected by the router, not parsed


class KnetError(Exception):
    """A request KNET refuses with an IPAY code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"{code} {ERRORS.get(code, '')}")
        self.code = code


# -- the terminal's crypto: AES-128-CBC, key = IV = resource key, PKCS#7, hex ----------------------

def _key(settings: Settings) -> bytes:
    key = settings.provider_value("KNET_RESOURCE_KEY").encode("ascii", "replace")
    if len(key) != 16:
        raise KnetError("IPAY0100050")
    return key


def encrypt(plaintext: str, key: bytes) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key)).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex()


def decrypt(trandata: str, key: bytes) -> str:
    """Raises KnetError IPAY0100176 (does not decrypt) or IPAY0100013 (not a parameter string)."""
    if not HEX.match(trandata):
        raise KnetError("IPAY0100176")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key)).decryptor()
    data = decryptor.update(bytes.fromhex(trandata)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise KnetError("IPAY0100176") from None
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        raise KnetError("IPAY0100013") from None
    if any(ch < " " or ch == "\x7f" for ch in text):
        raise KnetError("IPAY0100013")
    return text


def parse_request_plaintext(text: str) -> dict[str, str]:
    """`id=..&password=..&...`: values unencoded, as KNET's kit sends them. Raises KnetError."""
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        if not pair:
            continue  # one integration appends a trailing &
        name, sep, value = pair.partition("=")
        if not sep or not name or name in fields:
            raise KnetError("IPAY0100013")
        fields[name] = value
    return fields


# -- checks -----------------------------------------------------------------------------------------

def _valid_url(value: str) -> bool:
    """http(s), a host, no query string (KNET refuses one on responseURL and errorURL)."""
    parts = urlsplit(value)
    return (parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query
            and not parts.fragment and len(value) <= 1024 and not any(ch.isspace() for ch in value))


def validate_init(fields: Mapping[str, str], tranportal_id: str, settings: Settings) -> None:
    """KNET's checks of a payment initialisation, in its order. Raises KnetError."""
    if fields.get("id") != tranportal_id:
        raise KnetError("IPAY0100014")
    if not engine.secrets_equal(fields.get("password", ""), settings.provider_value("KNET_TRANPORTAL_PASSWORD")):
        raise KnetError("IPAY0100015")
    action = fields.get("action", "")
    if action == "4":
        raise KnetError("IPAY0100033")  # pre-authorisation: not enabled on the sandbox terminal
    if action != "1":
        raise KnetError("IPAY0100020")
    if not fields.get("currencycode"):
        raise KnetError("IPAY0100021")
    if fields["currencycode"] != "414":
        raise KnetError("IPAY0100022")
    amount = fields.get("amt", "")
    if not amount:
        raise KnetError("IPAY0100023")
    if not AMOUNT.match(amount) or parse_kwd(amount) <= 0:
        raise KnetError("IPAY0100024")
    if fields.get("langid") not in LANGUAGE_OF:
        raise KnetError("IPAY0100026")
    if not fields.get("responseURL"):
        raise KnetError("IPAY0100003")
    if not _valid_url(fields["responseURL"]):
        raise KnetError("IPAY0100004")
    if not fields.get("errorURL"):
        raise KnetError("IPAY0100001")
    if not _valid_url(fields["errorURL"]):
        raise KnetError("IPAY0100002")
    if not TRACK_ID.match(fields.get("trackid", "")):
        raise KnetError("IPAY0100027")
    for n in range(1, 6):
        value = fields.get(f"udf{n}", "")
        if len(value) > 255 or any(ch in value for ch in "@/\r\n"):
            raise KnetError(f"IPAY01000{27 + n}")


# -- XML of tranPipe.htm --------------------------------------------------------------------------

def parse_pipe_request(raw: bytes) -> dict[str, str]:
    """Root-less elements, or the same wrapped in `<request>`. Refuses declarations (no entity
    expansion) and oversized bodies. Raises KnetError IPAY0100013."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KnetError("IPAY0100013") from None
    if text.startswith("<?xml") and "?>" in text:
        text = text[text.find("?>") + 2:]
    if len(text) > MAX_XML_CHARS or "<!" in text:
        raise KnetError("IPAY0100013")
    try:
        root = ET.fromstring(f"<knet>{text}</knet>")
    except ET.ParseError:
        raise KnetError("IPAY0100013") from None
    elements = list(root)
    if len(elements) == 1 and len(elements[0]):
        elements = list(elements[0])
    fields: dict[str, str] = {}
    for element in elements:
        if len(element):
            raise KnetError("IPAY0100013")
        fields.setdefault(element.tag.lower(), (element.text or "").strip())
    return fields


def xml_answer(pairs: list[tuple[str, str]]) -> Response:
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in pairs)
    return Response(content=body.encode(), status_code=200, media_type="text/xml")


def xml_error(code: str) -> Response:
    """KNET's error answer: `<result>!ERROR!-IPAY...-text</result><error_code_tag>..`."""
    return xml_answer([("result", f"!ERROR!-{code}-{ERRORS.get(code, 'Error')}"),
                       ("error_code_tag", code), ("error_service_tag", "null")])


# -- transactions -----------------------------------------------------------------------------------

def new_payment_id(now: float) -> str:
    """18 digits, `100` + year + 11 digits, like `100202331234567890`."""
    return f"100{datetime.fromtimestamp(now, timezone.utc).year}{engine.random_digits(11)}"


def _fingerprint(fields: Mapping[str, str]) -> list[str]:
    """What makes two initialisations with one track id the same request (a resumed page)."""
    return [fields.get(name, "") for name in ("action", "amt", "langid", "responseURL", "errorURL",
                                              "udf1", "udf2", "udf3", "udf4", "udf5")]


def _new_transaction(fields: Mapping[str, str], payment_id: str, now: float) -> dict[str, Any]:
    return {
        "paymentid": payment_id, "trackid": fields["trackid"], "amt": fields["amt"],
        "amount_fils": parse_kwd(fields["amt"]), "langid": fields["langid"],
        "responseURL": fields["responseURL"], "errorURL": fields["errorURL"],
        **{f"udf{n}": fields.get(f"udf{n}", "") for n in range(1, 6)},
        "fingerprint": _fingerprint(fields), "created_at": now, "status": OPEN, "result": None,
        "tranid": "", "ref": "", "auth": "", "postdate": "", "authRespCode": "", "error": None,
        "notification": None, "refunds": [],
    }


def response_plaintext(txn: Mapping[str, Any]) -> str:
    """The result string KNET encrypts (providers.md §5.4/5.5), values form-encoded
    (`result=NOT+CAPTURED`)."""
    pairs = [
        ("paymentid", txn["paymentid"]), ("result", txn["result"]), ("auth", txn["auth"]), ("avr", "N"),
        ("ref", txn["ref"]), ("tranid", txn["tranid"]), ("postdate", txn["postdate"]), ("trackid", txn["trackid"]),
        *((f"udf{n}", txn[f"udf{n}"]) for n in range(1, 6)), ("amt", txn["amt"]),
    ]
    if txn.get("authRespCode"):
        pairs.append(("authRespCode", txn["authRespCode"]))
    return "&".join(f"{name}={quote_plus(str(value or ''))}" for name, value in pairs)


def notification(txn: Mapping[str, Any], key: bytes) -> Webhook:
    """The server-to-server POST to responseURL: encrypted result plus clear ids."""
    body = urlencode([("paymentid", txn["paymentid"]), ("trackid", txn["trackid"]),
                      ("trandata", encrypt(response_plaintext(txn), key))]).encode()
    return Webhook(event_id=f"{txn['paymentid']}:{txn['result']}", event_type=f"notification {txn['result']}",
                   body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})


def redirect_target(response: Any) -> str | None:
    """The merchant's reply must be 200 with a first line `REDIRECT=<http(s) URL>`."""
    if response is None or response.status_code != 200:
        return None
    lines = response.text.strip().splitlines()
    if not lines or not lines[0].startswith("REDIRECT="):
        return None
    url = lines[0][len("REDIRECT="):].strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(ch.isspace() for ch in url):
        return None
    return url


def _expired(txn: Mapping[str, Any], controls: Mapping[str, Any], now: float) -> bool:
    return txn["status"] == OPEN and knet_page.is_expired(float(txn["created_at"]), now, float(controls["expire_after_s"]))


async def get_extra_controls() -> dict[str, Any]:
    return {**EXTRA_DEFAULTS, **(await store.get(EXTRA_KEY) or {})}


def validate_extra_controls(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Raises engine.ControlError."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "approve_expiry":
            month, _, year = str(value or "").partition("/")
            if value is not None and (month not in knet_page.EXPIRY_MONTHS or year not in knet_page.EXPIRY_YEARS):
                raise engine.ControlError("approve_expiry must be MM/YYYY (a year the page offers) or null")
        elif name == "error_url_method" and value not in ("GET", "POST"):
            raise engine.ControlError("error_url_method must be GET or POST")
        elif name == "multiple_partial_refunds" and not isinstance(value, bool):
            raise engine.ControlError("multiple_partial_refunds must be true or false")
        clean[name] = value
    return clean


def base_url(settings: Settings) -> str:
    return f"{settings.public_url}/sandbox{MOUNT_PATH}"


def page_path(payment_id: str) -> str:
    return f"/sandbox{MOUNT_PATH}/kpg/paymentpage.htm?PaymentID={payment_id}"


def _to_page(settings: Settings, payment_id: str) -> Response:
    """KNET answers the initialisation by sending the browser on to its page for this PaymentID."""
    location = f"{base_url(settings)}/kpg/paymentpage.htm?PaymentID={payment_id}"
    return Response(content=b"", status_code=303, media_type="text/plain", headers={"Location": location})


def _error_fields(code: str, txn: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    fields = [("Error", code), ("ErrorText", ERRORS.get(code, "Error"))]
    if txn:
        fields += [("paymentid", str(txn.get("paymentid") or "")), ("trackid", str(txn.get("trackid") or "")),
                   ("amt", str(txn.get("amt") or ""))]
    return [(k, v) for k, v in fields if v]


def _to_error_url(error_url: str, fields: list[tuple[str, str]], method: str, language: str) -> Response:
    """The browser to errorURL with the error in clear: a redirect (GET) or a posted form."""
    if method == "POST":
        return Template(POST_TEMPLATE, context={
            "action": error_url, "fields": fields, "language": language,
            "direction": "rtl" if language == "ar" else "ltr", "t": knet_page.TEXTS[language],
        }, status_code=200)
    return Response(content=b"", status_code=303, media_type="text/plain",
                    headers={"Location": f"{error_url}?{urlencode(fields)}"})


def _error_page(language: str = "en") -> Response:
    return knet_page.render_message(language, "not_found", 400)


# -- the hosted page's backend --------------------------------------------------------------------

class KnetPage:
    """Runs the shared KNET page over tranportal transactions (the token is KNET's PaymentID)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def expire_after_s(self) -> float:
        return float((await engine.get_controls(store))["expire_after_s"])

    async def land(self, token: str, now: float) -> PageState | None:
        txn = await store.get(f"txn:{token}") if PAYMENT_ID.match(token) else None
        if txn is None:
            return None
        view = PageView(language=LANGUAGE_OF.get(txn["langid"], "en"), merchant_name=MERCHANT_NAME,
                        amount_fils=int(txn["amount_fils"]), reference=txn["trackid"], action_url=page_path(token))
        # The window counts from the initialisation: KNET's page opens there and then.
        return PageState(view=view, open=txn["status"] == OPEN, started_at=float(txn["created_at"]))

    async def finish(self, token: str, outcome: Outcome, receipt: KnetReceipt | None, now: float) -> str | None:
        """Decide once; then notify the merchant and follow its REDIRECT (or void and error)."""
        controls = await engine.get_controls(store)
        key = _key(self.settings)
        async with store.locked(f"txn:{token}") as record:
            if record is None or record.data["status"] != OPEN:
                return None  # decided already: a double submit must not decide twice
            txn = record.data
            if outcome is Outcome.EXPIRED or receipt is None:
                txn.update(status=EXPIRED, error="IPAY0100042")
                hooks: list[Webhook] = []
            else:
                result = OUTCOME_RESULT[outcome]
                txn.update(
                    status=DECIDED, result=result, decided_at=now,
                    tranid=receipt.transaction_id or "", ref=receipt.bank_reference or "",
                    auth=receipt.auth_code or "", postdate=receipt.post_date or "",
                    authRespCode=AUTH_RESPONSE_CODE.get(result, ""),
                )
                hooks = [notification(txn, key)]
                for name in ("tranid", "ref"):
                    if txn[name]:
                        await store.put("index", f"{name}:{txn[name]}", {"paymentid": token})
                await engine.record_webhooks(store, token, hooks)
            snapshot = dict(txn)
        if not hooks:
            return await self._error_location(snapshot, "IPAY0100042")
        target = await self._notify(snapshot, hooks[0], controls)
        async with store.locked(f"txn:{token}") as record:
            assert record is not None
            record.data["notification"] = {"redirect": target, "at": engine.now_ts()}
            if target is None:
                # No acknowledgement: KNET reverses the payment and shows the customer an error.
                if record.data["result"] == "CAPTURED":
                    record.data.update(status=VOIDED, result="VOIDED")
                record.data["error"] = "IPAY0100249"
            snapshot = dict(record.data)
        return target or await self._error_location(snapshot, "IPAY0100249")

    async def _notify(self, txn: Mapping[str, Any], hook: Webhook, controls: Mapping[str, Any]) -> str | None:
        url = str(controls.get("webhook_url") or txn["responseURL"])
        mode = controls["webhooks"]
        if mode == "drop":
            return None
        if mode == "delay":
            await asyncio.sleep(float(controls["webhook_delay_ms"]) / 1000)
        copies = max(1, int(controls["duplicate_count"])) if mode == "duplicate" else 1
        target = None
        for copy in range(1, copies + 1):
            answer = await engine.post_once(store, url, hook, controls, copy=copy)
            target = target or redirect_target(answer)
        return target

    async def _error_location(self, txn: Mapping[str, Any], code: str) -> str:
        extras = await get_extra_controls()
        if extras["error_url_method"] == "POST":
            return f"{base_url(self.settings)}/kpg/result.htm?PaymentID={txn['paymentid']}"
        return f"{txn['errorURL']}?{urlencode(_error_fields(code, txn))}"


# -- route handlers -----------------------------------------------------------------------------------

async def _params(request: Request) -> dict[str, str]:
    params = {k: v for k, v in request.query_params.items()}
    if request.method == "POST":
        form = await request.form()
        params.update({k: v for k, v in form.items() if isinstance(v, str)})
    return params


async def _initialise(settings: Settings, params: Mapping[str, str]) -> Response:
    now = engine.now_ts()
    extras = await get_extra_controls()
    method = extras["error_url_method"]
    clear_error_url = params.get("errorURL", "")
    fields: dict[str, str] = {}

    def refuse(code: str, txn: Mapping[str, Any] | None = None) -> Response:
        error_url = fields.get("errorURL") if _valid_url(fields.get("errorURL", "")) else clear_error_url
        if not _valid_url(error_url or ""):
            return _error_page(LANGUAGE_OF.get(fields.get("langid", ""), "en"))
        known = txn or ({"trackid": fields.get("trackid"), "amt": fields.get("amt")} if fields else None)
        return _to_error_url(error_url, _error_fields(code, known), method, LANGUAGE_OF.get(fields.get("langid", ""), "en"))

    if params.get("param") != "paymentInit":
        return refuse("IPAY0100038")
    tranportal_id = params.get("tranportalId", "")
    if not tranportal_id:
        return refuse("IPAY0100005")
    if tranportal_id != settings.provider_value("KNET_TRANPORTAL_ID"):
        return refuse("IPAY0100006")
    if not params.get("trandata"):
        return refuse("IPAY0100007")
    try:
        fields = parse_request_plaintext(decrypt(params["trandata"].strip(), _key(settings)))
        validate_init(fields, tranportal_id, settings)
    except KnetError as exc:
        return refuse(exc.code)
    track_id = fields["trackid"]
    controls = await engine.get_controls(store)
    async with store.locked(f"track:{track_id}", kind="track", create={"paymentid": None, "inits": 0}) as index:
        assert index is not None
        index.data["inits"] = int(index.data.get("inits", 0)) + 1
        payment_id = index.data.get("paymentid")
        if payment_id is None:
            payment_id = new_payment_id(now)
            index.data["paymentid"] = payment_id
            await store.put("transaction", f"txn:{payment_id}", _new_transaction(fields, payment_id, now))
            return _to_page(settings, payment_id)
    # The same track id again: the same page if it is the same, still open request (a resumed
    # page); otherwise KNET refuses a second initialisation of one track id.
    async with store.locked(f"txn:{payment_id}") as record:
        assert record is not None
        txn = record.data
        if _expired(txn, controls, now):
            txn.update(status=EXPIRED, error="IPAY0100042")
        snapshot = dict(txn)
    if snapshot["status"] == OPEN and snapshot["fingerprint"] == _fingerprint(fields):
        return _to_page(settings, payment_id)
    return refuse("IPAY0100042" if snapshot["status"] == EXPIRED else "IPAY0100114", snapshot)


@route("/kpg/PaymentHTTP.htm", http_method=["GET", "POST"], exclude_from_csrf=True, status_code=303)
async def payment_http(request: Request, settings: SettingsParam) -> Response:
    """`?param=paymentInit&trandata=<hex>&tranportalId=<id>&responseURL=..&errorURL=..`"""
    params = await _params(request)
    controls = await engine.get_controls(store)
    fault = await engine.take_fault(store, "init")
    return await engine.with_fault(fault, controls, lambda: _initialise(settings, params))


@get("/kpg/paymentpage.htm", exclude_from_csrf=True)
async def payment_page(
    settings: SettingsParam,
    payment_id: Annotated[str, QueryParameter(name="PaymentID", max_length=30)] = "",
    language: Annotated[str | None, QueryParameter(name="language", max_length=5)] = None,
) -> Response:
    return await knet_page.show_page(KnetPage(settings), payment_id, language)


@post("/kpg/paymentpage.htm", status_code=303, exclude_from_csrf=True)
async def payment_page_submit(
    request: Request, settings: SettingsParam,
    payment_id: Annotated[str, QueryParameter(name="PaymentID", max_length=30)] = "",
) -> Response:
    form = await request.form()
    # Read into plain strings and passed straight to the decision: never stored or logged.
    fields = {name: str(form.get(name, "")) for name in
              ("bank", "card_number", "expiry_month", "expiry_year", "pin", "action", "language")}
    extras = await get_extra_controls()
    return await knet_page.submit_page(KnetPage(settings), payment_id, fields, approve_expiry=extras["approve_expiry"])


@get("/kpg/result.htm", exclude_from_csrf=True)
async def error_hand_off(
    payment_id: Annotated[str, QueryParameter(name="PaymentID", max_length=30)] = "",
) -> Response:
    """The browser's way to errorURL when it is reached by POST: a self-submitting form."""
    txn = await store.get(f"txn:{payment_id}") if PAYMENT_ID.match(payment_id) else None
    if txn is None or not txn.get("error"):
        return _error_page()
    return _to_error_url(txn["errorURL"], _error_fields(txn["error"], txn), "POST",
                         LANGUAGE_OF.get(txn["langid"], "en"))


async def _find(fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The transaction `transid` names, as `udf5` says how to read it."""
    mode = INQUIRY_MODES.get(fields.get("udf5", "").lower())
    if mode is None:
        raise KnetError("IPAY0100032")
    transid = fields.get("transid", "")
    if mode == "trackid":
        if transid != fields.get("trackid"):
            raise KnetError("IPAY0100027")  # by track id, transid and trackid must be equal
        index = await store.get(f"track:{transid}") if TRACK_ID.match(transid) else None
        payment_id = (index or {}).get("paymentid")
    elif mode == "paymentid":
        payment_id = transid
    else:
        index = await store.get(f"{mode}:{transid}") if PAYMENT_ID.match(transid) else None
        payment_id = (index or {}).get("paymentid")
    if not payment_id or not PAYMENT_ID.match(str(payment_id)):
        return None
    return await store.get(f"txn:{payment_id}")


def _inquiry_answer(txn: Mapping[str, Any], udf5: str) -> Response:
    """Root-less, with `payid` (not `paymentid`), as KNET answers action 8."""
    pairs = [("result", txn["result"]), ("auth", txn["auth"]), ("ref", txn["ref"]), ("avr", "N"),
             ("postdate", txn["postdate"]), ("tranid", txn["tranid"]), ("trackid", txn["trackid"]),
             ("payid", txn["paymentid"]), *((f"udf{n}", txn[f"udf{n}"]) for n in range(1, 5)),
             ("udf5", udf5), ("amt", txn["amt"])]
    if txn.get("authRespCode"):
        pairs.append(("authRespCode", txn["authRespCode"]))
    return xml_answer(pairs)


async def _inquiry(fields: Mapping[str, str], controls: Mapping[str, Any]) -> Response:
    txn = await _find(fields)
    if txn is None:
        return xml_error("IPAY0100263")
    if txn["amt"] != fields.get("amt"):
        return xml_error("IPAY0100025")  # amt must be the original transaction's
    if _expired(txn, controls, engine.now_ts()):
        async with store.locked(f"txn:{txn['paymentid']}") as record:
            assert record is not None
            if record.data["status"] == OPEN:
                record.data.update(status=EXPIRED, error="IPAY0100042")
            txn = dict(record.data)
    if txn["status"] == EXPIRED:
        return xml_error("IPAY0100042")
    if txn["status"] == OPEN:
        return xml_error("IPAY0100263")  # no result yet: the customer is still on the page
    return _inquiry_answer(txn, fields.get("udf5", ""))


async def _refund(fields: Mapping[str, str], controls: Mapping[str, Any]) -> Response:
    """Real time, full or partial, against what is left of a captured payment."""
    found = await _find(fields)
    if found is None:
        return xml_error("IPAY0100263")
    extras = await get_extra_controls()
    amount = parse_kwd(fields["amt"])
    now = engine.now_ts()
    async with store.locked(f"txn:{found['paymentid']}") as record:
        assert record is not None
        txn = record.data
        approved = [r for r in txn["refunds"] if r["result"] == "CAPTURED"]
        if txn["result"] != "CAPTURED" or (approved and not extras["multiple_partial_refunds"]):
            return xml_error("IPAY0100055")
        if amount > int(txn["amount_fils"]) - sum(int(r["amount_fils"]) for r in approved):
            return xml_error("IPAY0100024")
        result = "CAPTURED" if controls["refunds"] == "approve" else "NOT CAPTURED"
        refund = {"payid": new_payment_id(now), "tranid": engine.random_digits(15), "amount_fils": amount,
                  "amt": fields["amt"], "result": result, "at": now,
                  "postdate": datetime.fromtimestamp(now, knet_page.KUWAIT_TIME).strftime("%m%d")}
        txn["refunds"] = [*txn["refunds"], refund]
    return xml_answer([("result", result), ("payid", refund["payid"]), ("trackid", txn["trackid"]),
                       ("udf1", txn["udf1"]), ("udf5", fields.get("udf5", "")), ("ref", ""), ("auth", ""),
                       ("postdate", refund["postdate"]), ("tranid", refund["tranid"]), ("amt", refund["amt"])])


async def _tran_pipe(settings: Settings, raw: bytes, param: str | None) -> Response:
    try:
        if param != "tranInit":
            raise KnetError("IPAY0100038")
        fields = parse_pipe_request(raw)
        if not fields.get("id"):
            raise KnetError("IPAY0100005")
        if fields["id"] != settings.provider_value("KNET_TRANPORTAL_ID"):
            raise KnetError("IPAY0100006")
        if not engine.secrets_equal(fields.get("password", ""), settings.provider_value("KNET_TRANPORTAL_PASSWORD")):
            raise KnetError("IPAY0100015")
        action = fields.get("action", "")
        if action not in ("2", "8"):
            raise KnetError("IPAY0100020")
        if fields.get("currencycode") not in (None, "414"):
            raise KnetError("IPAY0100022")
        if not AMOUNT.match(fields.get("amt", "")) or parse_kwd(fields["amt"]) <= 0:
            raise KnetError("IPAY0100024")
    except KnetError as exc:
        return xml_error(exc.code)
    operation = "inquiry" if action == "8" else "refund"
    controls = await engine.get_controls(store)
    fault = await engine.take_fault(store, operation)

    async def work() -> Response:
        try:
            return await (_inquiry(fields, controls) if action == "8" else _refund(fields, controls))
        except KnetError as exc:
            return xml_error(exc.code)

    return await engine.with_fault(fault, controls, work)


@post("/kpg/tranPipe.htm", status_code=200, exclude_from_csrf=True)
async def tran_pipe(request: Request, settings: SettingsParam) -> Response:
    """`?param=tranInit`, XML body: action 8 (inquiry) or 2 (refund)."""
    return await _tran_pipe(settings, await request.body(), request.query_params.get("param"))


# -- test controls (the sandbox only; production never mounts it) ------------------------------

async def _all_controls() -> dict[str, Any]:
    return {**await engine.get_controls(store), **await get_extra_controls()}


@get("/_control", exclude_from_csrf=True)
async def read_controls() -> Response:
    return engine.json_response(await _all_controls(), 200)


@post("/_control", status_code=200, exclude_from_csrf=True)
async def change_controls(request: Request) -> Response:
    try:
        body = await engine.read_json_object(request)
        extras = validate_extra_controls({k: body.pop(k) for k in list(body) if k in EXTRA_DEFAULTS})
        engine.validate_controls(body, OPERATIONS)  # all or nothing: check both before writing
        await engine.update_controls(store, body, OPERATIONS)
        if extras:
            async with store.locked(EXTRA_KEY, kind="control", create={}) as record:
                assert record is not None
                record.data.update(extras)
    except engine.BadJson:
        return engine.json_response({"error": "body is not a JSON object"}, 400)
    except engine.ControlError as exc:
        return engine.json_response({"error": str(exc)}, 422)
    return engine.json_response(await _all_controls(), 200)


@delete("/_control", status_code=200, exclude_from_csrf=True)
async def reset_controls() -> Response:
    await store.delete(EXTRA_KEY)
    await engine.reset_controls(store)
    return engine.json_response(await _all_controls(), 200)


@get("/_stats", exclude_from_csrf=True)
async def stats() -> Response:
    transactions = [data for _, data in await store.records("transaction")]
    return engine.json_response({
        "transactions": len(transactions),
        "inits_by_track_id": {key.removeprefix("track:"): int(data.get("inits", 0))
                              for key, data in await store.records("track")},
        "refunds": sum(len(t.get("refunds", [])) for t in transactions),
        "webhook_deliveries": await engine.delivery_log(store),
        "events": await engine.list_events(store),
    }, 200)


@get("/_transactions/{reference:str}", exclude_from_csrf=True)
async def transaction(reference: FromPath[str]) -> Response:
    """One transaction by payment id or track id, as the sandbox keeps it (no card data kept)."""
    if TRACK_ID.match(reference) and not PAYMENT_ID.match(reference):
        reference = str((await store.get(f"track:{reference}") or {}).get("paymentid") or "")
    txn = await store.get(f"txn:{reference}") if PAYMENT_ID.match(reference) else None
    if txn is None:
        return engine.empty_response(404)
    return engine.json_response(txn, 200)


@post("/_webhooks/replay/{reference:str}", status_code=202, exclude_from_csrf=True)
async def replay_webhooks(reference: FromPath[str]) -> Response:
    """Send a transaction's notification again, same bytes (late, duplicate or out of order)."""
    if TRACK_ID.match(reference) and not PAYMENT_ID.match(reference):
        reference = str((await store.get(f"track:{reference}") or {}).get("paymentid") or "")
    txn = await store.get(f"txn:{reference}") if PAYMENT_ID.match(reference) else None
    if txn is None:
        return engine.empty_response(404)
    controls = await engine.get_controls(store)
    webhooks = await engine.load_webhooks(store, reference)
    url = str(controls.get("webhook_url") or txn["responseURL"])
    engine.dispatch(store, url, webhooks, controls, honour_mode=False)
    return engine.json_response({"paymentid": reference, "events": [w.event_id for w in webhooks]}, 202)


def create_router(settings: Settings) -> Router:
    """The KNET tranportal sandbox, mounted at /sandbox/knet."""
    return Router(
        path=MOUNT_PATH,
        route_handlers=[
            payment_http, payment_page, payment_page_submit, error_hand_off, tran_pipe,
            read_controls, change_controls, reset_controls, stats, transaction, replay_webhooks,
        ],
        dependencies={"settings": Provide(lambda: settings, sync_to_thread=False)},
        include_in_schema=False,
    )
