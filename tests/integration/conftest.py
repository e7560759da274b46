"""Service-level tests: business rules against a real database, no HTTP in between."""
from __future__ import annotations

import secrets
from typing import Any, Iterator

import pytest

from shop.app import create_app
from shop.cart.services import add_item, new_cart_token
from shop.catalog.tables import Product
from shop.checkout.forms import validate_checkout
from shop.orders.services import place_order
from shop.payments.tables import PaymentAttempt
from tests.conftest import BACKENDS, migrated_database, test_settings
from tests.unit.test_forms import VALID


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Its own database: these tests add products and orders the storefront tests must not see."""
    yield from migrated_database(request, tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def bound_tables(database_url: str) -> None:
    """Bind the tables to this session's database (create_app does it, as in production)."""
    create_app(test_settings(database_url))


async def make_product(stock: int = 10, price_fils: int = 2500) -> dict[str, Any]:
    """A fresh product so each test owns its stock figures."""
    category = (await Product.select(Product.category).first())["category"]
    slug = "test-" + secrets.token_hex(5)
    rows = await Product.insert(Product(
        slug=slug, category=category, name_en=f"Test {slug}", name_ar="منتج", price_fils=price_fils,
        stock=stock, reserved=0, search_text=slug,
    )).returning(*Product.all_columns())
    return rows[0]


async def product_row(product_id: int) -> dict[str, Any]:
    return await Product.select().where(Product.id == product_id).first()


async def make_order(items: list[tuple[dict[str, Any], int]], provider: str = "checkout") -> dict[str, Any]:
    token = new_cart_token()
    for product, quantity in items:
        await add_item(token, product["id"], quantity)
    details, errors, _ = validate_checkout(VALID)
    assert details is not None, errors
    placed = await place_order(token, details, "en", provider)
    return placed.order


async def make_attempt(order: dict[str, Any], number: int = 1, status: str = "pending") -> dict[str, Any]:
    rows = await PaymentAttempt.insert(PaymentAttempt(
        order=order["id"], number=number, provider=order["provider"], status=status,
        amount_fils=order["total_fils"], currency="KWD",
        merchant_reference=f"{order['reference']}{number:02d}", idempotency_key=secrets.token_hex(16),
        provider_payment_id="pay_" + secrets.token_hex(8),
    )).returning(*PaymentAttempt.all_columns())
    return rows[0]
