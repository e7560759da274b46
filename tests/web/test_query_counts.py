"""SQL statements per storefront page stay few, whatever the page size or catalogue size."""
from __future__ import annotations

from typing import Iterator

import pytest
from litestar.testing import TestClient

from bench.catalogue import add_catalogue
from shop.app import create_app
from tests.conftest import BACKENDS, migrated_database, test_settings as settings_for
from tests.support import counting_statements as counting, post_form, run_async

MAX_STATEMENTS = 4


@pytest.mark.parametrize("page_size", [6, 24, 60])
def test_catalogue_pages_do_not_grow_with_the_page(settings, page_size: int) -> None:
    with TestClient(app=create_app(settings.with_(page_size=page_size))) as client:
        slug = client.get("/products").text.split('data-slug="')[1].split('"')[0]
        for path in ["/", "/products", "/products?q=coffee", "/products?category=coffee-dates&page=1",
                     f"/products/{slug}"]:
            with counting() as seen:
                assert client.get(path).status_code == 200
            assert len(seen) <= MAX_STATEMENTS, (path, seen)


def test_cart_page_with_many_lines(client, product) -> None:
    from tests.web.conftest import sellable

    for row in sellable(1)[:12]:
        post_form(client, "/cart/items", {"product_id": str(row["id"]), "quantity": "1"})
    with counting() as seen:
        page = client.get("/cart")
    assert page.status_code == 200 and page.text.count('class="cart-line"') == 12
    assert len(seen) <= MAX_STATEMENTS, seen


@pytest.fixture(scope="module", params=BACKENDS)
def growing_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own: this test adds 2,000 products to it."""
    yield from migrated_database(request, tmp_path_factory)


def _statements_per_page(database_url: str) -> dict[str, int]:
    """Statements of each storefront page for a customer with a cart, in a fresh app (nothing cached)."""
    with TestClient(app=create_app(settings_for(database_url))) as client:
        post_form(client, "/cart/items", {"product_id": "1", "quantity": "1"})
        slug = client.get("/products").text.split('data-slug="')[1].split('"')[0]
        counts = {}
        for path in ["/", "/products", "/products?page=3", "/products?q=coffee", f"/products/{slug}", "/cart"]:
            with counting() as seen:
                assert client.get(path).status_code == 200
            counts[path] = len(seen)
    return counts


def test_pages_do_not_grow_with_the_catalogue(growing_database: str) -> None:
    small = _statements_per_page(growing_database)
    run_async(lambda: add_catalogue(products=2000, categories=20, prefix="grown"))
    large = _statements_per_page(growing_database)
    assert large == small, (small, large)
    assert max(large.values()) <= MAX_STATEMENTS, large
