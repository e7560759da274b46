"""The checkout form: validation with errors beside the fields, then the order summary."""
import re

from tests.support import csrf_token, post_form
from tests.unit.test_forms import VALID


def fill_cart(client, product, quantity: int = 2) -> None:
    assert post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": str(quantity)}).status_code == 303


def test_empty_cart_cannot_check_out(client) -> None:
    response = client.get("/checkout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/cart"
    assert "Your cart is empty." in client.get("/cart").text
    posted = post_form(client, "/checkout", VALID)
    assert posted.status_code == 303


def test_form_lists_all_governorates_and_areas(client, product) -> None:
    fill_cart(client, product)
    page = client.get("/checkout").text
    for slug in ["capital", "hawalli", "farwaniya", "mubarak-al-kabeer", "ahmadi", "jahra"]:
        assert f'value="{slug}"' in page
    assert 'value="salmiya"' in page and 'value="fahaheel"' in page


def test_area_options_follow_the_governorate(client) -> None:
    response = client.get("/checkout/areas", params={"governorate": "jahra"})
    assert response.status_code == 200
    assert 'value="jahra"' in response.text
    assert 'value="salmiya"' not in response.text


def test_valid_details_place_the_order_even_when_the_provider_is_down(client, product) -> None:
    """Here the provider is unreachable: the order is kept, the payment left pending, never failed."""
    fill_cart(client, product, 2)
    response = post_form(client, "/checkout", VALID, token=csrf_token(client, "/checkout"))
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/orders/[A-Za-z0-9_-]{32}", location)
    page = client.get(location)
    assert 'data-order-status="pending_payment"' in page.text
    assert 'data-payment-status="pending"' in page.text
    assert "did not answer" in page.text
    total = re.search(r'class="num order-total" data-fils="(\d+)"', page.text)
    assert total and int(total.group(1)) == 2 * product["price_fils"]
    # The cart is spent; a second press (or tab) is taken to the same order.
    assert "Your cart is empty." in client.get("/cart").text
    again = post_form(client, "/checkout", VALID, token=csrf_token(client, "/cart"))
    assert again.status_code == 303 and again.headers["location"] == location


def test_invalid_details_re_render_the_form_with_errors_and_typed_values(client, product) -> None:
    fill_cart(client, product)
    bad = {**VALID, "email": "nope", "phone": "123", "area": "jahra", "street": ""}
    response = post_form(client, "/checkout", bad, token=csrf_token(client, "/checkout"))
    assert response.status_code == 422
    for field in ["email", "phone", "area", "street"]:
        assert f'id="{field}-error"' in response.text, field
    assert 'value="Fatima Al-Sabah"' in response.text
    assert 'value="nope"' in response.text
    assert 'id="name-error"' not in response.text


def test_errors_are_in_arabic_for_arabic_customers(client, product) -> None:
    fill_cart(client, product)
    client.get("/?lang=ar")
    response = post_form(client, "/checkout", {**VALID, "email": "nope"}, token=csrf_token(client, "/checkout"))
    assert response.status_code == 422
    assert 'dir="rtl"' in response.text
    assert "Please enter a valid email address." not in response.text
    assert 'id="email-error"' in response.text


def test_typed_markup_is_escaped_everywhere(client, product) -> None:
    fill_cart(client, product)
    payload = '<script>alert("x")</script>'
    details = {**VALID, "name": payload, "street": payload, "notes": payload}
    response = post_form(client, "/checkout", details, token=csrf_token(client, "/checkout"))
    page = client.get(response.headers["location"])
    assert payload not in page.text
    assert "&lt;script&gt;" in page.text
    invalid = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    assert invalid.status_code == 303
    rerendered = post_form(client, "/checkout", {**details, "email": "bad"}, token=csrf_token(client, "/checkout"))
    assert rerendered.status_code == 422 and payload not in rerendered.text


def test_unknown_order_tokens_are_404(client) -> None:
    for token in ["nope", "x" * 32, "x" * 500]:
        assert client.get(f"/orders/{token}").status_code == 404
