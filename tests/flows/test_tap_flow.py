"""A customer pays with KNET through Tap (its sandbox), over real HTTP: `SHOP_PROVIDER=tap`."""
from __future__ import annotations

import json
import re
import time
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shop.payments.providers.http import exact_json
from shop.payments.providers.tap import sign
from shop.settings import SANDBOX_CREDENTIALS
from tests.flows.conftest import DECLINED_CARD, checkout, order_path, pay, states
from tests.support import wait_until as wait_for, CSRF_FIELD, live_server, run_shop

SECRET_KEY = SANDBOX_CREDENTIALS["TAP_SECRET_KEY"]
PAGE = re.compile(r"/sandbox/tap/test_gosell/v2/payment/tap_process\.aspx\?chg=[\w-]+$")


@pytest.fixture(scope="module")
def tap_shop(database_url: str) -> Iterator[str]:
    """The shop with Tap as its provider; provider calls time out after 2 s so fault tests stay quick."""
    with live_server(database_url, SHOP_PROVIDER="tap", SHOP_PROVIDER_TIMEOUT_S="2",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def tap_sandbox(tap_shop: str) -> Iterator[httpx.Client]:
    """The Tap sandbox (API and controls), reset before and after each test."""
    with httpx.Client(base_url=f"{tap_shop}/sandbox/tap", timeout=30,
                      headers={"Authorization": f"Bearer {SECRET_KEY}"}) as client:
        client.delete("/_control")
        yield client
        client.delete("/_control")


@pytest.fixture()
def customer(tap_shop: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tap_shop, timeout=30, follow_redirects=False) as client:
        yield client


def charge_id_of(back: httpx.Response) -> str:
    return dict(parse_qsl(urlsplit(back.headers["location"]).query))["tap_id"]


def current_order(customer: httpx.Client) -> str:
    """The order page of the customer's last order (Pay pressed again with an empty cart)."""
    token = CSRF_FIELD.search(customer.get("/products").text).group(1)
    again = customer.post("/checkout", data={"_csrf_token": token})
    assert again.status_code == 303 and again.headers["location"].startswith("/orders/")
    return again.headers["location"]


def post_to_shop(customer: httpx.Client, charge: dict[str, Any], signature: str | None = None) -> httpx.Response:
    """A Tap notification as Tap sends it: the charge object, `hashstring` over its fields."""
    return customer.post("/webhooks/tap", content=exact_json(charge), headers={
        "content-type": "application/json", "hashstring": signature or sign(charge, SECRET_KEY)})


def test_success_shows_the_receipt(customer: httpx.Client, tap_sandbox: httpx.Client) -> None:
    started = checkout(customer, 2)
    assert started.status_code == 303 and PAGE.search(started.headers["location"])
    page = pay(customer, started.headers["location"])
    assert states(page.text) == ("paid", "captured")
    assert re.search(r'class="receipt-payment-id" dir="ltr">\d{18}<', page.text)
    assert re.search(r'class="receipt-transaction-id" dir="ltr">\d{15}<', page.text)
    assert re.search(r'class="receipt-auth-code" dir="ltr">[A-Z0-9]{6}<', page.text)
    assert re.search(r'class="receipt-bank-reference" dir="ltr">\d{12}<', page.text)
    assert re.search(r'class="receipt-track-id" dir="ltr">tck_TS\w+<', page.text)
    assert re.search(r'class="receipt-result">CAPTURED<', page.text)


def test_decline_then_a_successful_retry(customer: httpx.Client, tap_sandbox: httpx.Client) -> None:
    redirect = checkout(customer).headers["location"]
    page = pay(customer, redirect, card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
    assert "Retry payment" in page.text
    retried = customer.post(f"{order_path(str(page.url))}/retry", data={"_csrf_token": CSRF_FIELD.search(page.text).group(1)})
    assert retried.status_code == 303 and PAGE.search(retried.headers["location"])
    assert retried.headers["location"] != redirect
    assert states(pay(customer, retried.headers["location"]).text) == ("paid", "captured")
    keys = tap_sandbox.get("/_stats").json()["creates_by_idempotency_key"]
    assert all(v["payments"] == 1 for v in keys.values())  # one charge per attempt, never two


def test_cancel(customer: httpx.Client, tap_sandbox: httpx.Client) -> None:
    page = pay(customer, checkout(customer).headers["location"], action="cancel")
    assert states(page.text) == ("payment_failed", "cancelled")


def test_the_post_settles_the_order_when_the_customer_never_returns(customer: httpx.Client,
                                                                     tap_sandbox: httpx.Client) -> None:
    back = pay(customer, checkout(customer).headers["location"], follow=False)  # the browser is closed
    order = current_order(customer)
    wait_for(lambda: states(customer.get(order).text) == ("paid", "captured"))

    def delivered() -> list[dict]:
        # The sandbox books a delivery once the shop has answered it, which may be after the page shows paid.
        deliveries = tap_sandbox.get("/_stats").json()["webhook_deliveries"]
        return [d for d in deliveries if d["event_id"] == f"{charge_id_of(back)}:CAPTURED"]

    wait_for(lambda: bool(delivered()))
    mine = delivered()
    assert mine[0]["status_code"] == 200 and mine[0]["url"].endswith("/webhooks/tap")


def test_duplicate_late_and_forged_notifications_change_nothing(customer: httpx.Client,
                                                                tap_sandbox: httpx.Client) -> None:
    tap_sandbox.post("/_control", json={"webhooks": "duplicate", "duplicate_count": 3})
    back = pay(customer, checkout(customer).headers["location"], follow=False)
    charge_id = charge_id_of(back)
    order = current_order(customer)
    wait_for(lambda: states(customer.get(order).text) == ("paid", "captured"))
    wait_for(lambda: len([d for d in tap_sandbox.get("/_stats").json()["webhook_deliveries"]
                          if d["event_id"] == f"{charge_id}:CAPTURED" and d["status_code"] == 200]) == 3)

    charge = tap_sandbox.get(f"/v2/charges/{charge_id}").json(parse_float=Decimal)
    again = post_to_shop(customer, charge)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    # A stale DECLINED (validly signed) after the capture is recorded and changes nothing.
    late = post_to_shop(customer, {**charge, "status": "DECLINED", "response": {"code": "507", "message": "Declined"}})
    assert late.status_code == 200 and late.json()["duplicates"] == 0
    assert states(customer.get(order).text) == ("paid", "captured")
    # Forged: another amount under the original signature.
    forged = post_to_shop(customer, {**charge, "amount": Decimal("0.1")}, signature=sign(charge, SECRET_KEY))
    assert forged.status_code == 401
    unsigned = customer.post("/webhooks/tap", content=json.dumps({"id": charge_id, "status": "CAPTURED"}),
                             headers={"content-type": "application/json"})
    assert unsigned.status_code == 401
    assert states(customer.get(order).text) == ("paid", "captured")


def test_return_first_with_inquiry_down_then_the_post_settles_it(customer: httpx.Client,
                                                                  tap_sandbox: httpx.Client) -> None:
    tap_sandbox.post("/_control", json={"fail_next": {"retrieve": "timeout"}, "api_delay_ms": 4000,
                                        "webhooks": "delay", "webhook_delay_ms": 3000})
    page = pay(customer, checkout(customer).headers["location"])
    assert states(page.text) == ("pending_payment", "pending")
    assert "Verifying your payment" in page.text
    wait_for(lambda: states(customer.get(str(page.url)).text) == ("paid", "captured"), 15)


def test_create_times_out_then_reconciliation_finds_the_charge_and_expires_it(
        customer: httpx.Client, tap_sandbox: httpx.Client, database_url: str) -> None:
    tap_sandbox.post("/_control", json={"fail_next": {"create": "accept_then_timeout"}, "api_delay_ms": 4000,
                                        "expire_after_s": 1})
    started = checkout(customer)
    assert started.status_code == 303 and started.headers["location"].startswith("/orders/")
    assert states(customer.get(started.headers["location"]).text) == ("pending_payment", "pending")
    time.sleep(2)
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=str(customer.base_url).rstrip("/"))
    assert result.returncode == 0, result.stderr
    # Found by reference (POST /v2/charges/list): never paid, ABANDONED at Tap, so the payment
    # expired here too, releasing stock; the order stays open to a retry.
    assert states(customer.get(started.headers["location"]).text) == ("payment_failed", "expired")
