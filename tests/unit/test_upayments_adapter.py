"""The UPayments adapter against providers.md 4 and seed 004: wire formats, statuses, hints."""
from decimal import Decimal

import httpx
import pytest

from shop.payments.providers.base import (
    BadSignature,
    PaymentRequest,
    ProviderRejected,
    VendorSplit,
)
from shop.payments.providers.http import exact_json
from shop.payments.providers.upayments import (
    UpaymentsProvider,
    amount_to_fils,
    refusal_status,
    status_of,
)
from shop.payments.states import PaymentStatus
from shop.settings import Settings

# Seed 004's answer to a white-label KNET charge (link shortened) and to a non-white-label one.
SEED_KNET_ANSWER = {
    "status": True,
    "message": "Payment link generated successfully",
    "data": {
        "link": "https://kpaytest.com.kw/kpg/PaymentHTTP.htm?param=paymentInit&trandata=0c399ba69806a53e&"
                "tranportalId=252501&responseURL=http://localhost:8000/get-knet-success-response&"
                "errorURL=http://localhost:8000/get-knet-error-response",
        "trackId": "20220647592811619337331833645",
    },
}
SEED_SESSION_ANSWER = {
    "status": True,
    "message": "You are not white label user. To enable please contact to support",
    "data": {"link": "https://dev-apiv2api.upayments.com/?session_id=20230537070305505128902825657127217521553614135"},
}
# Seed 004's two vendors.
SEED_IBANS = ("KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457")
# Get Payment Status (providers.md 4.5) for a captured KNET payment, as the API writes it.
STATUS_ANSWER = {
    "status": True,
    "message": "Payment status fetched successfully",
    "data": {"transaction": {
        "payment_id": "100202312345678901", "result": "CAPTURED", "post_date": "1125",
        "tran_id": "202332912345678", "ref": "332912345678", "track_id": "20220647592811619337331833645",
        "auth": "B12345", "payment_type": "knet", "merchant_requested_order_id": "DM261125ABCDEF01",
        "reference": "DM261125ABCDEF", "total_price": "10.500", "currency_type": "KWD",
        "refund_order_id": "512345678901",
    }},
}


def adapter(**env: str) -> UpaymentsProvider:
    settings = Settings(secret_key="x" * 40, public_url="https://shop.example",
                        provider_settings={f"SHOP_{k}": v for k, v in env.items()})
    return UpaymentsProvider(settings, httpx.AsyncClient())


def request(**changes: object) -> PaymentRequest:
    values: dict[str, object] = dict(
        merchant_reference="DM261125ABCDEF01", order_reference="DM261125ABCDEF", amount_fils=10500,
        currency="KWD", language="ar", idempotency_key="k", return_url="https://shop.example/payments/upayments/return",
        webhook_url="https://shop.example/webhooks/upayments", customer_name="Fatima Al-Sabah",
        customer_email="Fatima@Example.com", customer_phone="+96555123456", description="Order DM261125ABCDEF",
    )
    values.update(changes)
    return PaymentRequest(**values)  # type: ignore[arg-type]


# -- amounts on the wire (providers.md 0: decimal major units, a JSON number) -------------------

@pytest.mark.parametrize(("fils", "wire"), [(10500, b"10.500"), (1, b"0.001"), (123456789, b"123456.789"),
                                             (20000, b"20.000"), (990, b"0.990")])
def test_amount_is_an_exact_json_number_built_from_fils(fils: int, wire: bytes) -> None:
    body = exact_json(adapter().charge_body(request(amount_fils=fils)))
    assert b'"amount":' + wire + b"}" in body
    assert b'"price":' + wire + b"," in body
    assert b'"' + wire + b'"' not in body  # a number, never a string


