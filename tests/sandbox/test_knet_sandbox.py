"""The KNET tranportal sandbox over real HTTP, driven by the real adapter: PaymentHTTP.htm,
the hosted page, the encrypted notification and its REDIRECT reply, inquiry, refunds, faults."""
from __future__ import annotations

import re
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Awaitable, Callable, Iterator, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from shop.payments.providers.base import (
    Observation, PaymentRequest, ProviderRejected, ProviderUnavailable, StartedPayment,
)
from shop.payments.providers.knet import KnetProvider, encrypt_trandata, resource_key
from shop.payments.states import PaymentStatus
from shop.settings import SANDBOX_CREDENTIALS, Settings
from tests.support import run_async

T = TypeVar("T")
APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"
KEY = SANDBOX_CREDENTIALS["KNET_RESOURCE_KEY"]
TRANPORTAL_ID = SANDBOX_CREDENTIALS["KNET_TRANPORTAL_ID"]
PASSWORD = SANDBOX_CREDENTIALS["KNET_TRANPORTAL_PASSWORD"]
RECEIPT = "https://merchant.example/receipt"
ERROR_URL = "https://merchant.example/knet/error"


# -- the merchant's notification endpoint --------------------------------------------------------

@dataclass
class Merchant:
    """Records KNET's server-to-server POSTs and answers them as told."""

    url: str = ""
    received: list[bytes] = field(default_factory=list)
    reply: str = "redirect"  # "redirect" | "ok" (a wrong acknowledgement) | "500"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, track_id: str) -> list[bytes]:
        with self.lock:
            return [b for b in self.received if dict(parse_qsl(b.decode())).get("trackid") == track_id]


