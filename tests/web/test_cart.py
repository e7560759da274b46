"""The server-side cart, with htmx fragments and with plain forms."""
import re

from shop.cart.services import MAX_LINE_QUANTITY
from shop.catalog.tables import Product
from tests.support import csrf_token, post_form
from tests.web.conftest import run, sellable


def badge(html: str) -> int:
    match = re.search(r'id="cart-badge"[^>]*data-count="(\d+)"', html)
    assert match, "the cart badge is on the page"
    return int(match.group(1))


def cart_total(html: str) -> int:
    match = re.search(r'class="[^"]*cart-total[^"]*" data-fils="(\d+)"', html)
    assert match
    return int(match.group(1))


def test_plain_form_add_redirects_to_the_cart_with_a_message(client, product) -> None:
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "2"})
    assert response.status_code == 303
    assert response.headers["location"] == "/cart"
    page = client.get("/cart")
    assert f"Added {product['name_en']} to your cart." in page.text
    assert badge(page.text) == 2
    assert cart_total(page.text) == 2 * product["price_fils"]
    # The message is shown once.
    assert "Added" not in client.get("/cart").text


def test_htmx_add_returns_the_mini_cart_and_an_out_of_band_badge(client, product) -> None:
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"}, htmx=True)
    assert response.status_code == 200
    assert "<html" not in response.text
    assert 'hx-swap-oob="true"' in response.text
    assert badge(response.text) == 1
    assert cart_total(response.text) == product["price_fils"]
    again = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "3"}, htmx=True)
    assert badge(again.text) == 4
    assert cart_total(again.text) == 4 * product["price_fils"]


def test_quantity_change_and_removal_on_the_cart_page(client, product) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    token = csrf_token(client, "/cart")
    changed = client.post(
        f"/cart/items/{product['id']}",
        data={"quantity": "5", "_csrf_token": token},
        headers={"HX-Request": "true", "HX-Target": "cart"},
    )
    assert changed.status_code == 200
    assert 'class="cart-table"' in changed.text
    assert badge(changed.text) == 5
    assert cart_total(changed.text) == 5 * product["price_fils"]
    removed = client.post(
        f"/cart/items/{product['id']}", data={"quantity": "0", "_csrf_token": token}, follow_redirects=False
    )
    assert removed.status_code == 303
    page = client.get("/cart")
    assert "Your cart is empty." in page.text
    assert badge(page.text) == 0


def test_two_products_total_is_computed_on_the_server(client) -> None:
    rows = sellable(5)[:2]
    for row, quantity in zip(rows, (2, 3)):
        post_form(client, "/cart/items", {"product_id": str(row["id"]), "quantity": str(quantity),
                                          "price_fils": "1"})  # a price sent by the browser is ignored
    page = client.get("/cart").text
    assert cart_total(page) == 2 * rows[0]["price_fils"] + 3 * rows[1]["price_fils"]
    assert badge(page) == 5


def test_cannot_add_beyond_stock(client, db_snapshot) -> None:
    low = sellable(1, 3)[0]
    before = db_snapshot()
    response = post_form(client, "/cart/items", {"product_id": str(low["id"]), "quantity": str(low["stock"] + 1)})
    assert response.status_code == 422
    assert f"Only {low['stock']} left in stock" in response.text
    assert db_snapshot()["lines"] == before["lines"]
    # Adding what is left works; one more on top of it does not.
    assert post_form(client, "/cart/items", {"product_id": str(low["id"]), "quantity": str(low["stock"])}).status_code == 303
    more = post_form(client, "/cart/items", {"product_id": str(low["id"]), "quantity": "1"}, htmx=True)
    assert more.status_code == 422
    assert "left in stock" in more.text
    assert badge(client.get("/cart").text) == low["stock"]


def test_out_of_stock_product_cannot_be_added(client, db_snapshot) -> None:
    empty = run(Product.select().where(Product.stock == 0).first())
    before = db_snapshot()
    response = post_form(client, "/cart/items", {"product_id": str(empty["id"]), "quantity": "1"})
    assert response.status_code == 422
    assert "out of stock" in response.text
    assert db_snapshot() == before


def test_line_quantity_is_capped(client, product) -> None:
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": str(MAX_LINE_QUANTITY + 1)})
    assert response.status_code == 422


def test_carts_are_private_to_their_session(client, product, settings) -> None:
    from litestar.testing import TestClient

    from shop.app import create_app

    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "2"})
    with TestClient(app=create_app(settings)) as stranger:
        assert badge(stranger.get("/cart").text) == 0
