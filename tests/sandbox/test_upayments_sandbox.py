"""The UPayments sandbox over real HTTP, driven by the real adapter: charges, the KNET page,
status, notifications, refunds, invoices, multi-vendor splits, faults."""
from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from shop.payments.providers.base import (
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
    VendorSplit,
)
from shop.payments.providers.upayments import UpaymentsProvider
from shop.payments.states import PaymentStatus
from shop.settings import SANDBOX_CREDENTIALS, Settings
from tests.sandbox.test_checkout_sandbox import _sandbox_rows, _string_values
from tests.support import wait_until
from tests.webhook_receiver import Received, WebhookReceiver, webhook_receiver

API_KEY = SANDBOX_CREDENTIALS["UPAYMENTS_API_KEY"]
APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"
IBAN_A, IBAN_B = "KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457"  # seed 004
TRACK_ID = re.compile(r"^\d{29}$")


def fields_of(received: Received) -> dict[str, str]:
    """A notification's fields, JSON or form."""
    if received.headers.get("content-type", "").startswith("application/json"):
        return json.loads(received.body)
    return dict(parse_qsl(received.body.decode()))


@pytest.fixture(scope="module")
def upay_receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/webhooks/upayments") as state:
        state.payment_id_of = lambda r: fields_of(r).get("track_id")
        yield state


class Upay:
    """The sandbox's API as a merchant calls it raw, its controls, and a customer's browser."""

    def __init__(self, shop_url: str, receiver: WebhookReceiver) -> None:
        self.shop_url = shop_url
        self.root = f"{shop_url}/sandbox/upayments"
        self.api = f"{self.root}/api/v1"
        self.receiver = receiver
        self.client = httpx.Client(timeout=15, headers={"Authorization": f"Bearer {API_KEY}"})

    def body(self, **changes: Any) -> dict[str, Any]:
        order_id = f"T{time.time_ns()}"
        body: dict[str, Any] = {
            "products": [{"name": "Oud", "description": "Oud 50 ml", "price": 12.5, "quantity": 1}],
            "order": {"id": order_id, "reference": "ORD-1", "description": "Dira Market order", "currency": "KWD",
                      "amount": 12.5},
            "language": "en",
            "paymentGateway": {"src": "knet"},
            "reference": {"id": "ORD-1"},
            "customer": {"uniqueId": "c1", "name": "Fatima", "email": "fatima@example.com", "mobile": "+96555123456"},
            "returnUrl": "https://merchant.example/return",
            "cancelUrl": "https://merchant.example/cancel",
            "notificationUrl": self.receiver.url,
        }
        body.update(changes)
        return body

    def charge(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.api}/charge", json=self.body(**changes))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] is True
        return answer["data"]

    def status(self, track_id: str) -> dict[str, Any]:
        response = self.client.get(f"{self.api}/get-payment-status/{track_id}")
        assert response.status_code == 201, response.text
        return response.json()["data"]["transaction"]

    def page_url(self, link: str) -> str:
        """Follow KNET's paymentInit to the payment page, as the browser does."""
        init = httpx.get(link)
        assert init.status_code == 302, init.text
        return str(httpx.URL(link).join(init.headers["location"]))

    def pay(self, link: str, card: str = APPROVED_CARD, pin: str = PIN, action: str = "pay",
            wait_s: float = 0) -> httpx.Response:
        page = self.page_url(link)
        with httpx.Client(timeout=15, follow_redirects=False) as browser:
            assert browser.get(page).status_code == 200
            time.sleep(wait_s)
            return browser.post(page, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                            "expiry_year": "2030", "pin": pin, "action": action})

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.root}/_control", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.client.get(f"{self.root}/_stats").json()

    def adapter(self, timeout: float = 5.0) -> UpaymentsProvider:
        settings = Settings(secret_key="x" * 40, public_url=self.shop_url)
        return UpaymentsProvider(settings, httpx.AsyncClient(timeout=timeout))

    def request(self, amount_fils: int = 12500, **changes: Any) -> PaymentRequest:
        reference = f"DM{time.time_ns()}"
        values: dict[str, Any] = dict(
            merchant_reference=reference + "01", order_reference=reference, amount_fils=amount_fils, currency="KWD",
            language="en", idempotency_key="k", return_url="https://merchant.example/payments/upayments/return?ref=X",
            webhook_url=self.receiver.url, customer_name="Fatima Al-Sabah", customer_email="fatima@example.com",
            customer_phone="+96555123456", description=f"Order {reference}",
        )
        values.update(changes)
        return PaymentRequest(**values)

    @staticmethod
    def wait_until(check: Any, timeout_s: float = 8.0) -> None:
        wait_until(check, timeout_s)


