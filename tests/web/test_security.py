"""Security headers on every kind of response; session and CSRF cookies that browsers protect."""
import pytest

from tests.support import post_form

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_secure_headers(response) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


@pytest.mark.parametrize("path", ["/", "/products", "/cart", "/healthz", "/static/css/shop.css", "/nope", "/products/nope"])
def test_headers_on_pages_errors_and_assets(client, path: str) -> None:
    assert_secure_headers(client.get(path))


def test_headers_on_redirects_fragments_and_refusals(client, product) -> None:
    assert_secure_headers(post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}))
    assert_secure_headers(post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True))
    assert_secure_headers(client.post("/cart/items", data={"product_id": "1"}))


def test_session_cookie_is_http_only_and_same_site(client, product) -> None:
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and v.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")


def test_no_inline_scripts_or_styles_in_pages(client, product) -> None:
    for path in ["/", "/products", f"/products/{product['slug']}", "/cart"]:
        html = client.get(path).text
        assert "<script>" not in html and "style=" not in html and "<style" not in html, path
