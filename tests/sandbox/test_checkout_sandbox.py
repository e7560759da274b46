"""The Checkout.com sandbox over real HTTP: API, hosted KNET page, refunds, webhooks, faults, SDK."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sqlite3
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shop.sandbox.checkout import sign_webhook
from tests.sandbox.conftest import (
    APPROVED_CARD, CHANNEL, DECLINED_CARD, PIN, SECRET_KEY, WEBHOOK_SECRET, Sandbox, WebhookReceiver,
)
from tests.support import run_async

PAY_ID = re.compile(r"^pay_[a-z2-7]{26}$")
SID = re.compile(r"^sid_[a-z2-7]{26}$")


def _session_id(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    values = parse_qs(urlsplit(response.headers["location"]).query)["cko-session-id"]
    assert len(values) == 1 and SID.match(values[0])
    return values[0]


def _signature_ok(received: object) -> bool:
    expected = hmac.new(WEBHOOK_SECRET.encode(), received.body, hashlib.sha256).hexdigest()  # type: ignore[attr-defined]
    return hmac.compare_digest(expected, received.headers["cko-signature"])  # type: ignore[attr-defined]


# -- signing -----------------------------------------------------------------------------------

def test_signature_matches_the_providers_md_test_vector() -> None:
    body = (
        b'{"id":"evt_test_knet_0001","type":"payment_captured","created_on":"2024-05-23T17:10:00Z",'
        b'"data":{"id":"pay_4gubyq2w335upc54dx7a4257lq","action_id":"act_test_0001","amount":1000,'
        b'"currency":"KWD","reference":"ORD-5023-4E89","response_code":"10000","response_summary":"Approved",'
        b'"processed_on":"2024-05-23T17:10:00Z"}}'
    )
    assert sign_webhook(body, "test_webhook_signature_key") == (
        "9470872346b6321f422fec4d64b1cd41562d0496f0df9c2d7dd8ebe9bb08ea57"
    )


# -- creating payments --------------------------------------------------------------------------

def test_authorization_forms(sandbox: Sandbox) -> None:
    url = f"{sandbox.api}/payments"
    body = sandbox.payment_body()
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {SECRET_KEY}"}).status_code == 202
    # Previous-platform form: the key without "Bearer".
    assert httpx.post(url, json=body, headers={"Authorization": SECRET_KEY}).status_code == 202
    wrong = ({}, {"Authorization": "Bearer sk_sbox_wrongwrongwrongwrongwrongwr"}, {"Authorization": "Basic c2tfc2JveA=="})
    for headers in wrong:
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 401 and refused.content == b""
    assert httpx.get(f"{sandbox.api}/payments/pay_x").status_code == 401


def test_validation_errors_use_checkout_error_codes(sandbox: Sandbox) -> None:
    url = f"{sandbox.api}/payments"
    cases = [
        ({"amount": None}, "amount_required"),
        ({"amount": "12.500"}, "amount_invalid"),
        ({"amount": 0}, "amount_invalid"),
        ({"currency": "USD"}, "currency_invalid"),
        ({"currency": None}, "currency_required"),
        ({"source": {"type": "card"}}, "source_type_invalid"),
        ({"source": None}, "payment_source_required"),
        ({"source": {"type": "knet", "language": "fr"}}, "language_invalid"),
        ({"source": {"type": "knet", "language": "en", "user_defined_field2": "no-dashes!"}}, "user_defined_field2_invalid"),
        ({"source": {"type": "knet", "language": "en", "card_token": "12"}}, "card_token_invalid"),
        ({"success_url": "javascript:alert(1)"}, "success_url_invalid"),
        ({"failure_url": None}, "failure_url_required"),
        ({"processing_channel_id": "pc_someone_else"}, "processing_channel_id_invalid"),
        ({"processing_channel_id": None}, "processing_channel_id_required"),
        ({"reference": "x" * 81}, "reference_invalid"),
    ]
    for change, code in cases:
        body = {k: v for k, v in sandbox.payment_body(**change).items() if v is not None}
        response = sandbox.client.post(url, json=body)
        assert response.status_code == 422, (change, response.text)
        error = response.json()
        assert error["error_type"] == "request_invalid" and code in error["error_codes"], (change, error)
        assert error["request_id"]
    bad_json = sandbox.client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400


def test_created_payment_has_the_seed_shape(sandbox: Sandbox) -> None:
    created = sandbox.create()
    assert PAY_ID.match(created["id"]) and created["status"] == "Pending"
    assert created["reference"] == "ORD-TEST-1"
    assert re.match(r"^cus_[a-z2-7]{26}$", created["customer"]["id"])
    assert created["_links"]["self"]["href"] == f"{sandbox.api}/payments/{created['id']}"
    assert re.match(
        rf"^{re.escape(sandbox.api)}/knet-external/redirect/tok_[a-z2-7]{{26}}/pay$", created["_links"]["redirect"]["href"]
    )
    details = sandbox.details(created["id"])
    assert details["status"] == "Pending" and details["approved"] is False
    assert details["source"] == {"type": "knet", "language": "en", "user_defined_field1": "ORD 1"}
    assert details["payment_type"] == "Regular" and details["risk"] == {"flagged": False}
    assert sandbox.client.get(f"{sandbox.api}/payments/pay_{'a' * 26}").status_code == 404
    assert sandbox.client.get(f"{sandbox.api}/payments/sid_{'a' * 26}").content == b""


def test_idempotency_key_returns_the_same_payment(sandbox: Sandbox) -> None:
    before = sandbox.stats()["payments"]
    key = f"order-{time.time_ns()}"
    first = sandbox.create(idempotency_key=key)
    second = sandbox.create(idempotency_key=key)
    assert first == second
    stats = sandbox.stats()
    assert stats["payments"] == before + 1
    assert stats["creates_by_idempotency_key"][key] == {"requests": 2, "payments": 1}


def test_list_payments_by_reference(sandbox: Sandbox) -> None:
    reference = f"ORD-{time.time_ns()}"
    first = sandbox.create(reference=reference)
    second = sandbox.create(reference=reference)
    listing = sandbox.client.get(f"{sandbox.api}/payments", params={"reference": reference}).json()
    assert listing["total_count"] == 2
    assert [p["id"] for p in listing["data"]] == [second["id"], first["id"]]


# -- the hosted KNET page -----------------------------------------------------------------------

def test_approved_card_captures_and_notifies(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    created = sandbox.create()
    redirect = created["_links"]["redirect"]["href"]
    page = httpx.get(redirect)
    assert page.status_code == 200
    assert "KNET" in page.text and "Dira Market" in page.text and "KWD 12.500" in page.text
    assert 'type="password"' in page.text and "<script" not in page.text and "style=" not in page.text
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]

    response = sandbox.submit(redirect)
    session_id = _session_id(response)
    assert response.headers["location"].startswith(f"{sandbox.shop_url}/payments/checkout/return?ref=ORD-TEST-1&")

    by_session = sandbox.details(session_id)
    assert by_session == sandbox.details(created["id"])
    assert by_session["status"] == "Captured" and by_session["approved"] is True
    source = by_session["source"]
    assert source["knet_result"] == "Captured" and source["avr"] == "N"
    assert re.match(r"^\d{18}$", source["knet_payment_id"]) and re.match(r"^\d{15}$", source["knet_transaction_id"])
    assert re.match(r"^\d{12}$", source["bank_reference"]) and re.match(r"^[A-Z0-9]{6}$", source["auth_code"])
    assert re.match(r"^(0[1-9]|1[0-2])\d{2}$", source["post_date"])
    assert "redirect" not in by_session["_links"] and "refund" in by_session["_links"]

    hooks = receiver.wait_for(created["id"], 3)
    assert [h.event["type"] for h in hooks] == ["payment_pending", "payment_capture_pending", "payment_captured"]
    for hook in hooks:
        assert _signature_ok(hook)
        assert hook.headers["content-type"] == "application/json"
        assert hook.body == json.dumps(hook.event, separators=(",", ":"), ensure_ascii=False).encode()
        assert hook.event["id"].startswith("evt_") and hook.event["created_on"].endswith("Z")
    captured = hooks[2].event["data"]
    assert captured["amount"] == 12500 and captured["currency"] == "KWD" and captured["reference"] == "ORD-TEST-1"
    assert captured["response_code"] == "10000" and captured["source"]["knet_result"] == "Captured"
    assert captured["metadata"] == {"order_reference": "ORD-TEST-1"}

    # A second submission (double click, back button) cannot decide the payment again.
    again = httpx.post(redirect, data={"bank": "KNET1", "card_number": APPROVED_CARD, "expiry_month": "09",
                                       "expiry_year": "2025", "pin": PIN})
    assert again.status_code == 410 and "no longer available" in again.text
    actions = sandbox.client.get(f"{sandbox.api}/payments/{created['id']}/actions").json()
    assert [(a["type"], a["approved"], a["response_code"]) for a in actions] == [("Payment", True, "10000")]


@pytest.mark.parametrize(("card", "pin"), [(DECLINED_CARD, PIN), (APPROVED_CARD, "9999")])
def test_declined_card_or_wrong_pin(sandbox: Sandbox, receiver: WebhookReceiver, card: str, pin: str) -> None:
    created = sandbox.create()
    response = sandbox.submit(created["_links"]["redirect"]["href"], card=card, pin=pin)
    session_id = _session_id(response)
    assert "failed=1" in response.headers["location"]
    details = sandbox.details(session_id)
    assert details["status"] == "Declined" and details["approved"] is False
    assert details["source"]["knet_result"] == "NOT CAPTURED" and "auth_code" not in details["source"]
    hooks = receiver.wait_for(created["id"], 2)
    assert [h.event["type"] for h in hooks] == ["payment_pending", "payment_capture_declined"]
    assert hooks[1].event["data"]["response_code"] == "20005"


def test_cancel_button(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    created = sandbox.create()
    response = sandbox.submit(created["_links"]["redirect"]["href"], card="", pin="", bank="", action="cancel")
    details = sandbox.details(_session_id(response))
    assert details["status"] == "Canceled" and details["source"]["knet_result"] == "CANCELED"
    assert [h.event["type"] for h in receiver.wait_for(created["id"], 2)] == ["payment_pending", "payment_canceled"]


def test_submitting_after_the_window_expires(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    sandbox.control(expire_after_s=0.3)
    created = sandbox.create()
    redirect = created["_links"]["redirect"]["href"]
    with httpx.Client(follow_redirects=False) as browser:
        assert browser.get(redirect).status_code == 200
        time.sleep(0.5)
        response = browser.post(redirect, data={"bank": "KNET1", "card_number": APPROVED_CARD,
                                                "expiry_month": "09", "expiry_year": "2025", "pin": PIN})
    assert "failed=1" in response.headers["location"]
    assert sandbox.details(_session_id(response))["status"] == "Expired"
    assert [h.event["type"] for h in receiver.wait_for(created["id"], 2)] == ["payment_pending", "payment_expired"]
    gone = httpx.get(redirect)
    assert gone.status_code == 410 and "no longer available" in gone.text


def test_unfinished_payment_expires_when_read(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    created = sandbox.create()
    sandbox.control(expire_after_s=0)
    details = sandbox.details(created["id"])
    assert details["status"] == "Expired" and "redirect" not in details["_links"]
    hooks = receiver.wait_for(created["id"], 2)
    assert sorted(h.event["type"] for h in hooks) == ["payment_expired", "payment_pending"]


def test_invalid_form_input_is_shown_again_without_card_data(sandbox: Sandbox) -> None:
    created = sandbox.create()
    redirect = created["_links"]["redirect"]["href"]
    cases = [
        {"bank": "", "card_number": APPROVED_CARD, "expiry_month": "09", "expiry_year": "2025", "pin": PIN},
        {"bank": "KNET1", "card_number": "88888800000000ab", "expiry_month": "09", "expiry_year": "2025", "pin": PIN},
        {"bank": "KNET1", "card_number": APPROVED_CARD, "expiry_month": "13", "expiry_year": "2025", "pin": PIN},
        {"bank": "KNET1", "card_number": APPROVED_CARD, "expiry_month": "09", "expiry_year": "2025", "pin": "12a4"},
    ]
    for form in cases:
        response = httpx.post(redirect, data=form)
        assert response.status_code == 422, form
        assert 'role="alert"' in response.text
        # The page's own hint names the test card; what was typed must not come back in a field.
        assert f'value="{APPROVED_CARD}"' not in response.text and "88888800000000ab" not in response.text
        assert f'value="{PIN}"' not in response.text and "12a4" not in response.text
    assert sandbox.details(created["id"])["status"] == "Pending"


def test_arabic_page(sandbox: Sandbox) -> None:
    created = sandbox.create(source={"type": "knet", "language": "ar"})
    page = httpx.get(created["_links"]["redirect"]["href"])
    assert page.status_code == 200
    assert 'dir="rtl"' in page.text and 'lang="ar"' in page.text and "الرقم السري" in page.text
    english = httpx.get(created["_links"]["redirect"]["href"], params={"language": "en"})
    assert 'dir="ltr"' in english.text and "PIN" in english.text


def test_unknown_token(sandbox: Sandbox) -> None:
    response = httpx.get(f"{sandbox.api}/knet-external/redirect/tok_{'a' * 26}/pay")
    assert response.status_code == 404


# -- refunds ------------------------------------------------------------------------------------

def _captured(sandbox: Sandbox, amount: int = 12500) -> str:
    created = sandbox.create(amount=amount)
    _session_id(sandbox.submit(created["_links"]["redirect"]["href"]))
    return created["id"]


def _refund(sandbox: Sandbox, payment_id: str, key: str | None = None, **body: object) -> httpx.Response:
    headers = {"Cko-Idempotency-Key": key} if key else {}
    return sandbox.client.post(f"{sandbox.api}/payments/{payment_id}/refunds", json=body, headers=headers)


def test_partial_multiple_and_full_refunds(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    payment_id = _captured(sandbox)
    first = _refund(sandbox, payment_id, key="refund-a", amount=2500, reference="RF-1")
    assert first.status_code == 202
    reply = first.json()
    assert re.match(r"^act_[a-z2-7]{26}$", reply["action_id"]) and reply["reference"] == "RF-1"
    assert reply["_links"]["payment"]["href"].endswith(f"/payments/{payment_id}")
    assert _refund(sandbox, payment_id, key="refund-a", amount=2500, reference="RF-1").json() == reply

    sandbox.wait_until(lambda: sandbox.details(payment_id)["status"] == "Partially Refunded")
    over = _refund(sandbox, payment_id, amount=10001)
    assert over.status_code == 422 and over.json()["error_codes"] == ["refund_amount_exceeds_balance"]
    assert _refund(sandbox, payment_id, amount=4000).status_code == 202
    assert _refund(sandbox, payment_id).status_code == 202  # no amount: whatever is left (6000)
    sandbox.wait_until(lambda: sandbox.details(payment_id)["status"] == "Refunded")
    assert _refund(sandbox, payment_id, amount=1).status_code == 403  # nothing left to refund

    actions = sandbox.client.get(f"{sandbox.api}/payments/{payment_id}/actions").json()
    refunds = [a for a in actions if a["type"] == "Refund"]
    assert sorted(a["amount"] for a in refunds) == [2500, 4000, 6000]
    assert all(a["approved"] and a["response_code"] == "10000" for a in refunds)
    assert actions[-1]["type"] == "Payment"  # most recent first

    hooks = receiver.wait_for(payment_id, 9)
    types = [h.event["type"] for h in hooks]
    assert types.count("payment_refund_pending") == 3 and types.count("payment_refunded") == 3
    refunded_amounts = sorted(h.event["data"]["amount"] for h in hooks if h.event["type"] == "payment_refunded")
    assert refunded_amounts == [2500, 4000, 6000]
    assert sandbox.stats()["refunds_by_idempotency_key"]["refund-a"] == {"requests": 2, "payments": 1}


def test_refund_not_allowed_and_declined(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    pending = sandbox.create()
    assert _refund(sandbox, pending["id"], amount=100).status_code == 403
    assert _refund(sandbox, f"pay_{'b' * 26}").status_code == 404
    assert _refund(sandbox, pending["id"], amount=-5).status_code == 422

    sandbox.control(refunds="decline")
    payment_id = _captured(sandbox)
    receiver.wait_for(payment_id, 3)  # the capture's notifications first: each batch is sent on its own
    action_id = _refund(sandbox, payment_id, amount=5000).json()["action_id"]
    hooks = receiver.wait_for(payment_id, 5)
    assert [h.event["type"] for h in hooks][-2:] == ["payment_refund_pending", "payment_refund_declined"]
    assert hooks[-1].event["data"]["action_id"] == action_id
    assert sandbox.details(payment_id)["status"] == "Captured"
    declined = [a for a in sandbox.client.get(f"{sandbox.api}/payments/{payment_id}/actions").json() if a["type"] == "Refund"]
    assert declined[0]["approved"] is False


# -- webhook controls ---------------------------------------------------------------------------

def test_duplicate_webhooks(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    sandbox.control(webhooks="duplicate", duplicate_count=3)
    created = sandbox.create()
    hooks = receiver.wait_for(created["id"], 3)
    assert len({h.event["id"] for h in hooks}) == 1 and len({h.body for h in hooks}) == 1


def test_reordered_webhooks(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    sandbox.control(webhooks="reorder")
    created = sandbox.create()
    receiver.wait_for(created["id"], 1)
    sandbox.submit(created["_links"]["redirect"]["href"])
    hooks = receiver.wait_for(created["id"], 3)
    assert [h.event["type"] for h in hooks][1:] == ["payment_captured", "payment_capture_pending"]


def test_dropped_webhooks_can_be_replayed(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    sandbox.control(webhooks="drop")
    created = sandbox.create()
    _session_id(sandbox.submit(created["_links"]["redirect"]["href"]))
    time.sleep(0.4)
    assert receiver.for_payment(created["id"]) == []
    replay = sandbox.client.post(f"{sandbox.api}/_webhooks/replay/{created['id']}")
    assert replay.status_code == 202 and len(replay.json()["events"]) == 3
    hooks = receiver.wait_for(created["id"], 3)
    assert [h.event["id"] for h in hooks] == replay.json()["events"]
    assert all(_signature_ok(h) for h in hooks)


def test_delayed_webhooks_do_not_block_the_api(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    sandbox.control(webhooks="delay", webhook_delay_ms=800)
    started = time.monotonic()
    created = sandbox.create()
    assert time.monotonic() - started < 0.7
    assert receiver.for_payment(created["id"]) == []
    receiver.wait_for(created["id"], 1)


def test_failed_deliveries_are_retried_and_recorded(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    receiver.fail_next(2)
    created = sandbox.create()
    hook = receiver.wait_for(created["id"], 1)[0]
    sandbox.wait_until(lambda: any(
        d["event_id"] == hook.event["id"] and d["status_code"] == 200 for d in sandbox.stats()["webhook_deliveries"]
    ))
    attempts = [(d["attempt"], d["status_code"]) for d in sandbox.stats()["webhook_deliveries"]
                if d["event_id"] == hook.event["id"]]
    assert attempts == [(1, 500), (2, 500), (3, 200)]


# -- API faults ---------------------------------------------------------------------------------

def test_http_500_and_html_200_are_consumed_once(sandbox: Sandbox) -> None:
    before = sandbox.stats()["payments"]
    sandbox.control(fail_next={"create": "http_500"})
    assert sandbox.client.post(f"{sandbox.api}/payments", json=sandbox.payment_body()).status_code == 500
    sandbox.control(fail_next={"create": "html_200"})
    html = sandbox.client.post(f"{sandbox.api}/payments", json=sandbox.payment_body())
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert sandbox.stats()["payments"] == before
    payment_id = sandbox.create()["id"]
    sandbox.control(fail_next={"details": "http_500"})
    assert sandbox.client.get(f"{sandbox.api}/payments/{payment_id}").status_code == 500
    assert sandbox.client.get(f"{sandbox.api}/payments/{payment_id}").status_code == 200
    assert sandbox.client.get(f"{sandbox.api}/_control").json()["fail_next"] == {}


def test_timeout_does_no_work(sandbox: Sandbox) -> None:
    before = sandbox.stats()["payments"]
    sandbox.control(fail_next={"create": "timeout"}, api_delay_ms=1200)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.client.post(f"{sandbox.api}/payments", json=sandbox.payment_body(), timeout=0.4)
    time.sleep(1.0)
    assert sandbox.stats()["payments"] == before


def test_accept_then_timeout_with_a_retried_key_charges_once(sandbox: Sandbox) -> None:
    sandbox.control(fail_next={"create": "accept_then_timeout"}, api_delay_ms=1200)
    key = f"order-{time.time_ns()}"
    before = sandbox.stats()["payments"]
    with pytest.raises(httpx.ReadTimeout):
        sandbox.client.post(f"{sandbox.api}/payments", json=sandbox.payment_body(),
                            headers={"Cko-Idempotency-Key": key}, timeout=0.4)
    retried = sandbox.create(idempotency_key=key)
    stats = sandbox.stats()
    assert stats["payments"] == before + 1
    assert stats["creates_by_idempotency_key"][key] == {"requests": 2, "payments": 1}
    assert sandbox.details(retried["id"])["status"] == "Pending"


def test_control_validation(sandbox: Sandbox) -> None:
    for bad in ({"webhooks": "sometimes"}, {"fail_next": {"create": "explode"}}, {"fail_next": {"nothing": "http_500"}},
                {"expire_after_s": -1}, {"surprise": 1}):
        assert sandbox.client.post(f"{sandbox.api}/_control", json=bad).status_code == 422, bad


# -- card data ----------------------------------------------------------------------------------

def _sandbox_rows(database_url: str) -> list[str]:
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return [f"{key} {data}" for key, data in connection.execute("SELECT key, data FROM sandbox_record")]

    async def fetch() -> list[str]:
        import asyncpg

        connection = await asyncpg.connect(dsn=database_url)
        try:
            rows = await connection.fetch("SELECT key, data::text AS data FROM sandbox_record")
        finally:
            await connection.close()
        return [f"{row['key']} {row['data']}" for row in rows]

    return run_async(fetch)


def _string_values(value: object) -> list[str]:
    if isinstance(value, dict):
        return [*map(str, value.keys()), *(s for v in value.values() for s in _string_values(v))]
    if isinstance(value, list):
        return [s for v in value for s in _string_values(v)]
    return [str(value)]


def test_card_number_and_pin_are_never_stored_or_logged(sandbox: Sandbox, database_url: str) -> None:
    created = sandbox.create()
    _session_id(sandbox.submit(created["_links"]["redirect"]["href"], card="8888 8800 0000 0001"))
    declined = sandbox.create()
    _session_id(sandbox.submit(declined["_links"]["redirect"]["href"], pin="8642"))
    rows = _sandbox_rows(database_url)
    assert any(created["id"] in row for row in rows)
    for row in rows:
        key, _, data = row.partition(" ")
        assert APPROVED_CARD not in row and "8888 8800" not in row
        values = _string_values(json.loads(data)) if data.startswith(("{", "[")) else [data]
        assert PIN not in values and "8642" not in values
        assert not any(name in ("pin", "card_number") for name in values)
    port = urlsplit(sandbox.shop_url).port
    log_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"shop-live-{port}.log"
    assert APPROVED_CARD not in log_file.read_text()


# -- Payment Setup API --------------------------------------------------------------------------

def test_payment_setup_flow(sandbox: Sandbox, receiver: WebhookReceiver) -> None:
    body = {
        "amount": 1000, "currency": "KWD", "processing_channel_id": CHANNEL, "reference": "ORD-5023-4E89",
        "description": "Order", "payment_methods": {"knet": {"language": "en"}},
        "settings": {"success_url": "https://example.com/payments/success"},
    }
    created = sandbox.client.post(f"{sandbox.api}/payments/setups", json=body)
    assert created.status_code == 200, created.text
    setup = created.json()
    assert re.match(r"^set_[a-z2-7]{26}$", setup["id"]) and setup["payment_type"] == "Regular"
    assert setup["payment_methods"]["knet"] == {
        "status": "action_required", "flags": ["failure_url_required"], "language": "en",
    }
    assert setup["available_payment_methods"] == ["knet"]
    confirm_url = f"{sandbox.api}/payments/setups/{setup['id']}/confirm/knet"
    assert sandbox.client.post(confirm_url).status_code == 422

    updated = sandbox.client.put(f"{sandbox.api}/payments/setups/{setup['id']}", json={
        "settings": {"failure_url": "https://example.com/payments/failure"}, "payment_methods": {"knet": {"language": "ar"}},
    }).json()
    assert updated["payment_methods"]["knet"]["status"] == "ready" and updated["payment_methods"]["knet"]["flags"] == []
    assert sandbox.client.get(f"{sandbox.api}/payments/setups/{setup['id']}").json() == updated

    confirmed = sandbox.client.post(confirm_url)
    assert confirmed.status_code == 202
    payment = confirmed.json()
    assert PAY_ID.match(payment["id"]) and payment["status"] == "Pending" and payment["_links"]["redirect"]["href"]
    assert sandbox.client.post(confirm_url).json()["id"] == payment["id"]  # never a second payment
    page = httpx.get(payment["_links"]["redirect"]["href"])
    assert 'dir="rtl"' in page.text
    response = sandbox.submit(payment["_links"]["redirect"]["href"])
    assert response.headers["location"].startswith("https://example.com/payments/success?cko-session-id=sid_")
    details = sandbox.details(payment["id"])
    assert details["status"] == "Captured" and details["amount"] == 1000 and details["reference"] == "ORD-5023-4E89"
    assert sandbox.client.get(f"{sandbox.api}/payments/setups/set_{'c' * 26}").status_code == 404


# -- the official SDK as a client ---------------------------------------------------------------

def test_official_checkout_sdk_works_against_the_sandbox(sandbox: Sandbox) -> None:
    from checkout_sdk.checkout_sdk import CheckoutSdk
    from checkout_sdk.common.enums import Currency
    from checkout_sdk.environment import Environment
    from checkout_sdk.payments.payment_apm import RequestKnetSource
    from checkout_sdk.payments.payments import PaymentRequest, RefundRequest
    from checkout_sdk.payments.setups.setups import PaymentSetupsRequest

    base = f"{sandbox.api}/"
    environment = Environment(
        base_uri=base, authorization_uri=f"{base}connect/token", files_uri=base, transfers_uri=base,
        balances_uri=base, forward_uri=base, identity_uri=base, is_sandbox=True,
    )
    with warnings.catch_warnings():
        # A merchant subdomain cannot be prefixed to 127.0.0.1: use the shared-host mode.
        warnings.simplefilter("ignore", DeprecationWarning)
        api = CheckoutSdk.builder().secret_key(SECRET_KEY).environment(environment).use_legacy_domain().build()

    source = RequestKnetSource()
    source.language = "en"
    source.user_defined_field1 = "ORD SDK 1"
    request = PaymentRequest()
    request.source = source
    request.amount = 7500
    request.currency = Currency.KWD
    request.reference = "ORD-SDK-1"
    request.processing_channel_id = CHANNEL
    request.success_url = "https://example.com/success"
    request.failure_url = "https://example.com/failure"
    created = api.payments.request_payment(request, idempotency_key=f"sdk-{time.time_ns()}")
    assert created.http_metadata.status_code == 202 and created.status == "Pending"
    redirect = created._links.redirect.href

    assert api.payments.get_payment_details(created.id).status == "Pending"
    _session_id(sandbox.submit(redirect))
    details = api.payments.get_payment_details(created.id)
    assert details.status == "Captured" and details.approved is True and details.source.knet_result == "Captured"

    partial = RefundRequest()
    partial.amount = 2500
    partial.reference = "RF-SDK-1"
    assert api.payments.refund_payment(created.id, partial, idempotency_key=f"sdk-rf-{time.time_ns()}").action_id
    sandbox.wait_until(lambda: api.payments.get_payment_details(created.id).status == "Partially Refunded")
    assert api.payments.refund_payment(created.id).http_metadata.status_code == 202  # no body: the rest
    sandbox.wait_until(lambda: api.payments.get_payment_details(created.id).status == "Refunded")
    actions = api.payments.get_payment_actions(created.id).items
    assert [a.type for a in actions].count("Refund") == 2 and actions[-1].type == "Payment"

    setup_request = PaymentSetupsRequest()
    setup_request.amount = 1000
    setup_request.currency = Currency.KWD
    setup_request.processing_channel_id = CHANNEL
    setup_request.reference = "ORD-SDK-2"
    setup_request.settings = {"success_url": "https://example.com/s", "failure_url": "https://example.com/f"}
    setup_request.payment_methods = {"knet": {"language": "en"}}
    setup = api.setups.create_payment_setup(setup_request)
    assert setup.payment_methods.knet.status == "ready"
    confirmed = api.setups.confirm_payment_setup(setup.id, "knet")
    assert confirmed.status == "Pending" and confirmed.id.startswith("pay_")


# -- concurrency across processes ---------------------------------------------------------------

def test_concurrent_submissions_decide_a_payment_once(sandbox_two_processes: Sandbox,
                                                      receiver: WebhookReceiver) -> None:
    sandbox = sandbox_two_processes
    created = sandbox.create()
    redirect = created["_links"]["redirect"]["href"]
    assert httpx.get(redirect).status_code == 200
    forms = [
        {"bank": "KNET1", "card_number": APPROVED_CARD, "expiry_month": "09", "expiry_year": "2025", "pin": PIN},
        {"action": "cancel"},
    ] * 4
    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        responses = list(pool.map(lambda form: httpx.post(redirect, data=form, timeout=15), forms))
    assert sorted(r.status_code for r in responses) == [303] + [410] * (len(forms) - 1)
    status = sandbox.details(created["id"])["status"]
    assert status in ("Captured", "Canceled")
    expected = 3 if status == "Captured" else 2
    receiver.wait_for(created["id"], expected)
    time.sleep(0.3)
    assert len(receiver.for_payment(created["id"])) == expected


def test_concurrent_refunds_never_exceed_the_balance(sandbox_two_processes: Sandbox) -> None:
    sandbox = sandbox_two_processes
    payment_id = _captured(sandbox, amount=12500)
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: _refund(sandbox, payment_id, amount=5000), range(6)))
    assert sorted(r.status_code for r in responses) == [202, 202, 422, 422, 422, 422]
    sandbox.wait_until(lambda: len([a for a in sandbox.client.get(
        f"{sandbox.api}/payments/{payment_id}/actions").json() if a["type"] == "Refund"]) == 2)
    assert sandbox.details(payment_id)["status"] == "Partially Refunded"
