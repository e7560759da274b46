"""The Tap adapter against providers.md 3.4's test vector, its tampering cases and its wire formats."""
from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any, Callable

import httpx
import pytest

from shop.payments.providers.base import (
    BadSignature,
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from shop.payments.providers.http import exact_json
from shop.payments.providers.tap import TapProvider, hash_amount, hash_string, sign
from shop.payments.states import PaymentStatus
from shop.settings import Settings

# providers.md 3.4: Tap's public documentation test key and the charge of seed 003.
VECTOR_KEY = "sk_test_XKokBfNWv6FIYuTMg5sLPjhJ"
VECTOR_STRING = (
    "x_idchg_TS05A1320231018Hy56070XXXXx_amount0.500x_currencyKWDx_gateway_reference202235421476242"
    "x_payment_reference9720221916128348054x_statusCAPTUREDx_created1671563769240"
)
VECTOR_HASH = "c155f221086855391d20c020a60926c0641bc34a123a6aa923436a0563cd59fb"
WRONG_FORMAT_HASH = "7b45c5bc450e1effe022524f74ee7274af6d8c3b26e99320a7be8e6e29dd9033"  # x_amount0.5
# The seed's webhook body (compact, as Tap posts it), amount a JSON number `0.5`.
SEED_BODY = (
    b'{"id":"chg_TS05A1320231018Hy56070XXXX","object":"charge","live_mode":false,"api_version":"V2",'
    b'"method":"POST","status":"CAPTURED","amount":0.5,"currency":"KWD","threeDSecure":true,'
    b'"card_threeDSecure":false,"save_card":false,"merchant_id":"","product":"","statement_descriptor":"Sample",'
    b'"description":"Test Description","metadata":{"udf1":"test 1","udf2":"test 2"},'
    b'"transaction":{"authorization_id":"B63465","timezone":"UTC+03:00","created":"1671563769240",'
    b'"expiry":{"period":30,"type":"MINUTE"},"asynchronous":false,"amount":0.5,"currency":"KWD"},'
    b'"reference":{"track":"tck_TS010920221916Hr112012834","payment":"9720221916128348054",'
    b'"gateway":"202235421476242","acquirer":"235410001666","transaction":"txn_0001","order":"ord_0001"},'
    b'"response":{"code":"000","message":"Captured"},"gateway":{"response":{"code":"00","message":"CAPTURED"}},'
    b'"receipt":{"id":"209020221916128803","email":true,"sms":false},'
    b'"customer":{"id":"cus_TS020920221916q8YJ2012896","first_name":"Waleed","last_name":"Asghar",'
    b'"email":"w.asghar@tap.company","phone":{"country_code":"971","number":"586275033"}},'
    b'"merchant":{"country":"BH","currency":"KWD","id":"18778851"},'
    b'"source":{"object":"source","type":"CARD_NOT_PRESENT","payment_type":"DEBIT","payment_method":"KNET",'
    b'"channel":"INTERNET","id":"src_kw.knet"},'
    b'"redirect":{"status":"PENDING","url":"https://webhook.site/9819d5ef-506a-4d1e-a0c3-072ccfcd95a3"},'
    b'"post":{"attempt":1,"status":"PENDING","url":"https://webhook.site/9819d5ef-506a-4d1e-a0c3-072ccfcd95a3"},'
    b'"auto_reversed":false}'
)


def adapter(client: httpx.AsyncClient | None = None, **env: str) -> TapProvider:
    settings = Settings(secret_key="x" * 40, public_url="https://shop.example",
                        provider_settings={f"SHOP_{k}": v for k, v in env.items()})
    return TapProvider(settings, client or httpx.AsyncClient())


def vector_adapter() -> TapProvider:
    return adapter(TAP_SECRET_KEY=VECTOR_KEY)


def request(**changes: Any) -> PaymentRequest:
    values: dict[str, Any] = dict(
        merchant_reference="DM261125ABCDEF01", order_reference="DM261125ABCDEF", amount_fils=10500,
        currency="KWD", language="ar", idempotency_key="3f2a9c", return_url="https://shop.example/payments/tap/return?ref=DM261125ABCDEF01",
        webhook_url="https://shop.example/webhooks/tap", customer_name="Fatima Al Sabah",
        customer_email="f@example.com", customer_phone="+96555123456", description="Order DM261125ABCDEF",
    )
    values.update(changes)
    return PaymentRequest(**values)


# -- the test vector ----------------------------------------------------------------------------

def test_hash_string_and_hashstring_match_the_vector() -> None:
    charge = json.loads(SEED_BODY, parse_float=Decimal)
    assert hash_string(charge) == VECTOR_STRING
    assert sign(charge, VECTOR_KEY) == VECTOR_HASH
    assert hmac.new(VECTOR_KEY.encode(), VECTOR_STRING.encode(), hashlib.sha256).hexdigest() == VECTOR_HASH


def test_seed_webhook_verifies_and_parses() -> None:
    [observation] = vector_adapter().verify_webhook({"hashstring": VECTOR_HASH, "hash": "ignored"}, SEED_BODY)
    assert observation.status == PaymentStatus.CAPTURED
    assert observation.provider_payment_id == "chg_TS05A1320231018Hy56070XXXX"
    assert observation.amount_fils == 500 and observation.currency == "KWD"
    assert observation.event_id == "chg_TS05A1320231018Hy56070XXXX:CAPTURED"
    # `reference.transaction` is not covered by hashstring: a notification is matched by its signed id.
    assert observation.merchant_reference is None
    receipt = observation.receipt
    assert (receipt.payment_id, receipt.transaction_id, receipt.auth_code, receipt.bank_reference) == (
        "9720221916128348054", "202235421476242", "B63465", "235410001666")
    assert (receipt.track_id, receipt.result, receipt.post_date) == ("tck_TS010920221916Hr112012834", "CAPTURED", "")


def test_the_wrong_amount_format_of_the_vector_is_rejected() -> None:
    assert hmac.new(VECTOR_KEY.encode(), VECTOR_STRING.replace("0.500", "0.5").encode(),
                    hashlib.sha256).hexdigest() == WRONG_FORMAT_HASH
    with pytest.raises(BadSignature):
        vector_adapter().verify_webhook({"hashstring": WRONG_FORMAT_HASH}, SEED_BODY)


def test_header_name_and_hex_case_do_not_matter() -> None:
    assert vector_adapter().verify_webhook({"HashString": VECTOR_HASH.upper()}, SEED_BODY)


@pytest.mark.parametrize(("amount", "currency", "expected"), [
    (Decimal("0.5"), "KWD", "0.500"), (1, "KWD", "1.000"), (Decimal("12.125"), "KWD", "12.125"),
    ("10.5", "BHD", "10.500"), (Decimal("65"), "SAR", "65.00"), (Decimal("1.005"), "SAR", "1.01"),
])
def test_hash_amount_uses_the_currency_decimals(amount: object, currency: str, expected: str) -> None:
    assert hash_amount(amount, currency) == expected


# -- tampering ----------------------------------------------------------------------------------

def _tampered(replace: bytes, by: bytes) -> bytes:
    assert replace in SEED_BODY
    return SEED_BODY.replace(replace, by, 1)


@pytest.mark.parametrize("body", [
    _tampered(b'"amount":0.5,"currency"', b'"amount":5.0,"currency"'),  # amount
    _tampered(b'"status":"CAPTURED"', b'"status":"DECLINED"'),  # status
    _tampered(b'"id":"chg_TS05A1320231018Hy56070XXXX"', b'"id":"chg_TS05A1320231018Hy56070YYYY"'),  # whose charge
    _tampered(b'"gateway":"202235421476242"', b'"gateway":"202235421476243"'),  # KNET transaction id
    _tampered(b'"payment":"9720221916128348054"', b'"payment":"9720221916128348055"'),
    _tampered(b'"created":"1671563769240"', b'"created":"1671563769241"'),
    _tampered(b'"currency":"KWD","threeDSecure"', b'"currency":"BHD","threeDSecure"'),
    SEED_BODY[:-1],  # truncated: not JSON any more
    SEED_BODY[:200],
    SEED_BODY.decode().encode("utf-16"),  # another encoding
    b"\xff\xfe" + SEED_BODY,
    b"[" + SEED_BODY + b"]",  # not an object
    b"",
])
def test_tampered_bodies_are_rejected(body: bytes) -> None:
    with pytest.raises(BadSignature):
        vector_adapter().verify_webhook({"hashstring": VECTOR_HASH}, body)


@pytest.mark.parametrize("headers", [
    {"hashstring": VECTOR_HASH[:-1] + ("0" if VECTOR_HASH[-1] != "0" else "1")},
    {"hashstring": VECTOR_HASH[:32]},  # truncated signature
    {"hashstring": VECTOR_HASH + "00"},
    {"hashstring": ""},
    {"hash": VECTOR_HASH},  # the other header is not the signature
    {},
])
def test_wrong_or_missing_signatures_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(BadSignature):
        vector_adapter().verify_webhook(headers, SEED_BODY)


def test_wrong_secret_or_no_secret_is_rejected() -> None:
    with pytest.raises(BadSignature):
        adapter(TAP_SECRET_KEY="sk_test_another_key").verify_webhook({"hashstring": VECTOR_HASH}, SEED_BODY)
    no_key = TapProvider(Settings(secret_key="x" * 40, sandbox=False), httpx.AsyncClient())
    with pytest.raises(BadSignature):
        no_key.verify_webhook({"hashstring": VECTOR_HASH}, SEED_BODY)


def test_unsigned_fields_may_change_without_breaking_the_signature_but_are_not_trusted() -> None:
    # Tap signs fields, not bytes: re-serialised JSON and unsigned fields keep the signature ...
    charge = json.loads(SEED_BODY, parse_float=Decimal)
    charge["reference"]["transaction"] = "DM-SOMEONE-ELSES"
    [observation] = vector_adapter().verify_webhook({"hashstring": VECTOR_HASH}, exact_json(charge))
    # ... so nothing unsigned decides which payment it is about.
    assert observation.merchant_reference is None and observation.provider_payment_id == charge["id"]


def test_refund_notifications_sign_their_own_created() -> None:
    refund = {
        "id": "re_TS07A5220231206Pj2k2910123", "object": "refund", "api_version": "V2", "live_mode": False,
        "amount": Decimal("0.25"), "currency": "KWD", "charge_id": "chg_TS05A1320231018Hy56070XXXX",
        "created": 1671564999101, "status": "REFUNDED", "reason": "requested_by_customer",
        "reference": {"merchant": "RF-1", "payment": "9720221916128348054", "gateway": "202235421499999"},
        "response": {"code": "000", "message": "Refunded"},
    }
    assert hash_string(refund) == (
        "x_idre_TS07A5220231206Pj2k2910123x_amount0.250x_currencyKWDx_gateway_reference202235421499999"
        "x_payment_reference9720221916128348054x_statusREFUNDEDx_created1671564999101"
    )
    body = exact_json(refund)
    [observation] = vector_adapter().verify_webhook({"hashstring": sign(refund, VECTOR_KEY)}, body)
    assert observation.status is None
    assert (observation.refund_id, observation.refund_status, observation.refund_amount_fils) == (
        "re_TS07A5220231206Pj2k2910123", "succeeded", 250)
    assert observation.provider_payment_id == "chg_TS05A1320231018Hy56070XXXX"
    assert observation.event_id == "re_TS07A5220231206Pj2k2910123:REFUNDED"
    declined = {**refund, "status": "DECLINED"}
    [failed] = vector_adapter().verify_webhook({"hashstring": sign(declined, VECTOR_KEY)}, exact_json(declined))
    assert failed.refund_status == "failed"
    # Signed with a charge's layout (x_created from a `transaction.created` a refund has not): rejected.
    charge_layout = hash_string(refund).replace("x_created1671564999101", "x_created")
    wrong = hmac.new(VECTOR_KEY.encode(), charge_layout.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(BadSignature):
        vector_adapter().verify_webhook({"hashstring": wrong}, body)


# -- statuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "ours"), [
    ("INITIATED", "100", PaymentStatus.PENDING), ("IN_PROGRESS", "200", PaymentStatus.PENDING),
    ("CAPTURED", "000", PaymentStatus.CAPTURED), ("DECLINED", "507", PaymentStatus.DECLINED),
    ("RESTRICTED", "701", PaymentStatus.DECLINED), ("CANCELLED", "302", PaymentStatus.CANCELLED),
    ("VOID", "601", PaymentStatus.CANCELLED), ("ABANDONED", "301", PaymentStatus.EXPIRED),
    ("TIMEDOUT", "801", PaymentStatus.EXPIRED), ("DECLINED", "304", PaymentStatus.EXPIRED),
    ("FAILED", "401", PaymentStatus.FAILED), ("UNKNOWN", "901", PaymentStatus.PENDING),
    ("AUTHORIZED", "001", None), ("SOMETHING_NEW", "999", None),
])
def test_charge_statuses_map_to_ours(status: str, code: str, ours: PaymentStatus | None) -> None:
    charge = json.loads(SEED_BODY, parse_float=Decimal) | {"status": status, "response": {"code": code, "message": "x"}}
    assert adapter().observation_from_charge(charge).status == ours


