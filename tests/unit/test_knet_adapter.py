"""The KNET tranportal adapter against the providers.md §5.4 test vectors, tampering, wire formats."""
from __future__ import annotations

import asyncio
import base64
from typing import Callable

import httpx
import pytest

from shop.payments.providers.base import (
    BadSignature, PaymentRequest, ProviderRejected, ProviderUnavailable, RefundRequest,
)
from shop.payments.providers.knet import (
    KnetProvider, amount_fils, answer_error, decrypt_trandata, encrypt_trandata, parse_xml_fragment, resource_key,
)
from shop.payments.states import PaymentStatus
from shop.sandbox import knet as knet_sandbox
from shop.settings import Settings

KEY = "TESTKEY123456789"
REQUEST_PLAIN = (
    "id=123456&password=123456pg&action=1&langid=USA&currencycode=414&amt=10.500"
    "&responseURL=https://shop.example.com/knet/notify&errorURL=https://shop.example.com/knet/error"
    "&trackid=ORD1001&udf1=&udf2=&udf3=&udf4=&udf5="
)
REQUEST_TRANDATA = (
    "f1043d56fe2ab14d1e53337bf45632c0a7acfe0482bc57acb04890fe73124a604c961c31fdbbefaf4d4ba022aa41d770"
    "9e53759d6411daad297444639a0f473f4dbe9c458ed61bf1faa3babf1245ef1365614ee00ec8f9a620c5f9daac3de770"
    "56a29dd21aaafd811a2c192a1983caf1b4ddfe5280b90cb7ec62b5ac50ab988a3f214b3965f4aa11ccd1df7312a0fd68"
    "12c65007095235432c91296b64f079e8a727f20abb98cf61de02401cd4516f469cd2c810002ddb2d5be99941407b012d"
    "bdd79775404300c7abb46c5de18d6669ea2f848a4481c8143faf35ba566552ff"
)
RESPONSE_PLAIN = (
    "paymentid=100202331234567890&result=CAPTURED&auth=B12345&avr=N&ref=331212345678&tranid=202331212345678"
    "&postdate=1127&trackid=ORD1001&udf1=&udf2=&udf3=&udf4=&udf5=&amt=10.500&authRespCode=00"
)
RESPONSE_TRANDATA = (
    "ffea9bb6f60ad87303677e3583d3bad9e167a8d422ea40d1bb48adc1460f4a7a34fe42755ac4e49e43a772d8875ae19e"
    "81abaf72828e427cc00a42d02df3552fdae97c2b2101f5e8eced0c8377a791b65c91c499f94b0db1e42643722036e206"
    "12851fcf6773d9a3a0149ddbe8179d844ae5c86ea1c4625dacdc68db4b510e76bdf3f81388909f433ba237bb82cee40d"
    "51c411f3ddae60e4af801ecf8fafe5fa62b81320d680665c80715c3cc9fde5bbeaa5228aba18b4efe7d2078bc93224cd"
)


def adapter(transport: httpx.MockTransport | None = None, **env: str) -> KnetProvider:
    values = {"KNET_TRANPORTAL_ID": "123456", "KNET_TRANPORTAL_PASSWORD": "123456pg", "KNET_RESOURCE_KEY": KEY,
              "KNET_GATEWAY_URL": "https://www.kpaytest.com.kw", **env}
    settings = Settings(secret_key="x" * 40, public_url="https://shop.example.com",
                        provider_settings={f"SHOP_{k}": v for k, v in values.items()})
    return KnetProvider(settings, httpx.AsyncClient(transport=transport) if transport else httpx.AsyncClient())


def vector_request(**changes: object) -> PaymentRequest:
    values: dict[str, object] = {
        "merchant_reference": "ORD1001", "order_reference": "", "amount_fils": 10500, "currency": "KWD",
        "language": "en", "idempotency_key": "k", "return_url": "https://shop.example.com/knet/error?ref=ORD1001",
        "webhook_url": "https://shop.example.com/knet/notify", "customer_name": "Fatima",
        "customer_email": "f@example.com", "customer_phone": "+96555123456", "description": "Order ORD10",
    }
    values.update(changes)
    return PaymentRequest(**values)  # type: ignore[arg-type]


def notification_body(trandata: str, **clear: str) -> bytes:
    fields = {"paymentid": "100202331234567890", "trackid": "ORD1001", **clear, "trandata": trandata}
    return httpx.QueryParams(fields).__str__().encode()


# -- the test vectors ------------------------------------------------------------------------------

