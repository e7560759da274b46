"""A customer pays with KNET through UPayments (its sandbox), over real HTTP, with the shop's
provider set to `upayments`: returns and notifications are hints, the status call decides."""
from __future__ import annotations

import re
import time
from typing import Iterator

import httpx
import pytest

from tests.flows.conftest import DECLINED_CARD, checkout, order_path, pay, states
from tests.support import wait_until as wait_for, CSRF_FIELD, live_server, run_shop

PAYMENT_INIT = "/sandbox/upayments/kpg/PaymentHTTP.htm?param=paymentInit"


@pytest.fixture(scope="module")
def shop(database_url: str) -> Iterator[str]:
    """This module's shop: UPayments is the provider; provider calls time out after 2 s."""
    with live_server(database_url, SHOP_PROVIDER="upayments", SHOP_PROVIDER_TIMEOUT_S="2",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def upay(shop: str) -> Iterator[httpx.Client]:
    """The UPayments sandbox's controls, reset around each test (no status rate limit here)."""
    with httpx.Client(base_url=f"{shop}/sandbox/upayments", timeout=30) as client:
        client.delete("/_control")
        client.post("/_control", json={"status_rate_limit": 0})
        yield client
        client.delete("/_control")


def knet_page(customer: httpx.Client, link: str) -> str:
    """The browser follows KNET's paymentInit link to the payment page."""
    assert PAYMENT_INIT in link
    init = customer.get(link)
    assert init.status_code == 302
    return str(httpx.URL(link).join(init.headers["location"]))


def last_order_path(customer: httpx.Client) -> str:
    """The order page of the customer's last order (the spent cart's checkout sends them there)."""
    response = customer.get("/checkout")
    assert response.status_code == 303 and response.headers["location"].startswith("/orders/")
    return response.headers["location"]


def merchant_reference(html: str) -> str:
    """The attempt's `order.id` at UPayments: the order reference and the attempt number."""
    return re.search(r"Order ([A-Z0-9-]+)", html).group(1) + "01"


def test_success_shows_the_receipt(customer: httpx.Client, upay: httpx.Client) -> None:
    started = checkout(customer, 2)
    assert started.status_code == 303
    page = pay(customer, knet_page(customer, started.headers["location"]))
    assert states(page.text) == ("paid", "captured")
    assert re.search(r'class="receipt-payment-id" dir="ltr">\d{18}<', page.text)
    assert re.search(r'class="receipt-transaction-id" dir="ltr">\d{15}<', page.text)
    assert re.search(r'class="receipt-auth-code" dir="ltr">[A-Z0-9]{6}<', page.text)
    assert re.search(r'class="receipt-bank-reference" dir="ltr">\d{12}<', page.text)
    assert re.search(r'class="receipt-track-id" dir="ltr">\d{29}<', page.text)  # UPayments' track id
    assert re.search(r'class="receipt-result">CAPTURED<', page.text)


def test_decline_then_a_successful_retry(customer: httpx.Client, upay: httpx.Client) -> None:
    first_link = checkout(customer).headers["location"]
    page = pay(customer, knet_page(customer, first_link), card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
    retried = customer.post(f"{order_path(str(page.url))}/retry", data={"_csrf_token": CSRF_FIELD.search(page.text).group(1)})
    assert retried.status_code == 303
    second_link = retried.headers["location"]
    assert second_link != first_link
    paid = pay(customer, knet_page(customer, second_link))
    assert states(paid.text) == ("paid", "captured")
    # Each attempt is its own UPayments order id, charged once.
    first_attempt = merchant_reference(paid.text)
    charges = upay.get("/_stats").json()["charges_by_order_id"]
    assert charges[first_attempt] == charges[first_attempt[:-2] + "02"] == {"requests": 1, "payments": 1}


def test_cancel_shows_the_failure_and_a_retry(customer: httpx.Client, upay: httpx.Client) -> None:
    page = pay(customer, knet_page(customer, checkout(customer).headers["location"]), action="cancel")
    assert states(page.text) == ("payment_failed", "cancelled")
    assert "Retry payment" in page.text


def test_the_notification_alone_settles_the_order(customer: httpx.Client, upay: httpx.Client) -> None:
    # The customer closes the browser on KNET's answer; duplicated notifications arrive instead.
    upay.post("/_control", json={"webhooks": "duplicate", "duplicate_count": 3})
    back = pay(customer, knet_page(customer, checkout(customer).headers["location"]), follow=False)
    token_path = last_order_path(customer)
    wait_for(lambda: states(customer.get(token_path).text) == ("paid", "captured"))
    # The late return, and a stale notification replayed after it, change nothing.
    returned = customer.get(back.headers["location"])
    assert returned.status_code == 303 and returned.headers["location"] == token_path
    track_id = re.search(r'class="receipt-track-id" dir="ltr">(\d{29})<', customer.get(token_path).text).group(1)
    assert upay.post(f"/_webhooks/replay/{track_id}").status_code == 202
    time.sleep(0.5)
    assert states(customer.get(token_path).text) == ("paid", "captured")


def test_a_forged_notification_cannot_mark_an_order_paid(customer: httpx.Client, upay: httpx.Client,
                                                        shop: str) -> None:
    started = checkout(customer)
    link = started.headers["location"]
    knet_page(customer, link)  # on the KNET page, not paid
    token_path = last_order_path(customer)
    reference = merchant_reference(customer.get(token_path).text)
    forged = {"result": "CAPTURED", "payment_id": "100200000000000001", "track_id": "2" * 29, "tran_id": "1" * 15,
              "ref": "1" * 12, "auth": "FORGED", "post_date": "0101", "payment_type": "knet",
              "requested_order_id": reference}
    answer = httpx.post(f"{shop}/webhooks/upayments", json=forged)
    assert answer.status_code == 200
    assert states(customer.get(token_path).text) == ("pending_payment", "pending")
    # Not a notification at all: refused, nothing stored.
    assert httpx.post(f"{shop}/webhooks/upayments", content=b'{"hello": "world"}').status_code == 401


def test_status_timeout_shows_verifying_until_the_notification_settles_it(customer: httpx.Client,
                                                                          upay: httpx.Client) -> None:
    upay.post("/_control", json={"fail_next": {"status": "timeout"}, "api_delay_ms": 4000,
                                 "webhooks": "delay", "webhook_delay_ms": 3000})
    page = pay(customer, knet_page(customer, checkout(customer).headers["location"]))
    assert states(page.text) == ("pending_payment", "pending")
    assert "Verifying your payment" in page.text
    wait_for(lambda: states(customer.get(str(page.url)).text) == ("paid", "captured"), 15)


def test_timeout_on_charge_leaves_the_payment_pending(customer: httpx.Client, upay: httpx.Client,
                                                      database_url: str) -> None:
    upay.post("/_control", json={"fail_next": {"charge": "accept_then_timeout"}, "api_delay_ms": 4000})
    started = checkout(customer)
    assert started.status_code == 303 and started.headers["location"].startswith("/orders/")
    assert states(customer.get(started.headers["location"]).text) == ("pending_payment", "pending")
    # No track id came back and UPayments has no lookup by order id: reconciliation keeps it
    # open until the payment window (and its grace) is over, never failing it early.
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=str(customer.base_url).rstrip("/"),
                      SHOP_PROVIDER="upayments")
    assert result.returncode == 0, result.stderr
    assert states(customer.get(started.headers["location"]).text) == ("pending_payment", "pending")
