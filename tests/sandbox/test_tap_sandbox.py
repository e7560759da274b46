"""The Tap adapter against the Tap sandbox over real HTTP: charges, the KNET page, posts, refunds."""
from __future__ import annotations

import json
import re
import sqlite3
import time
from decimal import Decimal
from typing import Any, AsyncIterator, Callable, Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shop.payments.providers.base import (
    PaymentRequest,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
)
from shop.payments.providers.tap import TapProvider
from shop.payments.states import PaymentStatus
from shop.sandbox import tap as tap_sandbox
from shop.settings import SANDBOX_CREDENTIALS, Settings
from tests.support import wait_until, run_async
from tests.unit.test_tap_adapter import SEED_BODY, VECTOR_HASH, VECTOR_KEY
from tests.webhook_receiver import Received, WebhookReceiver, webhook_receiver

SECRET_KEY = SANDBOX_CREDENTIALS["TAP_SECRET_KEY"]
APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"
CHARGE_ID = re.compile(r"^chg_TS\d{2}A\d{2}\d{8}[A-Za-z]{2}\d{8}$")


@pytest.fixture(scope="module")
def tap_receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/webhooks/tap") as state:
        # Tap posts the object itself: a charge's id, or a refund's charge_id.
        state.payment_id_of = lambda r: r.event.get("charge_id") or r.event.get("id")  # type: ignore[method-assign]
        yield state


class TapSandbox:
    """The Tap sandbox of one live shop: its control API and a way to build adapter calls."""

    def __init__(self, shop_url: str, receiver: WebhookReceiver) -> None:
        self.shop_url = shop_url
        self.api = f"{shop_url}/sandbox/tap"
        self.receiver = receiver
        self.client = httpx.Client(timeout=15, headers={"Authorization": f"Bearer {SECRET_KEY}"})

    def provider(self, client: httpx.AsyncClient, **env: str) -> TapProvider:
        settings = Settings(secret_key="x" * 40, public_url=self.shop_url,
                            provider_settings={f"SHOP_{k}": v for k, v in env.items()})
        return TapProvider(settings, client)

    def request(self, amount_fils: int = 10500, language: str = "en", **changes: Any) -> PaymentRequest:
        reference = f"DM{time.time_ns()}"
        values: dict[str, Any] = dict(
            merchant_reference=reference, order_reference=reference[:-2], amount_fils=amount_fils, currency="KWD",
            language=language, idempotency_key=f"key-{reference}",
            return_url=f"{self.shop_url}/payments/tap/return?ref={reference}", webhook_url=self.receiver.url,
            customer_name="Fatima Al Sabah", customer_email="f@example.com", customer_phone="+96555123456",
            description=f"Order {reference}",
        )
        values.update(changes)
        return PaymentRequest(**values)

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self.client.post(f"{self.api}/_control", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self.client.get(f"{self.api}/_stats").json()

    def charge(self, charge_id: str) -> dict[str, Any]:
        response = self.client.get(f"{self.api}/v2/charges/{charge_id}")
        assert response.status_code == 200, response.text
        return response.json(parse_float=Decimal)

    @staticmethod
    def wait_until(check: Callable[[], bool], timeout_s: float = 8.0) -> None:
        wait_until(check, timeout_s)


@pytest.fixture()
def tap(shop_url: str, tap_receiver: WebhookReceiver) -> Iterator[TapSandbox]:
    sandbox = TapSandbox(shop_url, tap_receiver)
    assert sandbox.client.delete(f"{sandbox.api}/_control").status_code == 200
    tap_receiver.clear()
    sandbox.control(webhook_url=tap_receiver.url, webhook_backoff_ms=50, refund_delay_ms=100)
    try:
        yield sandbox
    finally:
        sandbox.client.close()


@pytest.fixture()
async def provider(tap: TapSandbox) -> AsyncIterator[TapProvider]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        yield tap.provider(client)


def submit(url: str, *, card: str = APPROVED_CARD, pin: str = PIN, action: str = "pay", land: bool = True) -> httpx.Response:
    """The customer on the KNET page: land (GET), then submit the form."""
    with httpx.Client(timeout=15, follow_redirects=False) as browser:
        if land:
            assert browser.get(url).status_code == 200
        return browser.post(url, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                       "expiry_year": "2030", "pin": pin, "action": action})


