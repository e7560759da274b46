"""KNET directly through the merchant's bank: the tranportal's RAW integration (providers.md §5).

No API call starts a payment: the request travels AES-encrypted in the browser's URL
(`trandata`). KNET answers server to server with an encrypted notification to `responseURL`,
which must be answered with one line, `REDIRECT=<receipt URL>`; inquiry (action 8) and refund
(action 2) are root-less XML posted to `tranPipe.htm`.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import ClassVar, Mapping
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from shop.money import CURRENCY, CURRENCY_NUMERIC, fils_to_str, parse_kwd
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
    WebhookReply,
)
from shop.payments.providers.http import call_text
from shop.payments.states import PaymentStatus as P

ACTION_PURCHASE, ACTION_REFUND, ACTION_INQUIRY = "1", "2", "8"
LANGUAGE_IDS = {"en": "USA", "ar": "AR"}  # the RAW kit insists on USA/AR, not EN/AR
# Purchase results (notification) and inquiry results share one table (providers.md §5.6).
RESULT_STATUS: dict[str, P] = {
    "CAPTURED": P.CAPTURED, "SUCCESS": P.CAPTURED,
    "NOT CAPTURED": P.DECLINED, "DENIED BY RISK": P.DECLINED,
    "CANCELED": P.CANCELLED, "CANCELLED": P.CANCELLED,
    "VOIDED": P.CANCELLED,  # reversed, e.g. after our notification answer failed
    "HOST TIMEOUT": P.PENDING, "SUSPECTED": P.PENDING,  # undecided: inquiry decides later
    "FAILURE": P.FAILED,
}
# Inquiry errors that are an answer about the payment, not about our request.
ERROR_STATUS: dict[str, P] = {
    "IPAY0100042": P.EXPIRED,  # transaction time limit exceeded on the payment page
    "IPAY0100045": P.DECLINED,  # denied by risk
    "IPAY0100048": P.CANCELLED,
}
# "Not found" (yet): the customer never reached the page, or is still on it.
UNKNOWN_TRANSACTION = frozenset({"IPAY0100263", "IPAY0100054"})
TRACK_ID = re.compile(r"^[A-Za-z0-9]{1,40}$")
AMOUNT = re.compile(r"^\d{1,6}\.\d{3}$")  # KNET's amt: at most 10 characters, always 3 decimals
DIGITS = re.compile(r"^\d{1,30}$")
HEX = re.compile(r"^(?:[0-9A-Fa-f]{32})+$")
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}$")
IPAY_CODE = re.compile(r"IPAY\d{7}")
UDF_DROP = re.compile(r"[^A-Za-z0-9 ]")  # no & = @ / CR LF: KNET's kit does not encode values
MAX_TRANDATA_HEX = 8192
MAX_NOTIFICATION_BYTES = 16 * 1024
MAX_XML_CHARS = 64 * 1024


class KnetAnswerError(ValueError):
    """A tranPipe answer that is not KNET's XML fragment."""


# -- trandata: AES-128-CBC, key = IV = the terminal resource key, PKCS#7, hex (providers.md §5.4) --

def resource_key(text: str) -> bytes:
    """The terminal resource key as AES key and IV. Raises ValueError unless it is 16 ASCII bytes."""
    key = text.encode("ascii")
    if len(key) != 16:
        raise ValueError("the terminal resource key must be 16 characters (AES-128, key = IV)")
    return key


