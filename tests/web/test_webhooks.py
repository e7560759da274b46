"""POST /webhooks/checkout: verified over the raw body, stored once, applied once."""
import json
import secrets

import pytest

from shop.orders.tables import Order
from shop.payments.providers.signing import hmac_sha256_hex
from shop.payments.tables import PaymentAttempt, PaymentEvent
from shop.settings import SANDBOX_CREDENTIALS
from tests.support import post_form
from tests.unit.test_forms import VALID
from tests.web.conftest import run

SECRET = SANDBOX_CREDENTIALS["CHECKOUT_WEBHOOK_SECRET"]


@pytest.fixture()
def attempt(client, product) -> dict:
    """An order placed through the shop, whose (unreachable) provider left the attempt pending."""
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    response = post_form(client, "/checkout", VALID)
    token = response.headers["location"].rsplit("/", 1)[1]
    order = run(Order.select().where(Order.public_token == token).first())
    row = run(PaymentAttempt.select().where(PaymentAttempt.order == order["id"]).first())
    payment_id = "pay_" + secrets.token_hex(13)
    run(PaymentAttempt.update({PaymentAttempt.provider_payment_id: payment_id}).where(PaymentAttempt.id == row["id"]))
    return {**row, "provider_payment_id": payment_id, "public_token": token}


def event(attempt: dict, kind: str, amount: int | None = None, event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or "evt_" + secrets.token_hex(13),
        "type": kind,
        "created_on": "2026-11-25T12:00:00Z",
        "data": {
            "id": attempt["provider_payment_id"], "action_id": "act_" + secrets.token_hex(13),
            "amount": attempt["amount_fils"] if amount is None else amount, "currency": "KWD",
            "reference": attempt["merchant_reference"], "response_code": "10000", "response_summary": "Approved",
            "source": {"knet_payment_id": "100201914315601265", "knet_result": "CAPTURED", "auth_code": "B00775"},
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def send(client, body: bytes, signature: str | None = "auto", slug: str = "checkout"):
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        headers["Cko-Signature"] = hmac_sha256_hex(SECRET, body)
    elif signature is not None:
        headers["Cko-Signature"] = signature
    return client.post(f"/webhooks/{slug}", content=body, headers=headers)


def statuses(attempt: dict) -> tuple[str, str]:
    row = run(PaymentAttempt.select(PaymentAttempt.status, PaymentAttempt.order).where(PaymentAttempt.id == attempt["id"]).first())
    order = run(Order.select(Order.status).where(Order.id == row["order"]).first())
    return order["status"], row["status"]


def test_signed_capture_marks_the_order_paid(client, attempt) -> None:
    response = send(client, event(attempt, "payment_captured"))
    assert response.status_code == 200
    assert statuses(attempt) == ("paid", "captured")
    page = client.get(f"/orders/{attempt['public_token']}")
    assert 'data-order-status="paid"' in page.text and "100201914315601265" in page.text


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "not-hex", "auto-other-body", "auto-wrong-secret"])
def test_forged_signatures_are_refused_and_change_nothing(client, attempt, signature) -> None:
    body = event(attempt, "payment_captured")
    if signature == "auto-other-body":
        signature = hmac_sha256_hex(SECRET, event(attempt, "payment_captured"))
    elif signature == "auto-wrong-secret":
        signature = hmac_sha256_hex("wrong-secret", body)
    events_before = run(PaymentEvent.count())
    response = send(client, body, signature)
    assert response.status_code == 401
    assert statuses(attempt) == ("pending_payment", "pending")
    assert run(PaymentEvent.count()) == events_before


def test_truncated_body_with_the_original_signature_is_refused(client, attempt) -> None:
    body = event(attempt, "payment_captured")
    assert send(client, body[:-5], hmac_sha256_hex(SECRET, body)).status_code == 401


def test_duplicates_apply_once(client, attempt) -> None:
    body = event(attempt, "payment_captured")
    answers = [send(client, body).json() for _ in range(5)]
    assert [a["duplicates"] for a in answers] == [0, 1, 1, 1, 1]
    assert statuses(attempt) == ("paid", "captured")


def test_reordered_events_never_regress(client, attempt) -> None:
    for kind in ["payment_captured", "payment_capture_pending", "payment_pending", "payment_canceled"]:
        assert send(client, event(attempt, kind)).status_code == 200
    assert statuses(attempt) == ("paid", "captured")


def test_amount_mismatch_is_flagged_not_paid(client, attempt) -> None:
    send(client, event(attempt, "payment_captured", amount=attempt["amount_fils"] + 10))
    assert statuses(attempt) == ("pending_payment", "pending")
    order = run(Order.select(Order.needs_attention).where(Order.id == attempt["order"]).first())
    assert order["needs_attention"] is True


def test_unknown_event_types_are_stored_and_ignored(client, attempt) -> None:
    body = event(attempt, "dispute_evidence_required")
    assert send(client, body).status_code == 200
    assert statuses(attempt) == ("pending_payment", "pending")
    stored = run(PaymentEvent.select().where(PaymentEvent.event_type == "dispute_evidence_required").first())
    assert stored is not None and stored["signature_ok"] is True


def test_events_for_unknown_payments_are_acknowledged(client) -> None:
    body = event({"provider_payment_id": "pay_unknown", "amount_fils": 1000, "merchant_reference": "NOPE01"},
                 "payment_captured")
    assert send(client, body).status_code == 200


def test_unknown_provider_is_404(client) -> None:
    assert client.post("/webhooks/nope", content=b"{}").status_code == 404


def _started_with(attempt: dict, provider: str) -> None:
    run(PaymentAttempt.update({PaymentAttempt.provider: provider}).where(PaymentAttempt.id == attempt["id"]))


@pytest.mark.parametrize("started_with", ["checkout", "checkout_setup"])
@pytest.mark.parametrize("url_slug", ["checkout", "checkout_setup"])
def test_one_checkout_account_hears_about_both_of_its_apis(client, attempt, started_with, url_slug) -> None:
    """The account's one webhook URL gets the notifications of payments from either Checkout.com API."""
    _started_with(attempt, started_with)
    assert send(client, event(attempt, "payment_captured"), slug=url_slug).status_code == 200
    assert statuses(attempt) == ("paid", "captured")


def test_a_notification_never_settles_another_providers_attempt(client, attempt) -> None:
    _started_with(attempt, "tap")
    assert send(client, event(attempt, "payment_captured")).status_code == 200
    assert statuses(attempt) == ("pending_payment", "pending")