def returned(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def verified(provider: TapProvider, hook: Received) -> Any:
    [observation] = provider.verify_webhook(hook.headers, hook.body)
    return observation


async def captured_charge(tap: TapSandbox, provider: TapProvider, amount_fils: int = 10500) -> str:
    started = await provider.start_payment(tap.request(amount_fils))
    returned(submit(started.redirect_url))
    tap.receiver.wait_for(str(started.provider_payment_id), 1)
    return str(started.provider_payment_id)


# -- signing and formats ------------------------------------------------------------------------

def test_the_sandbox_signs_like_the_test_vector() -> None:
    charge = json.loads(SEED_BODY, parse_float=Decimal)
    assert tap_sandbox.sign(charge, VECTOR_KEY) == VECTOR_HASH
    assert [str(tap_sandbox.wire_amount(f)) for f in (10500, 1000, 12125, 500, 10)] == ["10.5", "1.0", "12.125", "0.5", "0.01"]


# -- paying -------------------------------------------------------------------------------------

async def test_success_return_inquiry_and_signed_post(tap: TapSandbox, provider: TapProvider) -> None:
    request = tap.request(language="ar")
    started = await provider.start_payment(request)
    charge_id = str(started.provider_payment_id)
    assert CHARGE_ID.match(charge_id)
    assert re.match(rf"^{re.escape(tap.api)}/test_gosell/v2/payment/tap_process\.aspx\?chg=[\w-]{{20,}}$",
                    started.redirect_url)
    raw = started.raw
    assert raw["status"] == "INITIATED" and raw["amount"] == Decimal("10.5") and raw["currency"] == "KWD"
    assert raw["transaction"]["expiry"] == {"period": 30, "type": "MINUTE"}
    assert re.match(r"^\d{13}$", raw["transaction"]["created"]) and raw["transaction"]["timezone"] == "UTC+03:00"
    assert raw["reference"]["transaction"] == request.merchant_reference and raw["reference"]["track"].startswith("tck_")
    assert raw["source"]["id"] == "src_kw.knet" and raw["post"]["url"] == tap.receiver.url

    page = httpx.get(started.redirect_url)
    assert page.status_code == 200 and 'dir="rtl"' in page.text and "Dira Market" in page.text
    response = submit(started.redirect_url)
    params = returned(response)
    assert response.headers["location"].startswith(f"{request.return_url}&tap_id=")  # the query kept
    hint = provider.parse_return(params)
    assert (hint.provider_payment_id, hint.merchant_reference) == (charge_id, request.merchant_reference)

    observation = await provider.inquire(hint.provider_payment_id, request.merchant_reference)
    assert observation.status == PaymentStatus.CAPTURED and observation.amount_fils == 10500
    assert observation.merchant_reference == request.merchant_reference and observation.currency == "KWD"
    receipt = observation.receipt
    assert re.match(r"^\d{18}$", receipt.payment_id) and re.match(r"^\d{15}$", receipt.transaction_id)
    assert re.match(r"^\d{12}$", receipt.bank_reference) and re.match(r"^[A-Z0-9]{6}$", receipt.auth_code)
    assert receipt.track_id.startswith("tck_") and receipt.result == "CAPTURED"

    [hook] = tap.receiver.wait_for(charge_id, 1)
    assert hook.path == "/webhooks/tap" and hook.headers["content-type"] == "application/json"
    assert b'"amount":10.5,' in hook.body and hook.headers["hash"] and hook.headers["hashstring"]
    posted = verified(provider, hook)
    assert (posted.status, posted.event_id, posted.amount_fils) == (PaymentStatus.CAPTURED, f"{charge_id}:CAPTURED", 10500)
    assert posted.receipt == receipt
    # A double submission cannot decide the charge again, and INITIATED was never posted.
    again = submit(started.redirect_url, land=False)
    assert again.status_code == 410
    time.sleep(0.3)
    assert len(tap.receiver.for_payment(charge_id)) == 1


@pytest.mark.parametrize(("card", "pin"), [(DECLINED_CARD, PIN), (APPROVED_CARD, "9999")])
async def test_declined(tap: TapSandbox, provider: TapProvider, card: str, pin: str) -> None:
    started = await provider.start_payment(tap.request())
    params = returned(submit(started.redirect_url, card=card, pin=pin))
    observation = await provider.inquire(params["tap_id"], "")
    assert observation.status == PaymentStatus.DECLINED and observation.receipt.result == "NOT CAPTURED"
    assert observation.receipt.auth_code == "" and "507" in observation.failure_reason
    charge = tap.charge(params["tap_id"])
    assert charge["status"] == "DECLINED" and charge["gateway"]["response"] == {"code": "05", "message": "NOT CAPTURED"}
    [hook] = tap.receiver.wait_for(params["tap_id"], 1)
    assert verified(provider, hook).status == PaymentStatus.DECLINED


async def test_cancel(tap: TapSandbox, provider: TapProvider) -> None:
    started = await provider.start_payment(tap.request())
    params = returned(submit(started.redirect_url, card="", pin="", action="cancel"))
    assert (await provider.inquire(params["tap_id"], "")).status == PaymentStatus.CANCELLED
    assert tap.charge(params["tap_id"])["response"]["code"] == "302"
    [hook] = tap.receiver.wait_for(params["tap_id"], 1)
    assert verified(provider, hook).status == PaymentStatus.CANCELLED


async def test_page_submitted_after_the_window_times_out(tap: TapSandbox, provider: TapProvider) -> None:
    tap.control(expire_after_s=0.3)
    started = await provider.start_payment(tap.request())
    with httpx.Client(follow_redirects=False) as browser:
        assert browser.get(started.redirect_url).status_code == 200
        time.sleep(0.5)
        response = browser.post(started.redirect_url, data={"bank": "KNET1", "card_number": APPROVED_CARD,
                                                            "expiry_month": "09", "expiry_year": "2030", "pin": PIN})
    charge_id = returned(response)["tap_id"]
    observation = await provider.inquire(charge_id, "")
    assert observation.status == PaymentStatus.EXPIRED and observation.payload["status"] == "TIMEDOUT"
    [hook] = tap.receiver.wait_for(charge_id, 1)
    assert verified(provider, hook).status == PaymentStatus.EXPIRED
    gone = httpx.get(started.redirect_url)
    assert gone.status_code == 410


async def test_an_unfinished_charge_is_abandoned_after_30_minutes_and_not_posted(
        tap: TapSandbox, provider: TapProvider) -> None:
    assert tap.client.get(f"{tap.api}/_control").json()["expire_after_s"] == 30 * 60
    started = await provider.start_payment(tap.request())
    assert (await provider.inquire(started.provider_payment_id, "")).status == PaymentStatus.PENDING
    tap.control(expire_after_s=0)
    observation = await provider.inquire(started.provider_payment_id, "")
    assert observation.status == PaymentStatus.EXPIRED and observation.payload["status"] == "ABANDONED"
    assert "transaction" in observation.payload and "url" not in observation.payload["transaction"]
    time.sleep(0.3)
    assert tap.receiver.for_payment(str(started.provider_payment_id)) == []
    assert httpx.get(started.redirect_url).status_code == 410


# -- idempotency, unknown outcomes, faults -------------------------------------------------------

async def test_reference_idempotent_returns_the_first_charge(tap: TapSandbox, provider: TapProvider) -> None:
    before = tap.stats()["charges"]
    request = tap.request()
    first = await provider.start_payment(request)
    second = await provider.start_payment(request)
    assert first.provider_payment_id == second.provider_payment_id and first.redirect_url == second.redirect_url
    stats = tap.stats()
    assert stats["charges"] == before + 1
    assert stats["creates_by_idempotency_key"][request.idempotency_key] == {"requests": 2, "payments": 1}
    other = await provider.start_payment(tap.request())
    assert other.provider_payment_id != first.provider_payment_id


async def test_a_create_that_times_out_is_found_by_reference_and_never_charged_twice(
        tap: TapSandbox, provider: TapProvider) -> None:
    tap.control(fail_next={"create": "accept_then_timeout"}, api_delay_ms=1500)
    request = tap.request()
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.5)) as impatient:
        with pytest.raises(ProviderUnavailable):
            await tap.provider(impatient).start_payment(request)
    found = await provider.inquire(None, request.merchant_reference)
    assert found.status == PaymentStatus.PENDING and CHARGE_ID.match(str(found.provider_payment_id))
    assert found.merchant_reference == request.merchant_reference
    retried = await provider.start_payment(request)  # the same reference.idempotent
    assert retried.provider_payment_id == found.provider_payment_id
    assert (await provider.inquire(None, "DM-never-created")).status is None