def test_charge_body_has_the_seed_shape() -> None:
    body = adapter().charge_body(request())
    assert body["order"] == {"id": "DM261125ABCDEF01", "reference": "DM261125ABCDEF",
                             "description": "Order DM261125ABCDEF", "currency": "KWD", "amount": Decimal("10.500")}
    assert body["paymentGateway"] == {"src": "knet"} and body["language"] == "ar"
    assert body["reference"] == {"id": "DM261125ABCDEF"}
    assert body["customer"] == {"uniqueId": "fatima@example.com", "name": "Fatima Al-Sabah",
                                "email": "Fatima@Example.com", "mobile": "+96555123456"}
    assert body["returnUrl"] == body["cancelUrl"] == "https://shop.example/payments/upayments/return"
    assert body["notificationUrl"] == "https://shop.example/webhooks/upayments"
    assert body["products"] == [{"name": "Order DM261125ABCDEF", "description": "Order DM261125ABCDEF",
                                 "price": Decimal("10.500"), "quantity": 1}]
    assert "extraMerchantData" not in body and "notificationType" not in body


def test_vendor_splits_become_extra_merchant_data() -> None:
    splits = (VendorSplit("vendor-a", SEED_IBANS[0], 6000, 500), VendorSplit("vendor-b", SEED_IBANS[1], 4500, 0))
    body = exact_json(adapter().charge_body(request(splits=splits)))
    assert (b'"extraMerchantData":[{"amount":6.000,"knetCharge":0.500,"knetChargeType":"fixed","ccCharge":0.500,'
            b'"ccChargeType":"fixed","ibanNumber":"KW91KFHO0000000000051010173254"},{"amount":4.500,"knetCharge":0.000,'
            b'"knetChargeType":"fixed","ccCharge":0.000,"ccChargeType":"fixed",'
            b'"ibanNumber":"KW31NBOK0000000000002010177457"}]') in body


def test_what_upayments_cannot_take_is_refused_before_sending() -> None:
    with pytest.raises(ProviderRejected, match="add up"):
        adapter().charge_body(request(splits=(VendorSplit("a", SEED_IBANS[0], 5000),)))
    with pytest.raises(ProviderRejected, match="40"):
        adapter().charge_body(request(merchant_reference="X" * 41))
    with pytest.raises(ProviderRejected, match="KWD"):
        adapter().charge_body(request(currency="USD"))


@pytest.mark.parametrize(("value", "fils"), [
    ("10.500", 10500), ("10.5", 10500), ("10", 10000), (Decimal("10.500"), 10500), (Decimal("0.001"), 1), (7, 7000),
    ("10.5001", None), (Decimal("10.5001"), None), ("1e3", None), ("-1", None), (Decimal("-1"), None),
    (True, None), (None, None), (10.5, None), ("", None),
])
def test_amounts_read_back_exactly_or_not_at_all(value: object, fils: int | None) -> None:
    assert amount_to_fils(value) == fils


# -- starting ------------------------------------------------------------------------------------

def test_seed_answers_give_a_redirect_and_an_id_to_look_up() -> None:
    started = UpaymentsProvider.started(SEED_KNET_ANSWER)
    assert started.provider_payment_id == "20220647592811619337331833645"
    assert started.redirect_url.startswith("https://kpaytest.com.kw/kpg/PaymentHTTP.htm?param=paymentInit")
    assert started.form_fields == {}
    session = UpaymentsProvider.started(SEED_SESSION_ANSWER)
    assert session.provider_payment_id == "session:20230537070305505128902825657127217521553614135"
    with pytest.raises(ProviderRejected):
        UpaymentsProvider.started({"status": True, "message": "no link", "data": {}})


def test_session_and_invoice_ids_are_looked_up_by_query() -> None:
    assert UpaymentsProvider._status_path("2022064759") == "get-payment-status/2022064759"
    assert UpaymentsProvider._status_path("session:123") == "get-payment-status?session_id=123"
    assert UpaymentsProvider._status_path("invoice:77") == "get-payment-status?invoice_id=77"
    assert UpaymentsProvider._status_path("a/b?c") == "get-payment-status/a%2Fb%3Fc"


