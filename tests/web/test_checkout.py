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


def test_valid_details_show_a_summary_with_server_totals(client, product) -> None:
    fill_cart(client, product, 2)
    response = post_form(client, "/checkout", VALID, token=csrf_token(client, "/checkout"))
    assert response.status_code == 200
    assert 'data-checkout-valid="true"' in response.text
    assert "+96555123456" in response.text
    assert "Salmiya" in response.text and "Hawalli" in response.text
    total = re.search(r'data-fils="(\d+)"', response.text)
    assert total and int(total.group(1)) == 2 * product["price_fils"]


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
    assert response.status_code == 200
    assert payload not in response.text
    assert "&lt;script&gt;" in response.text


def test_change_details_goes_back_to_the_filled_form(client, product) -> None:
    fill_cart(client, product)
    token = csrf_token(client, "/checkout")
    response = post_form(client, "/checkout/edit", VALID, token=token)
    assert response.status_code == 200
    assert 'value="fatima@example.com"' in response.text
    assert '<option value="salmiya" selected>' in response.text
