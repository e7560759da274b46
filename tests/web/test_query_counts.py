"""SQL statements per storefront page stay few, whatever the page size or catalogue size."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.catalog.tables import Product
from tests.support import post_form

MAX_STATEMENTS = 4


@contextmanager
def counting(client: TestClient) -> Iterator[list[str]]:
    """Every statement the app's engine runs while the block runs (queries and raw SQL)."""
    engine_class = type(Product._meta.db)  # engines have __slots__: patch the class for the block
    seen: list[str] = []
    original = engine_class.run_querystring

    async def run_querystring(self, querystring, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(str(querystring)[:120])
        return await original(self, querystring, *args, **kwargs)

    engine_class.run_querystring = run_querystring  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        engine_class.run_querystring = original  # type: ignore[method-assign]


@pytest.mark.parametrize("page_size", [6, 24, 60])
def test_catalogue_pages_do_not_grow_with_the_page(settings, page_size: int) -> None:
    with TestClient(app=create_app(settings.with_(page_size=page_size))) as client:
        slug = client.get("/products").text.split('data-slug="')[1].split('"')[0]
        for path in ["/", "/products", "/products?q=coffee", "/products?category=coffee-dates&page=1",
                     f"/products/{slug}"]:
            with counting(client) as seen:
                assert client.get(path).status_code == 200
            assert len(seen) <= MAX_STATEMENTS, (path, seen)


def test_cart_page_with_many_lines(client, product) -> None:
    from tests.web.conftest import sellable

    for row in sellable(1)[:12]:
        post_form(client, "/cart/items", {"product_id": str(row["id"]), "quantity": "1"})
    with counting(client) as seen:
        page = client.get("/cart")
    assert page.status_code == 200 and page.text.count('class="cart-line"') == 12
    assert len(seen) <= MAX_STATEMENTS, seen