def encrypt_trandata(plaintext: str, key: bytes) -> str:
    """Lower-case hex, as KNET's PHP kit sends it."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key)).encryptor()
    return (encryptor.update(padded) + encryptor.finalize()).hex()


def decrypt_trandata(trandata: str, key: bytes) -> str:
    """The plain parameter string. Hex of either case. Raises BadSignature for anything that does
    not decrypt to printable ASCII under this key with valid padding (CBC has no MAC: padding and
    a plausible plaintext are what prove the key, as KNET's kit relies on)."""
    text = trandata.strip()
    if len(text) > MAX_TRANDATA_HEX or not HEX.match(text):
        raise BadSignature("trandata is not hex whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key)).decryptor()
    padded = decryptor.update(bytes.fromhex(text)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        decoded = plain.decode("ascii")
    except ValueError as exc:  # bad padding or non-ASCII bytes: another key, or tampered
        raise BadSignature("trandata does not decrypt under the resource key") from exc
    if not decoded or any(not (" " <= ch <= "~") for ch in decoded):
        raise BadSignature("trandata does not decrypt to KNET's parameter string")
    return decoded


def parse_response_fields(plaintext: str) -> dict[str, str]:
    """`paymentid=...&result=NOT+CAPTURED&...` (form-encoded values) as a dict.

    Raises BadSignature for a malformed string, repeated or odd names, or missing essentials."""
    try:
        pairs = parse_qsl(plaintext, keep_blank_values=True, strict_parsing=True, max_num_fields=60)
    except ValueError as exc:
        raise BadSignature("decrypted trandata is not KNET's parameter string") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if not FIELD_NAME.match(name) or name in fields:
            raise BadSignature(f"unexpected field {name[:40]!r} in trandata")
        fields[name] = value
    if not DIGITS.match(fields.get("paymentid", "")):
        raise BadSignature("trandata carries no payment id")
    if not fields.get("result", "").strip():
        raise BadSignature("trandata carries no result")
    if not TRACK_ID.match(fields.get("trackid", "")):
        raise BadSignature("trandata carries no valid track id")
    if fields.get("amt") and not AMOUNT.match(fields["amt"]):
        raise BadSignature("trandata amount is not a 3-decimal amount")
    return fields


def amount_fils(text: str | None) -> int | None:
    """`10.500` -> 10500, exactly; None for anything that is not KNET's 3-decimal form."""
    if not text or not AMOUNT.match(text):
        return None
    return parse_kwd(text)


# -- tranPipe XML (providers.md §5.7) ------------------------------------------------------------

def xml_fragment(pairs: list[tuple[str, str]]) -> bytes:
    """Root-less elements in the given order, values escaped: `<id>..</id><password>..</password>...`."""
    return "".join(f"<{name}>{escape(value)}</{name}>" for name, value in pairs).encode("utf-8")


def parse_xml_fragment(text: str) -> dict[str, str]:
    """KNET's root-less answer as {lower-case tag: text}; a single wrapping element is looked into.

    Refuses DOCTYPE/ENTITY declarations (no entity expansion), CDATA, comments, nested data and
    oversized answers. Raises KnetAnswerError."""
    if len(text) > MAX_XML_CHARS:
        raise KnetAnswerError("answer too large")
    body = text.strip()
    if body.startswith("<?xml"):
        body = body[body.find("?>") + 2:] if "?>" in body else ""
    if "<!" in body:
        raise KnetAnswerError("declarations, comments and CDATA are not part of KNET's answer")
    try:
        root = ET.fromstring(f"<knet>{body}</knet>")
    except ET.ParseError as exc:
        raise KnetAnswerError(f"not XML: {exc}") from exc
    elements = list(root)
    if len(elements) == 1 and len(elements[0]):
        elements = list(elements[0])  # <response>...</response> or <request>...</request>
    fields: dict[str, str] = {}
    for element in elements:
        if len(element):
            raise KnetAnswerError("nested elements")
        fields.setdefault(element.tag.lower(), (element.text or "").strip())
    if not fields:
        raise KnetAnswerError("empty answer")
    return fields


def answer_error(fields: Mapping[str, str]) -> tuple[str, str] | None:
    """(IPAY code, text) of an error answer such as
    `<result>!ERROR!-IPAY0100263-Transaction not found.</result><error_code_tag>IPAY0100263</error_code_tag>`."""
    result = fields.get("result", "")
    text = fields.get("error_text", "") or (result if result.startswith("!ERROR!") else "")
    code = fields.get("error_code_tag", "")
    if not code and not text:
        return None
    found = IPAY_CODE.search(code) or IPAY_CODE.search(text)
    return (found.group(0) if found else code or "ERROR"), (text or code)


def _without_query(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


class KnetProvider(Provider):
    slug: ClassVar[str] = "knet"
    capabilities: ClassVar[Capabilities] = Capabilities(
        redirect="get",
        return_verification="AES-decrypted trandata where present, then inquiry (action 8)",
        webhook_verification="trandata decrypts (AES-128-CBC, PKCS#7) under the terminal resource key",
        inquiry=True, refunds=True, partial_refunds=True,
        expiry_seconds=7 * 60,  # the page's time limit (IPAY0100042), taken as 7 minutes [inferred]
    )

    # -- settings ---------------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return self.settings.provider_value("KNET_GATEWAY_URL")

    @property
    def tranportal_id(self) -> str:
        return self.settings.provider_value("KNET_TRANPORTAL_ID")

    def missing_credentials(self) -> list[str]:
        names = ["KNET_GATEWAY_URL", "KNET_TRANPORTAL_ID", "KNET_TRANPORTAL_PASSWORD", "KNET_RESOURCE_KEY"]
        return [f"SHOP_{n}" for n in names if not self.settings.provider_value(n)]

    def _key(self) -> bytes:
        try:
            return resource_key(self.settings.provider_value("KNET_RESOURCE_KEY"))
        except ValueError as exc:
            raise ProviderRejected(f"SHOP_KNET_RESOURCE_KEY: {exc}") from exc

    # -- starting a payment: no HTTP call, an encrypted URL ---------------------------------------

    def trandata_plaintext(self, request: PaymentRequest) -> str:
        """The parameter string of providers.md §5.3, in KNET's kit order. Raises ProviderRejected."""
        if request.currency != CURRENCY or request.amount_fils <= 0:
            raise ProviderRejected(f"KNET takes positive {CURRENCY} amounts only")
        amount = fils_to_str(request.amount_fils)
        if len(amount) > 10:
            raise ProviderRejected("KNET's amt allows at most 10 characters")
        if not TRACK_ID.match(request.merchant_reference):
            raise ProviderRejected("KNET track ids are 1-40 letters and digits")
        pairs = [
            ("id", self.tranportal_id),
            ("password", self.settings.provider_value("KNET_TRANPORTAL_PASSWORD")),
            ("action", ACTION_PURCHASE),
            ("langid", LANGUAGE_IDS.get(request.language, "USA")),
            ("currencycode", CURRENCY_NUMERIC),
            ("amt", amount),
            ("responseURL", self.response_url(request)),
            ("errorURL", self.error_url(request)),
            ("trackid", request.merchant_reference),
            ("udf1", UDF_DROP.sub("", request.order_reference)[:255]),
            ("udf2", ""), ("udf3", ""), ("udf4", ""), ("udf5", ""),
        ]
        for name, value in pairs:
            # The kit joins values unencoded: an & or = would split the string differently.
            if any(ch in value for ch in "&=\r\n"):
                raise ProviderRejected(f"KNET cannot carry {name!r}: it contains & = or a line break")
        return "&".join(f"{name}={value}" for name, value in pairs)

    @staticmethod
    def response_url(request: PaymentRequest) -> str:
        """Where KNET posts the notification: our webhook endpoint (no query string, per KNET)."""
        return _without_query(request.webhook_url)

    @staticmethod
    def error_url(request: PaymentRequest) -> str:
        """Our return endpoint without its query: KNET refuses query strings here and appends
        `trackid`, `paymentid`, `Error`, `ErrorText` itself."""
        return _without_query(request.return_url)

    async def start_payment(self, request: PaymentRequest) -> StartedPayment:
        """Build the encrypted PaymentHTTP.htm URL. No network call. Raises ProviderRejected."""
        if self.missing_credentials():
            raise ProviderRejected("KNET is not configured: " + ", ".join(self.missing_credentials()))
        key = self._key()
        trandata = encrypt_trandata(self.trandata_plaintext(request), key)
        response_url, error_url = self.response_url(request), self.error_url(request)
        redirect = (
            f"{self.gateway_url}/kpg/PaymentHTTP.htm?param=paymentInit&trandata={trandata}"
            f"&tranportalId={quote(self.tranportal_id, safe='')}"
            f"&responseURL={quote(response_url, safe=':/')}&errorURL={quote(error_url, safe=':/')}"
        )
        raw = {"trackid": request.merchant_reference, "amt": fils_to_str(request.amount_fils),
               "langid": LANGUAGE_IDS.get(request.language, "USA"), "responseURL": response_url,
               "errorURL": error_url}
        return StartedPayment(provider_payment_id=None, redirect_url=redirect, raw=raw)

    # -- the notification (responseURL) and the browser's return ----------------------------------

    def observation_from_trandata(self, trandata: str, clear: Mapping[str, str]) -> Observation:
        """Decrypt and read a result. Raises BadSignature (wrong key, tampering, splicing)."""
        try:
            key = resource_key(self.settings.provider_value("KNET_RESOURCE_KEY"))
        except ValueError as exc:
            raise BadSignature("no usable resource key to decrypt with") from exc
        fields = parse_response_fields(decrypt_trandata(trandata, key))
        for name in ("paymentid", "trackid"):
            # The clear copies must be the encrypted ones: otherwise someone spliced the POST.
            if clear.get(name) and clear[name] != fields[name]:
                raise BadSignature(f"clear {name} differs from the encrypted one")
        result = fields["result"].strip().upper()
        payment_id, track_id = fields["paymentid"], fields["trackid"]
        error = clear.get("ErrorText") or clear.get("Error") or ""
        return Observation(
            status=RESULT_STATUS.get(result),
            provider_payment_id=payment_id,
            merchant_reference=track_id,
            amount_fils=amount_fils(fields.get("amt")),
            currency=None,  # not reported: the terminal settles in KWD (414) only
            receipt=KnetReceipt(
                payment_id=payment_id, transaction_id=fields.get("tranid", ""), auth_code=fields.get("auth", ""),
                bank_reference=fields.get("ref", ""), track_id=track_id, result=result,
                post_date=fields.get("postdate", ""),
            ),
            # One notification per transaction and result: a repeated POST is the same event.
            event_id=f"{payment_id}:{result}",
            event_type=f"notification {result}",
            failure_reason=error or result,
            # KNET requires keeping both the encrypted and the plain response.
            payload={"trandata": trandata, "plain": fields,
                     "clear": {k: v for k, v in clear.items() if k != "trandata"}},
        )

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """The tranportal's server-to-server POST to responseURL (form-encoded).

        With `trandata`: decrypt (any failure is BadSignature) and trust it. Without, an
        `Error` POST is an unsigned hint the shop confirms by inquiry. Never calls the network."""
        if len(body) > MAX_NOTIFICATION_BYTES:
            raise BadSignature("notification too large")
        try:
            pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=60)
        except ValueError as exc:
            raise BadSignature("notification is not a form-encoded body") from exc
        clear: dict[str, str] = {}
        for name, value in pairs:
            if name in clear:
                raise BadSignature(f"field {name[:40]!r} repeated")
            clear[name] = value
        if clear.get("trandata"):
            return [self.observation_from_trandata(clear["trandata"], clear)]
        if clear.get("Error") or clear.get("ErrorText"):
            track_id = clear.get("trackid", "")
            payment_id = clear.get("paymentid", "")
            return [Observation(
                status=None,
                provider_payment_id=payment_id if DIGITS.match(payment_id) else None,
                merchant_reference=track_id if TRACK_ID.match(track_id) else None,
                event_type=f"error {clear.get('Error', '')}".strip(),
                failure_reason=clear.get("ErrorText") or clear.get("Error", ""),
                payload=clear,
                trusted=False,
            )]
        raise BadSignature("notification carries no trandata")

    def webhook_reply(self, observations: list[Observation], public_url: str) -> WebhookReply:
        """One line, `REDIRECT=<receipt URL>`: KNET sends the customer there (anything else and
        KNET reverses the payment)."""
        track_id = next((o.merchant_reference for o in observations if o.merchant_reference), None)
        if track_id is None:
            return self.rejected_webhook_reply(public_url)
        return WebhookReply(status_code=200, media_type="text/plain",
                            body=f"REDIRECT={public_url}/payments/{self.slug}/return?ref={quote(track_id, safe='')}")

    def rejected_webhook_reply(self, public_url: str) -> WebhookReply:
        """Still a REDIRECT line (KNET needs one to move the customer on); nothing was applied."""
        return WebhookReply(status_code=200, media_type="text/plain",
                            body=f"REDIRECT={public_url}/payments/{self.slug}/return?error=notification")

    def parse_return(self, params: Mapping[str, str]) -> ReturnHint:
        """Our REDIRECT URL (`ref`), or KNET's errorURL visit (`trackid`, `Error`, `ErrorText`,
        `paymentid`, `amt` in clear: a hint only). A `trandata` (browser-carried result of older
        terminals) must decrypt: BadSignature otherwise."""
        verified = None
        if params.get("trandata"):
            verified = self.observation_from_trandata(params["trandata"], params)
        reference = params.get("ref") or params.get("trackid") or (verified.merchant_reference if verified else "")
        if verified is not None and reference != verified.merchant_reference:
            raise BadSignature("the return's reference is not the encrypted track id")
        payment_id = params.get("paymentid", "")
        return ReturnHint(
            provider_payment_id=payment_id if DIGITS.match(payment_id) else None,
            merchant_reference=reference if TRACK_ID.match(reference or "") else None,
            verified=verified,
            payload=dict(params),
        )

    # -- inquiry and refund: XML on tranPipe.htm ---------------------------------------------------

    def _pipe_body(self, action: str, amount: int, track_id: str) -> bytes:
        return xml_fragment([
            ("id", self.tranportal_id),
            ("password", self.settings.provider_value("KNET_TRANPORTAL_PASSWORD")),
            ("action", action),
            ("amt", fils_to_str(amount)),
            ("transid", track_id),  # with udf5=TrackID, transid and trackid are both our track id
            ("trackid", track_id),
            ("udf5", "TrackID"),
        ])

    async def _pipe(self, action: str, amount: int, track_id: str) -> dict[str, str]:
        """POST one action; the answer's fields. ProviderUnavailable for no or garbled answers."""
        if not TRACK_ID.match(track_id) or amount <= 0:
            raise ProviderRejected("KNET needs the original track id and a positive amount")
        _, text = await call_text(
            self.client, "POST", f"{self.gateway_url}/kpg/tranPipe.htm?param=tranInit",
            headers={"Content-Type": "application/xml", "Accept": "application/xml, text/xml, */*"},
            content=self._pipe_body(action, amount, track_id),
        )
        try:
            return parse_xml_fragment(text)
        except KnetAnswerError as exc:
            raise ProviderUnavailable(f"KNET tranPipe: unreadable answer ({exc})") from exc

    async def inquire_transaction(self, track_id: str, amount: int) -> Observation:
        """Action 8 by track id, with the original amount. Idempotent.

        Raises ProviderUnavailable (no/garbled answer) or ProviderRejected (KNET refused the
        request itself, e.g. wrong credentials)."""
        fields = await self._pipe(ACTION_INQUIRY, amount, track_id)
        error = answer_error(fields)
        if error is not None:
            code, text = error
            if code in ERROR_STATUS or code in UNKNOWN_TRANSACTION:
                return Observation(status=ERROR_STATUS.get(code), merchant_reference=track_id,
                                   event_type=f"inquiry {code}", failure_reason=text, payload=fields)
            raise ProviderRejected(f"KNET inquiry refused: {text}")
        result = fields.get("result", "").strip().upper()
        if not result:
            raise ProviderUnavailable("KNET inquiry answer has no result")
        payment_id = fields.get("payid", "")  # inquiry says payid, not paymentid
        reported_track = fields.get("trackid", "") or track_id
        return Observation(
            status=RESULT_STATUS.get(result),
            provider_payment_id=payment_id if DIGITS.match(payment_id) else None,
            merchant_reference=reported_track,
            amount_fils=amount_fils(fields.get("amt")),
            currency=None,
            receipt=KnetReceipt(
                payment_id=payment_id, transaction_id=fields.get("tranid", ""), auth_code=fields.get("auth", ""),
                bank_reference=fields.get("ref", ""), track_id=reported_track, result=result,
                post_date=fields.get("postdate", ""),
            ),
            event_type=f"inquiry {result}",
            failure_reason=result,
            payload=fields,
        )

    async def inquire(self, provider_payment_id: str | None, merchant_reference: str) -> Observation:
        """KNET's inquiry must repeat the original amount, which the contract does not pass:
        it is read from our attempt. Raises ProviderUnavailable or ProviderRejected."""
        return await self.inquire_transaction(merchant_reference, await self.attempt_amount(merchant_reference))

    async def refund_transaction(self, track_id: str, amount: int) -> RefundResult:
        """Action 2 by original track id, full or partial. Real time; KNET offers no idempotency
        key, so a timed-out refund must be checked in the merchant portal before it is retried.

        Succeeded only on `CAPTURED`; another result is a failed refund. Raises
        ProviderUnavailable (outcome unknown) or ProviderRejected (an IPAY error)."""
        fields = await self._pipe(ACTION_REFUND, amount, track_id)
        error = answer_error(fields)
        if error is not None:
            raise ProviderRejected(f"KNET refund refused: {error[1]}")
        result = fields.get("result", "").strip().upper()
        if not result:
            raise ProviderUnavailable("KNET refund answer has no result")
        refund_id = fields.get("payid") or fields.get("tranid") or None
        return RefundResult(provider_refund_id=refund_id, status="succeeded" if result == "CAPTURED" else "failed",
                            raw=fields)

    async def refund(self, request: RefundRequest) -> RefundResult:
        if request.currency != CURRENCY:
            raise ProviderRejected("KNET refunds KWD only")
        track_id = await self.attempt_track_id(request.provider_payment_id)
        return await self.refund_transaction(track_id, request.amount_fils)

    # -- what KNET needs repeated that the contract does not carry --------------------------------

    async def attempt_amount(self, merchant_reference: str) -> int:
        """The amount of our KNET attempt with this track id. Raises ProviderRejected if none."""
        from shop.payments.tables import PaymentAttempt

        row = await PaymentAttempt.select(PaymentAttempt.amount_fils).where(
            (PaymentAttempt.provider == self.slug) & (PaymentAttempt.merchant_reference == merchant_reference)
        ).first()
        if row is None:
            raise ProviderRejected(f"no KNET attempt with track id {merchant_reference!r}")
        return int(row["amount_fils"])

    async def attempt_track_id(self, provider_payment_id: str) -> str:
        """Our track id for a KNET payment id. Raises ProviderRejected if none."""
        from shop.payments.tables import PaymentAttempt

        row = await PaymentAttempt.select(PaymentAttempt.merchant_reference).where(
            (PaymentAttempt.provider == self.slug) & (PaymentAttempt.provider_payment_id == provider_payment_id)
        ).first()
        if row is None:
            raise ProviderRejected(f"no KNET attempt with payment id {provider_payment_id!r}")
        return str(row["merchant_reference"])