@pytest.mark.parametrize(("amount", "fils"), [
    (Decimal("0.5"), 500), (Decimal("10.500"), 10500), (12, 12000), ("7.250", 7250),
    (Decimal("0.5004"), None),  # not a whole number of fils: no amount, so never marked paid
    (0.5, None),  # a float is never money
    (None, None), (True, None), ("abc", None),
])
def test_amounts_from_the_wire_become_exact_fils(amount: object, fils: int | None) -> None:
    charge = json.loads(SEED_BODY, parse_float=Decimal) | {"amount": amount}
    assert adapter().observation_from_charge(charge).amount_fils == fils


# -- the request on the wire --------------------------------------------------------------------

@pytest.mark.parametrize(("fils", "wire"), [
    (10500, b'"amount":10.500,'), (10, b'"amount":0.010,'), (1000, b'"amount":1.000,'),
    (123456789, b'"amount":123456.789,'), (1, b'"amount":0.001,'), (990, b'"amount":0.990,'),
])
def test_amounts_go_on_the_wire_as_exact_json_numbers(fils: int, wire: bytes) -> None:
    body = exact_json(adapter().charge_body(request(amount_fils=fils)))
    assert wire in body
    assert json.loads(body, parse_float=Decimal)["amount"] * 1000 == fils


