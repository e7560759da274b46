"""The APS sandbox over real HTTP, driven by the shop's own APS adapter: the signed form, the
KNET page, signed returns and feedback, CHECK_STATUS, refunds, payment links, faults."""
from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from shop.payments.providers.aps import ApsProvider, sign
from shop.payments.providers.base import (
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from shop.payments.states import PaymentStatus
from shop.sandbox.aps import aps_signature
from shop.settings import SANDBOX_CREDENTIALS, Settings
from tests.sandbox.test_checkout_sandbox import _sandbox_rows, _string_values
from tests.webhook_receiver import Received, WebhookReceiver, webhook_receiver

APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"
RESPONSE_PHRASE = SANDBOX_CREDENTIALS["APS_SHA_RESPONSE_PHRASE"]
REQUEST_PHRASE = SANDBOX_CREDENTIALS["APS_SHA_REQUEST_PHRASE"]
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
ACTION = re.compile(r'<form[^>]+action="([^"]+)"')


def hidden_form(page: str) -> tuple[str, dict[str, str]]:
    """The auto-submitting form of a page: where it posts and what."""
    action = ACTION.search(page)
    assert action, page[:500]
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in HIDDEN.findall(page)}


@pytest.fixture(scope="module")
def aps_receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/webhooks/aps") as state:
        state.payment_id_of = lambda r: r.event.get("merchant_reference")  # type: ignore[assignment]
        yield state


class Aps:
    """The APS sandbox of one live shop, and the shop's adapter pointed at it."""

    def __init__(self, shop_url: str, receiver: WebhookReceiver) -> None:
        self.shop_url = shop_url
        self.base = f"{shop_url}/sandbox/aps"
        self.receiver = receiver
        self.http = httpx.Client(timeout=15, follow_redirects=False)
        self.settings = Settings(secret_key="x" * 40, public_url=shop_url)

    def adapter(self, timeout: float = 10.0, **env: str) -> ApsProvider:
        settings = self.settings.with_(provider_settings={f"SHOP_{k}": v for k, v in env.items()})
        # No keep-alive: each call below runs in its own event loop.
        client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))
        return ApsProvider(settings, client)

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.base}/_control", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.http.get(f"{self.base}/_stats").json()

    def form(self, reference: str | None = None, **changes: Any) -> dict[str, str]:
        reference = reference or f"T{time.time_ns()}"
        values: dict[str, Any] = dict(
            merchant_reference=reference, order_reference=reference[:-2], amount_fils=12500, currency="KWD",
            language="en", idempotency_key="k", return_url=f"{self.shop_url}/payments/aps/return?ref={reference}",
            webhook_url=f"{self.shop_url}/webhooks/aps", customer_name="Fatima", customer_email="fatima@example.com",
            customer_phone="+96555123456", description=f"Order {reference}",
        )
        values.update(changes)
        return self.adapter().form_fields(PaymentRequest(**values))

    def post_page(self, fields: dict[str, str]) -> httpx.Response:
        return self.http.post(f"{self.base}/FortAPI/paymentPage", data=fields)

    def open(self, fields: dict[str, str]) -> str:
        """The browser posts the form; returns the KNET page URL it is sent to."""
        response = self.post_page(fields)
        assert response.status_code == 303, response.text[:500]
        location = response.headers["location"]
        assert re.match(rf"^{re.escape(self.base)}/knet/[A-Za-z0-9_-]{{32}}$", location), location
        return location

    def submit(self, knet_url: str, card: str = APPROVED_CARD, pin: str = PIN, action: str = "pay",
               land: bool = True) -> httpx.Response:
        if land:
            assert self.http.get(knet_url).status_code == 200
        return self.http.post(knet_url, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                              "expiry_year": "2030", "pin": pin, "action": action})

    def back(self, submitted: httpx.Response) -> tuple[str, dict[str, str]]:
        """Follow KNET's 303 to the APS result page: the signed form it posts to `return_url`."""
        assert submitted.status_code == 303, submitted.text[:500]
        page = self.http.get(submitted.headers["location"])
        assert page.status_code == 200
        assert "data-autosubmit" in page.text and '<script src="/static/js/autosubmit.js"></script>' in page.text
        assert "<script>" not in page.text and "onload" not in page.text
        return hidden_form(page.text)

    def pay(self, fields: dict[str, str], **kwargs: Any) -> tuple[str, dict[str, str]]:
        return self.back(self.submit(self.open(fields), **kwargs))

    def feedback(self, reference: str, count: int = 1) -> list[Received]:
        return self.receiver.wait_for(reference, count)


