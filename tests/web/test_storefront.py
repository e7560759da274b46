"""Pages a customer browses: home, list with search/filter/pagination, product, health."""
import re

from shop.catalog import demo_data
from tests.web.conftest import run
from shop.catalog.tables import Product

IN_STOCK = [p for p in demo_data.PRODUCTS if p["stock"] > 0]


def product_slugs(html: str) -> list[str]:
    return re.findall(r'class="product-card"[^>]*data-slug="([^"]+)"', html)


def test_home_shows_featured_products_and_categories(client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    featured = {p["slug"] for p in demo_data.PRODUCTS if p["featured"]}
    assert set(product_slugs(response.text)) == featured
    for category in demo_data.CATEGORIES:
        assert f'href="/products?category={category["slug"]}"' in response.text
    assert 'dir="ltr"' in response.text and 'lang="en"' in response.text


def test_product_list_paginates_the_whole_catalogue(client) -> None:
    seen: list[str] = []
    page = 1
    while True:
        response = client.get(f"/products?page={page}")
        assert response.status_code == 200
        slugs = product_slugs(response.text)
        assert len(slugs) <= 24
        seen += slugs
        if 'rel="next"' not in response.text:
            break
        page += 1
    assert page == 3
    assert sorted(seen) == sorted(p["slug"] for p in demo_data.PRODUCTS)


def test_page_beyond_the_end_shows_the_last_page(client) -> None:
    response = client.get("/products?page=999")
    assert response.status_code == 200
    assert "Page 3 of 3" in response.text


def test_search_matches_english_and_arabic_names(client) -> None:
    english = client.get("/products", params={"q": "coffee"})
    arabic = client.get("/products", params={"q": "قهوة"})
    expected_en = {p["slug"] for p in demo_data.PRODUCTS if "coffee" in p["name_en"].lower()}
    expected_ar = {p["slug"] for p in demo_data.PRODUCTS if "قهوة" in p["name_ar"]}
    assert expected_en and set(product_slugs(english.text)) == expected_en
    assert expected_ar and set(product_slugs(arabic.text)) == expected_ar


def test_search_needs_every_word(client) -> None:
    response = client.get("/products", params={"q": "saffron coffee"})
    slugs = set(product_slugs(response.text))
    assert slugs == {
        p["slug"] for p in demo_data.PRODUCTS
        if "saffron" in p["name_en"].lower() and "coffee" in p["name_en"].lower()
    }


def test_search_with_sql_like_text_finds_nothing_and_does_not_fail(client) -> None:
    for q in ["%", "_", "' OR 1=1 --", "\\", "\"; DROP TABLE product; --", "<script>alert(1)</script>"]:
        response = client.get("/products", params={"q": q})
        assert response.status_code == 200, q
        assert "<script>alert(1)</script>" not in response.text
    assert run(Product.count()) >= len(demo_data.PRODUCTS)


def test_category_filter(client) -> None:
    category = demo_data.CATEGORIES[0]["slug"]
    response = client.get("/products", params={"category": category})
    assert response.status_code == 200
    assert set(product_slugs(response.text)) == {
        p["slug"] for p in demo_data.PRODUCTS if p["category"] == category
    }


def test_search_within_a_category_finds_only_that_categorys_matches(client) -> None:
    word = "set"
    categories = {p["category"] for p in demo_data.PRODUCTS if word in p["name_en"].lower().split()}
    assert len(categories) > 1
    for category in categories:
        response = client.get("/products", params={"q": word, "category": category})
        assert response.status_code == 200
        assert set(product_slugs(response.text)) == {
            p["slug"] for p in demo_data.PRODUCTS if p["category"] == category and word in p["name_en"].lower()
        }, category


def test_htmx_search_returns_only_the_results_fragment(client) -> None:
    response = client.get("/products", params={"q": "oud"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "<html" not in response.text
    assert product_slugs(response.text)


def test_product_page_shows_price_stock_and_add_form(client) -> None:
    product = IN_STOCK[0]
    response = client.get(f"/products/{product['slug']}")
    assert response.status_code == 200
    assert product["name_en"] in response.text
    whole, fils = divmod(product["price_fils"], 1000)
    assert f"KWD {whole:,}.{fils:03d}" in response.text
    assert 'action="/cart/items"' in response.text


def test_out_of_stock_product_has_no_add_form(client) -> None:
    product = next(p for p in demo_data.PRODUCTS if p["stock"] == 0)
    response = client.get(f"/products/{product['slug']}")
    assert "Out of stock" in response.text
    assert 'action="/cart/items"' not in response.text


def test_arabic_pages_are_right_to_left_with_arabic_names_and_prices(client) -> None:
    product = IN_STOCK[0]
    response = client.get(f"/products/{product['slug']}?lang=ar")
    assert 'dir="rtl"' in response.text and 'lang="ar"' in response.text
    assert product["name_ar"] in response.text
    assert "د.ك" in response.text
    # The choice is remembered for the next page.
    assert client.get("/").text.count('dir="rtl"') == 1
    assert 'dir="ltr"' in client.get("/?lang=en").text


def test_unknown_pages_are_friendly_404s_in_the_right_language(client) -> None:
    for path in ["/products/no-such-thing", "/products?category=nope", "/no/such/page"]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.text
    arabic = client.get("/products/no-such-thing?lang=ar")
    assert arabic.status_code == 404
    assert 'dir="rtl"' in arabic.text and "Page not found" not in arabic.text


def test_healthz_reports_the_database(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_head_answers_as_get_without_the_body(client) -> None:
    """Uptime monitors and link checkers ask with HEAD: they get the GET's status and headers."""
    slug = IN_STOCK[0]["slug"]
    for path in ["/", "/products", "/products?page=2", f"/products/{slug}", "/cart", "/healthz",
                 "/static/css/shop.css", "/products/no-such-thing"]:
        got = client.get(path)
        head = client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert int(head.headers["content-length"]) == len(got.content), path
    assert client.head("/cart/items").status_code == 405  # POST only, as for GET


def test_the_remembered_language_is_read_among_other_cookies_and_junk(client) -> None:
    from shop import i18n

    for header in (f"csrftoken=abc; {i18n.LANGUAGE_COOKIE}=ar; session=x==",
                   f'{i18n.LANGUAGE_COOKIE}="ar"', f"junk; ;=; {i18n.LANGUAGE_COOKIE}=ar"):
        page = client.get("/", headers={"cookie": header})
        assert page.status_code == 200 and 'dir="rtl"' in page.text, header
    for header in (f"{i18n.LANGUAGE_COOKIE}=xx", f"not{i18n.LANGUAGE_COOKIE}=ar", "\x7f;;==;"):
        page = client.get("/", headers={"cookie": header})
        assert page.status_code == 200 and 'dir="ltr"' in page.text, header