def test_request_vector_plaintext_and_trandata() -> None:
    provider = adapter()
    assert provider.trandata_plaintext(vector_request()) == REQUEST_PLAIN
    assert len(REQUEST_PLAIN) == 215
    assert encrypt_trandata(REQUEST_PLAIN, resource_key(KEY)) == REQUEST_TRANDATA


def test_start_payment_builds_the_payment_http_url_without_a_call() -> None:
    def no_calls(request: httpx.Request) -> httpx.Response:
        raise AssertionError("start_payment must not call KNET")

    started = asyncio.run(adapter(httpx.MockTransport(no_calls)).start_payment(vector_request()))
    assert started.provider_payment_id is None and not started.form_fields
    assert started.redirect_url == (
        "https://www.kpaytest.com.kw/kpg/PaymentHTTP.htm?param=paymentInit&trandata=" + REQUEST_TRANDATA
        + "&tranportalId=123456&responseURL=https://shop.example.com/knet/notify"
        + "&errorURL=https://shop.example.com/knet/error"
    )
    assert "password" not in started.raw and started.raw["amt"] == "10.500"


def test_response_vector_decrypts_in_both_cases() -> None:
    key = resource_key(KEY)
    assert decrypt_trandata(RESPONSE_TRANDATA, key) == RESPONSE_PLAIN
    assert decrypt_trandata(RESPONSE_TRANDATA.upper(), key) == RESPONSE_PLAIN
    assert decrypt_trandata(REQUEST_TRANDATA, key) == REQUEST_PLAIN


@pytest.mark.parametrize("trandata", [RESPONSE_TRANDATA, RESPONSE_TRANDATA.upper()])
def test_response_vector_notification_is_a_trusted_capture(trandata: str) -> None:
    [observation] = adapter().verify_webhook({}, notification_body(trandata))
    assert observation.trusted and observation.status == PaymentStatus.CAPTURED
    assert observation.provider_payment_id == "100202331234567890"
    assert observation.merchant_reference == "ORD1001"
    assert observation.amount_fils == 10500
    receipt = observation.receipt
    assert (receipt.payment_id, receipt.transaction_id, receipt.auth_code, receipt.bank_reference,
            receipt.track_id, receipt.result, receipt.post_date) == (
        "100202331234567890", "202331212345678", "B12345", "331212345678", "ORD1001", "CAPTURED", "1127")
    assert observation.event_id == "100202331234567890:CAPTURED"
    assert observation.payload["trandata"] == trandata and observation.payload["plain"]["authRespCode"] == "00"


def test_sandbox_speaks_the_same_vector() -> None:
    """The sandbox builds KNET's result string and encrypts it exactly as the vector says."""
    txn = {"paymentid": "100202331234567890", "result": "CAPTURED", "auth": "B12345", "ref": "331212345678",
           "tranid": "202331212345678", "postdate": "1127", "trackid": "ORD1001", "amt": "10.500",
           "authRespCode": "00", **{f"udf{n}": "" for n in range(1, 6)}}
    assert knet_sandbox.response_plaintext(txn) == RESPONSE_PLAIN
    assert knet_sandbox.encrypt(RESPONSE_PLAIN, KEY.encode()) == RESPONSE_TRANDATA
    assert knet_sandbox.parse_request_plaintext(knet_sandbox.decrypt(REQUEST_TRANDATA, KEY.encode()))["amt"] == "10.500"


# -- tampering ---------------------------------------------------------------------------------------

def _flip(hex_text: str, position: int) -> str:
    digit = "0" if hex_text[position] != "0" else "1"
    return hex_text[:position] + digit + hex_text[position + 1:]


@pytest.mark.parametrize(
    "trandata",
    [
        _flip(RESPONSE_TRANDATA, 10),  # first block
        _flip(RESPONSE_TRANDATA, 100),  # a middle block (garbles it, flips the next)
        _flip(RESPONSE_TRANDATA, len(RESPONSE_TRANDATA) - 40),  # the block before the last
        _flip(RESPONSE_TRANDATA, len(RESPONSE_TRANDATA) - 1),  # the padding block
        RESPONSE_TRANDATA[:-32],  # truncated by a block
        RESPONSE_TRANDATA[:-1],  # truncated by a digit
        RESPONSE_TRANDATA[32:],  # first block dropped
        RESPONSE_TRANDATA + RESPONSE_TRANDATA[:32],  # a block appended
        base64.b64encode(bytes.fromhex(RESPONSE_TRANDATA)).decode(),  # wrong encoding: base64
        "zz" + RESPONSE_TRANDATA[2:],  # not hex
        encrypt_trandata(RESPONSE_PLAIN, b"ANOTHERKEY123456"),  # another terminal's key
        encrypt_trandata(RESPONSE_PLAIN.replace("trackid=ORD1001", "trackid=ORD-1001"), resource_key(KEY)),
        encrypt_trandata(RESPONSE_PLAIN.replace("amt=10.500", "amt=10.5"), resource_key(KEY)),
        encrypt_trandata("hello world", resource_key(KEY)),
        encrypt_trandata(RESPONSE_PLAIN + "&result=CAPTURED", resource_key(KEY)),  # repeated field
        encrypt_trandata(RESPONSE_PLAIN.replace("amt=", "amt=\n"), resource_key(KEY)),
    ],
)
def test_tampered_trandata_is_rejected(trandata: str) -> None:
    with pytest.raises(BadSignature):
        adapter().verify_webhook({}, notification_body(trandata))