async def test_faults_are_unavailable_and_consumed_once(tap: TapSandbox, provider: TapProvider) -> None:
    for fault in ("http_500", "html_200"):
        tap.control(fail_next={"create": fault})
        with pytest.raises(ProviderUnavailable):
            await provider.start_payment(tap.request())
    started = await provider.start_payment(tap.request())
    tap.control(fail_next={"retrieve": "timeout"}, api_delay_ms=1200)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.4)) as impatient:
        with pytest.raises(ProviderUnavailable):
            await tap.provider(impatient).inquire(started.provider_payment_id, "")
    assert (await provider.inquire(started.provider_payment_id, "")).status == PaymentStatus.PENDING
    assert tap.client.get(f"{tap.api}/_control").json()["fail_next"] == {}


async def test_a_wrong_key_is_rejected(tap: TapSandbox) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(ProviderRejected, match="401"):
            await tap.provider(client, TAP_SECRET_KEY="sk_test_wrongwrongwrong").start_payment(tap.request())


def test_authentication_and_validation_errors(tap: TapSandbox) -> None:
    url = f"{tap.api}/v2/charges"
    body = {
        "amount": 10.5, "currency": "KWD", "source": {"id": "src_kw.knet"},
        "customer": {"first_name": "Fatima", "email": "f@example.com"},
        "redirect": {"url": "https://example.com/return"}, "post": {"url": "https://example.com/post"},
    }
    assert tap.client.post(url, json=body).status_code == 200
    for headers in ({}, {"Authorization": "Bearer sk_test_nope"}, {"Authorization": SECRET_KEY}):
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 401 and refused.json()["errors"][0]["code"]
    cases = [
        ({"amount": None}, "1102"), ({"amount": "ten"}, "1103"), ({"amount": 0}, "1103"), ({"amount": 1.0005}, "1103"),
        ({"currency": "USD"}, "1105"), ({"currency": None}, "1104"), ({"source": {"id": "src_all"}}, "1107"),
        ({"source": None}, "1106"), ({"customer": None}, "1108"), ({"customer": {"id": "cus_x"}}, "1109"),
        ({"customer": {"email": "f@example.com"}}, "1110"), ({"customer": {"first_name": "F"}}, "1111"),
        ({"redirect": {"url": "javascript:alert(1)"}}, "1114"), ({"redirect": None}, "1114"),
        ({"post": {"url": "ftp://x"}}, "1115"), ({"reference": {"transaction": "x" * 65}}, "1116"),
    ]
    for change, code in cases:
        sent = {k: v for k, v in {**body, **change}.items() if v is not None}
        response = tap.client.post(url, json=sent)
        assert response.status_code == 400, (change, response.text)
        assert code in [e["code"] for e in response.json()["errors"]], (change, response.text)
        assert all(e["description"] for e in response.json()["errors"])
    bad_json = tap.client.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    missing = tap.client.get(f"{tap.api}/v2/charges/chg_TS00A0020250000ab12345678")
    assert missing.status_code == 404 and missing.json()["errors"]


