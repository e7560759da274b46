"""A customer pays with KNET directly (the tranportal sandbox) in a real browser: success and decline."""
import re
from typing import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_shopping import pay_on_knet_page, fill_checkout, in_stock, kwd, order_state
from tests.support import live_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def knet_shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="knet", SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


def pay_on_tranportal_page(page: Page, card: str = "8888880000000001", pin: str = "1234") -> None:
    pay_on_knet_page(page, card, pin, url=re.compile(r"/sandbox/knet/kpg/paymentpage\.htm\?PaymentID=\d{18}$"))

def test_a_successful_knet_payment(page: Page, knet_shop_url: str) -> None:
    product = in_stock("oud")[1]
    fill_checkout(page, knet_shop_url, product["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    expect(page.locator(".knet-amount")).to_have_text(kwd(product["price_fils"]))
    pay_on_tranportal_page(page)
    expect(page).to_have_url(re.compile(r"/orders/"))
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    assert order_state(page) == ("paid", "captured")
    expect(page.locator(".receipt-result")).to_have_text("CAPTURED")
    expect(page.locator(".receipt-amount")).to_have_text(kwd(product["price_fils"]))
    expect(page.locator(".receipt-payment-id")).to_have_text(re.compile(r"^\d{18}$"))
    expect(page.locator(".receipt-transaction-id")).to_have_text(re.compile(r"^\d{15}$"))
    expect(page.locator(".receipt-track-id")).to_have_text(re.compile(r"^DM\d{6}[A-Z0-9]{6}01$"))


def test_a_declined_knet_payment(page: Page, knet_shop_url: str) -> None:
    fill_checkout(page, knet_shop_url, in_stock("oud")[2]["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_tranportal_page(page, card="8888880000000002")
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "declined")
    expect(page.locator(".receipt-result")).to_have_text("NOT CAPTURED")
    expect(page.get_by_role("button", name="Retry payment")).to_be_visible()