@pytest.mark.parametrize(
    "body",
    [
        notification_body(RESPONSE_TRANDATA, paymentid="100202331234567891"),  # clear id spliced
        notification_body(RESPONSE_TRANDATA, trackid="ORD1002"),
        notification_body(RESPONSE_TRANDATA) + b"&trandata=" + RESPONSE_TRANDATA.encode(),  # repeated
        b"paymentid=1&trackid=ORD1001",  # nothing encrypted, no error
        b"",
        "trandata=\u00e9".encode("utf-8"),  # not a form-encoded ASCII body
        b"trandata=" + b"0" * 20000,
    ],
)
def test_malformed_notifications_are_rejected(body: bytes) -> None:
    with pytest.raises(BadSignature):
        adapter().verify_webhook({}, body)


@pytest.mark.parametrize("key", ["TESTKEY123456780", "testkey123456789", "TESTKEY12345678", ""])
def test_wrong_resource_key_is_rejected(key: str) -> None:
    with pytest.raises(BadSignature):
        adapter(KNET_RESOURCE_KEY=key).verify_webhook({}, notification_body(RESPONSE_TRANDATA))


def test_an_error_post_without_trandata_is_only_a_hint() -> None:
    [observation] = adapter().verify_webhook({}, b"Error=IPAY0100042&ErrorText=Time+limit&trackid=ORD1001&paymentid=1002")
    assert not observation.trusted and observation.status is None
    assert observation.merchant_reference == "ORD1001" and observation.failure_reason == "Time limit"


@pytest.mark.parametrize(
    ("result", "status"),
    [("NOT+CAPTURED", "declined"), ("CANCELED", "cancelled"), ("HOST+TIMEOUT", "pending"),
     ("VOIDED", "cancelled"), ("DENIED+BY+RISK", "declined"), ("FAILURE", "failed"), ("PROCESSED", None)],
)
def test_results_map_to_our_states(result: str, status: str | None) -> None:
    plain = RESPONSE_PLAIN.replace("result=CAPTURED", f"result={result}")
    [observation] = adapter().verify_webhook({}, notification_body(encrypt_trandata(plain, resource_key(KEY))))
    assert observation.status == status
    assert observation.receipt.result == result.replace("+", " ")


# -- replies, returns -------------------------------------------------------------------------------

def test_webhook_reply_is_one_redirect_line() -> None:
    provider = adapter()
    [observation] = provider.verify_webhook({}, notification_body(RESPONSE_TRANDATA))
    reply = provider.webhook_reply([observation], "https://shop.example.com")
    assert (reply.status_code, reply.media_type) == (200, "text/plain")
    assert reply.body == "REDIRECT=https://shop.example.com/payments/knet/return?ref=ORD1001"
    rejected = provider.rejected_webhook_reply("https://shop.example.com")
    assert rejected.status_code == 200
    assert rejected.body == "REDIRECT=https://shop.example.com/payments/knet/return?error=notification"
    assert "\n" not in reply.body and "\n" not in rejected.body


def test_parse_return_reads_our_ref_knets_error_url_and_verifies_trandata() -> None:
    provider = adapter()
    assert provider.parse_return({"ref": "ORD1001"}).merchant_reference == "ORD1001"
    hint = provider.parse_return({"Error": "IPAY0100042", "ErrorText": "Transaction time limit exceeds",
                                  "trackid": "ORD1001", "paymentid": "100202331234567890", "amt": "10.500"})
    assert hint.merchant_reference == "ORD1001" and hint.provider_payment_id == "100202331234567890"
    assert hint.verified is None
    verified = provider.parse_return({"trandata": RESPONSE_TRANDATA})
    assert verified.verified is not None and verified.verified.status == PaymentStatus.CAPTURED
    assert verified.merchant_reference == "ORD1001"
    with pytest.raises(BadSignature):
        provider.parse_return({"trandata": _flip(RESPONSE_TRANDATA, 100)})
    with pytest.raises(BadSignature):
        provider.parse_return({"trandata": RESPONSE_TRANDATA, "ref": "ORD9999"})
    assert provider.parse_return({"ref": "../../etc"}).merchant_reference is None


