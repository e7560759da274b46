"""Staff vendor pages over HTTP: owners only, validated IBAN and commission with messages in both
languages, audit rows, htmx fragments; operations pick a vendor on the product form."""
from __future__ import annotations

import json
import secrets
from typing import Any, Iterator

import pytest
from litestar.testing import TestClient

from shop.app import create_app
from shop.catalog.tables import Product
from shop.db import bind_tables
from shop.tables import TABLES
from shop.settings import Settings
from shop.staff.auth import Role
from shop.vendors.tables import Vendor
from tests.staff.conftest import sign_in
from tests.staff.test_catalogue import audits, create, post, product_form, product_row
from tests.web.conftest import run

IBAN_A, IBAN_B = "KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457"


@pytest.fixture(scope="module")
def clients(settings: Settings) -> Iterator[dict[Role, TestClient]]:
    """An owner and an operations member, signed in once per backend for the module."""
    made: dict[Role, TestClient] = {}
    for role in (Role.OWNER, Role.OPERATIONS):
        client = TestClient(app=create_app(settings), base_url="http://127.0.0.1:8000")
        client.__enter__()
        sign_in(client, role)
        made[role] = client
    yield made
    for client in made.values():
        client.__exit__(None, None, None)


@pytest.fixture()
def owner(clients: dict[Role, TestClient]) -> Iterator[TestClient]:
    bind_tables(Product._meta.db, TABLES)
    yield clients[Role.OWNER]
    clients[Role.OWNER].cookies.delete("lang")


@pytest.fixture()
def ops(clients: dict[Role, TestClient]) -> TestClient:
    bind_tables(Product._meta.db, TABLES)
    return clients[Role.OPERATIONS]


def vendor_picker(html: str) -> str:
    """The product form's vendor <select> alone."""
    return html.split('name="vendor"', 1)[1].split("</select>", 1)[0]


def vendor_form(**changes: str) -> dict[str, str]:
    return {"name": f"Salmiya Crafts {secrets.token_hex(3)}", "iban": IBAN_A, "commission": "12.5", "active": "1",
            **changes}


def add_vendor(client: TestClient, **changes: str) -> dict[str, Any]:
    form = vendor_form(**changes)
    response = post(client, "/staff/vendors", form)
    assert response.status_code == 303 and response.headers["location"] == "/staff/vendors", response.text
    return run(Vendor.select().where(Vendor.name == form["name"]).first())


@pytest.mark.parametrize("role, status", [(Role.OWNER, 200), (Role.OPERATIONS, 403), (Role.FINANCE, 403)])
def test_vendors_are_for_owners(staff_client, role: Role, status: int) -> None:
    client = staff_client(role)
    for path in ("/staff/vendors", "/staff/vendors/new"):
        response = client.get(path)
        assert response.status_code == status, path
        assert response.headers["cache-control"] == "no-store"
    before = run(Vendor.count())
    assert post(client, "/staff/vendors", vendor_form()).status_code == (303 if status == 200 else 403)
    assert run(Vendor.count()) == before + (1 if status == 200 else 0)
    assert ('href="/staff/vendors"' in client.get("/staff/orders").text) is (status == 200)


def test_forged_posts_are_refused(owner) -> None:
    before = run(Vendor.count())
    forged = owner.post("/staff/vendors", data=vendor_form(), follow_redirects=False)  # no CSRF token
    assert forged.status_code == 403 and run(Vendor.count()) == before


def test_a_vendor_is_created_listed_edited_and_audited(owner) -> None:
    vendor = add_vendor(owner, iban="kw91 kfho 0000 0000 0005 1010 1732 54")
    assert (vendor["iban"], vendor["commission_bps"], vendor["active"]) == (IBAN_A, 1250, True)
    listing = owner.get("/staff/vendors").text
    assert "Vendor created." in listing and vendor["name"] in listing and IBAN_A in listing
    assert 'data-commission-bps="1250"' in listing and "12.5 %" in listing
    edit = vendor_form(name=vendor["name"], iban=IBAN_B, commission="3")  # and unticked: inactive
    del edit["active"]
    response = post(owner, f"/staff/vendors/{vendor['id']}", edit, htmx=True)
    assert response.status_code == 200 and 'id="vendor-form"' in response.text and "<html" not in response.text
    assert "Vendor saved." in response.text and 'value="3"' in response.text
    row = run(Vendor.select().where(Vendor.id == vendor["id"]).first())
    assert (row["iban"], row["commission_bps"], row["active"]) == (IBAN_B, 300, False)
    [created] = audits("vendor.create", vendor["id"])
    [updated] = audits("vendor.update", vendor["id"])
    assert json.loads(created["after"])["iban"] == IBAN_A and created["staff_email"].startswith("owner-")
    assert json.loads(updated["before"]) == {"iban": IBAN_A, "commission_bps": 1250, "active": True}
    assert json.loads(updated["after"]) == {"iban": IBAN_B, "commission_bps": 300, "active": False}
    # Saving it unchanged changes and audits nothing.
    assert post(owner, f"/staff/vendors/{vendor['id']}", edit).status_code == 303
    assert len(audits("vendor.update", vendor["id"])) == 1