@pytest.fixture()
def aps(shop_url: str, aps_receiver: WebhookReceiver) -> Iterator[Aps]:
    client = Aps(shop_url, aps_receiver)
    assert client.http.delete(f"{client.base}/_control").status_code == 200
    aps_receiver.clear()
    client.control(webhook_url=aps_receiver.url, webhook_backoff_ms=50)
    try:
        yield client
    finally:
        client.http.delete(f"{client.base}/_control")
        client.http.close()


def _signed_by_sandbox(fields: dict[str, str]) -> bool:
    return fields["signature"] == aps_signature(fields, RESPONSE_PHRASE)


# -- the hosted checkout form -------------------------------------------------------------------

def test_sandbox_signs_like_the_providers_md_vector() -> None:
    vector = {"command": "PURCHASE", "access_code": "s4lwuuoY5upZlZY5D6dr", "merchant_identifier": "WeVJHPYm",
              "merchant_reference": "ORD-12345-2024", "amount": "2000", "currency": "KWD", "language": "en",
              "payment_option": "KNET", "customer_email": "test@amazon.com"}
    response = {**vector, "fort_id": "149295435400084008", "response_message": "Success", "response_code": "14000",
                "status": "14"}
    assert aps_signature(response, "TESTSHAOUT") == "3367912469c2e3fb46be1a6e5593337f5eea442de4123aa87acb9e7f79938765"
    request = {**vector, "return_url": "https://yoursite.com/payment-result"}
    assert aps_signature(request, "TESTSHAIN", "SHA-512").startswith("6fde61f049261e78")
    assert aps_signature(request, "TESTSHAIN", "SHA-128") == "96a907ed1fb87b86f3d3a783dbb217bb0a70c422"
    assert aps_signature(request, "TESTSHAIN", "HMAC-SHA256").startswith("33ba3a216842ad67")


def test_a_bad_signature_is_answered_with_a_signed_00008_to_return_url(aps: Aps) -> None:
    fields = aps.form()
    forged = {**fields, "amount": "1"}
    response = aps.post_page(forged)
    assert response.status_code == 200
    action, answer = hidden_form(response.text)
    assert action == fields["return_url"]
    assert (answer["response_code"], answer["status"], answer["response_message"]) == ("00008", "00", "Signature mismatch")
    assert answer["amount"] == "1" and "return_url" not in answer and "fort_id" not in answer
    assert _signed_by_sandbox(answer)
    hint = aps.adapter().parse_return({**answer, "ref": fields["merchant_reference"]})
    assert hint.verified is not None and hint.verified.status == PaymentStatus.FAILED
    # Signed with the request phrase but the wrong SHA type, or by someone else: same answer.
    for signature in (sign(fields, REQUEST_PHRASE, "SHA-512"), sign(fields, "guess"), ""):
        again = hidden_form(aps.post_page({**fields, "signature": signature}).text)[1]
        assert again["response_code"] in ("00008", "00001")
    # Without a usable return URL there is nobody to answer to but the browser.
    no_return = {k: v for k, v in forged.items() if k != "return_url"}
    page = aps.post_page(no_return)
    assert page.status_code == 400 and "00008" in page.text
    assert aps.stats()["page_posts_by_reference"].get(fields["merchant_reference"]) is None


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"currency": "USD"}, "00013"), ({"amount": "0"}, "00005"), ({"amount": "12.500"}, "00005"),
        ({"command": "AUTHORIZATION"}, "00049"), ({"command": "SALE"}, "00004"), ({"payment_option": "VISA"}, "00003"),
        ({"language": "fr"}, "00002"), ({"merchant_reference": "has space"}, "00002"),
        ({"customer_email": "not-an-email"}, "00002"), ({"access_code": "WrongAccessCode0001"}, "00010"),
        ({"merchant_identifier": "Someone"}, "00009"), ({"customer_email": None}, "00001"),
    ],
)
def test_page_validation_answers_aps_codes(aps: Aps, changes: dict, code: str) -> None:
    fields = {k: v for k, v in {**aps.form(), **changes}.items() if v is not None}
    fields["signature"] = sign(fields, REQUEST_PHRASE)  # correctly signed: the content is what is wrong
    _, answer = hidden_form(aps.post_page(fields).text)
    assert answer["response_code"] == code and answer["status"] == "00", answer
    assert _signed_by_sandbox(answer)