@pytest.fixture()
def upay(shop_url: str, upay_receiver: WebhookReceiver) -> Iterator[Upay]:
    sandbox = Upay(shop_url, upay_receiver)
    assert sandbox.client.delete(f"{sandbox.root}/_control").status_code == 200
    upay_receiver.clear()
    sandbox.control(webhook_backoff_ms=50, refund_delay_ms=100, status_rate_limit=0)
    try:
        yield sandbox
    finally:
        sandbox.client.close()


def back_params(response: httpx.Response) -> dict[str, str]:
    """The return's query as the shop's framework reads it (a repeated name: the last wins)."""
    assert response.status_code == 303, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query, keep_blank_values=True))


# -- the API's edges ------------------------------------------------------------------------------

def test_bearer_key_is_required(upay: Upay) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        refused = httpx.post(f"{upay.api}/charge", json=upay.body(), headers=headers)
        assert refused.status_code == 401 and refused.json() == {"status": False, "message": "Unauthenticated."}
    assert httpx.get(f"{upay.api}/get-payment-status/1").status_code == 401


@pytest.mark.parametrize(("change", "field"), [
    ({"order": {"id": "A1", "description": "d", "currency": "KWD", "amount": "12.500"}}, "order.amount"),
    ({"order": {"id": "A1", "description": "d", "currency": "KWD", "amount": 12.5001}}, "order.amount"),
    ({"order": {"id": "A1", "description": "d", "currency": "USD", "amount": 1}}, "order.currency"),
    ({"order": {"id": "A" * 41, "description": "d", "currency": "KWD", "amount": 1}}, "order.id"),
    ({"language": "fr"}, "language"),
    ({"returnUrl": "javascript:alert(1)"}, "returnUrl"),
    ({"notificationUrl": None}, "notificationUrl"),
    ({"reference": None}, "reference.id"),
    ({"customer": {"uniqueId": "c", "name": "n", "email": "not-an-email", "mobile": "+96555123456"}}, "customer.email"),
    ({"paymentGateway": {"src": "bitcoin"}}, "paymentGateway.src"),
    ({"paymentGateway": {"src": "create-invoice"}}, "notificationType"),
    ({"products": [{"name": "x", "price": "1", "quantity": 1}]}, "products.0.price"),
    ({"extraMerchantData": [{"amount": 12.5, "ibanNumber": "KW91KFHO0000000000051010173255"}]},
     "extraMerchantData.0.ibanNumber"),
    ({"extraMerchantData": [{"amount": 10, "knetCharge": 1, "knetChargeType": "fixed", "ibanNumber": IBAN_A}]},
     "extraMerchantData"),
])
def test_validation_errors_have_upayments_shape(upay: Upay, change: dict[str, Any], field: str) -> None:
    response = upay.client.post(f"{upay.api}/charge", json=upay.body(**change))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] is False and answer["message"] and field in answer["errors"], answer


