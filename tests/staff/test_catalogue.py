"""Staff catalogue pages over HTTP: roles, CSRF, htmx fragments, validation, stock, images, Arabic,
and customers seeing each change at once."""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest
from litestar.testing import TestClient
from piccolo.engine.base import Engine

from shop.app import create_app
from shop.catalog.tables import Category, Product
from shop.db import bind_tables
from shop.tables import TABLES
from shop.settings import Settings
from shop.staff.auth import Role
from shop.staff.tables import AuditLog
from tests.conftest import BACKENDS, migrated_database
from tests.conftest import test_settings as settings_for
from tests.integration.conftest import make_order
from tests.staff.conftest import csrf, sign_in
from tests.web.conftest import run

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HTMX = {"HX-Request": "true"}


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Its own database: these tests add and change products the storefront tests must not see."""
    yield from migrated_database(request, tmp_path_factory)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings_for(database_url, media_dir=str(tmp_path_factory.mktemp("media")))


@pytest.fixture(scope="module")
def ops_app(settings: Settings) -> tuple[TestClient, Engine]:
    """One operations member per backend for the whole module (signing in hashes with argon2)."""
    app = create_app(settings)
    engine = Product._meta.db
    with TestClient(app=app, base_url="http://127.0.0.1:8000") as client:
        sign_in(client, Role.OPERATIONS)
        yield client, engine


@pytest.fixture()
def ops(ops_app: tuple[TestClient, Engine]) -> Iterator[TestClient]:
    """Tables are bound per process, and pytest may run other modules' tests (other databases)
    in between: bind them to this module's database again. `?lang=ar` is remembered in a
    cookie: put the shared client back to English afterwards."""
    client, engine = ops_app
    bind_tables(engine, TABLES)
    yield client
    client.cookies.delete("lang")


def token(client: TestClient) -> str:
    """The session's CSRF token: forms carry the cookie's value."""
    return client.cookies.get("csrftoken") or csrf(client)


def post(client: TestClient, path: str, data: dict[str, str], htmx: bool = False, **kw: Any):
    headers = {**HTMX, "x-csrftoken": token(client)} if htmx else {}
    body = data if htmx else {**data, "_csrf_token": token(client)}
    return client.post(path, data=body, headers=headers, follow_redirects=False, **kw)


def category() -> dict[str, Any]:
    return run(Category.select().where(Category.active.eq(True)).order_by(Category.id).first())


def product_form(**changes: str) -> dict[str, str]:
    form = {"slug": "tea-" + secrets.token_hex(4), "category": str(category()["id"]), "name_en": "Saffron Tea",
            "name_ar": "شاي زعفران", "description_en": "Fragrant.", "description_ar": "عطري", "price": "4.250",
            "stock": "6", "active": "1"}
    return {**form, **changes}


def create(client: TestClient, **changes: str) -> dict[str, Any]:
    form = product_form(**changes)
    response = post(client, "/staff/catalogue/products", form)
    assert response.status_code == 303, response.text
    product = run(Product.select().where(Product.slug == form["slug"]).first())
    assert response.headers["location"] == f"/staff/catalogue/products/{product['id']}"
    return product


def product_row(product_id: int) -> dict[str, Any]:
    return run(Product.select().where(Product.id == product_id).first())


def audits(action: str, target_id: int) -> list[dict[str, Any]]:
    return run(AuditLog.select().where((AuditLog.action == action) & (AuditLog.target_id == str(target_id)))
               .order_by(AuditLog.id))


# --- who may ---

@pytest.mark.parametrize("role, status", [(Role.OWNER, 200), (Role.OPERATIONS, 200), (Role.FINANCE, 403)])
def test_catalogue_is_for_owners_and_operations(staff_client, role: Role, status: int) -> None:
    client = staff_client(role)
    for path in ("/staff/catalogue", "/staff/catalogue/products/new", "/staff/catalogue/categories",
                 "/staff/catalogue/categories/new"):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["cache-control"] == "no-store"
    before = run(Product.count())
    assert post(client, "/staff/catalogue/products", product_form()).status_code == (303 if status == 200 else 403)
    assert run(Product.count()) == before + (1 if status == 200 else 0)


def test_anonymous_visitors_are_sent_to_sign_in_and_forged_posts_refused(client, ops) -> None:
    response = client.get("/staff/catalogue", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/staff/login")
    before = run(Product.count())
    forged = ops.post("/staff/catalogue/products", data=product_form(), follow_redirects=False)  # no CSRF token
    assert forged.status_code == 403 and run(Product.count()) == before


# --- the list ---

def test_the_list_shows_figures_and_filters_by_search_category_and_status(ops) -> None:
    product = create(ops)
    run(make_order([(product, 2)]))  # an unpaid order holds 2 of the 6
    page = ops.get("/staff/catalogue", params={"q": "saffron"})
    assert page.status_code == 200 and "<html" in page.text
    row = re.search(rf'<tr data-product-id="{product["id"]}"[^>]*>(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert 'data-stock="6" data-reserved="2"' in page.text
    assert "KWD 4.250" in row.group(1) and ">4<" in row.group(1)  # price, sellable
    fragment = ops.get("/staff/catalogue", params={"q": "زعفران", "category": category()["slug"]}, headers=HTMX)
    assert "<html" not in fragment.text and f'data-product-id="{product["id"]}"' in fragment.text
    assert 'data-active="true"' in fragment.text
    inactive = ops.get("/staff/catalogue", params={"q": product["slug"], "status": "inactive"}, headers=HTMX)
    assert f'data-product-id="{product["id"]}"' not in inactive.text
    assert 'hx-push-url="true"' in page.text


@pytest.mark.parametrize("params", [{"category": "no-such-category"}, {"status": "deleted"}, {"q": "x" * 500}])
def test_bad_filters_are_refused_in_the_right_language(ops, params: dict[str, str]) -> None:
    response = ops.get("/staff/catalogue", params={**params, "lang": "ar"})
    assert 400 <= response.status_code < 500 and 'dir="rtl"' in response.text


def test_odd_page_numbers_fall_back_to_a_page_that_exists(ops) -> None:
    for page in ("abc", "-1", "999999"):
        assert ops.get("/staff/catalogue", params={"page": page}).status_code == 200


def test_pages_render_in_arabic(ops) -> None:
    product = create(ops)
    for path in ("/staff/catalogue", f"/staff/catalogue/products/{product['id']}", "/staff/catalogue/categories"):
        response = ops.get(path, params={"lang": "ar"})
        assert response.status_code == 200 and '<html lang="ar" dir="rtl">' in response.text, path
    assert "شاي زعفران" in ops.get("/staff/catalogue", params={"lang": "ar", "q": product["slug"]}).text


# --- create and edit ---

def test_customers_see_a_new_product_and_each_edit_at_once(ops, client) -> None:
    product = create(ops)
    assert product["price_fils"] == 4250 and product["stock"] == 6 and product["search_text"]
    assert "KWD 4.250" in client.get(f"/products/{product['slug']}").text
    edit = product_form(slug=product["slug"], price="5.5", name_en="Saffron Tea Gold")
    response = post(ops, f"/staff/catalogue/products/{product['id']}", edit, htmx=True)
    assert response.status_code == 200 and 'id="product-form"' in response.text and "<html" not in response.text
    shop_page = client.get(f"/products/{product['slug']}")
    assert "KWD 5.500" in shop_page.text and "Saffron Tea Gold" in shop_page.text
    assert product["slug"] in client.get("/products", params={"q": "gold"}).text  # search text kept in sync
    hidden = {k: v for k, v in edit.items() if k != "active"}
    assert post(ops, f"/staff/catalogue/products/{product['id']}", hidden).status_code == 303
    assert client.get(f"/products/{product['slug']}").status_code == 404
    assert product_row(product["id"])["active"] is False  # deactivated, not deleted
    [first, second] = audits("product.update", product["id"])
    assert json.loads(first["after"]) == {"name_en": "Saffron Tea Gold", "price_fils": 5500}
    assert json.loads(second["before"]) == {"active": True} and second["staff_email"].startswith("operations-")


@pytest.mark.parametrize("changes, field", [
    ({"name_ar": ""}, "name_ar"), ({"name_en": ""}, "name_en"), ({"price": "-1"}, "price"),
    ({"price": "1.2345"}, "price"), ({"price": "99999999"}, "price"), ({"slug": "Not a slug"}, "slug"),
    ({"category": "999999"}, "category"), ({"category": "tea"}, "category"), ({"stock": "-4"}, "stock"),
])
def test_invalid_products_are_refused_with_a_message_and_nothing_created(ops, changes, field) -> None:
    before = run(Product.count())
    response = post(ops, "/staff/catalogue/products", product_form(**changes), htmx=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text and 'aria-invalid="true"' in response.text
    assert run(Product.count()) == before


def test_a_taken_slug_is_refused_on_edit_and_nothing_changes(ops) -> None:
    first, second = create(ops), create(ops)
    response = post(ops, f"/staff/catalogue/products/{second['id']}", product_form(slug=first["slug"], price="9"))
    assert response.status_code == 422 and 'id="slug-error"' in response.text and "<html" in response.text
    assert product_row(second["id"]) == second


def test_unknown_products_are_not_found(ops) -> None:
    assert ops.get("/staff/catalogue/products/999999").status_code == 404
    assert ops.get("/staff/catalogue/products/abc").status_code in (400, 404)
    assert post(ops, "/staff/catalogue/products/999999/stock", {"delta": "1", "reason": "x"}).status_code == 404


# --- stock ---

def test_stock_adjustments_update_the_panel_and_never_cut_into_reservations(ops) -> None:
    product = create(ops, stock="5")
    run(make_order([(product, 3)]))
    path = f"/staff/catalogue/products/{product['id']}/stock"
    added = post(ops, path, {"delta": "+4", "reason": "delivery"}, htmx=True)
    assert added.status_code == 200 and 'data-stock="9" data-reserved="3"' in added.text and "<html" not in added.text
    refused = post(ops, path, {"delta": "-7", "reason": "stocktake"}, htmx=True)
    assert refused.status_code == 422 and 'id="delta-error"' in refused.text and "3 reserved" in refused.text
    assert (product_row(product["id"])["stock"], product_row(product["id"])["reserved"]) == (9, 3)
    assert post(ops, path, {"delta": "-6", "reason": "stocktake"}).status_code == 303  # no htmx: back to the page
    assert product_row(product["id"])["stock"] == 3
    assert [a["reason"] for a in audits("product.stock", product["id"])] == ["delivery", "stocktake"]
    for bad in ({"delta": "abc", "reason": "x"}, {"delta": "3", "reason": ""}, {"delta": "0", "reason": "x"}):
        assert post(ops, path, bad, htmx=True).status_code == 422
    assert product_row(product["id"])["stock"] == 3


# --- images ---

def test_an_uploaded_image_is_served_from_media_without_sniffing(ops, client, settings) -> None:
    product = create(ops)
    path = f"/staff/catalogue/products/{product['id']}/image"
    response = ops.post(path, files={"image": ("photo.png", PNG, "image/png")},
                        headers={**HTMX, "x-csrftoken": token(ops)})
    assert response.status_code == 200 and 'id="image-panel"' in response.text
    image = product_row(product["id"])["image"]
    assert re.fullmatch(r"/media/products/[a-z]{32}\.png", image) and "photo" not in image
    assert (Path(settings.media_path) / image.removeprefix("/media/")).read_bytes() == PNG
    served = client.get(image)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    assert client.post(image).status_code in (403, 405)  # read-only
    assert image in ops.get(f"/staff/catalogue/products/{product['id']}").text
    # Customers see the upload on the storefront at once.
    assert f'src="{image}"' in client.get(f"/products/{product['slug']}").text


@pytest.mark.parametrize("name, content, kind, status", [
    ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/svg+xml", 422),
    ("x.png", b"<html><script>alert(1)</script></html>", "image/png", 422),  # a PNG by name only
    ("x.png", PNG + b"\x00" * (2 * 1024 * 1024), "image/png", 413),  # just over 2 MB: our own check
    ("x.png", PNG + b"\x00" * (3 * 1024 * 1024), "image/png", 413),  # far over: the route's body limit
])
def test_wrong_or_oversized_images_are_refused_and_the_old_one_kept(ops, name, content, kind, status) -> None:
    product = create(ops)
    path = f"/staff/catalogue/products/{product['id']}/image"
    ops.post(path, files={"image": ("a.png", PNG, "image/png")}, data={"_csrf_token": token(ops)})
    kept = product_row(product["id"])["image"]
    response = ops.post(path, files={"image": (name, content, kind)}, headers={**HTMX, "x-csrftoken": token(ops)})
    assert response.status_code == status
    assert "flash-error" in response.text or "field-error" in response.text
    assert product_row(product["id"])["image"] == kept and kept.startswith("/media/")
    assert len(audits("product.image", product["id"])) == 1


def test_an_upload_without_a_file_is_refused(ops) -> None:
    product = create(ops)
    response = post(ops, f"/staff/catalogue/products/{product['id']}/image", {}, htmx=True)
    assert response.status_code == 422 and 'id="image-error"' in response.text


# --- categories ---

def test_categories_are_created_edited_and_deactivated(ops, client) -> None:
    slug = "spices-" + secrets.token_hex(3)
    form = {"slug": slug, "name_en": "Spices", "name_ar": "بهارات", "position": "3", "active": "1"}
    assert post(ops, "/staff/catalogue/categories", form).status_code == 303
    duplicate = post(ops, "/staff/catalogue/categories", form, htmx=True)
    assert duplicate.status_code == 422 and 'id="slug-error"' in duplicate.text
    created = run(Category.select().where(Category.slug == slug).first())
    assert "Spices" in client.get("/").text
    product = create(ops, category=str(created["id"]))
    hidden = {k: v for k, v in form.items() if k != "active"}
    response = post(ops, f"/staff/catalogue/categories/{created['id']}", hidden, htmx=True)
    assert response.status_code == 200 and 'id="category-form"' in response.text
    assert client.get(f"/products/{product['slug']}").status_code == 404  # its products leave the shop with it
    assert "Spices" not in client.get("/").text
    invalid = post(ops, f"/staff/catalogue/categories/{created['id']}", {**form, "name_en": ""}, htmx=True)
    assert invalid.status_code == 422
    assert run(Category.select().where(Category.id == created["id"]).first())["active"] is False
    assert [a["action"] for a in run(AuditLog.select().where(AuditLog.target_id == str(created["id"])).where(
        AuditLog.target_type == "category").order_by(AuditLog.id))] == ["category.create", "category.update"]
    assert ops.get("/staff/catalogue/categories/999999").status_code == 404
