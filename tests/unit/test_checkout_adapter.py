"""The Checkout.com adapter against the documented test vector and its wire formats."""
import httpx
import pytest

from shop.payments.providers.base import BadSignature, PaymentRequest
from shop.payments.providers.checkout import CheckoutProvider
from shop.payments.states import PaymentStatus
from shop.settings import Settings

VECTOR_KEY = "test_webhook_signature_key"
VECTOR_BODY = (
    b'{"id":"evt_test_knet_0001","type":"payment_captured","created_on":"2024-05-23T17:10:00Z","data":'
    b'{"id":"pay_4gubyq2w335upc54dx7a4257lq","action_id":"act_test_0001","amount":1000,"currency":"KWD",'
    b'"reference":"ORD-5023-4E89","response_code":"10000","response_summary":"Approved",'
    b'"processed_on":"2024-05-23T17:10:00Z"}}'
)
VECTOR_SIGNATURE = "9470872346b6321f422fec4d64b1cd41562d0496f0df9c2d7dd8ebe9bb08ea57"


def adapter(**env: str) -> CheckoutProvider:
    settings = Settings(secret_key="x" * 40, provider_settings={f"SHOP_{k}": v for k, v in env.items()})
    return CheckoutProvider(settings, httpx.AsyncClient())


def test_webhook_test_vector_verifies_and_parses() -> None:
    [observation] = adapter(CHECKOUT_WEBHOOK_SECRET=VECTOR_KEY).verify_webhook(
        {"cko-signature": VECTOR_SIGNATURE}, VECTOR_BODY
    )
    assert observation.status == PaymentStatus.CAPTURED
    assert observation.provider_payment_id == "pay_4gubyq2w335upc54dx7a4257lq"
    assert observation.amount_fils == 1000 and observation.currency == "KWD"
    assert observation.event_id == "evt_test_knet_0001"
    assert observation.merchant_reference == "ORD-5023-4E89"


@pytest.mark.parametrize(
    ("body", "signature"),
    [
        (VECTOR_BODY, VECTOR_SIGNATURE.upper()[:-1] + "0"),  # one digit changed
        (VECTOR_BODY.replace(b"1000", b"1001"), VECTOR_SIGNATURE),  # amount tampered
        (VECTOR_BODY[:-1], VECTOR_SIGNATURE),  # truncated
        (VECTOR_BODY + b"\n", VECTOR_SIGNATURE),  # re-serialised
        (VECTOR_BODY, ""),
        (VECTOR_BODY, VECTOR_SIGNATURE[:32]),
    ],
)
def test_tampering_is_rejected(body: bytes, signature: str) -> None:
    with pytest.raises(BadSignature):
        adapter(CHECKOUT_WEBHOOK_SECRET=VECTOR_KEY).verify_webhook({"cko-signature": signature}, body)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(BadSignature):
        adapter(CHECKOUT_WEBHOOK_SECRET="another_key").verify_webhook({"cko-signature": VECTOR_SIGNATURE}, VECTOR_BODY)


def test_signature_header_is_case_insensitive_hex() -> None:
    provider = adapter(CHECKOUT_WEBHOOK_SECRET=VECTOR_KEY)
    assert provider.verify_webhook({"cko-signature": VECTOR_SIGNATURE.upper()}, VECTOR_BODY)


def test_refund_events_carry_the_action_and_outcome() -> None:
    from shop.payments.providers.signing import hmac_sha256_hex

    body = VECTOR_BODY.replace(b"payment_captured", b"payment_refunded")
    [observation] = adapter(CHECKOUT_WEBHOOK_SECRET=VECTOR_KEY).verify_webhook(
        {"cko-signature": hmac_sha256_hex(VECTOR_KEY, body)}, body
    )
    assert observation.status is None
    assert (observation.refund_id, observation.refund_status, observation.refund_amount_fils) == ("act_test_0001", "succeeded", 1000)


def test_payment_body_sends_fils_as_integer_minor_units() -> None:
    request = PaymentRequest(
        merchant_reference="DM261125ABCDEF01", order_reference="DM261125ABCDEF", amount_fils=10500,
        currency="KWD", language="ar", idempotency_key="k", return_url="https://shop/r", webhook_url="https://shop/w",
        customer_name="Fatima", customer_email="f@example.com", customer_phone="+96555123456", description="Order",
    )
    body = adapter().payment_body(request)
    assert body["amount"] == 10500 and isinstance(body["amount"], int)
    assert body["source"] == {"type": "knet", "language": "ar", "user_defined_field1": "DM261125ABCDEF"}
    assert body["success_url"] == body["failure_url"] == "https://shop/r"


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ("sk_sbox_diramarketknetsandboxkey2qa", "Bearer sk_sbox_diramarketknetsandboxkey2qa"),
        ("sk_test_0b9b5db6-f223-49d0-b68f-f6643dd4f808", "sk_test_0b9b5db6-f223-49d0-b68f-f6643dd4f808"),
    ],
)
def test_current_platform_keys_are_bearer_tokens_previous_ones_are_not(key: str, header: str) -> None:
    assert adapter(CHECKOUT_SECRET_KEY=key)._headers()["Authorization"] == header


def test_details_map_to_our_states_and_receipt() -> None:
    details = {
        "id": "pay_x", "status": "Captured", "approved": True, "amount": 1000, "currency": "KWD", "reference": "R01",
        "source": {"type": "knet", "knet_payment_id": "100201914315601265", "knet_result": "Captured",
                   "bank_reference": "914310000349", "knet_transaction_id": "201914384388126",
                   "auth_code": "B00775", "post_date": "0524"},
    }
    observation = adapter().observation_from_details(details)
    assert observation.status == PaymentStatus.CAPTURED
    assert observation.receipt.transaction_id == "201914384388126" and observation.receipt.post_date == "0524"
    for status, ours in [("Pending", "pending"), ("Declined", "declined"), ("Canceled", "cancelled"), ("Expired", "expired")]:
        assert adapter().observation_from_details({**details, "status": status}).status == ours
