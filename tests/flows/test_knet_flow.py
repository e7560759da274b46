"""A customer pays with KNET directly (the tranportal sandbox), end to end over real HTTP: the
shop answers KNET's encrypted notification with `REDIRECT=`, and the customer lands on the order."""
from __future__ import annotations

import re
import time
from typing import Any, Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from shop.payments.providers.knet import encrypt_trandata, resource_key
from shop.settings import SANDBOX_CREDENTIALS
from tests.flows.conftest import APPROVED_CARD, DECLINED_CARD, PIN, checkout, order_path, states
from tests.support import CSRF_FIELD, live_server

KEY = resource_key(SANDBOX_CREDENTIALS["KNET_RESOURCE_KEY"])


@pytest.fixture(scope="module")
def knet_shop(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="knet", SHOP_PROVIDER_TIMEOUT_S="2",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def sandbox(knet_shop: str) -> Iterator[httpx.Client]:
    """The KNET sandbox's control API, reset before and after each test."""
    with httpx.Client(base_url=f"{knet_shop}/sandbox/knet", timeout=30) as client:
        client.delete("/_control")
        yield client
        client.delete("/_control")


@pytest.fixture()
def customer(knet_shop: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=knet_shop, timeout=30, follow_redirects=False) as client:
        yield client


def to_knet(customer: httpx.Client) -> tuple[str, str]:
    """Pay pressed: the shop sends the browser to PaymentHTTP.htm, KNET on to its page.
    Returns (page URL, our track id)."""
    started = checkout(customer)
    assert started.status_code == 303
    redirect = started.headers["location"]
    assert "/sandbox/knet/kpg/PaymentHTTP.htm?param=paymentInit&trandata=" in redirect
    assert "&responseURL=" + shop_url(customer) + "/webhooks/knet&" in redirect
    landed = customer.get(redirect)
    assert landed.status_code == 303, landed.text[:300]
    page = landed.headers["location"]
    html = customer.get(page).text
    track_id = re.search(r"DM\d{6}[A-Z0-9]{6}\d{2}", html).group(0)
    return page, track_id


def shop_url(customer: httpx.Client) -> str:
    return str(customer.base_url).rstrip("/")


def submit(customer: httpx.Client, page: str, card: str = APPROVED_CARD, pin: str = PIN,
           action: str = "pay") -> httpx.Response:
    back = customer.post(page, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                     "expiry_year": "2030", "pin": pin, "action": action})
    assert back.status_code == 303, back.text[:300]
    return back


def come_back(customer: httpx.Client, back: httpx.Response) -> httpx.Response:
    """Follow KNET's redirect (our REDIRECT URL, or errorURL) to the order page."""
    returned = customer.get(back.headers["location"])
    assert returned.status_code == 303, returned.text[:300]
    assert returned.headers["location"].startswith("/orders/")
    return customer.get(returned.headers["location"])


def pay(customer: httpx.Client, **kwargs: Any) -> tuple[httpx.Response, str]:
    page, track_id = to_knet(customer)
    return come_back(customer, submit(customer, page, **kwargs)), track_id


def receipt(html: str) -> dict[str, str]:
    return dict(re.findall(r'class="receipt-([a-z-]+)"[^>]*>([^<]*)<', html))


def notify(customer: httpx.Client, plain: str, **clear: str) -> httpx.Response:
    """POST a notification as KNET would, encrypted with the terminal's key."""
    body = urlencode({**clear, "trandata": encrypt_trandata(plain, KEY)})
    return customer.post("/webhooks/knet", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})


def knet_plain(paymentid: str, track_id: str, result: str, amt: str) -> str:
    return (f"paymentid={paymentid}&result={result}&auth=&avr=N&ref=&tranid=&postdate=&trackid={track_id}"
            f"&udf1=&udf2=&udf3=&udf4=&udf5=&amt={amt}")


