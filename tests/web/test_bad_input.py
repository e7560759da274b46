"""Bad input gets a clear 4xx in the customer's language and changes nothing in the database."""
import pytest

from tests.support import post_form

BAD_QUANTITIES = ["-1", "abc", "1.5", "10^9", "1000000000", "", " ", "0x10", "٣abc", "1e3"]


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_bad_quantity_on_add(client, product, db_snapshot, quantity: str) -> None:
    before = db_snapshot()
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": quantity})
    assert response.status_code == 422
    assert "Quantity must be" in response.text
    assert db_snapshot() == before


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_bad_quantity_on_update(client, product, db_snapshot, quantity: str) -> None:
    post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1"})
    before = db_snapshot()
    response = post_form(client, f"/cart/items/{product['id']}", {"quantity": quantity}, htmx=True)
    assert response.status_code == 422
    assert "Quantity must be" in response.text
    assert db_snapshot() == before


@pytest.mark.parametrize("product_id", ["999999", "2147483648", "999999999999", "abc", "-1", "1.5", "", "1; DROP TABLE product"])
def test_unknown_product_on_add(client, db_snapshot, product_id: str) -> None:
    before = db_snapshot()
    response = post_form(client, "/cart/items", {"product_id": product_id, "quantity": "1"})
    assert response.status_code == 404
    assert db_snapshot() == before


@pytest.mark.parametrize("product_id", ["999999", "2147483648", "abc", "-1"])
def test_unknown_product_on_update(client, db_snapshot, product_id: str) -> None:
    before = db_snapshot()
    response = post_form(client, f"/cart/items/{product_id}", {"quantity": "1"})
    assert response.status_code == 404
    assert db_snapshot() == before


def test_update_of_a_product_not_in_the_cart_is_404(client, product, db_snapshot) -> None:
    before = db_snapshot()
    assert post_form(client, f"/cart/items/{product['id']}", {"quantity": "2"}).status_code == 404
    assert db_snapshot() == before


def test_missing_csrf_token_is_refused(client, product, db_snapshot) -> None:
    client.get("/")
    before = db_snapshot()
    response = client.post("/cart/items", data={"product_id": str(product["id"]), "quantity": "1"})
    assert response.status_code == 403
    assert "security token" in response.text
    wrong = client.post("/cart/items", data={"product_id": str(product["id"]), "quantity": "1", "_csrf_token": "forged"})
    assert wrong.status_code == 403
    assert db_snapshot() == before


def test_csrf_refusal_is_in_arabic_for_arabic_customers(client, product) -> None:
    client.get("/?lang=ar")
    response = client.post("/cart/items", data={"product_id": str(product["id"]), "quantity": "1"})
    assert response.status_code == 403
    assert 'dir="rtl"' in response.text
    assert "security token" not in response.text


def test_oversized_body_is_413(client, product, db_snapshot) -> None:
    before = db_snapshot()
    response = post_form(client, "/cart/items", {"product_id": str(product["id"]), "quantity": "1", "pad": "x" * 200_000})
    assert response.status_code == 413
    assert db_snapshot() == before


def test_htmx_errors_are_retargeted_to_the_message_area(client) -> None:
    response = post_form(client, "/cart/items", {"product_id": "999999", "quantity": "1"}, htmx=True)
    assert response.status_code == 404
    assert response.headers["hx-retarget"] == "#flash"
    assert "<html" not in response.text


def test_wrong_method_is_405_not_500(client) -> None:
    assert client.get("/cart/items").status_code == 405
    assert client.delete("/products").status_code in {403, 405}


def test_overlong_query_parameters_are_4xx(client) -> None:
    assert client.get("/products", params={"q": "x" * 5000}).status_code == 400
    assert client.get("/products", params={"page": "9" * 50}).status_code == 400


@pytest.mark.parametrize("token", ["كلمة", "ä" * 70, "\u202e" + "a" * 70])
def test_non_ascii_csrf_token_is_refused_not_500(client, product, db_snapshot, token: str) -> None:
    client.get("/")
    before = db_snapshot()
    data = {"product_id": str(product["id"]), "quantity": "1"}
    assert client.post("/cart/items", data={**data, "_csrf_token": token}).status_code == 403
    assert client.post("/cart/items", data=data, headers={"x-csrftoken": token.encode()}).status_code == 403
    assert db_snapshot() == before


def test_a_file_sent_as_the_csrf_token_is_refused_not_500(client, product) -> None:
    client.get("/")
    response = client.post("/cart/items", data={"product_id": str(product["id"])},
                           files={"_csrf_token": ("t.txt", b"token", "text/plain")})
    assert response.status_code == 403


@pytest.mark.parametrize("path", ["/webhooks/nobody", "/payments/nobody/return", "/sandbox/tap/v2/charges"])
def test_declared_oversized_body_is_413_before_anything_else(client, path: str) -> None:
    """Routes that would refuse for another reason first (unknown provider, no API key) still
    tell the client its body was too large, without reading it."""
    response = client.post(path, content=b"x" * 70_000, headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("path", ["/products/a%00b", "/orders/a%00b", "/products?q=a%00b", "/staff/orders/a%00b",
                                  "/static/a%00b", "/media/a%00b.png"])
def test_nul_byte_in_the_address_is_400(client, path: str) -> None:
    """PostgreSQL text cannot hold a NUL, nor can a file name: refused before any query or file
    look-up (both were a 500)."""
    response = client.get(path)
    assert response.status_code == 400
    assert "not valid" in response.text


@pytest.mark.parametrize("path", ["/static/" + "%D9%83" * 200, "/media/" + "a" * 300 + ".png"])
def test_file_names_too_long_for_any_file_system_are_404(client, path: str) -> None:
    assert client.get(path).status_code == 404


def test_nul_bytes_in_form_values_are_dropped(client) -> None:
    """A sign-in with a NUL in the email is an ordinary refusal, not a database error."""
    token = client.get("/staff/login").text.split('name="_csrf_token" value="')[1].split('"')[0]
    response = client.post("/staff/login", data={"email": "a\x00b@example.com", "password": "x\x00",
                                                 "_csrf_token": token})
    assert response.status_code == 401
