"""The APS adapter against every providers.md 1.5 test vector, its wire formats and tampering."""
from __future__ import annotations

import asyncio
import hashlib
import json
from urllib.parse import urlencode

import httpx
import pytest

from shop.payments.providers.aps import ApsProvider, sign, signature_string, status_for
from shop.payments.providers.base import BadSignature, PaymentRequest, ProviderRejected
from shop.payments.states import PaymentStatus
from shop.settings import Settings

REQUEST_PHRASE, RESPONSE_PHRASE = "TESTSHAIN", "TESTSHAOUT"
ACCESS_CODE, MERCHANT = "s4lwuuoY5upZlZY5D6dr", "WeVJHPYm"
VECTOR_REQUEST = {
    "command": "PURCHASE", "access_code": ACCESS_CODE, "merchant_identifier": MERCHANT,
    "merchant_reference": "ORD-12345-2024", "amount": "2000", "currency": "KWD", "language": "en",
    "payment_option": "KNET", "customer_email": "test@amazon.com", "return_url": "https://yoursite.com/payment-result",
}
VECTOR_REQUEST_STRING = (
    "TESTSHAINaccess_code=s4lwuuoY5upZlZY5D6dramount=2000command=PURCHASEcurrency=KWDcustomer_email=test@amazon.com"
    "language=enmerchant_identifier=WeVJHPYmmerchant_reference=ORD-12345-2024payment_option=KNET"
    "return_url=https://yoursite.com/payment-resultTESTSHAIN"
)
VECTOR_REQUEST_SIGNATURES = {
    "SHA-256": "e7f9c65bbd76674f247450b265258cc52f370e61af838c388928551ae5e652d9",
    "SHA-512": "6fde61f049261e78bee90d7729547e838cc2fde6ac27c459239367ec4b768987a792dbd6c64cbba24d661d25fe768ca0fb982f82566375e7f3ed757a4af12009",
    "SHA-128": "96a907ed1fb87b86f3d3a783dbb217bb0a70c422",
    "HMAC-SHA256": "33ba3a216842ad67d9f67a5acdaa789a92f1bb0711207d1c0fa83508ab9e3e51",
}
VECTOR_RESPONSE = {
    **{k: v for k, v in VECTOR_REQUEST.items() if k != "return_url"},
    "fort_id": "149295435400084008", "response_message": "Success", "response_code": "14000", "status": "14",
}
VECTOR_RESPONSE_STRING = (
    "TESTSHAOUTaccess_code=s4lwuuoY5upZlZY5D6dramount=2000command=PURCHASEcurrency=KWDcustomer_email=test@amazon.com"
    "fort_id=149295435400084008language=enmerchant_identifier=WeVJHPYmmerchant_reference=ORD-12345-2024"
    "payment_option=KNETresponse_code=14000response_message=Successstatus=14TESTSHAOUT"
)
VECTOR_RESPONSE_SIGNATURE = "3367912469c2e3fb46be1a6e5593337f5eea442de4123aa87acb9e7f79938765"
VECTOR_CHECK_STATUS = {
    "query_command": "CHECK_STATUS", "access_code": ACCESS_CODE, "merchant_identifier": MERCHANT,
    "merchant_reference": "ORD-12345-2024", "language": "en",
}
VECTOR_CHECK_STATUS_STRING = (
    "TESTSHAINaccess_code=s4lwuuoY5upZlZY5D6drlanguage=enmerchant_identifier=WeVJHPYm"
    "merchant_reference=ORD-12345-2024query_command=CHECK_STATUSTESTSHAIN"
)
VECTOR_CHECK_STATUS_SIGNATURE = "b641220a2ced8ef077f1de39ff985cbb31166c3ede6c86973e772972e92c2f49"
SIGNED_RESPONSE = {**VECTOR_RESPONSE, "signature": VECTOR_RESPONSE_SIGNATURE}


