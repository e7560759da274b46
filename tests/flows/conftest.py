"""End-to-end payment flows over real HTTP: a `shop serve` process and its built-in sandbox."""
from __future__ import annotations

import re
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import BACKENDS, migrated_database
from tests.support import CSRF_FIELD, live_server
from tests.unit.test_forms import VALID

APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Its own database: flows add products (vendor flows) and sell stock the storefront tests
    count on."""
    yield from migrated_database(request, tmp_path_factory)


@pytest.fixture(scope="session")
def shop(database_url: str) -> Iterator[str]:
    """The shop with its sandboxes; provider calls time out after 2 s so fault tests stay quick."""
    with live_server(database_url, SHOP_PROVIDER_TIMEOUT_S="2", SHOP_RECONCILE_INTERVAL_S="0") as url:
        yield url


@pytest.fixture()
def sandbox(shop: str) -> Iterator[httpx.Client]:
    """The Checkout.com sandbox's control API, reset before and after each test."""
    with httpx.Client(base_url=f"{shop}/sandbox/checkout", timeout=30) as client:
        client.delete("/_control")
        yield client
        client.delete("/_control")


@pytest.fixture()
def customer(shop: str) -> Iterator[httpx.Client]:
    """A browser-like client with its own cookies that does not follow redirects by itself."""
    with httpx.Client(base_url=shop, timeout=30, follow_redirects=False) as client:
        yield client


def first_in_stock(customer: httpx.Client) -> int:
    html = customer.get("/products?q=coffee").text
    return int(re.search(r'name="product_id" value="(\d+)"', html).group(1))


def checkout(customer: httpx.Client, quantity: int = 1) -> httpx.Response:
    """Fill the cart and press Pay; returns the 303 (to the provider page or the order page)."""
    page = customer.get("/products?q=coffee").text
    token = CSRF_FIELD.search(page).group(1)
    product_id = re.search(r'name="product_id" value="(\d+)"', page).group(1)
    customer.post("/cart/items", data={"product_id": product_id, "quantity": str(quantity), "_csrf_token": token})
    return customer.post("/checkout", data={**VALID, "_csrf_token": token})


def pay(customer: httpx.Client, redirect_url: str, card: str = APPROVED_CARD, pin: str = PIN,
        action: str = "pay", follow: bool = True) -> httpx.Response:
    """Use the hosted KNET page like a customer; follow the way back to the order page."""
    assert customer.get(redirect_url).status_code == 200
    back = customer.post(redirect_url, data={"bank": "KNET1", "card_number": card, "expiry_month": "09",
                                             "expiry_year": "2030", "pin": pin, "action": action})
    assert back.status_code == 303, back.text[:500]
    if not follow:
        return back
    returned = customer.get(back.headers["location"])
    assert returned.status_code == 303
    assert returned.headers["location"].startswith("/orders/")
    return customer.get(returned.headers["location"])


def states(html: str) -> tuple[str, str]:
    order = re.search(r'data-order-status="([a-z_]+)"', html).group(1)
    payment = re.search(r'data-payment-status="([a-z_]*)"', html).group(1)
    return order, payment


def order_path(html_or_location: str) -> str:
    return re.search(r"/orders/[A-Za-z0-9_-]+", html_or_location).group(0)


def stats(sandbox: httpx.Client) -> dict[str, Any]:
    return sandbox.get("/_stats").json()
