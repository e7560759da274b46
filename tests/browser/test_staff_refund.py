"""A staff member, in a real browser, finds a KNET payment by its payment id, refunds part of
it and watches the payment timeline follow the provider's answer without reloading."""
from __future__ import annotations

import re
import secrets
import subprocess
import sys
from typing import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_shopping import fill_checkout, pay_on_knet_page
from tests.support import ROOT, live_server, shop_env

pytestmark = pytest.mark.browser
PASSWORD = "finance password for the browser"
PRODUCT = "khalas-dates-1kg"  # KWD 2.500, plenty in stock


@pytest.fixture(scope="module")
def staff_shop(database_url: str) -> Iterator[str]:
    """The shop with its reconciler running every second, as in production."""
    with live_server(database_url, SHOP_RECONCILE_INTERVAL_S="1") as url:
        yield url


@pytest.fixture(scope="module")
def finance_email(database_url: str) -> str:
    email = f"finance-{secrets.token_hex(4)}@example.com"
    made = subprocess.run([sys.executable, "-m", "shop", "createstaff", email, "--role", "finance", "--password-stdin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT,
                          env=shop_env(database_url), timeout=60)
    assert made.returncode == 0, made.stderr
    return email


def test_staff_find_a_payment_by_knet_id_refund_part_and_see_the_timeline(page: Page, staff_shop: str,
                                                                          finance_email: str) -> None:
    # A customer pays with KNET through the Checkout.com sandbox.
    fill_checkout(page, staff_shop, PRODUCT)
    page.get_by_role("button", name="Pay with KNET").click()
    pay_on_knet_page(page)
    expect(page.locator("[data-order-status]")).to_have_attribute("data-order-status", "paid")
    payment_id = page.locator(".receipt-payment-id").inner_text()
    assert re.fullmatch(r"\d{18}", payment_id)

    # Staff sign in and search for that KNET payment id; htmx filters the list in place.
    page.goto(f"{staff_shop}/staff/login?lang=en")
    page.get_by_label("Email").fill(finance_email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{staff_shop}/staff/orders")
    page.evaluate("window.__noReload = true")
    page.get_by_label("Search").fill(payment_id)
    expect(page).to_have_url(re.compile(rf"/staff/orders\?q={payment_id}"))
    rows = page.locator(".order-row")
    expect(rows).to_have_count(1)
    assert page.evaluate("window.__noReload") is True
    rows.first.get_by_role("link").click()

    # The order page: paid and captured, with the payment's timeline.
    detail = page.locator("#order-detail")
    expect(detail).to_have_attribute("data-order-status", "paid")
    expect(detail).to_have_attribute("data-payment-status", "captured")
    expect(page.locator("#timeline")).to_contain_text(payment_id)

    # A partial refund: the order fragment comes back in place, the refund on its way.
    page.evaluate("window.__noReload = true")
    page.get_by_label("Amount (KWD)").fill("1.250")
    page.get_by_label("Reason").fill("Half the dates were crushed")
    page.get_by_role("button", name="Refund", exact=True).click()
    expect(page.locator(".order-notice")).to_have_text("Refund requested.")
    refund_row = page.locator(".refund-row")
    expect(refund_row).to_have_count(1)
    expect(refund_row).to_contain_text("KWD 1.250")

    # The provider's signed webhook settles it; the timeline, polling, shows it by itself.
    expect(refund_row).to_have_attribute("data-refund-status", "succeeded", timeout=15000)
    expect(page.locator("#timeline")).to_contain_text("payment_refunded")
    expect(page.locator("#order-states")).to_contain_text("Partially refunded")
    expect(page.locator(".attempt-refunded")).to_have_attribute("data-fils", "1250")
    assert page.evaluate("window.__noReload") is True

    # A fresh load agrees, in the machine-readable states too.
    page.reload()
    expect(detail).to_have_attribute("data-order-status", "partially_refunded")
    expect(detail).to_have_attribute("data-payment-status", "partially_refunded")
    expect(page.get_by_label("Amount (KWD)")).to_be_visible()
    expect(page.locator("#order-actions")).to_contain_text("KWD 1.250")  # what is left to refund