def adapter(sha_type: str = "", **env: str) -> ApsProvider:
    values = {"APS_ACCESS_CODE": ACCESS_CODE, "APS_MERCHANT_IDENTIFIER": MERCHANT,
              "APS_SHA_REQUEST_PHRASE": REQUEST_PHRASE, "APS_SHA_RESPONSE_PHRASE": RESPONSE_PHRASE,
              "APS_SHA_TYPE": sha_type, **env}
    settings = Settings(secret_key="x" * 40, provider_settings={f"SHOP_{k}": v for k, v in values.items() if v})
    return ApsProvider(settings, httpx.AsyncClient())


def payment_request(**changes: object) -> PaymentRequest:
    values: dict[str, object] = dict(
        merchant_reference="ORD-12345-2024", order_reference="ORD-12345", amount_fils=2000, currency="KWD",
        language="en", idempotency_key="k", return_url="https://yoursite.com/payment-result",
        webhook_url="https://yoursite.com/webhooks/aps", customer_name="Fatima", customer_email="test@amazon.com",
        customer_phone="+96555123456", description="",
    )
    values.update(changes)
    return PaymentRequest(**values)  # type: ignore[arg-type]


# -- the test vectors ---------------------------------------------------------------------------

def test_request_vector_string_and_every_sha_type() -> None:
    assert signature_string(VECTOR_REQUEST, REQUEST_PHRASE) == VECTOR_REQUEST_STRING
    for sha_type, expected in VECTOR_REQUEST_SIGNATURES.items():
        assert sign(VECTOR_REQUEST, REQUEST_PHRASE, sha_type) == expected, sha_type
    # The spellings the SDKs and plugins use for the same types.
    assert sign(VECTOR_REQUEST, REQUEST_PHRASE, "sha1") == VECTOR_REQUEST_SIGNATURES["SHA-128"]
    assert sign(VECTOR_REQUEST, REQUEST_PHRASE, "hmac256") == VECTOR_REQUEST_SIGNATURES["HMAC-SHA256"]
    assert sign(VECTOR_REQUEST, REQUEST_PHRASE, "") == VECTOR_REQUEST_SIGNATURES["SHA-256"]  # the default
    # Independent of the module under test: hashlib over the documented string.
    assert hashlib.sha256(VECTOR_REQUEST_STRING.encode()).hexdigest() == VECTOR_REQUEST_SIGNATURES["SHA-256"]


def test_response_and_check_status_vectors() -> None:
    assert signature_string(VECTOR_RESPONSE, RESPONSE_PHRASE) == VECTOR_RESPONSE_STRING
    assert sign(VECTOR_RESPONSE, RESPONSE_PHRASE) == VECTOR_RESPONSE_SIGNATURE
    assert signature_string(VECTOR_CHECK_STATUS, REQUEST_PHRASE) == VECTOR_CHECK_STATUS_STRING
    assert sign(VECTOR_CHECK_STATUS, REQUEST_PHRASE) == VECTOR_CHECK_STATUS_SIGNATURE
    # The signature field itself is never part of what is signed.
    assert sign(SIGNED_RESPONSE, RESPONSE_PHRASE) == VECTOR_RESPONSE_SIGNATURE


@pytest.mark.parametrize("sha_type", list(VECTOR_REQUEST_SIGNATURES))
def test_start_payment_builds_the_seed_form_with_the_vector_signature(sha_type: str) -> None:
    provider = adapter(sha_type)
    started = asyncio.run(provider.start_payment(payment_request()))
    assert started.provider_payment_id is None
    assert started.redirect_url.endswith("/FortAPI/paymentPage")
    assert dict(started.form_fields) == {**VECTOR_REQUEST, "signature": VECTOR_REQUEST_SIGNATURES[sha_type]}
    assert "signature" not in started.raw and "access_code" not in started.raw


def test_form_urls_come_from_the_page_setting() -> None:
    provider = adapter(APS_PAGE_URL="https://sbcheckout.payfort.com/")
    assert provider.page_url == "https://sbcheckout.payfort.com"
    fields = provider.form_fields(payment_request(description="Order DM1 (2 items) <b>"))
    assert fields["order_description"] == "Order DM1 2 items b"  # only characters APS accepts


# -- amounts on the wire ------------------------------------------------------------------------

@pytest.mark.parametrize(("fils", "wire"), [(10500, "10500"), (1, "1"), (2000, "2000"), (12345670, "12345670"),
                                             (3475, "3475")])
