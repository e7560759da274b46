"""A customer pays with KNET through Checkout.com (its sandbox), over real HTTP, in every path."""
import re
import time

import httpx

from tests.flows.conftest import DECLINED_CARD, checkout, order_path, pay, states, stats
from tests.support import wait_until as wait_for, CSRF_FIELD, run_shop


def test_success_shows_the_receipt(customer: httpx.Client, sandbox: httpx.Client) -> None:
    started = checkout(customer, 2)
    assert started.status_code == 303
    redirect = started.headers["location"]
    assert "/sandbox/checkout/knet-external/redirect/" in redirect
    page = pay(customer, redirect)
    assert states(page.text) == ("paid", "captured")
    for label in ["KNET payment ID", "Transaction ID", "Authorization code", "Bank reference", "Track ID"]:
        assert label in page.text
    assert re.search(r'class="receipt-payment-id" dir="ltr">\d{18}<', page.text)
    assert re.search(r'class="receipt-transaction-id" dir="ltr">\d{15}<', page.text)
    assert re.search(r"class=\"receipt-result\">captured<", page.text, re.IGNORECASE)


def test_decline_then_a_successful_retry_uses_a_new_provider_payment(customer, sandbox) -> None:
    redirect = checkout(customer).headers["location"]
    page = pay(customer, redirect, card=DECLINED_CARD)
    assert states(page.text) == ("payment_failed", "declined")
    assert "Retry payment" in page.text
    token = CSRF_FIELD.search(page.text).group(1)
    path = order_path(str(page.url))
    retried = customer.post(f"{path}/retry", data={"_csrf_token": token})
    assert retried.status_code == 303
    second_redirect = retried.headers["location"]
    assert second_redirect != redirect and "/knet-external/redirect/" in second_redirect
    assert states(pay(customer, second_redirect).text) == ("paid", "captured")
    keys = stats(sandbox)["creates_by_idempotency_key"]
    assert all(v["payments"] <= 1 for v in keys.values())


def test_cancel_shows_the_failure_and_a_retry(customer, sandbox) -> None:
    page = pay(customer, checkout(customer).headers["location"], action="cancel")
    assert states(page.text) == ("payment_failed", "cancelled")
    assert "cancelled" in page.text and "Retry payment" in page.text


def test_pressing_pay_twice_resumes_the_same_payment(customer, sandbox) -> None:
    first = checkout(customer)
    page = customer.get("/products").text
    second = customer.post("/checkout", data={"_csrf_token": CSRF_FIELD.search(page).group(1)})
    assert second.status_code == 303
    # The cart is spent: the second press lands on the same order, whose button resumes the same payment.
    order_url = second.headers["location"]
    order_page = customer.get(order_url).text
    resumed = customer.post(f"{order_url}/retry", data={"_csrf_token": CSRF_FIELD.search(order_page).group(1)})
    assert resumed.status_code == 303 and resumed.headers["location"] == first.headers["location"]


def test_timeout_on_create_leaves_the_payment_pending_and_reconciliation_settles_it(customer, sandbox, database_url) -> None:
    sandbox.post("/_control", json={"fail_next": {"create": "accept_then_timeout"}, "api_delay_ms": 4000,
                                    "expire_after_s": 1})
    started = checkout(customer)
    assert started.status_code == 303 and started.headers["location"].startswith("/orders/")
    page = customer.get(started.headers["location"]).text
    assert states(page) == ("pending_payment", "pending")
    time.sleep(2)
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=str(customer.base_url).rstrip("/"))
    assert result.returncode == 0, result.stderr
    # The sandbox never saw the customer: the payment expired there, and so here, releasing stock;
    # the order stays open to a retry until it is abandoned for good.
    assert states(customer.get(started.headers["location"]).text) == ("payment_failed", "expired")


def test_webhook_never_arrives_and_the_customer_never_returns(customer, sandbox, database_url) -> None:
    sandbox.post("/_control", json={"webhooks": "drop"})
    redirect = checkout(customer).headers["location"]
    back = pay(customer, redirect, follow=False)  # paid at KNET, but the browser is closed
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=str(customer.base_url).rstrip("/"))
    assert result.returncode == 0, result.stderr
    returned = customer.get(back.headers["location"])  # now the customer comes back, late
    assert states(customer.get(returned.headers["location"]).text) == ("paid", "captured")


def test_timeout_on_inquiry_shows_verifying_until_the_webhook_settles_it(customer, sandbox) -> None:
    sandbox.post("/_control", json={"fail_next": {"details": "timeout"}, "api_delay_ms": 4000,
                                    "webhooks": "delay", "webhook_delay_ms": 3000})
    redirect = checkout(customer).headers["location"]
    page = pay(customer, redirect)
    assert states(page.text) == ("pending_payment", "pending")
    assert "Verifying your payment" in page.text and 'hx-trigger="every 2s"' in page.text
    wait_for(lambda: states(customer.get(str(page.url)).text) == ("paid", "captured"), 15)