@pytest.mark.parametrize("changes, field, english, arabic", [
    ({"iban": "KW92KFHO0000000000051010173254"}, "iban", "check digits are wrong", "أرقام التحقق"),
    ({"iban": "GB82WEST12345698765432"}, "iban", "Enter a Kuwaiti IBAN", "آيبان كويتي"),
    ({"iban": ""}, "iban", "Enter the vendor", "الآيبان"),
    ({"commission": "100"}, "commission", "from 0 to 99.99 percent", "من 0 إلى 99.99"),
    ({"commission": "-5"}, "commission", "from 0 to 99.99 percent", "من 0 إلى 99.99"),
    ({"commission": "2.125"}, "commission", "at most two decimals", "بخانتين عشريتين"),
    ({"name": ""}, "name", "Enter the vendor", "اسم البائع"),
])
def test_bad_input_is_refused_with_a_message_in_the_right_language(owner, changes, field, english, arabic) -> None:
    before = run(Vendor.count())
    response = post(owner, "/staff/vendors", vendor_form(**changes), htmx=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in response.text and english in response.text
    owner.get("/staff/vendors", params={"lang": "ar"})
    response = post(owner, "/staff/vendors", vendor_form(**changes))
    assert response.status_code == 422 and '<html lang="ar" dir="rtl">' in response.text
    assert arabic in response.text
    assert run(Vendor.count()) == before


def test_a_taken_name_and_unknown_vendors(owner) -> None:
    first, second = add_vendor(owner), add_vendor(owner, iban=IBAN_B)
    response = post(owner, f"/staff/vendors/{second['id']}", vendor_form(name=first["name"]), htmx=True)
    assert response.status_code == 422 and "Another vendor already has this name." in response.text
    assert run(Vendor.select(Vendor.name).where(Vendor.id == second["id"]).first())["name"] == second["name"]
    assert post(owner, "/staff/vendors", vendor_form(name=first["name"])).status_code == 422
    assert owner.get("/staff/vendors/999999").status_code == 404
    assert post(owner, "/staff/vendors/999999", vendor_form()).status_code == 404


def test_pages_render_in_arabic(owner) -> None:
    vendor = add_vendor(owner)
    for path in ("/staff/vendors", "/staff/vendors/new", f"/staff/vendors/{vendor['id']}"):
        response = owner.get(path, params={"lang": "ar"})
        assert response.status_code == 200 and '<html lang="ar" dir="rtl">' in response.text, path
        assert "البائع" in response.text, path


def test_operations_pick_an_active_vendor_on_the_product_form(owner, ops) -> None:
    active, retired = add_vendor(owner), add_vendor(owner, iban=IBAN_B)
    assert post(owner, f"/staff/vendors/{retired['id']}", vendor_form(name=retired["name"], active="")).status_code == 303
    form_page = vendor_picker(ops.get("/staff/catalogue/products/new").text)
    assert f'<option value="{active["id"]}">' in form_page and f'<option value="{retired["id"]}"' not in form_page
    product = create(ops, vendor=str(active["id"]))
    assert product["vendor"] == active["id"]
    assert json.loads(audits("product.create", product["id"])[0]["after"])["vendor"] == active["id"]
    # An inactive vendor cannot be picked, and nothing changes.
    edit = product_form(slug=product["slug"], vendor=str(retired["id"]))
    refused = post(ops, f"/staff/catalogue/products/{product['id']}", edit, htmx=True)
    assert refused.status_code == 422 and 'id="vendor-error"' in refused.text
    assert product_row(product["id"])["vendor"] == active["id"]
    assert post(ops, f"/staff/catalogue/products/{product['id']}", {**edit, "vendor": "abc"}).status_code == 422
    # Back to the shop's own stock.
    assert post(ops, f"/staff/catalogue/products/{product['id']}", {**edit, "vendor": ""}).status_code == 303
    assert product_row(product["id"])["vendor"] is None


def test_a_product_keeps_its_vendor_after_the_vendor_is_deactivated(owner, ops) -> None:
    vendor = add_vendor(owner)
    product = create(ops, vendor=str(vendor["id"]))
    assert post(owner, f"/staff/vendors/{vendor['id']}", vendor_form(name=vendor["name"], active="")).status_code == 303
    page = vendor_picker(ops.get(f"/staff/catalogue/products/{product['id']}").text)
    assert f'<option value="{vendor["id"]}" selected>' in page and "(inactive)" in page
    saved = post(ops, f"/staff/catalogue/products/{product['id']}",
                 product_form(slug=product["slug"], vendor=str(vendor["id"]), price="9.000"))
    assert saved.status_code == 303 and product_row(product["id"])["vendor"] == vendor["id"]