def test_amount_is_integer_minor_units_from_fils(fils: int, wire: str) -> None:
    fields = adapter().form_fields(payment_request(amount_fils=fils))
    assert fields["amount"] == wire and isinstance(fields["amount"], str)
    assert f"amount={wire}command=" in signature_string(fields, REQUEST_PHRASE)


@pytest.mark.parametrize("changes", [{"amount_fils": 0}, {"amount_fils": -5}, {"currency": "USD"}])
def test_what_aps_would_refuse_is_refused_before_the_browser_goes(changes: dict) -> None:
    with pytest.raises(ProviderRejected):
        adapter().form_fields(payment_request(**changes))


def test_language_falls_back_to_english_and_arabic_is_kept() -> None:
    assert adapter().form_fields(payment_request(language="fr"))["language"] == "en"
    assert adapter().form_fields(payment_request(language="ar"))["language"] == "ar"


def test_unknown_sha_type_is_a_configuration_error() -> None:
    with pytest.raises(ProviderRejected):
        adapter("MD5").form_fields(payment_request())
    assert "SHOP_APS_SHA_TYPE" in adapter("MD5").missing_credentials()
    assert adapter().missing_credentials() == []
    bare = ApsProvider(Settings(secret_key="x" * 40, sandbox=False), httpx.AsyncClient())
    assert set(bare.missing_credentials()) == {
        "SHOP_APS_PAGE_URL", "SHOP_APS_API_URL", "SHOP_APS_ACCESS_CODE", "SHOP_APS_MERCHANT_IDENTIFIER",
        "SHOP_APS_SHA_REQUEST_PHRASE", "SHOP_APS_SHA_RESPONSE_PHRASE",
    }


# -- the browser return -------------------------------------------------------------------------

def test_return_vector_verifies_and_parses() -> None:
    hint = adapter().parse_return({**SIGNED_RESPONSE, "ref": "ORD-12345-2024"})  # our own parameter is ignored
    assert hint.merchant_reference == "ORD-12345-2024" and hint.provider_payment_id == "149295435400084008"
    observation = hint.verified
    assert observation is not None
    assert observation.status == PaymentStatus.CAPTURED
    assert (observation.amount_fils, observation.currency) == (2000, "KWD")
    assert observation.receipt.track_id == "ORD-12345-2024" and observation.receipt.result == "14000 Success"
    assert "ref" not in hint.payload


def test_return_signature_is_case_insensitive_hex() -> None:
    assert adapter().parse_return({**SIGNED_RESPONSE, "signature": VECTOR_RESPONSE_SIGNATURE.upper()}).verified


@pytest.mark.parametrize(
    "params",
    [
        {**SIGNED_RESPONSE, "amount": "2001"},  # a changed field
        {**SIGNED_RESPONSE, "response_code": "13666"},
        {**SIGNED_RESPONSE, "merchant_reference": "ORD-99999-2024"},
        {**SIGNED_RESPONSE, "extra": "1"},  # an added field
        {k: v for k, v in SIGNED_RESPONSE.items() if k != "fort_id"},  # a removed field
        {k: v for k, v in SIGNED_RESPONSE.items() if k != "signature"},  # no signature
        {**SIGNED_RESPONSE, "signature": ""},
        {**SIGNED_RESPONSE, "signature": VECTOR_RESPONSE_SIGNATURE[:32]},  # truncated
        {**SIGNED_RESPONSE, "signature": VECTOR_RESPONSE_SIGNATURE[:-1] + "0"},
        {**SIGNED_RESPONSE, "signature": sign(VECTOR_RESPONSE, REQUEST_PHRASE)},  # request phrase used
        {**SIGNED_RESPONSE, "signature": sign(VECTOR_RESPONSE, RESPONSE_PHRASE, "SHA-512")},  # another SHA type
    ],
)
def test_tampered_returns_are_rejected(params: dict) -> None:
    with pytest.raises(BadSignature):
        adapter().parse_return(params)