def test_listing_charges(tap: TapSandbox) -> None:
    url = f"{tap.api}/v2/charges/list"
    listing = tap.client.post(url, json={"limit": 2}).json()
    assert listing["object"] == "list" and listing["count"] <= 2 and isinstance(listing["has_more"], bool)
    created = [c["transaction"]["created"] for c in listing["charges"]]
    assert created == sorted(created, reverse=True)
    assert tap.client.post(url, json={"limit": 51}).status_code == 400
    future = str(int(time.time() * 1000) + 10**9)
    assert tap.client.post(url, json={"period": {"date": {"from": future}}}).json()["charges"] == []


# -- refunds ------------------------------------------------------------------------------------

def _refund(charge_id: str, fils: int, key: str) -> RefundRequest:
    return RefundRequest(provider_payment_id=charge_id, amount_fils=fils, currency="KWD", idempotency_key=key,
                         reference=f"RF-{key}")


async def test_partial_refunds_up_to_the_charge(tap: TapSandbox, provider: TapProvider) -> None:
    charge_id = await captured_charge(tap, provider)
    key = f"rf-{time.time_ns()}"
    first = await provider.refund(_refund(charge_id, 2500, key))
    assert first.status == "pending" and str(first.provider_refund_id).startswith("re_")
    assert first.raw["amount"] == Decimal("2.5") and first.raw["charge_id"] == charge_id
    assert (await provider.refund(_refund(charge_id, 2500, key))).provider_refund_id == first.provider_refund_id
    assert tap.stats()["refunds_by_idempotency_key"][key] == {"requests": 2, "payments": 1}

    hooks = tap.receiver.wait_for(charge_id, 2)
    refunded = verified(provider, hooks[1])
    assert (refunded.refund_id, refunded.refund_status, refunded.refund_amount_fils) == (
        first.provider_refund_id, "succeeded", 2500)
    assert refunded.provider_payment_id == charge_id and refunded.status is None
    read_back = tap.client.get(f"{tap.api}/v2/refunds/{first.provider_refund_id}").json()
    assert read_back["status"] == "REFUNDED" and read_back["response"]["code"] == "000"

    with pytest.raises(ProviderRejected, match="exceeds"):
        await provider.refund(_refund(charge_id, 8001, f"{key}-too-much"))
    rest = await provider.refund(_refund(charge_id, 8000, f"{key}-rest"))
    assert rest.status == "pending"
    last = tap.receiver.wait_for(charge_id, 3)[2]
    assert verified(provider, last).refund_amount_fils == 8000
    with pytest.raises(ProviderRejected):
        await provider.refund(_refund(charge_id, 10, f"{key}-nothing-left"))
    # The charge itself stays CAPTURED: refunds are their own objects.
    assert (await provider.inquire(charge_id, "")).status == PaymentStatus.CAPTURED


