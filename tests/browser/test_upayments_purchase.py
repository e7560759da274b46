"""A customer buys in a real browser with UPayments as the shop's provider: KNET's paymentInit
link, the KNET page, back to the order page (success, and a decline then a retry)."""
from __future__ import annotations

import re
from typing import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from shop.catalog import demo_data
from tests.browser.test_shopping import pay_on_knet_page, fill_checkout, kwd, order_state
from tests.support import live_server

pytestmark = pytest.mark.browser
PRODUCTS = {p["slug"]: p for p in demo_data.PRODUCTS}


@pytest.fixture(scope="module")
def upayments_shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="upayments") as url:
        # Whatever earlier tests left in the sandbox (faults, rate-limit counts) is cleared.
        assert httpx.delete(f"{url}/sandbox/upayments/_control").status_code == 200
        yield url


def pay_on_upayments_knet_page(page: Page, card: str = "8888880000000001", pin: str = "1234") -> None:
    pay_on_knet_page(page, card, pin, url=re.compile(r"/sandbox/upayments/kpg/paymentpage/\d{18}$"))

def test_a_knet_payment_through_upayments(page: Page, upayments_shop_url: str) -> None:
    product = PRODUCTS["white-musk-tahara-20g"]
    fill_checkout(page, upayments_shop_url, product["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_upayments_knet_page(page)
    expect(page).to_have_url(re.compile(r"/orders/"))
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    assert order_state(page) == ("paid", "captured")
    expect(page.locator(".receipt-amount")).to_have_text(kwd(product["price_fils"]))
    expect(page.locator(".receipt-payment-id")).to_have_text(re.compile(r"^\d{18}$"))
    expect(page.locator(".receipt-track-id")).to_have_text(re.compile(r"^\d{29}$"))
    expect(page.locator("#cart-badge")).to_have_text("0")


def test_a_declined_card_then_a_successful_retry(page: Page, upayments_shop_url: str) -> None:
    fill_checkout(page, upayments_shop_url, PRODUCTS["khalas-dates-1kg"]["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_upayments_knet_page(page, card="8888880000000002")
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "declined")
    page.get_by_role("button", name="Retry payment").click()
    pay_on_upayments_knet_page(page)
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