def _recording(reply: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return reply(sent)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler)), seen


INITIATED_REPLY = {
    "id": "chg_TS05A1320231018Hy56070XXXX", "object": "charge", "status": "INITIATED",
    "amount": 10.5, "currency": "KWD",
    "transaction": {"timezone": "UTC+03:00", "created": "1671563769240",
                    "url": "https://sandbox.payments.tap.company/test_gosell/v2/payment/tap_process.aspx?chg=d6aP",
                    "expiry": {"period": 30, "type": "MINUTE"}},
    "response": {"code": "100", "message": "Initiated"},
}


async def test_start_payment_sends_these_exact_bytes_and_headers() -> None:
    client, seen = _recording(lambda sent: httpx.Response(200, json=INITIATED_REPLY))
    provider = adapter(client, TAP_API_URL="https://api.tap.company", TAP_SECRET_KEY="sk_test_abc")
    started = await provider.start_payment(request())
    assert started.provider_payment_id == "chg_TS05A1320231018Hy56070XXXX"
    assert started.redirect_url == INITIATED_REPLY["transaction"]["url"] and started.form_fields == {}
    [sent] = seen
    assert (sent.method, str(sent.url)) == ("POST", "https://api.tap.company/v2/charges")
    assert sent.headers["authorization"] == "Bearer sk_test_abc"
    assert sent.headers["lang_code"] == "ar" and sent.headers["content-type"] == "application/json"
    assert sent.content == (
        b'{"amount":10.500,"currency":"KWD","customer_initiated":true,"threeDSecure":true,"save_card":false,'
        b'"description":"Order DM261125ABCDEF","metadata":{"udf1":"DM261125ABCDEF"},'
        b'"reference":{"transaction":"DM261125ABCDEF01","order":"DM261125ABCDEF","idempotent":"3f2a9c"},'
        b'"receipt":{"email":false,"sms":false},'
        b'"customer":{"first_name":"Fatima","last_name":"Al Sabah","email":"f@example.com",'
        b'"phone":{"country_code":"965","number":"55123456"}},'
        b'"source":{"id":"src_kw.knet"},"post":{"url":"https://shop.example/webhooks/tap"},'
        b'"redirect":{"url":"https://shop.example/payments/tap/return?ref=DM261125ABCDEF01"}}'
    )