async def test_a_full_refund_is_done_once(tap: TapSandbox, provider: TapProvider) -> None:
    charge_id = await captured_charge(tap, provider, amount_fils=7250)
    full = await provider.refund(_refund(charge_id, 7250, f"full-{time.time_ns()}"))
    assert full.status == "pending"
    with pytest.raises(ProviderRejected):
        await provider.refund(_refund(charge_id, 7250, f"again-{time.time_ns()}"))
    assert verified(provider, tap.receiver.wait_for(charge_id, 2)[1]).refund_status == "succeeded"


async def test_refunds_need_a_captured_charge_and_can_be_declined(tap: TapSandbox, provider: TapProvider) -> None:
    started = await provider.start_payment(tap.request())
    with pytest.raises(ProviderRejected, match="CAPTURED"):
        await provider.refund(_refund(str(started.provider_payment_id), 1000, f"early-{time.time_ns()}"))
    with pytest.raises(ProviderRejected):
        await provider.refund(_refund("chg_TS00A0020250000ab12345678", 1000, f"nowhere-{time.time_ns()}"))
    tap.control(refunds="decline")
    charge_id = await captured_charge(tap, provider)
    result = await provider.refund(_refund(charge_id, 1000, f"declined-{time.time_ns()}"))
    declined = verified(provider, tap.receiver.wait_for(charge_id, 2)[1])
    assert (declined.refund_id, declined.refund_status) == (result.provider_refund_id, "failed")


# -- notifications ------------------------------------------------------------------------------

async def test_duplicate_notifications_are_identical(tap: TapSandbox, provider: TapProvider) -> None:
    tap.control(webhooks="duplicate", duplicate_count=3)
    started = await provider.start_payment(tap.request())
    returned(submit(started.redirect_url))
    hooks = tap.receiver.wait_for(str(started.provider_payment_id), 3)
    assert len({h.body for h in hooks}) == 1
    assert {verified(provider, h).event_id for h in hooks} == {f"{started.provider_payment_id}:CAPTURED"}