def test_a_return_decoded_in_another_encoding_is_rejected() -> None:
    fields = {**VECTOR_RESPONSE, "customer_name": "فاطمة"}
    signed = {**fields, "signature": sign(fields, RESPONSE_PHRASE)}
    assert adapter().parse_return(signed).verified is not None
    mojibake = {**signed, "customer_name": "فاطمة".encode().decode("latin-1")}
    with pytest.raises(BadSignature):
        adapter().parse_return(mojibake)


def test_phrase_swap_and_wrong_phrase_are_rejected() -> None:
    with pytest.raises(BadSignature):
        adapter(APS_SHA_RESPONSE_PHRASE="another-phrase").parse_return(SIGNED_RESPONSE)
    with pytest.raises(BadSignature):  # response phrase configured as the request one
        adapter(APS_SHA_RESPONSE_PHRASE=REQUEST_PHRASE).parse_return(SIGNED_RESPONSE)


def test_configured_sha512_and_hmac_returns_verify() -> None:
    for sha_type in ("SHA-512", "HMAC-SHA512", "SHA-128"):
        params = {**VECTOR_RESPONSE, "signature": sign(VECTOR_RESPONSE, RESPONSE_PHRASE, sha_type)}
        assert adapter(sha_type).parse_return(params).verified is not None
        with pytest.raises(BadSignature):
            adapter().parse_return(params)  # configured SHA-256: not what was used


def test_declined_and_cancelled_returns_map_to_our_states() -> None:
    for code, message, ours in [("13666", "Transaction declined", "declined"), ("00072", "cancelled", "cancelled"),
                                ("13778", "Session timed-out", "expired"), ("00008", "Signature mismatch", "failed")]:
        fields = {**VECTOR_RESPONSE, "response_code": code, "status": code[:2], "response_message": message}
        observation = adapter().parse_return({**fields, "signature": sign(fields, RESPONSE_PHRASE)}).verified
        assert observation is not None and observation.status == ours, code


# -- notifications ------------------------------------------------------------------------------

def _json_body(fields: dict) -> bytes:
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


KNET_FIELDS = {**VECTOR_RESPONSE, "knet_ref_number": "914310000349", "third_party_transaction_number": "201914384388126",
               "authorization_code": "B00775", "customer_name": "فاطمة"}
KNET_NOTIFICATION = {**KNET_FIELDS, "signature": sign(KNET_FIELDS, RESPONSE_PHRASE)}
JSON_HEADERS = {"content-type": "application/json"}


def test_direct_feedback_json_verifies_with_the_knet_receipt() -> None:
    [observation] = adapter().verify_webhook(JSON_HEADERS, _json_body(KNET_NOTIFICATION))
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 2000
    assert observation.event_id == "149295435400084008:PURCHASE:14000"
    receipt = observation.receipt
    assert (receipt.transaction_id, receipt.bank_reference, receipt.auth_code) == ("201914384388126", "914310000349", "B00775")
    assert receipt.payment_id == "" and receipt.post_date == ""  # not exposed by APS
    # The vector itself as a notification.
    assert adapter().verify_webhook(JSON_HEADERS, _json_body(SIGNED_RESPONSE))[0].status == PaymentStatus.CAPTURED


def test_form_encoded_feedback_verifies() -> None:
    body = urlencode(KNET_NOTIFICATION).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    [observation] = adapter().verify_webhook(headers, body)
    assert observation.merchant_reference == "ORD-12345-2024"