@pytest.mark.parametrize("reply", [
    {**INITIATED_REPLY, "status": "DECLINED"},
    {**INITIATED_REPLY, "transaction": {"created": "1"}},
    {**INITIATED_REPLY, "id": "not-a-charge"},
])
async def test_a_charge_that_did_not_start_is_rejected(reply: dict[str, Any]) -> None:
    client, _ = _recording(lambda sent: httpx.Response(200, json=reply))
    with pytest.raises(ProviderRejected):
        await adapter(client).start_payment(request())


async def test_errors_sort_into_rejected_and_unavailable() -> None:
    errors = {"errors": [{"code": "1103", "description": "amount is invalid"}]}
    client, _ = _recording(lambda sent: httpx.Response(400, json=errors))
    with pytest.raises(ProviderRejected, match="amount is invalid"):
        await adapter(client).start_payment(request())
    for answer in (httpx.Response(502), httpx.Response(200, text="<html>busy</html>")):
        client, _ = _recording(lambda sent, answer=answer: answer)
        with pytest.raises(ProviderUnavailable):
            await adapter(client).start_payment(request())
    with pytest.raises(ProviderRejected):
        await adapter().start_payment(request(currency="USD"))


async def test_inquiry_reads_numbers_as_decimals_and_maps_the_receipt() -> None:
    body = SEED_BODY.replace(b'"amount":0.5,"currency"', b'"amount":10.5,"currency"', 1)
    client, seen = _recording(lambda sent: httpx.Response(200, content=body, headers={"content-type": "application/json"}))
    observation = await adapter(client, TAP_API_URL="https://api.tap.company").inquire(
        "chg_TS05A1320231018Hy56070XXXX", "txn_0001")
    assert (seen[0].method, str(seen[0].url)) == ("GET", "https://api.tap.company/v2/charges/chg_TS05A1320231018Hy56070XXXX")
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 10500
    assert isinstance(observation.payload["amount"], Decimal)
    assert observation.merchant_reference == "txn_0001"  # read back from Tap itself: trusted
    assert observation.receipt.auth_code == "B63465" and observation.event_id is None


