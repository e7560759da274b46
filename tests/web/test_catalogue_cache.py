"""The catalogue cache never shows an old price or stock level, whoever changed it."""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from litestar.testing import TestClient
from markupsafe import escape

from shop.app import create_app
from shop.catalog.tables import Category, Product
from shop.money import format_kwd
from tests.web.conftest import run, sellable

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


@pytest.fixture()
def changed_product(client) -> Iterator[dict]:
    """A sellable product whose price and stock the test may change; put back afterwards."""
    row = sellable(10)[0]
    yield row
    run(Product.update({Product.price_fils: row["price_fils"], Product.stock: row["stock"]}).where(
        Product.id == row["id"]))


def _card(html: str, product_id: int) -> str:
    return html.split(f'data-product-id="{product_id}"')[1].split("</article>")[0]


def test_a_price_or_stock_change_shows_on_the_next_request(client, changed_product) -> None:
    pid, slug = changed_product["id"], changed_product["slug"]
    listing = "/products?" + "q=" + changed_product["name_en"].split()[0]
    for path in (listing, f"/products/{slug}"):
        assert client.get(path).status_code == 200  # now cached
    new_price = changed_product["price_fils"] + 1230
    # Another connection, as another worker process or `shop` command would write.
    run(Product.update({Product.price_fils: new_price, Product.stock: Product.reserved + 2}).where(Product.id == pid))
    card = _card(client.get(listing).text, pid)
    assert format_kwd(new_price) in card and "Only 2 left" in card
    page = client.get(f"/products/{slug}").text
    assert format_kwd(new_price) in page and "Only 2 left" in page


def test_a_withdrawn_category_leaves_the_cached_pages(client) -> None:
    category = run(Category.select().where(Category.active.eq(True)).order_by(Category.id).first())
    path = f"/products?category={category['slug']}"
    assert client.get(path).status_code == 200
    run(Category.update({Category.active: False}).where(Category.id == category["id"]))
    try:
        assert client.get(path).status_code == 404
    finally:
        run(Category.update({Category.active: True}).where(Category.id == category["id"]))
    assert client.get(path).status_code == 200


def test_each_customer_gets_their_own_csrf_token_in_a_cached_grid(settings) -> None:
    app = create_app(settings)
    tokens = []
    with TestClient(app=app, base_url="http://127.0.0.1:8000") as first, \
            TestClient(app=app, base_url="http://127.0.0.1:8000") as second:
        for client in (first, second, first):
            page = client.get("/products?page=2")
            found = set(CSRF_FIELD.findall(page.text))
            assert len(found) == 1
            tokens.append(found.pop())
            assert "\x00" not in page.text
    assert tokens[0] != tokens[1] and tokens[0] == tokens[2]


def test_a_cached_grid_is_rendered_per_language(client) -> None:
    english = client.get("/products?page=1").text
    arabic = client.get("/products?page=1&lang=ar").text
    assert 'dir="rtl"' in arabic
    assert _card(english, int(re.search(r'data-product-id="(\d+)"', english).group(1))) != \
        _card(arabic, int(re.search(r'data-product-id="(\d+)"', arabic).group(1)))


def test_a_renamed_category_shows_in_the_filter_the_home_page_and_product_pages(client) -> None:
    category = run(Category.select().where(Category.active.eq(True)).order_by(Category.id).first())
    product = run(Product.select(Product.slug).where(
        (Product.category == category["id"]) & Product.active.eq(True)).first())
    paths = ("/products", "/", f"/products/{product['slug']}")
    for path in paths:
        assert str(escape(category["name_en"])) in client.get(path).text  # now cached
    run(Category.update({Category.name_en: "Renamed Shelf"}).where(Category.id == category["id"]))
    try:
        for path in paths:
            page = client.get(path).text
            assert "Renamed Shelf" in page, path
    finally:
        run(Category.update({Category.name_en: category["name_en"]}).where(Category.id == category["id"]))


def test_the_chosen_category_is_marked_selected_on_its_own_page_only(client) -> None:
    slugs = [c["slug"] for c in run(Category.select(Category.slug).where(Category.active.eq(True)).limit(2))]
    for chosen in slugs + slugs:
        page = client.get(f"/products?category={chosen}").text
        assert re.findall(r'<option value="([^"]+)" selected>', page) == [chosen]
    assert " selected>" not in client.get("/products").text


def test_a_cached_product_page_is_rendered_per_language(client, changed_product) -> None:
    path = f"/products/{changed_product['slug']}"
    english, arabic = client.get(path).text, client.get(path + "?lang=ar").text
    assert changed_product["name_en"] in english and changed_product["name_ar"] in arabic
    assert "Add to cart" in english and "Add to cart" not in arabic


def test_kept_fragments_are_bounded_whatever_customers_search_for() -> None:
    from shop.catalog.cache import MAX_FRAGMENT_CHARS, CatalogueCache

    fragments = CatalogueCache().fragments(1)
    grid = "<div>" + "x" * 24_990 + "</div>"  # a grid of 24 cards is about this long
    searches = MAX_FRAGMENT_CHARS // len(grid) + 50
    for n in range(searches):
        fragments[("en", "grid", f"search words {n}")] = grid
    assert fragments.chars <= MAX_FRAGMENT_CHARS
    assert sum(len(html) for html in fragments.values()) == fragments.chars
    assert ("en", "grid", "search words 0") not in fragments
    assert ("en", "grid", f"search words {searches - 1}") in fragments


def test_a_whole_catalogues_product_details_fit_beside_the_grids() -> None:
    from shop.catalog.cache import CatalogueCache

    fragments = CatalogueCache().fragments(1)
    for page in range(100):
        fragments[("en", "grid", "", "", page)] = "g" * 25_000
    for n in range(2_000):
        fragments[("en", "product", f"product-{n}")] = "p" * 1_200
    assert all(("en", "product", f"product-{n}") in fragments for n in range(2_000))
    fragments[("en", "product", "product-0")] = "p" * 1_000  # replaced, not counted twice
    assert sum(len(html) for html in fragments.values()) == fragments.chars