# -- statuses (providers.md 4.7) -----------------------------------------------------------------

@pytest.mark.parametrize(("result", "status"), [
    ("CAPTURED", PaymentStatus.CAPTURED), ("SUCCESS", PaymentStatus.CAPTURED),
    ("NOT CAPTURED", PaymentStatus.DECLINED), ("CANCELED", PaymentStatus.CANCELLED),
    ("CANCELLED", PaymentStatus.CANCELLED), ("ERROR", PaymentStatus.FAILED), ("FAILURE", PaymentStatus.FAILED),
    ("captured", PaymentStatus.CAPTURED), (None, PaymentStatus.PENDING), ("", PaymentStatus.PENDING),
    ("HOST TIMEOUT", PaymentStatus.PENDING), ("INITIATED", PaymentStatus.PENDING),
])
def test_result_vocabulary(result: object, status: PaymentStatus) -> None:
    assert status_of(result) == status


def test_status_answer_gives_state_amount_and_the_knet_receipt() -> None:
    observation = adapter().observation_from_status(STATUS_ANSWER, "20220647592811619337331833645")
    assert observation.status == PaymentStatus.CAPTURED and observation.trusted
    assert observation.amount_fils == 10500 and observation.currency == "KWD"
    assert observation.merchant_reference == "DM261125ABCDEF01"
    receipt = observation.receipt
    assert (receipt.payment_id, receipt.transaction_id, receipt.auth_code, receipt.bank_reference) == (
        "100202312345678901", "202332912345678", "B12345", "332912345678")
    assert (receipt.track_id, receipt.result, receipt.post_date) == ("20220647592811619337331833645", "CAPTURED", "1125")


def test_status_about_another_track_id_is_not_believed() -> None:
    from shop.payments.providers.base import ProviderUnavailable

    with pytest.raises(ProviderUnavailable):
        adapter().observation_from_status(STATUS_ANSWER, "99999999999999999999999999999")
    with pytest.raises(ProviderUnavailable):
        adapter().observation_from_status({"status": True, "data": {}}, "1")


# -- the browser return (providers.md 4.3: unsigned ids) -----------------------------------------

RETURN = {"payment_id": "100202312345678901", "result": "CAPTURED", "post_date": "1125", "tran_id": "202332912345678",
          "ref": "332912345678", "track_id": "20220647592811619337331833645", "auth": "B12345",
          "payment_type": "knet", "requested_order_id": "DM261125ABCDEF01"}


def test_return_is_a_hint_with_ids_only() -> None:
    hint = adapter().parse_return(RETURN)
    assert hint.provider_payment_id == "20220647592811619337331833645"
    assert hint.merchant_reference == "DM261125ABCDEF01"
    assert hint.verified is None  # nothing signed: the status call decides


def test_return_survives_the_question_mark_quirk() -> None:
    # `returnUrl=…/return?ref=DM261125ABCDEF01` came back as `…?ref=DM261125ABCDEF01?payment_id=…&…`.
    glued = {"ref": "DM261125ABCDEF01?payment_id=100202312345678901",
             **{k: v for k, v in RETURN.items() if k not in ("payment_id", "ref")}}
    hint = adapter().parse_return(glued)
    assert hint.payload["payment_id"] == "100202312345678901" and hint.payload["ref"] == "DM261125ABCDEF01"
    assert hint.provider_payment_id == RETURN["track_id"] and hint.merchant_reference == "DM261125ABCDEF01"


def test_our_ref_is_not_taken_for_the_order_id() -> None:
    # UPayments' `ref` is KNET's bank reference: without `requested_order_id` there is no order id.
    hint = adapter().parse_return({"ref": "332912345678", "track_id": "2022"})
    assert hint.merchant_reference is None and hint.provider_payment_id == "2022"


# -- notifications (providers.md 4.4: no signature exists) ---------------------------------------