async def test_reordered_notifications(tap: TapSandbox, provider: TapProvider) -> None:
    charge_id = await captured_charge(tap, provider)
    tap.control(webhooks="reorder", refund_delay_ms=60_000)
    first = await provider.refund(_refund(charge_id, 2000, f"a-{time.time_ns()}"))
    second = await provider.refund(_refund(charge_id, 3000, f"b-{time.time_ns()}"))
    tap.control(refund_delay_ms=0)
    await provider.inquire(charge_id, "")  # both settle in one batch, posted newest first
    hooks = tap.receiver.wait_for(charge_id, 3)[1:]
    observations = [verified(provider, h) for h in hooks]
    assert [o.refund_id for o in observations] == [second.provider_refund_id, first.provider_refund_id]
    assert [o.refund_status for o in observations] == ["succeeded", "succeeded"]


async def test_dropped_notifications_can_be_replayed(tap: TapSandbox, provider: TapProvider) -> None:
    tap.control(webhooks="drop")
    started = await provider.start_payment(tap.request())
    charge_id = returned(submit(started.redirect_url))["tap_id"]
    time.sleep(0.3)
    assert tap.receiver.for_payment(charge_id) == []
    replay = tap.client.post(f"{tap.api}/_webhooks/replay/{charge_id}")
    assert replay.status_code == 202 and replay.json()["events"] == [f"{charge_id}:CAPTURED"]
    [hook] = tap.receiver.wait_for(charge_id, 1)
    assert verified(provider, hook).status == PaymentStatus.CAPTURED


async def test_a_failed_post_is_tried_two_more_times(tap: TapSandbox, provider: TapProvider) -> None:
    assert tap.client.get(f"{tap.api}/_control").json()["webhook_retries"] == 2
    tap.receiver.fail_next(3)
    started = await provider.start_payment(tap.request())
    charge_id = returned(submit(started.redirect_url))["tap_id"]
    event_id = f"{charge_id}:CAPTURED"

    def attempts() -> list[tuple[int, int]]:
        return [(d["attempt"], d["status_code"]) for d in tap.stats()["webhook_deliveries"] if d["event_id"] == event_id]

    tap.wait_until(lambda: len(attempts()) == 3)
    assert attempts() == [(1, 500), (2, 500), (3, 500)]


# -- the page -----------------------------------------------------------------------------------

async def test_page_language_and_unknown_tokens(tap: TapSandbox, provider: TapProvider) -> None:
    started = await provider.start_payment(tap.request(language="ar"))
    arabic = httpx.get(started.redirect_url)
    assert 'dir="rtl"' in arabic.text and "الرقم السري" in arabic.text
    assert "tap_process.aspx?chg=" in arabic.text and "&amp;language=en" in arabic.text
    english = httpx.get(f"{started.redirect_url}&language=en")
    assert 'dir="ltr"' in english.text and "KWD 10.500" in english.text
    assert httpx.get(f"{tap.api}/test_gosell/v2/payment/tap_process.aspx?chg=nothing").status_code == 404
    assert httpx.get(f"{tap.api}/test_gosell/v2/payment/tap_process.aspx").status_code == 404


def _sandbox_rows(database_url: str) -> list[str]:
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return [f"{key} {data}" for key, data in connection.execute(
                "SELECT key, data FROM sandbox_record WHERE provider = 'tap'")]

    async def fetch() -> list[str]:
        import asyncpg

        connection = await asyncpg.connect(dsn=database_url)
        try:
            rows = await connection.fetch("SELECT key, data::text AS data FROM sandbox_record WHERE provider = 'tap'")
        finally:
            await connection.close()
        return [f"{row['key']} {row['data']}" for row in rows]

    return run_async(fetch)


async def test_card_number_and_pin_are_never_stored(tap: TapSandbox, provider: TapProvider, database_url: str) -> None:
    started = await provider.start_payment(tap.request())
    returned(submit(started.redirect_url, card="8888 8800 0000 0001", pin="8642"))
    rows = _sandbox_rows(database_url)
    assert any(str(started.provider_payment_id) in row for row in rows)
    for row in rows:
        assert APPROVED_CARD not in row and "8888 8800" not in row and '"8642"' not in row
        assert '"pin"' not in row and '"card_number"' not in row


def test_controls_validate(tap: TapSandbox) -> None:
    for bad in ({"webhooks": "sometimes"}, {"fail_next": {"create": "explode"}}, {"fail_next": {"capture": "http_500"}},
                {"expire_after_s": -1}):
        assert tap.client.post(f"{tap.api}/_control", json=bad).status_code == 422, bad
