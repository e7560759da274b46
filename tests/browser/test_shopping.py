"""A customer shops in a real browser: search, htmx cart, quantities, Arabic, checkout summary."""
import re

import pytest
from playwright.sync_api import Page, expect

from shop.catalog import demo_data
from tests.unit.test_forms import VALID

pytestmark = pytest.mark.browser


def kwd(fils: int) -> str:
    return f"KWD {fils // 1000:,}.{fils % 1000:03d}"


def in_stock(word: str) -> list[dict]:
    return [p for p in demo_data.PRODUCTS if word in p["name_en"].lower() and p["stock"] >= 5]


def test_search_fill_cart_with_htmx_change_quantity_and_switch_to_arabic(page: Page, shop_url: str) -> None:
    first, second = in_stock("coffee")[:2]
    page.goto(shop_url + "/")
    page.get_by_role("searchbox", name="Search products").fill("coffee")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/products\?q=coffee"))
    cards = page.locator(".product-card")
    expect(cards).to_have_count(len([p for p in demo_data.PRODUCTS if "coffee" in p["name_en"].lower()]))

    # Add two products; htmx swaps the mini-cart and the badge without reloading the page.
    page.evaluate("window.__noReload = true")
    page.locator(f'.product-card[data-slug="{first["slug"]}"] button').click()
    expect(page.locator("#cart-badge")).to_have_text("1")
    page.locator(f'.product-card[data-slug="{second["slug"]}"] input[name=quantity]').fill("2")
    page.locator(f'.product-card[data-slug="{second["slug"]}"] button').click()
    expect(page.locator("#cart-badge")).to_have_text("3")
    expect(page.locator("#mini-cart .cart-total")).to_have_text(kwd(first["price_fils"] + 2 * second["price_fils"]))
    assert page.evaluate("window.__noReload") is True

    # On the cart page, changing a quantity updates the line, the total and the badge in place.
    page.locator("#mini-cart").get_by_role("link", name="View cart").click()
    expect(page).to_have_url(shop_url + "/cart")
    page.evaluate("window.__noReload = true")
    quantity = page.locator('.cart-line[data-product-id] input[name=quantity]').first
    quantity.fill("4")
    quantity.dispatch_event("change")
    total = 4 * first["price_fils"] + 2 * second["price_fils"]
    expect(page.locator("#cart .cart-total")).to_have_text(kwd(total))
    expect(page.locator("#cart-badge")).to_have_text("6")
    assert page.evaluate("window.__noReload") is True

    # Arabic: right to left, Arabic names, and the cart is still there.
    page.get_by_role("link", name="العربية").click()
    expect(page.locator("html")).to_have_attribute("dir", "rtl")
    expect(page.locator("html")).to_have_attribute("lang", "ar")
    expect(page.locator("#cart")).to_contain_text(first["name_ar"])
    expect(page.locator("#cart-badge")).to_have_text("6")
    page.goto(shop_url + "/products")
    expect(page.locator("html")).to_have_attribute("dir", "rtl")


def fill_checkout(page: Page, shop_url: str, slug: str) -> None:
    page.goto(f"{shop_url}/products/{slug}?lang=en")
    page.get_by_role("button", name="Add to cart").click()
    expect(page.locator("#cart-badge")).not_to_have_text("0")
    page.locator("#mini-cart").get_by_role("link", name="Checkout").click()
    expect(page).to_have_url(shop_url + "/checkout")
    page.get_by_label("Full name").fill(VALID["name"])
    page.get_by_label("Email").fill(VALID["email"])
    page.get_by_label("Mobile number").fill("5512 3456")
    page.get_by_label("Governorate").select_option("hawalli")
    # htmx narrows the areas to the chosen governorate.
    expect(page.locator("#f-area option[value=salmiya]")).to_have_count(1)
    expect(page.locator("#f-area option[value=jahra]")).to_have_count(0)
    page.get_by_label("Area").select_option("salmiya")
    page.get_by_label("Block").fill("10")
    page.get_by_label("Street").fill("Salem Al-Mubarak")
    page.get_by_label("Building / house").fill("12")


CHECKOUT_PAGE = re.compile(r"/sandbox/checkout/knet-external/redirect/")


def pay_on_knet_page(page: Page, card: str = "8888880000000001", pin: str = "1234", cancel: bool = False,
                     url: re.Pattern[str] = CHECKOUT_PAGE) -> None:
    """The customer on the hosted KNET page, wherever the provider put it (`url`)."""
    expect(page).to_have_url(url)
    if cancel:
        page.locator("button.knet-cancel").click()
        return
    page.locator("#bank").select_option("KNET1")
    page.locator("#card_number").fill(card)
    page.locator("#expiry_month").select_option("09")
    page.locator("#expiry_year").select_option(index=3)
    page.locator("#pin").fill(pin)
    page.locator("button.knet-submit").click()


def order_state(page: Page) -> tuple[str | None, str | None]:
    section = page.locator("[data-order-status]")
    return section.get_attribute("data-order-status"), section.get_attribute("data-payment-status")


def test_checkout_errors_then_a_successful_knet_payment(page: Page, shop_url: str) -> None:
    product = in_stock("oud")[0]
    fill_checkout(page, shop_url, product["slug"])
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_role("button", name="Pay with KNET").click()
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.get_by_label("Full name")).to_have_value(VALID["name"])
    page.get_by_label("Email").fill(VALID["email"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_knet_page(page)
    expect(page).to_have_url(re.compile(r"/orders/"))
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    assert order_state(page) == ("paid", "captured")
    expect(page.locator(".receipt-amount")).to_have_text(kwd(product["price_fils"]))
    expect(page.locator(".receipt-payment-id")).to_have_text(re.compile(r"^\d{18}$"))
    expect(page.locator("#cart-badge")).to_have_text("0")


def test_a_declined_card_then_a_successful_retry(page: Page, shop_url: str) -> None:
    fill_checkout(page, shop_url, in_stock("coffee")[2]["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_knet_page(page, card="8888880000000002")
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "declined")
    page.get_by_role("button", name="Retry payment").click()
    pay_on_knet_page(page)
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")


def test_cancel_on_the_knet_page(page: Page, shop_url: str) -> None:
    fill_checkout(page, shop_url, in_stock("coffee")[3]["slug"])
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_knet_page(page, cancel=True)
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "payment_failed")
    assert order_state(page) == ("payment_failed", "cancelled")
    expect(page.get_by_role("button", name="Retry payment")).to_be_visible()