def _json(fields: dict[str, str]) -> bytes:
    import json

    return json.dumps(fields, separators=(",", ":")).encode()


def test_json_and_form_notifications_are_untrusted_hints() -> None:
    from urllib.parse import urlencode

    for body in (_json(RETURN), urlencode(RETURN).encode()):
        [observation] = adapter().verify_webhook({}, body)
        assert observation.trusted is False
        assert observation.provider_payment_id == RETURN["track_id"]
        assert observation.merchant_reference == "DM261125ABCDEF01"
        assert observation.status == PaymentStatus.CAPTURED and observation.event_id is None


def test_a_changed_result_is_still_only_a_hint() -> None:
    forged = _json({**RETURN, "result": "CAPTURED", "track_id": "20220647592811619337331833645"})
    [observation] = adapter().verify_webhook({}, forged)
    assert observation.trusted is False  # the shop asks get-payment-status before anything moves


@pytest.mark.parametrize("body", [
    _json(RETURN)[:-5],  # truncated
    _json(RETURN).decode().encode("utf-16"),  # wrong encoding
    "result=CAPTURED&track_id=é".encode("latin-1"),  # not UTF-8
    b"",
    b"[1, 2]",
    b"not a form at all",
    _json({k: v for k, v in RETURN.items() if k != "track_id"}),
    _json({k: v for k, v in RETURN.items() if k != "requested_order_id"}),
    _json({k: v for k, v in RETURN.items() if k != "result"}),
    _json({**RETURN, "track_id": ""}),
    b'{"track_id":{"x":1},"requested_order_id":"A","result":"CAPTURED"}',
    b"track_id=1&track_id=2&requested_order_id=A&result=CAPTURED",
])
def test_what_is_not_a_notification_is_rejected(body: bytes) -> None:
    with pytest.raises(BadSignature):
        adapter().verify_webhook({}, body)


def test_refund_notification_is_refund_news() -> None:
    body = _json({"orderId": "512345678901", "refundOrderId": "712345678901", "refundArn": "1" * 23,
                  "refundStatus": "REFUNDED", "totalPrice": "2.500", "track_id": "2022",
                  "requested_order_id": "DM261125ABCDEF01"})
    [observation] = adapter().verify_webhook({}, body)
    assert observation.status is None and observation.trusted is False
    assert (observation.refund_id, observation.refund_status, observation.refund_amount_fils) == (
        "712345678901", "succeeded", 2500)


# -- settings ------------------------------------------------------------------------------------

def test_credentials_and_capabilities() -> None:
    real = UpaymentsProvider(Settings(secret_key="x" * 40, sandbox=False), httpx.AsyncClient())
    assert real.missing_credentials() == ["SHOP_UPAYMENTS_API_URL", "SHOP_UPAYMENTS_API_KEY"]
    configured = adapter(UPAYMENTS_API_URL="https://apiv2api.upayments.com/", UPAYMENTS_API_KEY="key")
    assert configured.missing_credentials() == []
    assert configured.api_url == "https://apiv2api.upayments.com/api/v1"
    assert configured._headers() == {"Authorization": "Bearer key"}
    assert adapter().sandbox_credentials_in_use() == ["SHOP_UPAYMENTS_API_KEY"]
    capabilities = UpaymentsProvider.capabilities
    assert capabilities.redirect == "get" and capabilities.inquiry and capabilities.partial_refunds
    assert capabilities.payment_links and capabilities.expiry_seconds == 420 and capabilities.amount_step_fils == 1


def test_refusals_are_sorted_by_their_http_status() -> None:
    assert refusal_status(ProviderRejected("GET https://x/api/v1/get-payment-status/1: HTTP 429 {'status': False}")) == 429
    assert refusal_status(ProviderRejected("GET https://x: HTTP 404 {}")) == 404
    assert refusal_status(ProviderRejected("POST charge: status false")) is None
