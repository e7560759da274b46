"""A customer pays with KNET through Amazon Payment Services (its sandbox), over real HTTP:
the shop's auto-submitting form, the APS page, KNET, the signed return, feedback, inquiry."""
from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from shop.payments.providers.aps import ApsProvider
from shop.payments.providers.base import RefundRequest
from shop.settings import Settings
from tests.flows.conftest import DECLINED_CARD, checkout, states
from tests.support import wait_until as wait_for, CSRF_FIELD, live_server, run_async, run_shop

APPROVED_CARD, PIN = "8888880000000001", "1234"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
ACTION = re.compile(r'<form[^>]+action="([^"]+)"[^>]*data-autosubmit')


@pytest.fixture(scope="module")
def aps_shop(database_url: str) -> Iterator[str]:
    """The shop with APS as the active provider; provider calls time out after 2 s."""
    with live_server(database_url, SHOP_PROVIDER="aps", SHOP_PROVIDER_TIMEOUT_S="2",
                     SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def customer(aps_shop: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=aps_shop, timeout=30, follow_redirects=False) as client:
        yield client


@pytest.fixture()
def sandbox(aps_shop: str) -> Iterator[httpx.Client]:
    """The APS sandbox's control API, reset before and after each test."""
    with httpx.Client(base_url=f"{aps_shop}/sandbox/aps", timeout=30) as client:
        client.delete("/_control")
        yield client
        client.delete("/_control")


def auto_form(page: str) -> tuple[str, dict[str, str]]:
    """The auto-submitting form a page carries: its action and hidden fields."""
    action = ACTION.search(page)
    assert action, page[:800]
    return html.unescape(action.group(1)), {k: html.unescape(v) for k, v in HIDDEN.findall(page)}


def start(customer: httpx.Client, response: httpx.Response | None = None) -> str:
    """Press Pay: the shop answers the signed APS form, the browser posts it; the KNET page URL."""
    response = response or checkout(customer)
    assert response.status_code == 200, response.text[:500]
    action, fields = auto_form(response.text)
    assert action.endswith("/sandbox/aps/FortAPI/paymentPage")
    assert fields["command"] == "PURCHASE" and fields["payment_option"] == "KNET" and fields["currency"] == "KWD"
    landed = customer.post(action, data=fields)
    assert landed.status_code == 303, landed.text[:500]
    return landed.headers["location"]


def knet(customer: httpx.Client, knet_url: str, card: str = APPROVED_CARD, pin: str = PIN,
         action: str = "pay") -> tuple[str, dict[str, str]]:
    """On the KNET page; returns the signed form APS posts back to the shop."""
    assert customer.get(knet_url).status_code == 200
    done = customer.post(knet_url, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                         "expiry_year": "2030", "pin": pin, "action": action})
    assert done.status_code == 303, done.text[:500]
    return auto_form(customer.get(done.headers["location"]).text)


def come_back(customer: httpx.Client, action: str, fields: dict[str, str]) -> httpx.Response:
    """The auto-submitted POST to the shop's return URL, then the order page."""
    returned = customer.post(action, data=fields)
    assert returned.status_code == 303, returned.text[:300]
    assert returned.headers["location"].startswith("/orders/")
    return customer.get(returned.headers["location"])


def pay(customer: httpx.Client, **kwargs: str) -> httpx.Response:
    return come_back(customer, *knet(customer, start(customer), **kwargs))


def receipt(html_text: str, name: str) -> str:
    match = re.search(rf'class="receipt-{name}"[^>]*>([^<]*)<', html_text)
    return match.group(1) if match else ""


def test_success_shows_paid_and_the_knet_receipt(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page = pay(customer)
    assert states(page.text) == ("paid", "captured")
    url = str(page.url)
    # The feedback notification carries the KNET references (it may land just after the return).
    wait_for(lambda: re.fullmatch(r"\d{15}", receipt(customer.get(url).text, "transaction-id")) is not None)
    text = customer.get(url).text
    assert re.fullmatch(r"\d{12}", receipt(text, "bank-reference"))
    assert re.fullmatch(r"[A-Z0-9]{6}", receipt(text, "auth-code"))
    assert receipt(text, "result") == "14000 Success"
    assert re.fullmatch(r"DM\w+01", receipt(text, "track-id"))


def test_decline_then_a_retry_with_a_new_reference(customer: httpx.Client, sandbox: httpx.Client) -> None:
    knet_url = start(customer)
    action, fields = knet(customer, knet_url, card=DECLINED_CARD)
    assert fields["response_code"] == "13666"
    page = come_back(customer, action, fields)
    assert states(page.text) == ("payment_failed", "declined")
    assert "Retry payment" in page.text
    token = CSRF_FIELD.search(page.text).group(1)
    path = re.search(r"/orders/[A-Za-z0-9_-]+", str(page.url)).group(0)
    retried = customer.post(f"{path}/retry", data={"_csrf_token": token})
    second = start(customer, retried)
    assert second != knet_url
    again_action, again = knet(customer, second)
    assert again["merchant_reference"] != fields["merchant_reference"]
    assert again["merchant_reference"].endswith("02")
    assert states(come_back(customer, again_action, again).text) == ("paid", "captured")


def test_cancel_on_the_knet_page(customer: httpx.Client, sandbox: httpx.Client) -> None:
    page = pay(customer, card="", pin="", action="cancel")
    assert states(page.text) == ("payment_failed", "cancelled")


def test_a_forged_return_changes_nothing(customer: httpx.Client, sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"webhooks": "drop"})  # only the return can tell the shop
    action, fields = knet(customer, start(customer), card=DECLINED_CARD)
    for forged in ({**fields, "response_code": "14000", "status": "14"}, {**fields, "signature": "0" * 64},
                   {k: v for k, v in fields.items() if k != "signature"}):
        assert customer.post(action, data=forged).status_code == 400
    page = come_back(customer, action, fields)
    assert states(page.text) == ("payment_failed", "declined")


