"""XSS: script-bearing product names (typed by staff) and addresses and notes (typed by customers)
come back escaped on every page that shows them, in both languages, and the receipt email
stays plain text holding exactly what was typed."""
from __future__ import annotations

import re

import httpx
from markupsafe import escape

from shop.staff.auth import Role
from tests.flows.conftest import pay
from torture.clients import active_provider, browser, make_active, new_product, place_order, staff_client
from torture.figures import Figure, at_least, exactly
from torture.harness import Shop
from torture.registry import case
from torture.secrets_scan import outbox_bodies

CASE = "xss"
# Each fits the field it goes into after whitespace folding; numbered so a hit says which one.
PAYLOADS = {
    "name_en": '<script>alert("x1")</script>',
    "name_ar": '"><img src=x onerror=alert(2)>',
    "description": "</textarea><svg onload=alert(3)> {{7*7777}}",
    "name": "'><script>alert(4)</script>",
    "street": '"><img src=y onerror=alert(5)>',
    "building": "<b onclick=x6>1</b>",
    "avenue": "javascript:alert(7)//<i>",
    "notes": "</p><script>alert(8)</script>\n<iframe src=//x9>",
}
# The payloads' own elements, live (unescaped); 54439 would mean a name was run as a template.
LIVE = re.compile(r"<script>alert|<img src=[xy] onerror|<svg onload|<iframe src=//x9|<b onclick=x6|<i>|54439")


def unescaped(body: str) -> list[str]:
    """Payloads present verbatim (not entity-escaped) and live markup from any of them."""
    found = [field for field, payload in PAYLOADS.items() if payload in body]
    found += [m.group(0) for m in LIVE.finditer(body)]
    return found


def storefront_views(customer: httpx.Client, slug: str, product_id: int) -> dict[str, httpx.Response]:
    views = {}
    for lang in ("en", "ar"):
        views[f"product page ({lang})"] = customer.get(f"/products/{slug}?lang={lang}")
        views[f"search page ({lang})"] = customer.get("/products?q=alert")
        views[f"search fragment ({lang})"] = customer.get("/products?q=alert", headers={"HX-Request": "true"})
        views[f"home ({lang})"] = customer.get("/")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', views["product page (ar)"].text).group(1)
    views["mini cart fragment"] = customer.post("/cart/items", data={"product_id": str(product_id), "quantity": "1",
                                                                    "_csrf_token": token},
                                                headers={"HX-Request": "true"})
    views["cart fragment"] = customer.post(f"/cart/items/{product_id}", data={"quantity": "2", "_csrf_token": token},
                                           headers={"HX-Request": "true", "HX-Target": "cart"})
    views["cart page"] = customer.get("/cart")
    views["checkout page"] = customer.get("/checkout")
    return views


def staff_views(owner: httpx.Client, product_id: int, reference: str) -> dict[str, httpx.Response]:
    views = {}
    for lang in ("en", "ar"):
        views[f"staff catalogue ({lang})"] = owner.get(f"/staff/catalogue?q=alert&lang={lang}")
        views[f"staff product ({lang})"] = owner.get(f"/staff/catalogue/products/{product_id}")
        views[f"staff orders ({lang})"] = owner.get("/staff/orders")
        views[f"staff order search ({lang})"] = owner.get(f"/staff/orders?q={reference}", headers={"HX-Request": "true"})
        views[f"staff order ({lang})"] = owner.get(f"/staff/orders/{reference}")
        views[f"staff timeline ({lang})"] = owner.get(f"/staff/orders/{reference}/timeline")
        views[f"staff emails ({lang})"] = owner.get("/staff/emails")
        views[f"staff audit ({lang})"] = owner.get("/staff/audit")
        views[f"staff attention ({lang})"] = owner.get("/staff/attention")
    views["staff orders CSV"] = owner.get("/staff/reports/orders.csv")
    return views



@case(CASE, order=85)
async def run(shop: Shop) -> list[Figure]:
    owner = staff_client(shop, Role.OWNER)
    before = active_provider(owner)
    make_active(owner, "checkout")  # its hosted page is the quickest way to a paid order and a receipt
    try:
        product_id, slug = new_product(owner, PAYLOADS["name_en"], PAYLOADS["name_ar"], PAYLOADS["description"])
        views: dict[str, httpx.Response] = {}
        with browser(shop) as customer:
            views.update(storefront_views(customer, slug, product_id))
            address = {k: PAYLOADS[k] for k in ("name", "street", "building", "avenue", "notes")}
            started = place_order(customer, product_id, address)
            if started.status_code != 303:
                raise RuntimeError(f"checkout with hostile address refused: {started.status_code} {started.text[:500]}")
            order_url = str(pay(customer, started.headers["location"]).url)
            for lang in ("en", "ar"):
                views[f"order page ({lang})"] = customer.get(f"{order_url}?lang={lang}")
                views[f"order fragment ({lang})"] = customer.get(order_url, headers={"HX-Request": "true"})
        reference = re.search(r"DM[A-Z0-9]+", views["order page (en)"].text).group(0)
        views.update(staff_views(owner, product_id, reference))
    finally:
        make_active(owner, before)
    emails = [body for body in await outbox_bodies(shop) if reference in body]
    owner.close()
    shown = {label for label, r in views.items()
             if any(p in r.text or str(escape(p)) in r.text for p in PAYLOADS.values())}
    hits = {label: unescaped(r.text) for label, r in views.items() if "html" in r.headers.get("content-type", "")}
    hits = {label: found for label, found in hits.items() if found}
    for label, found in hits.items():
        print(f"#   {CASE}: {label} shows unescaped {found[:3]}")
    # The receipt names the customer and the product (in the order's language).
    exact = sum(PAYLOADS["name"] in body and (PAYLOADS["name_en"] in body or PAYLOADS["name_ar"] in body)
                for body in emails)
    return [
        exactly(CASE, "unescaped payloads on pages, fragments and staff views", sum(map(len, hits.values())), 0),
        at_least(CASE, "views showing a payload (escaped)", len(shown), 25),
        exactly(CASE, "views failing to load", sum(r.status_code >= 400 for r in views.values()), 0),
        exactly(CASE, "receipt emails keeping the typed text exactly (plain text)", exact, 1),
    ]

