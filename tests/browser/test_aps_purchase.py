"""A customer buys in a real browser with Amazon Payment Services as the active provider: the
shop's form auto-submits to APS, KNET, and APS's signed form auto-submits back to the shop."""
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_shopping import pay_on_knet_page, fill_checkout, in_stock, kwd, order_state
from tests.support import live_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def aps_shop_url(database_url: str) -> Iterator[str]:
    with live_server(database_url, SHOP_PROVIDER="aps") as url:
        yield url


def pay_on_aps_knet_page(page: Page, card: str = "8888880000000001", pin: str = "1234") -> None:
    pay_on_knet_page(page, card, pin, url=re.compile(r"/sandbox/aps/knet/"))

def test_aps_knet_purchase(page: Page, aps_shop_url: str) -> None:
    product = in_stock("dates")[0]
    fill_checkout(page, aps_shop_url, product["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_aps_knet_page(page)
    expect(page).to_have_url(re.compile(r"/orders/"))
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    assert order_state(page) == ("paid", "captured")
    expect(page.locator(".receipt-amount")).to_have_text(kwd(product["price_fils"]))
    expect(page.locator(".receipt-result")).to_have_text("14000 Success")
    expect(page.locator(".receipt-track-id")).to_have_text(re.compile(r"^DM\w+01$"))


def test_aps_declined_card_then_a_successful_retry(page: Page, aps_shop_url: str) -> None:
    fill_checkout(page, aps_shop_url, in_stock("dates")[1]["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_aps_knet_page(page, card="8888880000000002")
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "declined")
    page.get_by_role("button", name="Retry payment").click()
    pay_on_aps_knet_page(page)
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    expect(page.locator(".receipt-track-id")).to_have_text(re.compile(r"^DM\w+02$"))