async def test_inquiry_without_a_charge_id_lists_by_reference() -> None:
    other = json.loads(SEED_BODY, parse_float=Decimal) | {"id": "chg_other0000", "reference": {"transaction": "X"}}
    mine = json.loads(SEED_BODY, parse_float=Decimal) | {"status": "INITIATED"}
    listing = exact_json({"object": "list", "count": 2, "has_more": False, "charges": [other, mine]})
    client, seen = _recording(lambda sent: httpx.Response(200, content=listing))
    observation = await adapter(client, TAP_API_URL="https://api.tap.company").inquire(None, "txn_0001")
    assert (seen[0].method, str(seen[0].url)) == ("POST", "https://api.tap.company/v2/charges/list")
    sent = json.loads(seen[0].content)
    assert sent["reference"] == {"transaction": "txn_0001"} and sent["limit"] == 50
    assert int(sent["period"]["date"]["from"]) < int(sent["period"]["date"]["to"])
    assert observation.status == PaymentStatus.PENDING
    assert observation.provider_payment_id == "chg_TS05A1320231018Hy56070XXXX"
    client, _ = _recording(lambda sent: httpx.Response(200, json={"object": "list", "charges": []}))
    nothing = await adapter(client).inquire(None, "txn_0001")
    assert nothing.status is None and nothing.event_type == "not found"


