"""A customer buys in a real browser and pays by KNET through Tap (its sandbox): success and decline."""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_shopping import pay_on_knet_page, fill_checkout, kwd, order_state
from tests.support import live_server

pytestmark = pytest.mark.browser
TAP_PAGE = re.compile(r"/sandbox/tap/test_gosell/v2/payment/tap_process\.aspx\?chg=")


@pytest.fixture(scope="module")
def tap_shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="tap") as url:
        yield url


def pay_on_tap_page(page: Page, card: str = "8888880000000001", pin: str = "1234") -> None:
    pay_on_knet_page(page, card, pin, url=TAP_PAGE)

def test_a_knet_payment_through_tap(page: Page, tap_shop_url: str) -> None:
    fill_checkout(page, tap_shop_url, "khalas-dates-1kg")
    page.get_by_role("button", name="Pay with KNET").click()
    expect(page.locator("[data-amount]")).to_have_text(kwd(2500))
    pay_on_tap_page(page)
    expect(page).to_have_url(re.compile(r"/orders/"))
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    assert order_state(page) == ("paid", "captured")
    expect(page.locator(".receipt-amount")).to_have_text(kwd(2500))
    expect(page.locator(".receipt-payment-id")).to_have_text(re.compile(r"^\d{18}$"))
    expect(page.locator(".receipt-transaction-id")).to_have_text(re.compile(r"^\d{15}$"))
    expect(page.locator(".receipt-track-id")).to_have_text(re.compile(r"^tck_"))
    expect(page.locator(".receipt-result")).to_have_text("CAPTURED")
    expect(page.locator("#cart-badge")).to_have_text("0")


def test_a_declined_knet_card_through_tap(page: Page, tap_shop_url: str) -> None:
    fill_checkout(page, tap_shop_url, "white-musk-tahara-20g")
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_tap_page(page, card="8888880000000002")
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "declined")
    expect(page.get_by_role("button", name="Retry payment")).to_be_visible()