def test_split_sum_and_unknown_source_messages(upay: Upay) -> None:
    body = upay.body(extraMerchantData=[{"amount": 10, "ibanNumber": IBAN_A}, {"amount": 2, "ibanNumber": IBAN_B}])
    answer = upay.client.post(f"{upay.api}/charge", json=body).json()
    assert answer["message"] == "The sum of extraMerchantData amounts must be equal to the order amount."
    not_enabled = upay.client.post(f"{upay.api}/charge", json=upay.body(paymentGateway={"src": "cc"}))
    assert not_enabled.status_code == 400 and "not enabled" in not_enabled.json()["message"]
    bad_json = upay.client.post(f"{upay.api}/charge", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["status"] is False


def test_knet_charge_answers_knets_own_link(upay: Upay) -> None:
    data = upay.charge()
    assert TRACK_ID.match(data["trackId"])
    link = urlsplit(data["link"])
    assert link.path == "/sandbox/upayments/kpg/PaymentHTTP.htm"
    query = parse_qs(link.query)
    assert query["param"] == ["paymentInit"] and re.match(r"^[0-9a-f]{96}$", query["trandata"][0])
    assert query["tranportalId"] and query["responseURL"] and query["errorURL"]
    transaction = upay.status(data["trackId"])
    assert transaction["result"] is None and transaction["payment_id"] is None
    assert transaction["total_price"] == "12.500" and transaction["currency_type"] == "KWD"
    assert transaction["reference"] == "ORD-1" and transaction["payment_type"] == "knet"
    assert transaction["refund_order_id"]
    unknown = upay.client.get(f"{upay.api}/get-payment-status/{'9' * 29}")
    assert unknown.status_code == 404 and unknown.json()["status"] is False
    assert httpx.get(data["link"].replace("trandata=", "trandata=00")).status_code == 404


def test_same_order_id_answers_the_same_payment(upay: Upay) -> None:
    body = upay.body()
    first = upay.client.post(f"{upay.api}/charge", json=body).json()
    again = upay.client.post(f"{upay.api}/charge", json=body).json()
    assert first == again
    other = {**body, "order": {**body["order"], "amount": 13}}
    refused = upay.client.post(f"{upay.api}/charge", json=other)
    assert refused.status_code == 400 and refused.json()["status"] is False
    assert upay.stats()["charges_by_order_id"][body["order"]["id"]] == {"requests": 3, "payments": 1}


def test_amounts_arrive_as_exact_numbers(upay: Upay) -> None:
    body = json.dumps(upay.body()).replace('"amount": 12.5', '"amount": 12.500').encode()
    response = upay.client.post(f"{upay.api}/charge", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert upay.status(response.json()["data"]["trackId"])["total_price"] == "12.500"


# -- paying through the adapter --------------------------------------------------------------------

async def test_success_return_status_and_notification(upay: Upay) -> None:
    adapter = upay.adapter()
    request = upay.request(amount_fils=12340, language="ar")
    started = await adapter.start_payment(request)
    assert TRACK_ID.match(started.provider_payment_id or "")
    page = httpx.get(upay.page_url(started.redirect_url))
    assert 'dir="rtl"' in page.text and "الرقم السري" in page.text

    back = upay.pay(started.redirect_url)
    location = back.headers["location"]
    assert location.startswith("https://merchant.example/payments/upayments/return?ref=X&payment_id=")
    params = back_params(back)
    assert params["result"] == "CAPTURED" and params["requested_order_id"] == request.merchant_reference
    hint = adapter.parse_return(params)
    assert hint.provider_payment_id == started.provider_payment_id
    assert hint.merchant_reference == request.merchant_reference

    observation = await adapter.inquire(hint.provider_payment_id, request.merchant_reference)
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 12340
    assert observation.currency == "KWD" and observation.merchant_reference == request.merchant_reference
    receipt = observation.receipt
    assert re.match(r"^\d{18}$", receipt.payment_id) and receipt.payment_id == params["payment_id"]
    assert re.match(r"^\d{15}$", receipt.transaction_id) and re.match(r"^\d{12}$", receipt.bank_reference)
    assert re.match(r"^[A-Z0-9]{6}$", receipt.auth_code) and re.match(r"^\d{4}$", receipt.post_date)
    assert receipt.track_id == started.provider_payment_id and receipt.result == "CAPTURED"

    [hook] = upay.receiver.wait_for(started.provider_payment_id, 1)
    assert hook.path == "/webhooks/upayments" and hook.headers["content-type"] == "application/json"
    assert "signature" not in " ".join(hook.headers).lower()  # UPayments signs nothing
    [hint_obs] = adapter.verify_webhook(hook.headers, hook.body)
    assert hint_obs.trusted is False and hint_obs.status == PaymentStatus.CAPTURED
    assert hint_obs.merchant_reference == request.merchant_reference

    again = httpx.post(upay.page_url(started.redirect_url), data={"bank": "KNET1", "card_number": APPROVED_CARD,
                                                                  "expiry_month": "09", "expiry_year": "2030", "pin": PIN})
    assert again.status_code == 410  # decided once


@pytest.mark.parametrize(("card", "pin", "action", "result", "status"), [
    (DECLINED_CARD, PIN, "pay", "NOT CAPTURED", PaymentStatus.DECLINED),
    (APPROVED_CARD, "9999", "pay", "NOT CAPTURED", PaymentStatus.DECLINED),
    ("", "", "cancel", "CANCELED", PaymentStatus.CANCELLED),
])
async def test_decline_and_cancel_go_to_the_cancel_url(upay: Upay, card: str, pin: str, action: str, result: str,
                                                     status: PaymentStatus) -> None:
    adapter = upay.adapter()
    request = upay.request()
    started = await adapter.start_payment(request)
    back = upay.pay(started.redirect_url, card=card, pin=pin, action=action)
    params = back_params(back)
    assert params["result"] == result and params["auth"] == ""
    observation = await adapter.inquire(started.provider_payment_id, request.merchant_reference)
    assert observation.status == status and observation.failure_reason == result
    [hook] = upay.receiver.wait_for(started.provider_payment_id or "", 1)
    assert fields_of(hook)["result"] == result


async def test_submitting_after_the_knet_window(upay: Upay) -> None:
    upay.control(expire_after_s=0.3)
    adapter = upay.adapter()
    request = upay.request()
    started = await adapter.start_payment(request)
    params = back_params(upay.pay(started.redirect_url, wait_s=0.5))
    assert params["result"] == "CANCELED"
    observation = await adapter.inquire(started.provider_payment_id, request.merchant_reference)
    assert observation.status == PaymentStatus.CANCELLED
    assert httpx.get(upay.page_url(started.redirect_url)).status_code == 410


async def test_a_link_nobody_pays_stays_without_a_result(upay: Upay) -> None:
    adapter = upay.adapter()
    request = upay.request()
    started = await adapter.start_payment(request)
    upay.control(expire_after_s=0)
    observation = await adapter.inquire(started.provider_payment_id, request.merchant_reference)
    # Nothing final to report: the shop expires the attempt at its own window.
    assert observation.status == PaymentStatus.PENDING and observation.receipt.result == ""
    gone = httpx.get(upay.page_url(started.redirect_url))
    assert gone.status_code == 410 and "no longer available" in gone.text
    time.sleep(0.3)
    assert upay.receiver.for_payment(started.provider_payment_id or "") == []


async def test_inquiry_without_a_track_id_or_for_an_unknown_one(upay: Upay) -> None:
    adapter = upay.adapter()
    assert (await adapter.inquire(None, "DM1")).status is None
    unknown = await adapter.inquire("9" * 29, "DM1")
    assert unknown.status is None and unknown.event_type == "not found"
    wrong_key = UpaymentsProvider(Settings(secret_key="x" * 40, public_url=upay.shop_url,
                                           provider_settings={"SHOP_UPAYMENTS_API_KEY": "wrong"}), httpx.AsyncClient())
    with pytest.raises(ProviderRejected, match="401"):
        await wrong_key.inquire("9" * 29, "DM1")  # a refused key says nothing about the payment


# -- faults and limits -----------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["timeout", "http_500", "html_200", "accept_then_timeout"])
async def test_charge_faults_are_unknown_outcomes(upay: Upay, fault: str) -> None:
    upay.control(fail_next={"charge": fault}, api_delay_ms=1200)
    before = upay.stats()["payments"]
    with pytest.raises(ProviderUnavailable):
        await upay.adapter(timeout=0.4).start_payment(upay.request())
    time.sleep(1.0 if "timeout" in fault else 0)
    assert upay.stats()["payments"] == before + (1 if fault == "accept_then_timeout" else 0)


async def test_status_timeout_and_the_rate_limit(upay: Upay) -> None:
    adapter = upay.adapter(timeout=0.4)
    request = upay.request()
    started = await adapter.start_payment(request)
    upay.control(fail_next={"status": "timeout"}, api_delay_ms=1200)
    with pytest.raises(ProviderUnavailable):
        await adapter.inquire(started.provider_payment_id, request.merchant_reference)
    upay.control(status_rate_limit=3)
    for _ in range(3):
        assert (await adapter.inquire(started.provider_payment_id, request.merchant_reference)).status == "pending"
    limited = upay.client.get(f"{upay.api}/get-payment-status/{started.provider_payment_id}")
    assert limited.status_code == 429 and limited.json() == {"status": False, "message": "Too Many Attempts."}
    with pytest.raises(ProviderUnavailable, match="rate limited"):
        await adapter.inquire(started.provider_payment_id, request.merchant_reference)


def test_control_validation(upay: Upay) -> None:
    for bad in ({"append_quirk": "yes"}, {"notification_format": "xml"}, {"status_rate_limit": -1},
                {"webhooks": "sometimes"}, {"fail_next": {"create": "timeout"}}, {"surprise": 1}):
        assert upay.client.post(f"{upay.root}/_control", json=bad).status_code == 422, bad
    controls = upay.client.get(f"{upay.root}/_control").json()
    assert controls["append_quirk"] is False and controls["notification_format"] == "json"


# -- notifications ---------------------------------------------------------------------------------

async def test_duplicate_notifications_are_byte_identical(upay: Upay) -> None:
    upay.control(webhooks="duplicate", duplicate_count=3)
    started = await upay.adapter().start_payment(upay.request())
    upay.pay(started.redirect_url)
    hooks = upay.receiver.wait_for(started.provider_payment_id or "", 3)
    assert len({h.body for h in hooks}) == 1


async def test_form_notifications_and_the_query_string_quirk(upay: Upay) -> None:
    upay.control(notification_format="form", append_quirk=True)
    adapter = upay.adapter()
    request = upay.request()
    started = await adapter.start_payment(request)
    back = upay.pay(started.redirect_url)
    assert "/return?ref=X?payment_id=" in back.headers["location"]
    hint = adapter.parse_return(back_params(back))
    assert hint.provider_payment_id == started.provider_payment_id
    assert hint.merchant_reference == request.merchant_reference
    [hook] = upay.receiver.wait_for(started.provider_payment_id or "", 1)
    assert hook.headers["content-type"] == "application/x-www-form-urlencoded"
    [observation] = adapter.verify_webhook(hook.headers, hook.body)
    assert observation.status == PaymentStatus.CAPTURED and observation.trusted is False


async def test_failed_deliveries_are_retried_and_dropped_ones_replayed(upay: Upay) -> None:
    upay.receiver.fail_next(2)
    started = await upay.adapter().start_payment(upay.request())
    upay.pay(started.redirect_url)
    upay.receiver.wait_for(started.provider_payment_id or "", 1)
    upay.wait_until(lambda: [(d["attempt"], d["status_code"]) for d in upay.stats()["webhook_deliveries"]
                             if d["type"] == "payment.captured"][-3:] == [(1, 500), (2, 500), (3, 200)])

    upay.control(webhooks="drop")
    dropped = await upay.adapter().start_payment(upay.request())
    upay.pay(dropped.redirect_url)
    time.sleep(0.3)
    assert upay.receiver.for_payment(dropped.provider_payment_id or "") == []
    replay = upay.client.post(f"{upay.root}/_webhooks/replay/{dropped.provider_payment_id}")
    assert replay.status_code == 202 and len(replay.json()["events"]) == 1
    assert fields_of(upay.receiver.wait_for(dropped.provider_payment_id or "", 1)[0])["result"] == "CAPTURED"


# -- refunds ---------------------------------------------------------------------------------------

async def _captured(upay: Upay, adapter: UpaymentsProvider, amount_fils: int = 12500) -> str:
    started = await adapter.start_payment(upay.request(amount_fils=amount_fils))
    upay.pay(started.redirect_url)
    return started.provider_payment_id or ""


def _refund(track_id: str, amount_fils: int) -> RefundRequest:
    return RefundRequest(provider_payment_id=track_id, amount_fils=amount_fils, currency="KWD",
                         idempotency_key="k", reference=f"RF{time.time_ns()}")


async def test_partial_then_full_refunds(upay: Upay) -> None:
    upay.control(webhook_url=upay.receiver.url)  # refunds notify the shop's webhook URL otherwise
    adapter = upay.adapter()
    track_id = await _captured(upay, adapter)
    first = await adapter.refund(_refund(track_id, 2500))
    assert first.status == "pending" and re.match(r"^\d{12}$", first.provider_refund_id or "")
    assert first.raw["message"] == "Refund invoice generated successfully"
    assert set(first.raw["data"]) == {"orderId", "refundOrderId", "refundArn"}
    upay.wait_until(lambda: upay.client.get(
        f"{upay.api}/check-refund-status/{first.provider_refund_id}").json()["data"]["refundStatus"] == "REFUNDED")
    settled = await adapter.inquire_refund(first.provider_refund_id or "")
    assert (settled.refund_status, settled.refund_amount_fils) == ("succeeded", 2500)

    with pytest.raises(ProviderRejected, match="exceeds"):
        await adapter.refund(_refund(track_id, 10001))
    rest = await adapter.refund(_refund(track_id, 10000))
    upay.wait_until(lambda: upay.client.get(
        f"{upay.api}/check-refund-status/{rest.provider_refund_id}").json()["data"]["refundStatus"] == "REFUNDED")
    with pytest.raises(ProviderRejected):
        await adapter.refund(_refund(track_id, 1))
    # Still CAPTURED at UPayments: the money came in, and went back by refunds.
    assert (await adapter.inquire(track_id, "")).status == PaymentStatus.CAPTURED

    refund_order_id = upay.status(track_id)["refund_order_id"]
    listing = upay.client.get(f"{upay.api}/check-refund/{refund_order_id}").json()["data"]["refunds"]
    assert sorted(r["totalPrice"] for r in listing) == ["10.000", "2.500"]
    notes = [fields_of(h) for h in upay.receiver.wait_for(track_id, 3)]
    refunds = [n for n in notes if "refundOrderId" in n]
    assert sorted(n["totalPrice"] for n in refunds) == ["10.000", "2.500"]
    for note in refunds:
        [observation] = adapter.verify_webhook({}, json.dumps(note).encode())
        assert observation.refund_status == "succeeded" and observation.trusted is False


async def test_refund_notifications_sent_together_can_be_reordered(upay: Upay) -> None:
    upay.control(webhook_url=upay.receiver.url, refund_delay_ms=5000)
    adapter = upay.adapter()
    track_id = await _captured(upay, adapter)
    upay.receiver.wait_for(track_id, 1)
    first = await adapter.refund(_refund(track_id, 1000))
    second = await adapter.refund(_refund(track_id, 2000))
    upay.control(webhooks="reorder", refund_delay_ms=0)
    await adapter.inquire_refund(first.provider_refund_id or "")  # both settle in this one read
    hooks = upay.receiver.wait_for(track_id, 3)
    assert [fields_of(h)["refundOrderId"] for h in hooks[1:]] == [second.provider_refund_id, first.provider_refund_id]


async def test_declined_refund_and_unpaid_payments(upay: Upay) -> None:
    upay.control(refunds="decline")
    adapter = upay.adapter()
    unpaid = await adapter.start_payment(upay.request())
    with pytest.raises(ProviderRejected, match="paid"):
        await adapter.refund(_refund(unpaid.provider_payment_id or "", 100))
    track_id = await _captured(upay, adapter)
    refund = await adapter.refund(_refund(track_id, 5000))
    upay.wait_until(lambda: upay.client.get(
        f"{upay.api}/check-refund-status/{refund.provider_refund_id}").json()["data"]["refundStatus"] == "REJECTED")
    assert (await adapter.inquire_refund(refund.provider_refund_id or "")).refund_status == "failed"
    assert upay.client.get(f"{upay.api}/check-refund-status/1").status_code == 404


# -- invoices, multi-vendor, UPayments' own page ---------------------------------------------------

async def test_invoice_links(upay: Upay) -> None:
    adapter = upay.adapter()
    request = upay.request(amount_fils=7500)
    invoice = await adapter.create_invoice(request, "link")
    assert re.match(rf"^{re.escape(upay.root)}/invoice/\d{{10}}$", invoice.url)
    assert invoice.provider_payment_id == f"invoice:{invoice.invoice_id}"
    opened = httpx.get(invoice.url)
    assert opened.status_code == 303 and "/kpg/PaymentHTTP.htm?param=paymentInit" in opened.headers["location"]
    upay.pay(opened.headers["location"])
    observation = await adapter.inquire(invoice.provider_payment_id, request.merchant_reference)
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 7500

    emailed = await adapter.create_invoice(upay.request(), "all")
    messages = [m for m in upay.stats()["invoice_messages"] if m["invoice_id"] == emailed.invoice_id]
    assert sorted((m["channel"], m["to"]) for m in messages) == [("email", "fatima@example.com"),
                                                                 ("sms", "+96555123456")]
    assert all(m["link"] == emailed.url for m in messages)
    with pytest.raises(ProviderRejected):
        await adapter.create_invoice(upay.request(), "fax")
    no_mobile = upay.body(paymentGateway={"src": "create-invoice"}, notificationType="sms",
                          customer={"uniqueId": "c", "name": "n", "email": "a@b.co"})
    assert upay.client.post(f"{upay.api}/charge", json=no_mobile).status_code == 400


async def test_multi_vendor_split(upay: Upay) -> None:
    adapter = upay.adapter()
    splits = (VendorSplit("v1", IBAN_A, 8000, 500), VendorSplit("v2", IBAN_B, 4500, 250))
    started = await adapter.start_payment(upay.request(amount_fils=12500, splits=splits))
    assert started.provider_payment_id
    wrong = upay.body(extraMerchantData=[
        {"amount": Decimal("8.000"), "knetCharge": Decimal("0.500"), "knetChargeType": "fixed", "ibanNumber": IBAN_A},
        {"amount": Decimal("4.000"), "knetCharge": 5, "knetChargeType": "percentage", "ibanNumber": IBAN_B},
    ])
    body = json.dumps(wrong, default=str).replace('"8.000"', "8.000").replace('"4.000"', "4.000").replace(
        '"0.500"', "0.500")
    refused = upay.client.post(f"{upay.api}/charge", content=body.encode(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and "sum of extraMerchantData" in refused.json()["message"]


async def test_a_split_payment_is_refunded_vendor_by_vendor(upay: Upay) -> None:
    adapter = upay.adapter()
    splits = (VendorSplit("v1", IBAN_A, 8000, 500), VendorSplit("v2", IBAN_B, 4500, 0))
    started = await adapter.start_payment(upay.request(amount_fils=12500, splits=splits))
    upay.pay(started.redirect_url)
    track_id = started.provider_payment_id or ""
    refund_order_id = upay.status(track_id)["refund_order_id"]
    # Asked plainly, UPayments answers what each vendor IBAN can give back and refunds nothing yet.
    asked = upay.client.post(f"{upay.api}/create-refund", json={"orderId": refund_order_id, "totalPrice": 1})
    data = asked.json()["data"]
    assert data["isMultivendorRefund"] is True and "refundOrderId" not in data
    assert [(e["ibanNumber"], e["totalPaid"], e["remainingLimit"]) for e in data["refundPayload"]] == [
        (IBAN_A, "8.000", "8.000"), (IBAN_B, "4.500", "4.500")]
    # The adapter then says how much to take from each, in proportion: 2.500 is 1.600 + 0.900.
    first = await adapter.refund(_refund(track_id, 2500))
    assert re.match(r"^\d{12}$", first.provider_refund_id or "")
    upay.wait_until(lambda: upay.client.get(
        f"{upay.api}/check-refund-status/{first.provider_refund_id}").json()["data"]["totalPrice"] == "2.500")
    again = upay.client.post(f"{upay.api}/create-refund", json={"orderId": refund_order_id, "totalPrice": 1})
    assert [(e["refundedAmount"], e["remainingLimit"]) for e in again.json()["data"]["refundPayload"]] == [
        ("1.600", "6.400"), ("0.900", "3.600")]
    with pytest.raises(ProviderRejected, match="cannot give back"):
        await adapter.refund(_refund(track_id, 10001))
    # A vendor's part beyond what it still holds is refused by UPayments itself.
    payload = [{**e, "amountToRefund": 7} for e in again.json()["data"]["refundPayload"]]
    over = upay.client.post(f"{upay.api}/create-multivendor-refund",
                            json={"orderId": refund_order_id, "refundPayload": payload})
    assert over.status_code == 400 and "remaining limit" in over.json()["message"]
    rest = await adapter.refund(_refund(track_id, 10000))
    assert rest.provider_refund_id and rest.provider_refund_id != first.provider_refund_id
    final = upay.client.post(f"{upay.api}/create-refund", json={"orderId": refund_order_id, "totalPrice": 1})
    assert [e["remainingLimit"] for e in final.json()["data"]["refundPayload"]] == ["0.000", "0.000"]


async def test_upayments_own_page_by_session_id(upay: Upay) -> None:
    body = upay.body()
    del body["paymentGateway"]
    response = upay.client.post(f"{upay.api}/charge", json=body).json()
    assert "trackId" not in response["data"]
    started = UpaymentsProvider.started(response)
    assert (started.provider_payment_id or "").startswith("session:")
    opened = httpx.get(started.redirect_url)
    assert opened.status_code == 303
    upay.pay(opened.headers["location"], card=DECLINED_CARD)
    observation = await upay.adapter().inquire(started.provider_payment_id, body["order"]["id"])
    assert observation.status == PaymentStatus.DECLINED
    assert observation.provider_payment_id == started.provider_payment_id


# -- card data -------------------------------------------------------------------------------------

async def test_card_number_and_pin_are_never_stored(upay: Upay, database_url: str) -> None:
    started = await upay.adapter().start_payment(upay.request())
    upay.pay(started.redirect_url, pin="8642")
    rows = [row for row in _sandbox_rows(database_url) if row.startswith("upayments:")]
    assert any(started.provider_payment_id in row for row in rows)
    for row in rows:
        _, _, data = row.partition(" ")
        assert APPROVED_CARD not in row
        values = _string_values(json.loads(data)) if data.startswith(("{", "[")) else [data]
        assert "8642" not in values and "pin" not in values and "card_number" not in values