async def test_refund_request_bytes_and_pending_answer() -> None:
    reply = {"id": "re_TS07A5220231206Pj2k2910123", "object": "refund", "status": "PENDING", "amount": 2.5,
             "currency": "KWD", "charge_id": "chg_x", "response": {"code": "100", "message": "Pending"}}
    client, seen = _recording(lambda sent: httpx.Response(200, json=reply))
    provider = adapter(client, TAP_API_URL="https://api.tap.company")
    result = await provider.refund(RefundRequest("chg_TS05A1320231018Hy56070XXXX", 2500, "KWD", "rf-key-1", "RF-1"))
    assert (result.provider_refund_id, result.status) == ("re_TS07A5220231206Pj2k2910123", "pending")
    assert str(seen[0].url) == "https://api.tap.company/v2/refunds"
    assert seen[0].content == (
        b'{"charge_id":"chg_TS05A1320231018Hy56070XXXX","amount":2.500,"currency":"KWD",'
        b'"description":"Refund RF-1","reason":"requested_by_customer",'
        b'"reference":{"merchant":"RF-1","idempotent":"rf-key-1"},"metadata":{"udf1":"RF-1"},'
        b'"post":{"url":"https://shop.example/webhooks/tap"}}'
    )


# -- the browser return and the contract details -------------------------------------------------

def test_return_carries_only_the_charge_id_to_look_up() -> None:
    hint = adapter().parse_return({"ref": "DM261125ABCDEF01", "tap_id": "chg_TS05A1320231018Hy56070XXXX"})
    assert (hint.provider_payment_id, hint.merchant_reference, hint.verified) == (
        "chg_TS05A1320231018Hy56070XXXX", "DM261125ABCDEF01", None)
    for bad in ("", " ", "chg_", "../v2/refunds", "chg_abc/../../x"):
        assert adapter().parse_return({"ref": "R1", "tap_id": bad}).provider_payment_id is None
    assert adapter().parse_return({"tap_id": "", "tap_failover_msg": "ui failed"}).provider_payment_id is None


def test_capabilities_and_credentials() -> None:
    capabilities = TapProvider.capabilities
    assert capabilities.redirect == "get" and capabilities.expiry_seconds == 30 * 60
    assert capabilities.inquiry and capabilities.refunds and capabilities.partial_refunds
    bare = TapProvider(Settings(secret_key="x" * 40, sandbox=False), httpx.AsyncClient())
    assert bare.missing_credentials() == ["SHOP_TAP_API_URL", "SHOP_TAP_SECRET_KEY"]
    assert adapter().missing_credentials() == []
    assert adapter().sandbox_credentials_in_use() == ["SHOP_TAP_SECRET_KEY"]
    assert adapter(TAP_SECRET_KEY="sk_live_real").sandbox_credentials_in_use() == []


def test_registered_under_its_slug() -> None:
    from shop.payments.registry import provider_class

    assert provider_class("tap") is TapProvider