# -- amounts and URLs on the wire ------------------------------------------------------------------

@pytest.mark.parametrize(("fils", "amt"), [(10500, "10.500"), (1, "0.001"), (10, "0.010"), (3475, "3.475"),
                                           (999_999_999, "999999.999"), (120_000, "120.000")])
def test_amounts_travel_as_three_decimal_strings_from_fils(fils: int, amt: str) -> None:
    plain = adapter().trandata_plaintext(vector_request(amount_fils=fils))
    assert f"&amt={amt}&" in plain
    assert amount_fils(amt) == fils


@pytest.mark.parametrize("text", ["10.5", "10.5000", "10", "-1.000", "1e3", " 10.500", "", None, "1,000.000"])
def test_only_knets_amount_form_is_read(text: str | None) -> None:
    assert amount_fils(text) is None


def test_request_limits_are_refused_before_sending() -> None:
    provider = adapter()
    for changes in ({"amount_fils": 1_000_000_000}, {"amount_fils": 0}, {"currency": "USD"},
                    {"merchant_reference": "ORD-1001"}, {"merchant_reference": "x" * 41}):
        with pytest.raises(ProviderRejected):
            provider.trandata_plaintext(vector_request(**changes))
    with pytest.raises(ProviderRejected):
        adapter(KNET_TRANPORTAL_PASSWORD="a&b=c").trandata_plaintext(vector_request())
    with pytest.raises(ProviderRejected):
        asyncio.run(adapter(KNET_RESOURCE_KEY="short").start_payment(vector_request()))


def test_language_udf_and_urls() -> None:
    plain = adapter().trandata_plaintext(vector_request(language="ar", order_reference="DM-2611/25@X",
                                                        return_url="https://s.example/payments/knet/return?ref=A1"))
    assert "&langid=AR&" in plain and "&udf1=DM261125X&" in plain
    assert "&errorURL=https://s.example/payments/knet/return&" in plain  # KNET wants no query string


def test_missing_credentials_lists_the_knet_settings() -> None:
    settings = Settings(secret_key="x" * 40, sandbox=False)
    assert KnetProvider(settings, httpx.AsyncClient()).missing_credentials() == [
        "SHOP_KNET_GATEWAY_URL", "SHOP_KNET_TRANPORTAL_ID", "SHOP_KNET_TRANPORTAL_PASSWORD", "SHOP_KNET_RESOURCE_KEY"]
    assert adapter().missing_credentials() == []
    assert KnetProvider.capabilities.expiry_seconds == 420 and KnetProvider.capabilities.partial_refunds


# -- tranPipe XML: recorded answers ----------------------------------------------------------------

INQUIRY_CAPTURED = (
    "<result>CAPTURED</result><auth>B24047</auth><ref>024110000636</ref><postdate>0829</postdate>"
    "<tranid>202024178509663</tranid><trackid>ORD1001</trackid><payid>100202024086546767</payid>"
    "<udf2></udf2><udf5>TrackID</udf5><amt>10.500</amt><authRespCode>00</authRespCode>"
)
NOT_FOUND = ("<result>!ERROR!-IPAY0100263-Transaction not found.</result><error_code_tag>IPAY0100263</error_code_tag>"
             "<error_service_tag>null</error_service_tag>")


def pipe(answer: str | Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request] | None = None) -> KnetProvider:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return answer(request) if callable(answer) else httpx.Response(200, text=answer)

    return adapter(httpx.MockTransport(handler))


