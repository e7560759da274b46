"""A multi-vendor order paid with KNET through UPayments (its sandbox) over real HTTP: vendors and
products set up on the staff pages, the sandbox receives each vendor's share in
`extraMerchantData`, and a staff refund is taken back from each vendor in proportion."""
from __future__ import annotations

import re
import secrets
from typing import Iterator

import httpx
import pytest

from tests.flows.conftest import pay, states
from tests.flows.staff_session import signed_in_staff
from tests.flows.test_staff_refund_flow import refund, staff_states
from tests.flows.test_upayments_flow import knet_page
from tests.support import CSRF_FIELD, live_server, run_shop, wait_until
from tests.unit.test_forms import VALID

IBAN_A, IBAN_B = "KW91KFHO0000000000051010173254", "KW31NBOK0000000000002010177457"
SHOP_IBAN = "KW81CBKU0000000000001234560101"


@pytest.fixture(scope="module")
def shop(database_url: str) -> Iterator[str]:
    """UPayments is the provider, with the shop's own IBAN for its lines of mixed orders."""
    with live_server(database_url, SHOP_PROVIDER="upayments", SHOP_PROVIDER_TIMEOUT_S="5",
                     SHOP_RECONCILE_INTERVAL_S="0", SHOP_UPAYMENTS_MERCHANT_IBAN=SHOP_IBAN) as url:
        yield url


@pytest.fixture(scope="module")
def owner(shop: str, database_url: str) -> Iterator[httpx.Client]:
    with signed_in_staff(shop, database_url, "owner") as client:
        yield client


def staff_post(client: httpx.Client, form_page: str, action: str, data: dict[str, str]) -> httpx.Response:
    token = CSRF_FIELD.search(client.get(form_page).text).group(1)
    return client.post(action, data={**data, "_csrf_token": token})


def new_vendor(owner: httpx.Client, iban: str, commission: str) -> int:
    name = f"Vendor {secrets.token_hex(4)}"
    made = staff_post(owner, "/staff/vendors/new", "/staff/vendors",
                      {"name": name, "iban": iban, "commission": commission, "active": "1"})
    assert made.status_code == 303, made.text
    listing = owner.get("/staff/vendors").text
    return int(re.search(rf'data-vendor-id="(\d+)">\s*<td><a href="[^"]+">{name}<', listing).group(1))


def new_product(owner: httpx.Client, price: str, vendor: int | None) -> int:
    page = owner.get("/staff/catalogue/products/new").text
    category = re.search(r'name="category"[^>]*>\s*<option value="">[^<]*</option>\s*<option value="(\d+)"', page).group(1)
    slug = "vendor-flow-" + secrets.token_hex(4)
    made = staff_post(owner, "/staff/catalogue/products/new", "/staff/catalogue/products", {
        "slug": slug, "category": category, "name_en": f"Item {slug}", "name_ar": "سلعة", "price": price,
        "stock": "20", "active": "1", "vendor": str(vendor or "")})
    assert made.status_code == 303, made.text
    return int(made.headers["location"].rsplit("/", 1)[1])


def buy(customer: httpx.Client, items: list[tuple[int, int]]) -> str:
    """Fill a cart and press Pay: the UPayments link."""
    token = CSRF_FIELD.search(customer.get("/products").text).group(1)
    for product_id, quantity in items:
        added = customer.post("/cart/items", data={"product_id": str(product_id), "quantity": str(quantity),
                                                   "_csrf_token": token})
        assert added.status_code in (200, 303), added.text
    started = customer.post("/checkout", data={**VALID, "_csrf_token": token})
    assert started.status_code == 303, started.text
    return started.headers["location"]


def test_a_multi_vendor_order_is_paid_split_and_refunded_vendor_by_vendor(customer, owner, database_url,
                                                                          shop) -> None:
    first, second = new_vendor(owner, IBAN_A, "10"), new_vendor(owner, IBAN_B, "2.5")
    dates, oud, own = new_product(owner, "3.333", first), new_product(owner, "12.000", second), \
        new_product(owner, "1.250", None)
    page = pay(customer, knet_page(customer, buy(customer, [(dates, 3), (oud, 1), (own, 2)])))
    assert states(page.text) == ("paid", "captured")
    reference = re.search(r"Order (DM[0-9A-Z]+)", page.text).group(1)

    # Staff see whose each line is, as it was when the order was placed.
    staff_page = owner.get(f"/staff/orders/{reference}").text
    assert re.findall(r'class="line-vendor" data-vendor-id="(\d+)"', staff_page) == [str(first), str(second)]
    assert IBAN_A in staff_page and IBAN_B in staff_page

    upay = httpx.Client(base_url=f"{shop}/sandbox/upayments", timeout=30)
    received = upay.get("/_stats").json()["vendor_splits_by_order_id"][f"{reference}01"]
    fixed = lambda fils: {"knet": {"charge_fils": fils, "type": "fixed"}, "cc": {"charge_fils": fils, "type": "fixed"}}
    # 3 x 3.333 at 10 % (999.9 fils, rounded down), 12.000 at 2.5 %, and the shop's own 2 x 1.250.
    assert received == [
        {"iban": IBAN_A, "amount_fils": 9_999, "charges": fixed(999), "refunded_fils": 0},
        {"iban": IBAN_B, "amount_fils": 12_000, "charges": fixed(300), "refunded_fils": 0},
        {"iban": SHOP_IBAN, "amount_fils": 2_500, "charges": fixed(0), "refunded_fils": 0},
    ]

    assert refund(owner, reference, "4.899", "the oud arrived damaged").status_code == 303
    assert staff_states(owner, reference)[2] == ["pending"]
    result = run_shop(database_url, "reconcile", SHOP_PUBLIC_URL=shop)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: staff_states(owner, reference) == ("partially_refunded", "partially_refunded", ["succeeded"]))
    # 4.899 of 24.499, taken from each payee in proportion to what it was paid.
    refunded = [e["refunded_fils"] for e in upay.get("/_stats").json()["vendor_splits_by_order_id"][f"{reference}01"]]
    assert refunded == [1_999, 2_400, 500] and sum(refunded) == 4_899
    upay.close()