def test_success_shows_the_knet_receipt(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page, track_id = pay(customer)
    assert states(page.text) == ("paid", "captured")
    fields = receipt(page.text)
    assert fields["result"] == "CAPTURED" and fields["track-id"] == track_id
    assert re.match(r"^\d{18}$", fields["payment-id"]) and re.match(r"^\d{15}$", fields["transaction-id"])
    assert re.match(r"^[A-Z0-9]{6}$", fields["auth-code"]) and re.match(r"^\d{12}$", fields["bank-reference"])
    kept = sandbox.get(f"/_transactions/{track_id}").json()
    assert kept["paymentid"] == fields["payment-id"]
    assert kept["notification"]["redirect"].endswith(f"/payments/knet/return?ref={track_id}")
    assert fields["amount"] == "KWD " + kept["amt"]


def test_decline_then_retry_and_a_late_replay_of_the_decline(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page, first_track = pay(customer, card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
    assert receipt(page.text)["result"] == "NOT CAPTURED" and "Retry payment" in page.text
    retried = customer.post(f"{order_path(str(page.url))}/retry", data={"_csrf_token": CSRF_FIELD.search(page.text).group(1)})
    assert retried.status_code == 303 and "/kpg/PaymentHTTP.htm" in retried.headers["location"]
    knet_page = customer.get(retried.headers["location"]).headers["location"]
    paid = come_back(customer, submit(customer, knet_page))
    assert states(paid.text) == ("paid", "captured")
    assert receipt(paid.text)["track-id"] == first_track[:-2] + "02"  # a new track id per attempt
    # The first attempt's decline arrives again, late and out of order: nothing moves.
    event_id = sandbox.get(f"/_transactions/{first_track}").json()["paymentid"] + ":NOT CAPTURED"
    assert sandbox.post(f"/_webhooks/replay/{first_track}").status_code == 202
    deadline = time.monotonic() + 5
    while len([d for d in sandbox.get("/_stats").json()["webhook_deliveries"]
               if d["event_id"] == event_id and d["status_code"] == 200]) < 2:
        assert time.monotonic() < deadline, "the replay was not delivered"
        time.sleep(0.1)
    assert states(customer.get(str(paid.url)).text) == ("paid", "captured")


def test_cancel_shows_the_failure_and_a_retry(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page, _ = pay(customer, action="cancel")
    assert states(page.text) == ("payment_failed", "cancelled")
    assert receipt(page.text)["result"] == "CANCELED" and "Retry payment" in page.text


def test_duplicate_and_stale_notifications_change_nothing(customer: httpx.Client, sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"webhooks": "duplicate", "duplicate_count": 3})
    page, track_id = pay(customer)
    assert states(page.text) == ("paid", "captured")
    kept = sandbox.get(f"/_transactions/{track_id}").json()
    deliveries = [d for d in sandbox.get("/_stats").json()["webhook_deliveries"]
                  if d["event_id"] == f"{kept['paymentid']}:CAPTURED"]
    assert [(d["copy"], d["status_code"]) for d in deliveries] == [(1, 200), (2, 200), (3, 200)]
    # A stale "not captured" for the same payment, properly encrypted, arrives after the capture.
    stale = notify(customer, knet_plain(kept["paymentid"], track_id, "NOT+CAPTURED", kept["amt"]),
                   paymentid=kept["paymentid"], trackid=track_id)
    assert stale.status_code == 200 and stale.headers["content-type"].startswith("text/plain")
    assert stale.text == f"REDIRECT={shop_url(customer)}/payments/knet/return?ref={track_id}"
    assert states(customer.get(str(page.url)).text) == ("paid", "captured")


def test_a_forged_notification_is_answered_but_applies_nothing(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page, track_id = to_knet(customer)
    forged = encrypt_trandata(knet_plain("100202611111111111", track_id, "CAPTURED", "3.750"), b"NOTTHEKEY1234567")
    answer = customer.post("/webhooks/knet", content=urlencode({"trandata": forged, "trackid": track_id}),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200
    assert answer.text == f"REDIRECT={shop_url(customer)}/payments/knet/return?error=notification"
    order = customer.get("/checkout").headers["location"]  # the cart is spent: the order page
    assert states(customer.get(order).text) == ("pending_payment", "pending")
    paid = come_back(customer, submit(customer, page, card=DECLINED_CARD))
    assert states(paid.text) == ("payment_failed", "declined")  # the forged capture never counted


def test_unacknowledged_notification_is_reversed_by_knet(customer: httpx.Client, sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"webhooks": "drop"})  # responseURL unreachable
    page, track_id = to_knet(customer)
    back = submit(customer, page)
    error = parse_qs(urlsplit(back.headers["location"]).query)
    assert back.headers["location"].startswith(f"{shop_url(customer)}/payments/knet/return?Error=")
    assert error["Error"] == ["IPAY0100249"] and error["trackid"] == [track_id]
    order = come_back(customer, back)  # the errorURL visit: the inquiry finds the payment voided
    assert states(order.text) == ("payment_failed", "cancelled")
    assert receipt(order.text)["result"] == "VOIDED"


def test_page_time_limit_expires_the_payment(customer: httpx.Client, sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"expire_after_s": 1})
    page, _ = to_knet(customer)
    time.sleep(1.2)
    back = submit(customer, page)
    assert parse_qs(urlsplit(back.headers["location"]).query)["Error"] == ["IPAY0100042"]
    order = come_back(customer, back)
    assert states(order.text) == ("payment_failed", "expired")
    assert "Retry payment" in order.text


def test_the_notification_settles_it_even_when_the_inquiry_times_out(customer: httpx.Client,
                                                                      sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"fail_next": {"inquiry": "timeout"}, "api_delay_ms": 3000})
    page, _ = pay(customer)
    assert states(page.text) == ("paid", "captured")