def test_inquiry_request_is_knets_rootless_xml() -> None:
    seen: list[httpx.Request] = []
    observation = asyncio.run(pipe(INQUIRY_CAPTURED, seen).inquire_transaction("ORD1001", 10500))
    [request] = seen
    assert str(request.url) == "https://www.kpaytest.com.kw/kpg/tranPipe.htm?param=tranInit"
    assert request.headers["content-type"] == "application/xml"
    assert request.content == (b"<id>123456</id><password>123456pg</password><action>8</action><amt>10.500</amt>"
                               b"<transid>ORD1001</transid><trackid>ORD1001</trackid><udf5>TrackID</udf5>")
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 10500
    assert observation.provider_payment_id == "100202024086546767"  # `payid` in inquiries
    assert observation.receipt.transaction_id == "202024178509663" and observation.receipt.post_date == "0829"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (INQUIRY_CAPTURED.replace("CAPTURED", "SUCCESS", 1), "captured"),
        ('<?xml version="1.0"?><response>' + INQUIRY_CAPTURED + "</response>", "captured"),
        (INQUIRY_CAPTURED.replace("CAPTURED", "NOT CAPTURED", 1), "declined"),
        (INQUIRY_CAPTURED.replace("CAPTURED", "SUSPECTED", 1), "pending"),
        (INQUIRY_CAPTURED.replace("CAPTURED", "FAILURE", 1), "failed"),
        (INQUIRY_CAPTURED.replace("CAPTURED", "VOIDED", 1), "cancelled"),
        (NOT_FOUND, None),
        (NOT_FOUND.replace("0100263", "0100042").replace("Transaction not found.", "Time limit"), "expired"),
    ],
)
def test_inquiry_answers_map_to_our_states(answer: str, status: str | None) -> None:
    assert asyncio.run(pipe(answer).inquire_transaction("ORD1001", 10500)).status == status


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (NOT_FOUND.replace("0100263", "0100015").replace("Transaction not found.", "Invalid tranportal password"),
         ProviderRejected),
        ("<!doctype html><html><body>Service Unavailable</body></html>", ProviderUnavailable),
        ('<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><result>&b;</result>', ProviderUnavailable),
        ("<result>CAPTURED</result><amt>", ProviderUnavailable),
        ("<auth>1</auth>", ProviderUnavailable),
        ("", ProviderUnavailable),
    ],
)
def test_bad_inquiry_answers(answer: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        asyncio.run(pipe(answer).inquire_transaction("ORD1001", 10500))


def test_transport_failures_are_unavailable_or_rejected() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderUnavailable):
        asyncio.run(pipe(timeout).inquire_transaction("ORD1001", 10500))
    with pytest.raises(ProviderUnavailable):
        asyncio.run(pipe(lambda r: httpx.Response(502)).inquire_transaction("ORD1001", 10500))
    with pytest.raises(ProviderRejected):
        asyncio.run(pipe(lambda r: httpx.Response(403, text="forbidden")).inquire_transaction("ORD1001", 10500))


def test_refund_is_action_2_and_succeeds_only_on_captured() -> None:
    seen: list[httpx.Request] = []
    answer = ("<result>CAPTURED</result><payid>100201719515482162</payid><trackid>ORD1001</trackid><udf1></udf1>"
              "<udf5></udf5><ref></ref><auth></auth><postdate></postdate><tranid></tranid><amt></amt>")
    result = asyncio.run(pipe(answer, seen).refund_transaction("ORD1001", 2500))
    assert b"<action>2</action><amt>2.500</amt><transid>ORD1001</transid>" in seen[0].content
    assert (result.status, result.provider_refund_id) == ("succeeded", "100201719515482162")
    failed = asyncio.run(pipe(answer.replace("CAPTURED", "NOT CAPTURED")).refund_transaction("ORD1001", 2500))
    assert failed.status == "failed"
    with pytest.raises(ProviderRejected):
        asyncio.run(pipe(NOT_FOUND).refund_transaction("ORD1001", 2500))


def test_refund_and_inquiry_find_the_original_track_id_and_amount() -> None:
    class Known(KnetProvider):
        async def attempt_amount(self, merchant_reference: str) -> int:
            return {"ORD1001": 10500}[merchant_reference]

        async def attempt_track_id(self, provider_payment_id: str) -> str:
            return {"100202331234567890": "ORD1001"}[provider_payment_id]

    seen: list[httpx.Request] = []
    base = pipe(INQUIRY_CAPTURED, seen)
    provider = Known(base.settings, base.client)
    assert asyncio.run(provider.inquire(None, "ORD1001")).status == PaymentStatus.CAPTURED
    asyncio.run(provider.refund(RefundRequest(provider_payment_id="100202331234567890", amount_fils=500,
                                              currency="KWD", idempotency_key="r1", reference="R1")))
    assert b"<amt>10.500</amt><transid>ORD1001</transid>" in seen[0].content
    assert b"<action>2</action><amt>0.500</amt><transid>ORD1001</transid>" in seen[1].content


def test_xml_helpers() -> None:
    assert parse_xml_fragment("<request><result>SUCCESS</result><amt>1.000</amt></request>") == {
        "result": "SUCCESS", "amt": "1.000"}
    assert answer_error(parse_xml_fragment(NOT_FOUND)) == ("IPAY0100263", "!ERROR!-IPAY0100263-Transaction not found.")
    assert answer_error({"result": "CAPTURED"}) is None