def test_duplicate_notifications_are_applied_once(customer: httpx.Client, sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"webhooks": "duplicate", "duplicate_count": 3})
    page = pay(customer)
    assert states(page.text) == ("paid", "captured")

    reference = receipt(page.text, "track-id")

    def delivered() -> list[int]:
        stats = sandbox.get("/_stats").json()
        ours = {e["event_id"] for e in stats["events"] if e["owner"] == reference}
        return [d["status_code"] for d in stats["webhook_deliveries"] if d["event_id"] in ours]

    wait_for(lambda: len(delivered()) >= 3)
    assert set(delivered()) == {200}  # the shop accepted every copy, and applied one
    assert states(customer.get(str(page.url)).text) == ("paid", "captured")


def test_reordered_notifications_settle_the_same(customer: httpx.Client, sandbox: httpx.Client, aps_shop: str) -> None:
    sandbox.post("/_control", json={"webhooks": "drop"})
    action, fields = knet(customer, start(customer))  # paid at KNET; the browser does not come back yet
    adapter = ApsProvider(Settings(secret_key="x" * 40, public_url=aps_shop), httpx.AsyncClient(timeout=10))
    refund = run_async(lambda: adapter.refund(RefundRequest(fields["fort_id"], 500, "KWD", "rf-dashboard", "")))
    assert refund.status == "succeeded"
    # The refund's notification reaches the shop before the purchase's.
    sandbox.post("/_control", json={"webhooks": "reorder"})
    reference = fields["merchant_reference"]
    assert sandbox.post(f"/_webhooks/replay/{reference}", params={"honour_controls": "true"}).status_code == 202

    def delivered() -> list[str]:
        stats = sandbox.get("/_stats").json()
        ours = {e["event_id"] for e in stats["events"] if e["owner"] == reference}
        return [d["type"] for d in stats["webhook_deliveries"] if d["event_id"] in ours and d["status_code"] == 200]

    wait_for(lambda: delivered() == ["REFUND 06000", "PURCHASE 14000"])
    page = come_back(customer, action, fields)
    # The refund made at the provider is kept, and settles once the capture is known.
    assert states(page.text) == ("partially_refunded", "partially_refunded")


def test_feedback_lost_and_customer_gone_then_reconciliation(customer: httpx.Client, sandbox: httpx.Client,
                                                             database_url: str, aps_shop: str) -> None:
    sandbox.post("/_control", json={"webhooks": "drop"})
    action, fields = knet(customer, start(customer))  # paid; the browser is closed
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=aps_shop)
    assert result.returncode == 0, result.stderr
    page = come_back(customer, action, fields)  # the customer comes back late
    assert states(page.text) == ("paid", "captured")


def test_check_status_timeout_shows_verifying_until_feedback_settles_it(customer: httpx.Client,
                                                                         sandbox: httpx.Client) -> None:
    sandbox.post("/_control", json={"fail_next": {"check_status": "timeout"}, "api_delay_ms": 4000,
                                    "webhooks": "delay", "webhook_delay_ms": 3000})
    page = pay(customer)
    assert states(page.text) == ("pending_payment", "pending")
    assert "Verifying your payment" in page.text
    wait_for(lambda: states(customer.get(str(page.url)).text) == ("paid", "captured"), 15)


def test_abandoned_knet_page_expires(customer: httpx.Client, sandbox: httpx.Client, database_url: str,
                                     aps_shop: str) -> None:
    knet_url = start(customer)
    assert customer.get(knet_url).status_code == 200  # the customer lands, then walks away
    sandbox.post("/_control", json={"expire_after_s": 0.3})
    time.sleep(0.5)
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=aps_shop)
    assert result.returncode == 0, result.stderr
    assert customer.get(knet_url).status_code == 410  # KNET voided it
    last_order = customer.get("/checkout")  # the cart is spent: the shop shows the last order
    assert last_order.status_code == 303
    # The provider reported the expiry: the order may be paid again.
    assert states(customer.get(last_order.headers["location"]).text) == ("payment_failed", "expired")
