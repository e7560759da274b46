"""The catalogue cache never shows an old price or stock level, whoever changed it."""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from litestar.testing import TestClient
from markupsafe import escape

from shop.app import create_app
from shop.catalog.cache import CatalogueCache
from shop.catalog.tables import Category, Product
from shop.money import format_kwd
from shop.web.page_cache import CART_BADGE_SLOT, KeptPage, PageStore, cart_badge
from shop.web.templating import CSRF_PLACEHOLDER
from tests.support import post_form
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


def test_each_customer_gets_their_own_csrf_token_in_a_kept_page(settings) -> None:
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


def _badge(html: str) -> tuple[int, str]:
    match = re.search(r'id="cart-badge"[^>]*data-count="(\d+)"[^>]*aria-label="([^"]*)"', html)
    assert match, "the cart badge is on the page"
    return int(match.group(1)), match.group(2)


def test_a_kept_page_shows_each_customer_their_own_cart_badge_token_and_message(settings, product) -> None:
    app = create_app(settings)
    path = f"/products/{product['slug']}"
    added = f"Added {product['name_en']} to your cart."
    with TestClient(app=app, base_url="http://127.0.0.1:8000") as first, \
            TestClient(app=app, base_url="http://127.0.0.1:8000") as second:
        assert _badge(first.get(path).text) == (0, "0 items")  # now kept
        assert post_form(first, "/cart/items", {"product_id": str(product["id"]), "quantity": "2"}).status_code == 303
        # The message waiting for the first customer is shown to them, on a page of their own.
        page = first.get(path).text
        assert added in page and _badge(page) == (2, "2 items")
        for client, count in ((second, 0), (first, 2)):
            page = client.get(path).text
            assert added not in page and _badge(page)[0] == count
            # The same token in the page's htmx headers and its form: this customer's.
            header_token = re.search(r'"x-csrftoken": "([^"]+)"', page).group(1)
            assert set(CSRF_FIELD.findall(page)) == {header_token} == {client.cookies.get("csrftoken")}
        count, label = _badge(first.get(path + "?lang=ar").text)
        assert count == 2 and label != "2 items" and "\x00" not in label


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


def test_kept_pages_are_bounded_whatever_customers_search_for() -> None:
    from shop.web.page_cache import MAX_PAGE_BYTES

    pages = CatalogueCache().pages(1)
    page = KeptPage(b"<html>" + b"x" * 27_000 + b"</html>")  # a list page of 24 cards is about this long
    searches = MAX_PAGE_BYTES // len(page) + 50
    for n in range(searches):
        pages.put(("en", "catalog/list.html", "/products", f"q=words+{n}".encode()), page)
    assert pages.bytes <= MAX_PAGE_BYTES
    assert ("en", "catalog/list.html", "/products", b"q=words+0") not in pages
    assert ("en", "catalog/list.html", "/products", f"q=words+{searches - 1}".encode()) in pages


def test_a_kept_page_is_filled_with_the_token_everywhere_and_the_badge_in_its_place() -> None:
    token, badge = CSRF_PLACEHOLDER.encode(), CART_BADGE_SLOT.encode()
    page = KeptPage(token + b"<form>" + token + badge + b"</form><p>" + token)
    assert page.filled(b"t0k", 3) == b"t0k<form>t0k" + cart_badge("en", 3) + b"</form><p>t0k"
    assert page.filled(b"other", 0) == b"other<form>other" + cart_badge("en", 0) + b"</form><p>other"
    assert KeptPage(b"<p>no slots</p>").filled(b"t0k", 1) == b"<p>no slots</p>"


def test_the_pages_customers_keep_visiting_stay_while_others_go() -> None:
    page_size = len(KeptPage(b"p" * 1_000))
    pages = PageStore(max_bytes=10 * page_size)
    pages.put("home", KeptPage(b"p" * 1_000))
    for n in range(30):
        pages.put(f"product-{n}", KeptPage(b"p" * 1_000))
        assert pages.get("home") is not None  # visited again each time: used most recently
    assert "product-0" not in pages and "product-29" in pages and len(pages) == 10
    home = KeptPage(b"h" * 500)
    pages.put("home", home)  # replaced, not counted twice
    assert pages.bytes == len(home) + 9 * page_size


def test_a_whole_catalogues_pages_fit_in_one_language() -> None:
    pages = CatalogueCache().pages(1)
    for page in range(85):
        pages.put(("en", "catalog/list.html", "/products", f"page={page}".encode()), KeptPage(b"g" * 27_300))
    for n in range(2_000):
        pages.put(("en", "catalog/product.html", f"/products/product-{n}", b""), KeptPage(b"p" * 3_400))
    assert len(pages) == 2_085


def _flash_removed(html: str) -> str:
    return re.sub(r'<p class="flash flash-info">[^<]*</p>', "", html, count=1)


def test_a_cart_in_a_kept_layout_is_the_page_rendered_whole_and_shows_only_its_customers_lines(settings) -> None:
    """The cart page's layout is kept after the first customer's visit; every later cart is put
    into it. A page with a flash message is rendered whole: with the message taken out it must be
    byte for byte the page the kept layout gives, and no customer sees another's lines or token."""
    app = create_app(settings)
    first_product, second_product = sellable(5)[:2]
    with TestClient(app=app, base_url="http://127.0.0.1:8000") as first, \
            TestClient(app=app, base_url="http://127.0.0.1:8000") as second:
        for client, row, quantity in ((first, first_product, 2), (second, second_product, 3)):
            post_form(client, "/cart/items", {"product_id": str(row["id"]), "quantity": str(quantity)})
        for client, row, other, quantity in ((first, first_product, second_product, 2),
                                             (second, second_product, first_product, 3)):
            # English, then Arabic asked for, then Arabic remembered by its cookie on the same path.
            for lang, arabic in (("", False), ("?lang=ar", True), ("", True)):
                assert post_form(client, f"/cart/items/{row['id']}", {"quantity": str(quantity)}).status_code == 303
                whole = client.get("/cart" + lang).text  # rendered whole: it shows "Your cart was updated."
                assert "flash-info" in whole
                kept = client.get("/cart" + lang).text
                assert "flash-info" not in kept and "\x00" not in kept
                assert _flash_removed(whole) == kept
                assert ('dir="rtl"' in kept) == arabic and ("Your cart" in kept) != arabic
                assert f'data-product-id="{row["id"]}"' in kept and f'data-product-id="{other["id"]}"' not in kept
                assert _badge(kept)[0] == quantity
                token = client.cookies.get("csrftoken")
                assert set(CSRF_FIELD.findall(kept)) == {token} and f'"x-csrftoken": "{token}"' in kept
    assert first.cookies.get("csrftoken") != second.cookies.get("csrftoken")


def test_an_empty_cart_in_a_kept_layout(settings, product) -> None:
    app = create_app(settings)
    with TestClient(app=app, base_url="http://127.0.0.1:8000") as shopper, \
            TestClient(app=app, base_url="http://127.0.0.1:8000") as browser:
        post_form(shopper, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
        shopper.get("/cart")
        assert 'class="cart-table"' in shopper.get("/cart").text  # the layout is kept by now
        browser.get("/products")
        empty = browser.get("/cart").text
        assert "Your cart is empty." in empty and 'class="cart-table"' not in empty and _badge(empty)[0] == 0