@contextmanager
def merchant_server() -> Iterator[Merchant]:
    state = Merchant()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                state.received.append(body)
                reply = state.reply
            track_id = dict(parse_qsl(body.decode())).get("trackid", "")
            text = {"redirect": f"REDIRECT={RECEIPT}?ref={track_id}", "ok": "OK", "500": ""}[reply]
            self.send_response(500 if reply == "500" else 200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/knet/notify"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def merchant() -> Iterator[Merchant]:
    with merchant_server() as state:
        yield state


class Knet:
    """The adapter and a customer's browser against one live shop's KNET sandbox."""

    def __init__(self, shop_url: str, merchant: Merchant) -> None:
        self.shop_url = shop_url
        self.base = f"{shop_url}/sandbox/knet"
        self.merchant = merchant
        self.control_client = httpx.Client(base_url=self.base, timeout=15)

    def run(self, work: Callable[[KnetProvider], Awaitable[T]], timeout_s: float = 10) -> T:
        async def go() -> T:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                settings = Settings(secret_key="x" * 40, public_url=self.shop_url)
                return await work(KnetProvider(settings, client))

        return run_async(go)

    def request(self, amount_fils: int = 12500, language: str = "en", track_id: str | None = None) -> PaymentRequest:
        track_id = track_id or "T" + secrets.token_hex(6).upper()
        return PaymentRequest(
            merchant_reference=track_id, order_reference="DM261125ABCDEF", amount_fils=amount_fils, currency="KWD",
            language=language, idempotency_key="k", return_url=f"{ERROR_URL}?ref={track_id}",
            webhook_url=self.merchant.url, customer_name="Test", customer_email="t@example.com",
            customer_phone="+96555123456", description="Order",
        )

    def start(self, **kwargs: Any) -> tuple[PaymentRequest, StartedPayment]:
        request = self.request(**kwargs)
        return request, self.run(lambda p: p.start_payment(request))

    def land(self, redirect_url: str) -> str:
        """The browser follows the PaymentHTTP.htm URL to KNET's page; returns the page URL."""
        response = httpx.get(redirect_url)
        assert response.status_code == 303, response.text[:300]
        location = response.headers["location"]
        assert re.match(rf"^{re.escape(self.base)}/kpg/paymentpage\.htm\?PaymentID=100\d{{15}}$", location)
        return location

    def pay(self, page_url: str, card: str = APPROVED_CARD, pin: str = PIN, month: str = "09", year: str = "2025",
            action: str = "pay") -> httpx.Response:
        return httpx.post(page_url, data={"bank": "KNET1", "card_number": card, "expiry_month": month,
                                          "expiry_year": year, "pin": pin, "action": action})

    def notification(self, track_id: str) -> Observation:
        bodies = self.merchant.bodies(track_id)
        assert bodies, "no notification arrived"
        [observation] = self.run(lambda p: _sync(p.verify_webhook({}, bodies[-1])))
        return observation

    def inquire(self, request: PaymentRequest) -> Observation:
        return self.run(lambda p: p.inquire_transaction(request.merchant_reference, request.amount_fils))

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self.control_client.post("/_control", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def raw_pipe(self, body: str, param: str = "tranInit") -> str:
        response = httpx.post(f"{self.base}/kpg/tranPipe.htm?param={param}", content=body.encode(),
                              headers={"Content-Type": "application/xml"})
        assert response.status_code == 200
        return response.text

    def init_url(self, plaintext: str, tranportal_id: str = TRANPORTAL_ID, key: str = KEY,
                 error_url: str = ERROR_URL) -> str:
        trandata = encrypt_trandata(plaintext, resource_key(key))
        return (f"{self.base}/kpg/PaymentHTTP.htm?param=paymentInit&trandata={trandata}"
                f"&tranportalId={tranportal_id}&responseURL={self.merchant.url}&errorURL={error_url}")


async def _sync(value: T) -> T:
    return value


@pytest.fixture()
def knet(shop_url: str, merchant: Merchant) -> Iterator[Knet]:
    client = Knet(shop_url, merchant)
    assert client.control_client.delete("/_control").status_code == 200
    merchant.reply = "redirect"
    try:
        yield client
    finally:
        client.control_client.delete("/_control")
        client.control_client.close()


def plaintext(track_id: str, **changes: str) -> str:
    fields = {"id": TRANPORTAL_ID, "password": PASSWORD, "action": "1", "langid": "USA", "currencycode": "414",
              "amt": "5.250", "responseURL": "http://127.0.0.1:9/notify", "errorURL": ERROR_URL,
              "trackid": track_id, "udf1": "", "udf2": "", "udf3": "", "udf4": "", "udf5": ""}
    fields.update(changes)
    return "&".join(f"{k}={v}" for k, v in fields.items())


def error_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, response.text[:300]
    location = response.headers["location"]
    assert location.startswith(ERROR_URL + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


# -- purchase outcomes ------------------------------------------------------------------------------

def test_approved_card_notifies_then_follows_the_redirect(knet: Knet) -> None:
    request, started = knet.start(amount_fils=12500)
    page_url = knet.land(started.redirect_url)
    page = httpx.get(page_url)
    assert page.status_code == 200 and "KWD 12.500" in page.text and request.merchant_reference in page.text
    assert "<script" not in page.text and 'type="password"' in page.text
    back = knet.pay(page_url)
    assert back.status_code == 303
    assert back.headers["location"] == f"{RECEIPT}?ref={request.merchant_reference}"  # our REDIRECT line

    [body] = knet.merchant.bodies(request.merchant_reference)
    clear = dict(parse_qsl(body.decode()))
    assert set(clear) == {"paymentid", "trackid", "trandata"} and re.match(r"^[0-9a-f]+$", clear["trandata"])
    observation = knet.notification(request.merchant_reference)
    assert observation.trusted and observation.status == PaymentStatus.CAPTURED
    assert observation.amount_fils == 12500 and observation.merchant_reference == request.merchant_reference
    receipt = observation.receipt
    assert receipt.payment_id == clear["paymentid"] == page_url.rsplit("=", 1)[1]
    assert re.match(r"^\d{15}$", receipt.transaction_id) and re.match(r"^\d{12}$", receipt.bank_reference)
    assert re.match(r"^[A-Z0-9]{6}$", receipt.auth_code) and re.match(r"^(0[1-9]|1[0-2])\d{2}$", receipt.post_date)
    assert observation.payload["plain"]["udf1"] == "DM261125ABCDEF"

    inquiry = knet.inquire(request)
    assert inquiry.status == PaymentStatus.CAPTURED and inquiry.amount_fils == 12500
    assert inquiry.provider_payment_id == receipt.payment_id and inquiry.receipt.transaction_id == receipt.transaction_id

    # Pressing Pay again, or reloading the page, cannot decide it twice.
    assert knet.pay(page_url).status_code == 410
    assert httpx.get(page_url).status_code == 410
    assert len(knet.merchant.bodies(request.merchant_reference)) == 1


@pytest.mark.parametrize(("card", "pin"), [(DECLINED_CARD, PIN), (APPROVED_CARD, "9999")])
def test_declined_card_or_wrong_pin(knet: Knet, card: str, pin: str) -> None:
    request, started = knet.start()
    back = knet.pay(knet.land(started.redirect_url), card=card, pin=pin)
    assert back.headers["location"] == f"{RECEIPT}?ref={request.merchant_reference}"
    observation = knet.notification(request.merchant_reference)
    assert observation.status == PaymentStatus.DECLINED and observation.receipt.result == "NOT CAPTURED"
    assert observation.payload["plain"]["authRespCode"] == "05" and observation.receipt.auth_code == ""
    assert knet.inquire(request).status == PaymentStatus.DECLINED


def test_cancel_button(knet: Knet) -> None:
    request, started = knet.start(language="ar")
    page_url = knet.land(started.redirect_url)
    assert 'dir="rtl"' in httpx.get(page_url).text  # langid=AR
    knet.pay(page_url, card="", pin="", action="cancel")
    observation = knet.notification(request.merchant_reference)
    assert observation.status == PaymentStatus.CANCELLED and observation.receipt.result == "CANCELED"
    assert (observation.receipt.transaction_id, observation.receipt.auth_code, observation.receipt.post_date) == ("", "", "")
    assert knet.inquire(request).status == PaymentStatus.CANCELLED


def test_manual_rule_expiry_decides_when_configured(knet: Knet) -> None:
    knet.control(approve_expiry="09/2021")
    request, started = knet.start()
    knet.pay(knet.land(started.redirect_url), pin="4321", month="09", year="2021")
    assert knet.notification(request.merchant_reference).status == PaymentStatus.CAPTURED
    request, started = knet.start()
    knet.pay(knet.land(started.redirect_url), month="09", year="2025")
    assert knet.notification(request.merchant_reference).status == PaymentStatus.DECLINED


# -- the notification leg -------------------------------------------------------------------------

@pytest.mark.parametrize("reply", ["ok", "500"])
def test_a_wrong_acknowledgement_voids_the_payment(knet: Knet, reply: str) -> None:
    knet.merchant.reply = reply
    request, started = knet.start()
    error = error_of(knet.pay(knet.land(started.redirect_url)))
    assert error["Error"] == "IPAY0100249" and error["trackid"] == request.merchant_reference
    assert error["amt"] == "12.500" and re.match(r"^\d{18}$", error["paymentid"])
    assert knet.notification(request.merchant_reference).status == PaymentStatus.CAPTURED  # it was sent...
    inquiry = knet.inquire(request)  # ...and then reversed
    assert inquiry.receipt.result == "VOIDED" and inquiry.status == PaymentStatus.CANCELLED


def test_dropped_notification_voids_and_delayed_one_still_redirects(knet: Knet) -> None:
    knet.control(webhooks="drop")
    request, started = knet.start()
    assert error_of(knet.pay(knet.land(started.redirect_url)))["Error"] == "IPAY0100249"
    assert knet.merchant.bodies(request.merchant_reference) == []
    assert knet.inquire(request).receipt.result == "VOIDED"

    knet.control(webhooks="delay", webhook_delay_ms=300)
    request, started = knet.start()
    began = time.monotonic()
    back = knet.pay(knet.land(started.redirect_url))
    assert time.monotonic() - began >= 0.3 and back.headers["location"].startswith(RECEIPT)


def test_duplicate_notifications_carry_the_same_bytes_and_event(knet: Knet) -> None:
    knet.control(webhooks="duplicate", duplicate_count=3)
    request, started = knet.start()
    assert knet.pay(knet.land(started.redirect_url)).headers["location"].startswith(RECEIPT)
    bodies = knet.merchant.bodies(request.merchant_reference)
    assert len(bodies) == 3 and len(set(bodies)) == 1
    observations = [knet.run(lambda p, b=b: _sync(p.verify_webhook({}, b)))[0] for b in bodies]
    assert len({o.event_id for o in observations}) == 1
    deliveries = [d for d in knet.control_client.get("/_stats").json()["webhook_deliveries"]
                  if d["event_id"] == observations[0].event_id]
    assert [d["copy"] for d in deliveries] == [1, 2, 3]


def test_replays_arrive_late_and_out_of_order(knet: Knet) -> None:
    first, first_started = knet.start()
    knet.pay(knet.land(first_started.redirect_url), action="cancel")
    second, second_started = knet.start()
    knet.pay(knet.land(second_started.redirect_url))
    original = knet.merchant.bodies(first.merchant_reference)[0]
    replayed = knet.control_client.post(f"/_webhooks/replay/{first.merchant_reference}")
    assert replayed.status_code == 202
    deadline = time.monotonic() + 5
    while len(knet.merchant.bodies(first.merchant_reference)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with knet.merchant.lock:
        order = [dict(parse_qsl(b.decode()))["trackid"] for b in knet.merchant.received[-3:]]
    assert order == [first.merchant_reference, second.merchant_reference, first.merchant_reference]
    assert knet.merchant.bodies(first.merchant_reference)[1] == original  # the same bytes, late
    assert knet.control_client.post("/_webhooks/replay/NOSUCHTRACK").status_code == 404


# -- timeouts and expiry ---------------------------------------------------------------------------

def test_page_time_limit(knet: Knet) -> None:
    knet.control(expire_after_s=1)
    request, started = knet.start()
    page_url = knet.land(started.redirect_url)
    assert knet.inquire(request).status is None  # still on the page: nothing to report yet
    time.sleep(1.2)
    error = error_of(knet.pay(page_url))
    assert error["Error"] == "IPAY0100042" and error["trackid"] == request.merchant_reference
    assert knet.merchant.bodies(request.merchant_reference) == []
    assert knet.inquire(request).status == PaymentStatus.EXPIRED
    assert error_of(httpx.get(started.redirect_url))["Error"] == "IPAY0100042"

    # Never finished, never reloaded: the inquiry alone finds it expired.
    request, started = knet.start()
    knet.land(started.redirect_url)
    time.sleep(1.2)
    assert knet.inquire(request).status == PaymentStatus.EXPIRED


def test_resuming_the_same_url_shows_the_same_page(knet: Knet) -> None:
    request, started = knet.start()
    assert knet.land(started.redirect_url) == knet.land(started.redirect_url)
    assert knet.control_client.get("/_stats").json()["inits_by_track_id"][request.merchant_reference] == 2
    # Another initialisation with the same track id (different amount) is refused.
    other = knet.run(lambda p: p.start_payment(knet.request(amount_fils=999, track_id=request.merchant_reference)))
    assert error_of(httpx.get(other.redirect_url))["Error"] == "IPAY0100114"


# -- refunds ----------------------------------------------------------------------------------------

def _captured(knet: Knet, amount_fils: int = 12500) -> PaymentRequest:
    request, started = knet.start(amount_fils=amount_fils)
    knet.pay(knet.land(started.redirect_url))
    return request


def test_partial_then_full_refunds(knet: Knet) -> None:
    request = _captured(knet)
    track = request.merchant_reference
    first = knet.run(lambda p: p.refund_transaction(track, 5000))
    assert first.status == "succeeded" and re.match(r"^\d{18}$", first.provider_refund_id or "")
    assert first.raw["amt"] == "5.000" and first.raw["trackid"] == track
    second = knet.run(lambda p: p.refund_transaction(track, 7500))
    assert second.status == "succeeded" and second.provider_refund_id != first.provider_refund_id
    with pytest.raises(ProviderRejected, match="IPAY0100024"):
        knet.run(lambda p: p.refund_transaction(track, 1))
    refunds = knet.control_client.get(f"/_transactions/{track}").json()["refunds"]
    assert [r["amount_fils"] for r in refunds] == [5000, 7500]
    # Refunds do not change what the inquiry reports for the purchase.
    assert knet.inquire(request).status == PaymentStatus.CAPTURED

    whole = _captured(knet, 2000)
    assert knet.run(lambda p: p.refund_transaction(whole.merchant_reference, 2000)).status == "succeeded"


def test_refund_rules_and_declines(knet: Knet) -> None:
    knet.control(multiple_partial_refunds=False)
    request = _captured(knet)
    assert knet.run(lambda p: p.refund_transaction(request.merchant_reference, 100)).status == "succeeded"
    with pytest.raises(ProviderRejected, match="IPAY0100055"):
        knet.run(lambda p: p.refund_transaction(request.merchant_reference, 100))
    knet.control(refunds="decline", multiple_partial_refunds=True)
    declined = _captured(knet)
    assert knet.run(lambda p: p.refund_transaction(declined.merchant_reference, 100)).status == "failed"
    cancelled, started = knet.start()
    knet.pay(knet.land(started.redirect_url), action="cancel")
    with pytest.raises(ProviderRejected, match="IPAY0100055"):
        knet.run(lambda p: p.refund_transaction(cancelled.merchant_reference, 100))


# -- inquiry ---------------------------------------------------------------------------------------

def test_inquiry_modes_and_errors(knet: Knet) -> None:
    request = _captured(knet, 3000)
    track = request.merchant_reference
    assert knet.run(lambda p: p.inquire_transaction("NOSUCHTRACK1", 3000)).status is None
    with pytest.raises(ProviderRejected, match="IPAY0100025"):
        knet.run(lambda p: p.inquire_transaction(track, 3001))  # amt must be the original's
    observation = knet.inquire(request)
    creds = f"<id>{TRANPORTAL_ID}</id><password>{PASSWORD}</password>"
    wrapped = knet.raw_pipe(f"<request>{creds}<action>8</action><amt>3.000</amt><transid>{track}</transid>"
                            f"<trackid>{track}</trackid><udf5>TrackID</udf5><currencycode>414</currencycode></request>")
    assert wrapped.startswith("<result>CAPTURED</result>") and f"<payid>{observation.provider_payment_id}</payid>" in wrapped
    for mode, value in [("PaymentID", observation.provider_payment_id), ("TransID", observation.receipt.transaction_id),
                        ("", observation.receipt.transaction_id), ("SeqNum", observation.receipt.bank_reference)]:
        answer = knet.raw_pipe(f"{creds}<action>8</action><amt>3.000</amt><transid>{value}</transid>"
                               f"<trackid>{track}</trackid><udf5>{mode}</udf5>")
        assert answer.startswith("<result>CAPTURED</result>"), (mode, answer)
    errors = {
        f"<id>{TRANPORTAL_ID}</id><password>wrong</password><action>8</action><amt>3.000</amt>": "IPAY0100015",
        f"<id>nobody</id><password>{PASSWORD}</password><action>8</action><amt>3.000</amt>": "IPAY0100006",
        f"{creds}<action>1</action><amt>3.000</amt>": "IPAY0100020",
        f"{creds}<action>8</action><amt>3.5</amt>": "IPAY0100024",
        f"{creds}<action>8</action><amt>3.000</amt><transid>X1</transid><trackid>X2</trackid><udf5>TrackID</udf5>":
            "IPAY0100027",
        f"{creds}<action>8</action><amt>3.000</amt><udf5>Bogus</udf5>": "IPAY0100032",
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]><id>&a;</id>': "IPAY0100013",
        "<id>unclosed": "IPAY0100013",
    }
    for body, code in errors.items():
        answer = knet.raw_pipe(body)
        assert f"<error_code_tag>{code}</error_code_tag>" in answer and answer.startswith(f"<result>!ERROR!-{code}-"), body
    assert "IPAY0100038" in knet.raw_pipe(f"{creds}<action>8</action>", param="other")


def test_faults_make_the_outcome_unknown(knet: Knet) -> None:
    request = _captured(knet)
    knet.control(api_delay_ms=1500, fail_next={"inquiry": "timeout"})
    with pytest.raises(ProviderUnavailable):
        knet.run(lambda p: p.inquire_transaction(request.merchant_reference, 12500), timeout_s=0.5)
    for fault in ("http_500", "html_200"):
        knet.control(fail_next={"inquiry": fault})
        with pytest.raises(ProviderUnavailable):
            knet.inquire(request)
    knet.control(fail_next={"refund": "accept_then_timeout"})
    with pytest.raises(ProviderUnavailable):
        knet.run(lambda p: p.refund_transaction(request.merchant_reference, 1000), timeout_s=0.5)
    time.sleep(1.2)
    # The refund happened although its answer never came: KNET has no idempotency key to retry with.
    assert len(knet.control_client.get(f"/_transactions/{request.merchant_reference}").json()["refunds"]) == 1
    knet.control(fail_next={"init": "http_500"})
    _, started = knet.start()
    assert httpx.get(started.redirect_url).status_code == 500
    assert knet.control_client.post("/_control", json={"fail_next": {"create": "timeout"}}).status_code == 422
    assert knet.control_client.post("/_control", json={"error_url_method": "PUT"}).status_code == 422


# -- initialisation checks ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"password": "wrong"}, "IPAY0100015"),
        ({"id": "someone"}, "IPAY0100014"),
        ({"action": "4"}, "IPAY0100033"),
        ({"action": "2"}, "IPAY0100020"),
        ({"currencycode": "840"}, "IPAY0100022"),
        ({"amt": "5.25"}, "IPAY0100024"),
        ({"amt": "0.000"}, "IPAY0100024"),
        ({"amt": ""}, "IPAY0100023"),
        ({"langid": "EN"}, "IPAY0100026"),
        ({"responseURL": "https://shop.example/notify?x=1"}, "IPAY0100004"),
        ({"trackid": "ORD-1"}, "IPAY0100027"),
        ({"udf2": "a@b"}, "IPAY0100029"),
    ],
)
def test_initialisation_is_checked_like_knet(knet: Knet, changes: dict[str, str], code: str) -> None:
    track = "I" + secrets.token_hex(5).upper()
    error = error_of(httpx.get(knet.init_url(plaintext(track, **changes))))
    assert error["Error"] == code and error["ErrorText"]


def test_bad_trandata_and_terminal(knet: Knet) -> None:
    track = "B" + secrets.token_hex(5).upper()
    good = knet.init_url(plaintext(track))
    assert error_of(httpx.get(good.replace("trandata=", "trandata=00")))["Error"] == "IPAY0100176"
    assert error_of(httpx.get(knet.init_url(plaintext(track), key="ANOTHERKEY123456")))["Error"] == "IPAY0100176"
    assert error_of(httpx.get(knet.init_url(plaintext(track), tranportal_id="999")))["Error"] == "IPAY0100006"
    assert error_of(httpx.get(good.replace("param=paymentInit", "param=x")))["Error"] == "IPAY0100038"
    nowhere = httpx.get(knet.init_url(plaintext(track, errorURL=""), error_url="javascript:alert(1)"))
    assert nowhere.status_code == 400 and "KNET" in nowhere.text


def test_error_url_by_post(knet: Knet) -> None:
    knet.control(error_url_method="POST", webhooks="drop")
    request, started = knet.start()
    back = knet.pay(knet.land(started.redirect_url))
    assert back.status_code == 303 and "/kpg/result.htm?PaymentID=" in back.headers["location"]
    form = httpx.get(back.headers["location"])
    assert form.status_code == 200 and f'action="{ERROR_URL}"' in form.text and "data-autosubmit" in form.text
    assert 'name="Error" value="IPAY0100249"' in form.text and request.merchant_reference in form.text
    refused = httpx.get(knet.init_url(plaintext("P" + secrets.token_hex(4).upper(), password="bad")))
    assert refused.status_code == 200 and 'name="Error" value="IPAY0100015"' in refused.text


def test_no_card_data_is_kept(knet: Knet) -> None:
    request = _captured(knet)
    kept = knet.control_client.get(f"/_transactions/{request.merchant_reference}").text
    assert APPROVED_CARD not in kept and '"pin"' not in kept.lower() and "card" not in kept.lower()
    assert knet.control_client.get("/_transactions/NOSUCHTRACK").status_code == 404