def test_duplicate_notifications_share_one_event_id() -> None:
    first = adapter().verify_webhook(JSON_HEADERS, _json_body(KNET_NOTIFICATION))[0]
    # The same result re-serialised (other key order, spacing) is still the same event.
    again = json.dumps(dict(reversed(list(KNET_NOTIFICATION.items()))), indent=1, ensure_ascii=False).encode()
    assert adapter().verify_webhook(JSON_HEADERS, again)[0].event_id == first.event_id


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (JSON_HEADERS, _json_body({**KNET_NOTIFICATION, "amount": "20000"})),  # a changed field
        (JSON_HEADERS, _json_body({**KNET_NOTIFICATION, "signature": sign(KNET_FIELDS, REQUEST_PHRASE)})),  # phrase
        (JSON_HEADERS, _json_body(KNET_NOTIFICATION)[:-1]),  # truncated
        (JSON_HEADERS, json.dumps(KNET_NOTIFICATION, ensure_ascii=False).encode("utf-16")),  # another encoding
        (JSON_HEADERS, json.dumps(KNET_NOTIFICATION, ensure_ascii=False).encode("cp1256")),  # Arabic code page
        (JSON_HEADERS, _json_body({k: v for k, v in KNET_NOTIFICATION.items() if k != "signature"})),
        (JSON_HEADERS, _json_body([KNET_NOTIFICATION])),
        (JSON_HEADERS, _json_body({**KNET_NOTIFICATION, "amount": 2000.0})),  # not a value APS signs
        (JSON_HEADERS, _json_body({**KNET_NOTIFICATION, "extra": {"nested": "1"}})),
        (JSON_HEADERS, _json_body(KNET_NOTIFICATION)[:-1] + b',"amount":"1"}'),  # a duplicated key
        ({"content-type": "application/x-www-form-urlencoded"}, urlencode(KNET_NOTIFICATION).encode() + b"&amount=1"),
        ({"content-type": "application/x-www-form-urlencoded"}, b"%ff%fe=1"),
        (JSON_HEADERS, b""),
    ],
)
def test_tampered_notifications_are_rejected(headers: dict, body: bytes) -> None:
    with pytest.raises(BadSignature):
        adapter().verify_webhook(headers, body)


def test_refund_notifications_carry_the_refund_outcome() -> None:
    fields = {"command": "REFUND", "access_code": ACCESS_CODE, "merchant_identifier": MERCHANT,
              "merchant_reference": "ORD-12345-2024", "amount": "500", "currency": "KWD", "language": "en",
              "fort_id": "149295435400084008", "maintenance_reference": "rf-1", "response_code": "06000",
              "response_message": "Success", "status": "06"}
    [observation] = adapter().verify_webhook(JSON_HEADERS, _json_body({**fields, "signature": sign(fields, RESPONSE_PHRASE)}))
    assert observation.status is None
    assert (observation.refund_id, observation.refund_status, observation.refund_amount_fils) == ("rf-1", "succeeded", 500)
    assert observation.event_id == "149295435400084008:REFUND:06000:rf-1"
    failed = {**fields, "response_code": "07017", "status": "07"}
    [observation] = adapter().verify_webhook(JSON_HEADERS, _json_body({**failed, "signature": sign(failed, RESPONSE_PHRASE)}))
    assert observation.refund_status == "failed"


# -- the status vocabulary ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("code", "ours"),
    [
        ("14000", "captured"), ("13666", "declined"), ("13000", "declined"), ("00072", "cancelled"),
        ("13778", "expired"), ("19065", "pending"), ("20064", "pending"), ("15777", "pending"), ("15781", "pending"),
        ("00006", "pending"), ("17006", "pending"), ("13006", "pending"), ("00008", "failed"), ("00001", "failed"),
        ("06000", "captured"), ("04000", "captured"), ("02000", "pending"),
        ("12000", None), ("48000", None), ("", None), ("1400", None), ("abcde", None),
    ],
)
def test_response_codes_map_through_the_table(code: str, ours: str | None) -> None:
    assert status_for(code) == ours


def test_refunds_can_be_turned_off() -> None:
    from shop.payments.providers.base import RefundRequest

    provider = adapter(APS_REFUNDS="0")
    assert not provider.refunds_enabled() and adapter().refunds_enabled()
    with pytest.raises(ProviderRejected, match="SHOP_APS_REFUNDS"):
        asyncio.run(provider.refund(RefundRequest("149295435400084008", 500, "KWD", "key-1", "R1")))
    with pytest.raises(ProviderRejected, match="fort_id"):
        asyncio.run(adapter().refund(RefundRequest("", 500, "KWD", "key-1", "R1")))


def test_capabilities_are_truthful() -> None:
    capabilities = ApsProvider.capabilities
    assert capabilities.redirect == "form_post" and capabilities.inquiry and capabilities.payment_links
    assert capabilities.refunds and capabilities.partial_refunds
    assert 7 * 60 <= capabilities.expiry_seconds <= 30 * 60