def test_missing_return_url_and_repeated_fields(aps: Aps) -> None:
    fields = {k: v for k, v in aps.form().items() if k != "return_url"}
    fields["signature"] = sign(fields, REQUEST_PHRASE)
    page = aps.post_page(fields)
    assert page.status_code == 400 and "00037" in page.text
    repeated = aps.http.post(f"{aps.base}/FortAPI/paymentPage",
                             content=httpx.QueryParams([*aps.form().items(), ("amount", "1")]).__str__(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert repeated.status_code == 400 and "00002" in repeated.text


def test_the_same_form_twice_is_one_payment_and_a_used_reference_is_refused(aps: Aps) -> None:
    fields = aps.form()
    first = aps.open(fields)
    assert aps.open(fields) == first  # Pay pressed twice, or the back button: the same payment
    assert aps.stats()["page_posts_by_reference"][fields["merchant_reference"]] == 2
    aps.back(aps.submit(first))
    _, answer = hidden_form(aps.post_page(fields).text)
    assert answer["response_code"] == "00066" and _signed_by_sandbox(answer)


# -- the KNET page and the return ---------------------------------------------------------------

def test_success_returns_signed_fields_sends_feedback_and_check_status_confirms(aps: Aps) -> None:
    fields = aps.form()
    reference = fields["merchant_reference"]
    knet = aps.open(fields)
    page = aps.http.get(knet)
    assert "KNET" in page.text and "Dira Market" in page.text and "KWD 12.500" in page.text and reference in page.text
    assert "<script" not in page.text
    action, returned = aps.back(aps.submit(knet, land=False))
    assert action == fields["return_url"]
    assert returned["response_code"] == "14000" and returned["status"] == "14" and returned["response_message"] == "Success"
    assert re.match(r"^\d{18}$", returned["fort_id"]) and returned["amount"] == "12500"
    assert re.match(r"^\d{15}$", returned["third_party_transaction_number"])
    assert re.match(r"^\d{12}$", returned["knet_ref_number"]) and re.match(r"^[A-Z0-9]{6}$", returned["authorization_code"])
    assert "return_url" not in returned and returned["order_description"] == f"Order {reference}"

    adapter = aps.adapter()
    hint = adapter.parse_return({**returned, "ref": reference})
    assert hint.verified is not None and hint.verified.status == PaymentStatus.CAPTURED
    assert hint.verified.receipt.bank_reference == returned["knet_ref_number"]

    [hook] = aps.feedback(reference)
    assert hook.path == "/webhooks/aps" and hook.headers["content-type"] == "application/json"
    assert hook.event == returned  # direct feedback: the same signed fields, as JSON
    [observation] = adapter.verify_webhook(hook.headers, hook.body)
    assert observation.status == PaymentStatus.CAPTURED and observation.event_id == f"{returned['fort_id']}:PURCHASE:14000"

    inquiry = _run(adapter.inquire(None, reference))
    assert inquiry.status == PaymentStatus.CAPTURED and inquiry.amount_fils == 12500
    assert inquiry.provider_payment_id == returned["fort_id"] and inquiry.payload["response_code"] == "12000"
    assert inquiry.payload["transaction_code"] == "14000" and inquiry.receipt.auth_code == returned["authorization_code"]
    assert _run(adapter.inquire(returned["fort_id"], reference)).status == PaymentStatus.CAPTURED

    again = aps.submit(knet, land=False)  # a second submission cannot decide it again
    assert again.status_code == 410


@pytest.mark.parametrize(("card", "pin"), [(DECLINED_CARD, PIN), (APPROVED_CARD, "9999")])
def test_declined_card_or_wrong_pin(aps: Aps, card: str, pin: str) -> None:
    fields = aps.form(language="ar")
    _, returned = aps.pay(fields, card=card, pin=pin)
    assert returned["response_code"] == "13666" and returned["response_message"] == "تم رفض العملية"
    assert "authorization_code" not in returned and re.match(r"^\d{12}$", returned["knet_ref_number"])
    adapter = aps.adapter()
    assert adapter.parse_return(returned).verified.status == PaymentStatus.DECLINED  # type: ignore[union-attr]
    [hook] = aps.feedback(fields["merchant_reference"])
    assert adapter.verify_webhook(hook.headers, hook.body)[0].status == PaymentStatus.DECLINED
    assert _run(adapter.inquire(None, fields["merchant_reference"])).status == PaymentStatus.DECLINED


def test_cancel_button(aps: Aps) -> None:
    fields = aps.form()
    _, returned = aps.pay(fields, card="", pin="", action="cancel")
    assert returned["response_code"] == "00072" and "knet_ref_number" not in returned
    adapter = aps.adapter()
    assert adapter.parse_return(returned).verified.status == PaymentStatus.CANCELLED  # type: ignore[union-attr]
    assert _run(adapter.inquire(None, fields["merchant_reference"])).status == PaymentStatus.CANCELLED


def test_submitting_after_the_window_expires(aps: Aps) -> None:
    aps.control(expire_after_s=0.3)
    fields = aps.form()
    knet = aps.open(fields)
    assert aps.http.get(knet).status_code == 200
    time.sleep(0.5)
    _, returned = aps.back(aps.submit(knet, land=False))
    assert returned["response_code"] == "13778" and returned["response_message"] == "Session timed-out"
    assert aps.adapter().parse_return(returned).verified.status == PaymentStatus.EXPIRED  # type: ignore[union-attr]
    assert aps.http.get(knet).status_code == 410


def test_an_unfinished_payment_is_pending_then_expires_when_asked(aps: Aps) -> None:
    fields = aps.form()
    reference = fields["merchant_reference"]
    adapter = aps.adapter()
    unknown = _run(adapter.inquire(None, reference))  # the browser never reached APS
    assert unknown.status is None and unknown.payload["response_code"] == "11036"
    aps.http.get(aps.open(fields))
    waiting = _run(adapter.inquire(None, reference))
    assert waiting.status == PaymentStatus.PENDING and waiting.payload["transaction_code"] == "19065"
    aps.control(expire_after_s=0)
    expired = _run(adapter.inquire(None, reference))
    assert expired.status == PaymentStatus.EXPIRED
    [hook] = aps.feedback(reference)
    assert adapter.verify_webhook(hook.headers, hook.body)[0].status == PaymentStatus.EXPIRED


def test_card_number_and_pin_are_never_stored(aps: Aps, database_url: str) -> None:
    fields = aps.form()
    aps.pay(fields, card="8888 8800 0000 0001")
    aps.pay(aps.form(), pin="8642")
    rows = _sandbox_rows(database_url)
    assert any(fields["merchant_reference"] in row for row in rows)
    for row in rows:
        _, _, data = row.partition(" ")
        assert APPROVED_CARD not in row and "8888 8800" not in row
        values = _string_values(json.loads(data)) if data.startswith(("{", "[")) else [data]
        assert PIN not in values and "8642" not in values


# -- notifications ------------------------------------------------------------------------------

def test_duplicate_notifications_are_identical_and_share_an_event_id(aps: Aps) -> None:
    aps.control(webhooks="duplicate", duplicate_count=3)
    fields = aps.form()
    aps.pay(fields)
    hooks = aps.feedback(fields["merchant_reference"], 3)
    assert len({h.body for h in hooks}) == 1
    adapter = aps.adapter()
    assert len({adapter.verify_webhook(h.headers, h.body)[0].event_id for h in hooks}) == 1


def test_reordered_notifications_arrive_newest_first_and_still_verify(aps: Aps) -> None:
    aps.control(webhooks="drop")
    fields = aps.form()
    reference = fields["merchant_reference"]
    _, returned = aps.pay(fields)
    adapter = aps.adapter()
    refund = _run(adapter.refund(RefundRequest(returned["fort_id"], 2500, "KWD", f"rf-{reference}", "RF1")))
    assert refund.status == "succeeded"
    time.sleep(0.3)
    assert aps.receiver.for_payment(reference) == []
    aps.control(webhooks="reorder")
    replay = aps.http.post(f"{aps.base}/_webhooks/replay/{reference}", params={"honour_controls": "true"})
    assert replay.status_code == 202 and len(replay.json()["events"]) == 2
    hooks = aps.feedback(reference, 2)
    observations = [adapter.verify_webhook(h.headers, h.body)[0] for h in hooks]
    assert [o.event_type for o in observations] == ["REFUND 06000", "PURCHASE 14000"]
    assert observations[0].refund_status == "succeeded" and observations[1].status == PaymentStatus.CAPTURED


def test_failed_deliveries_are_retried(aps: Aps) -> None:
    aps.receiver.fail_next(2)
    fields = aps.form()
    aps.pay(fields)
    aps.feedback(fields["merchant_reference"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = aps.stats()
        ours = {e["event_id"] for e in stats["events"] if e["owner"] == fields["merchant_reference"]}
        attempts = [(d["attempt"], d["status_code"]) for d in stats["webhook_deliveries"] if d["event_id"] in ours]
        if attempts[-1:] == [(3, 200)]:
            break
        time.sleep(0.05)
    assert attempts == [(1, 500), (2, 500), (3, 200)]


# -- refunds ------------------------------------------------------------------------------------

def test_partial_repeated_and_full_refunds(aps: Aps) -> None:
    fields = aps.form()
    reference = fields["merchant_reference"]
    _, returned = aps.pay(fields)
    fort_id = returned["fort_id"]
    adapter = aps.adapter()
    first = _run(adapter.refund(RefundRequest(fort_id, 2500, "KWD", f"a-{reference}", "Damaged box")))
    assert first.status == "succeeded" and first.provider_refund_id == f"a-{reference}"
    assert first.raw["response_code"] == "06000" and first.raw["merchant_reference"] == reference
    assert first.raw["order_description"] == "Damaged box"
    # The same maintenance reference again: the same refund, not a second one.
    assert _run(adapter.refund(RefundRequest(fort_id, 2500, "KWD", f"a-{reference}", "Damaged box"))).raw == first.raw
    assert aps.stats()["refunds_by_maintenance_reference"][f"a-{reference}"] == {"requests": 2, "refunds": 1}
    with pytest.raises(ProviderRejected, match="00048"):
        _run(adapter.refund(RefundRequest(fort_id, 10001, "KWD", f"b-{reference}", "")))
    assert _run(adapter.refund(RefundRequest(fort_id, 10000, "KWD", f"c-{reference}", ""))).status == "succeeded"
    with pytest.raises(ProviderRejected, match="00048"):
        _run(adapter.refund(RefundRequest(fort_id, 1, "KWD", f"d-{reference}", "")))
    status = _run(adapter.inquire(fort_id, reference))
    assert status.status == PaymentStatus.CAPTURED and status.payload["refunded_amount"] == "12500"
    hooks = aps.feedback(reference, 3)
    refunds = [adapter.verify_webhook(h.headers, h.body)[0] for h in hooks[1:]]
    assert [(r.refund_id, r.refund_status, r.refund_amount_fils) for r in refunds] == [
        (f"a-{reference}", "succeeded", 2500), (f"c-{reference}", "succeeded", 10000)]


def test_refunds_refused_or_declined(aps: Aps) -> None:
    fields = aps.form()
    aps.http.get(aps.open(fields))
    adapter = aps.adapter()
    pending_fort = _run(adapter.inquire(None, fields["merchant_reference"])).provider_payment_id
    with pytest.raises(ProviderRejected, match="00034"):  # nothing captured yet
        _run(adapter.refund(RefundRequest(str(pending_fort), 100, "KWD", "x-1", "")))
    with pytest.raises(ProviderRejected, match="00036"):
        _run(adapter.refund(RefundRequest("123456789012345678", 100, "KWD", "x-2", "")))
    aps.control(refunds="decline")  # KNET refunds not enabled by the acquirer
    other = aps.form()
    _, returned = aps.pay(other)
    declined = _run(adapter.refund(RefundRequest(returned["fort_id"], 500, "KWD", f"y-{other['merchant_reference']}", "")))
    assert declined.status == "failed" and declined.raw["response_code"] == "07017"
    hooks = aps.feedback(other["merchant_reference"], 2)
    assert adapter.verify_webhook(hooks[1].headers, hooks[1].body)[0].refund_status == "failed"
    # A declined maintenance reference may be retried, and then succeed.
    aps.control(refunds="approve")
    retried = _run(adapter.refund(RefundRequest(returned["fort_id"], 500, "KWD", f"y-{other['merchant_reference']}", "")))
    assert retried.status == "succeeded"


# -- API faults and errors ----------------------------------------------------------------------

def test_check_status_faults_are_unknown_outcomes(aps: Aps) -> None:
    fields = aps.form()
    aps.pay(fields)
    reference = fields["merchant_reference"]
    for fault in ("http_500", "html_200"):
        aps.control(fail_next={"check_status": fault})
        with pytest.raises(ProviderUnavailable):
            _run(aps.adapter().inquire(None, reference))
    aps.control(fail_next={"check_status": "timeout"}, api_delay_ms=1500)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="timed out"):
        _run(aps.adapter(timeout=0.4).inquire(None, reference))
    assert time.monotonic() - started < 1.4
    assert _run(aps.adapter().inquire(None, reference)).status == PaymentStatus.CAPTURED
    assert aps.http.get(f"{aps.base}/_control").json()["fail_next"] == {}


def test_a_refund_whose_answer_times_out_is_not_repeated_by_its_retry(aps: Aps) -> None:
    fields = aps.form()
    _, returned = aps.pay(fields)
    key = f"k-{fields['merchant_reference']}"
    aps.control(fail_next={"refund": "accept_then_timeout"}, api_delay_ms=1200)
    with pytest.raises(ProviderUnavailable):
        _run(aps.adapter(timeout=0.4).refund(RefundRequest(returned["fort_id"], 1000, "KWD", key, "")))
    retried = _run(aps.adapter().refund(RefundRequest(returned["fort_id"], 1000, "KWD", key, "")))
    assert retried.status == "succeeded"
    assert aps.stats()["refunds_by_maintenance_reference"][key] == {"requests": 2, "refunds": 1}


def test_unsigned_or_tampered_api_answers_are_not_trusted(aps: Aps) -> None:
    fields = aps.form()
    aps.pay(fields)
    # The adapter holding another response phrase cannot verify the sandbox's answer.
    with pytest.raises(ProviderUnavailable, match="signature"):
        _run(aps.adapter(APS_SHA_RESPONSE_PHRASE="not-the-phrase").inquire(None, fields["merchant_reference"]))
    # A request signed with another phrase: APS refuses it (00008), signed.
    with pytest.raises(ProviderRejected, match="00008"):
        _run(aps.adapter(APS_SHA_REQUEST_PHRASE="not-the-phrase").inquire(None, fields["merchant_reference"]))


def test_api_speaks_aps_errors(aps: Aps) -> None:
    bad_json = aps.http.post(f"{aps.base}/FortAPI/paymentApi", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 200 and bad_json.json()["response_code"] == "00073"
    unknown = {"command": "CAPTURE", "access_code": SANDBOX_CREDENTIALS["APS_ACCESS_CODE"], "language": "en"}
    answer = aps.http.post(f"{aps.base}/FortAPI/paymentApi", json={**unknown, "signature": sign(unknown, REQUEST_PHRASE)}).json()
    assert answer["response_code"] == "00004" and _signed_by_sandbox(answer)
    missing = {"query_command": "CHECK_STATUS", "language": "en"}
    answer = aps.http.post(f"{aps.base}/FortAPI/paymentApi", json=missing).json()
    assert answer["response_code"] == "00001"
    for bad in ({"webhooks": "sometimes"}, {"fail_next": {"create": "http_500"}}, {"fail_next": {"page": "explode"}}):
        assert aps.http.post(f"{aps.base}/_control", json=bad).status_code == 422, bad


def test_page_faults(aps: Aps) -> None:
    aps.control(fail_next={"page": "http_500"})
    fields = aps.form()
    assert aps.post_page(fields).status_code == 500
    assert aps.open(fields)  # consumed once: the next post goes through


# -- payment links ------------------------------------------------------------------------------

def test_payment_link_offers_knet_and_reports_like_a_purchase(aps: Aps) -> None:
    adapter = aps.adapter()
    reference = f"LINK{time.time_ns()}"
    return_url = f"{aps.shop_url}/payments/aps/return?ref={reference}"
    link = _run(adapter.create_payment_link(reference, 7500, "en", "fatima@example.com",
                                            datetime.now(UTC) + timedelta(days=2), return_url=return_url,
                                            description="Invoice 42"))
    assert re.match(rf"^{re.escape(aps.base)}/link/[0-9a-f]{{8}}$", link)
    opened = aps.http.get(link)
    assert opened.status_code == 303 and "/knet/" in opened.headers["location"]
    page = aps.http.get(opened.headers["location"])
    assert "KWD 7.500" in page.text
    action, returned = aps.back(aps.submit(opened.headers["location"], land=False))
    assert action == return_url and returned["response_code"] == "14000"
    assert re.match(r"^\d{18}$", returned["payment_link_id"]) and returned["order_description"] == "Invoice 42"
    observation = adapter.parse_return(returned).verified
    assert observation is not None and observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 7500
    [hook] = aps.feedback(reference)
    assert hook.event["payment_link_id"] == returned["payment_link_id"]
    assert _run(adapter.inquire(None, reference)).status == PaymentStatus.CAPTURED
    used = aps.http.get(link)
    assert used.status_code == 410 and "already processed" in used.text
    assert aps.stats()["links"] >= 1


def test_payment_link_expiry_and_refusals(aps: Aps) -> None:
    adapter = aps.adapter()
    reference = f"LINK{time.time_ns()}"
    soon = datetime.now(timezone(timedelta(hours=3))) + timedelta(seconds=1)
    link = _run(adapter.create_payment_link(reference, 1000, "ar", "fatima@example.com", soon))
    with pytest.raises(ProviderRejected, match="00066"):  # one link per merchant reference
        _run(adapter.create_payment_link(reference, 1000, "ar", "fatima@example.com", soon + timedelta(days=1)))
    time.sleep(1.3)
    expired = aps.http.get(link)
    assert expired.status_code == 410 and "رابط الدفع منتهي الصلاحية" in expired.text
    assert _run(adapter.inquire(None, reference)).status == PaymentStatus.EXPIRED
    with pytest.raises(ProviderRejected, match="00100"):
        _run(adapter.create_payment_link(f"{reference}b", 1000, "en", "f@example.com",
                                         datetime.now(UTC) - timedelta(minutes=1)))
    with pytest.raises(ProviderRejected, match="time zone"):
        _run(adapter.create_payment_link(f"{reference}c", 1000, "en", "f@example.com", datetime.now()))
    with pytest.raises(ProviderRejected, match="00001"):  # an SMS needs a phone number
        _run(adapter.create_payment_link(f"{reference}d", 1000, "en", "f@example.com", soon + timedelta(days=1),
                                         notification_type="SMS"))
    assert aps.http.get(f"{aps.base}/link/00000000").status_code == 404


def _run(coroutine: Any) -> Any:
    from tests.support import run_async

    return run_async(lambda: coroutine)
