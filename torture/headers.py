"""Headers: every class of response carries the security headers, and a production shop adds HSTS.
HTML carries no inline script, style or event handler, so the CSP needs no unsafe-* source."""
from __future__ import annotations

import re
import secrets

import httpx

from shop.staff.auth import Role
from tests.support import live_server
from torture.clients import browser, new_product, page_token, place_order, staff_client
from torture.figures import Figure, at_least, exactly
from torture.harness import Shop
from torture.registry import case

CASE = "headers"
REQUIRED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}
INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=", re.IGNORECASE)


def missing_headers(response: httpx.Response, production: bool = False) -> list[str]:
    missing = [name for name, value in REQUIRED.items() if response.headers.get(name) != value]
    csp = response.headers.get("content-security-policy", "")
    if "frame-ancestors 'none'" not in csp or "default-src 'self'" not in csp:
        missing.append("content-security-policy")
    if "unsafe-inline" in csp or "unsafe-eval" in csp:
        missing.append("csp without unsafe-*")
    hsts = response.headers.get("strict-transport-security", "")
    if production and not re.search(r"max-age=\d{8,}", hsts):
        missing.append("strict-transport-security")
    return missing


def inline_code(response: httpx.Response) -> int:
    if "html" not in response.headers.get("content-type", ""):
        return 0
    return len(INLINE.findall(response.text))


def samples(shop: Shop) -> dict[str, httpx.Response]:
    """One or more responses of every class the shop sends, keyed by what they are."""
    got: dict[str, httpx.Response] = {}
    owner = staff_client(shop, Role.OWNER)
    product_id, slug = new_product(owner, "Headers test tea", "شاي اختبار الترويسات")
    product = str(product_id)
    with browser(shop) as customer:
        token = page_token(customer)
        got["page: home"] = customer.get("/")
        got["page: product"] = customer.get(f"/products/{slug}")
        got["fragment: search results"] = customer.get("/products?q=tea", headers={"HX-Request": "true"})
        got["fragment: mini cart"] = customer.post("/cart/items", data={"product_id": product, "quantity": "1",
                                                                       "_csrf_token": token},
                                                    headers={"HX-Request": "true"})
        got["fragment: areas"] = customer.get("/checkout/areas?governorate=hawalli", headers={"HX-Request": "true"})
        got["redirect: cart form"] = customer.post("/cart/items", data={"product_id": product, "quantity": "1",
                                                                        "_csrf_token": token})
        got["page: checkout"] = customer.get("/checkout")
        got["error: 404 page"] = customer.get(f"/no-such-{secrets.token_hex(3)}")
        got["error: 404 fragment"] = customer.get("/products/no-such-product", headers={"HX-Request": "true"})
        got["error: 403 CSRF"] = customer.post("/cart/items", data={"product_id": product})
        got["error: 405"] = customer.put("/cart")
        got["error: 413"] = customer.post("/cart/items", content=b"x" * (1024 * 1024),
                                          headers={"content-type": "application/x-www-form-urlencoded"})
        got["error: 422 fragment"] = customer.post("/cart/items", data={"product_id": product, "quantity": "-5",
                                                                         "_csrf_token": token},
                                                    headers={"HX-Request": "true"})
    with httpx.Client(base_url=shop.base_url, timeout=30) as anyone:
        got["static: css"] = anyone.get("/static/css/shop.css")
        got["static: script"] = anyone.get("/static/js/autosubmit.js")
        got["static: HEAD"] = anyone.head("/static/css/shop.css")
        got["media: missing"] = anyone.get("/media/none.png")
        got["health"] = anyone.get("/healthz")
        got["webhook reply: bad signature"] = anyone.post("/webhooks/checkout", json={"type": "payment_approved"})
        got["webhook reply: KNET text"] = anyone.post("/webhooks/knet", content=b"paymentid=1&result=CAPTURED")
        got["webhook reply: unknown provider"] = anyone.post("/webhooks/nobody", content=b"{}")
        got["return: unmatched"] = anyone.get("/payments/knet/return?ref=DM000000XXXXXX01")
        got["redirect: staff home"] = anyone.get("/staff")
        got["page: staff login"] = anyone.get("/staff/login")
        got["fragment: staff 401"] = anyone.get("/staff/orders", headers={"HX-Request": "true"})
        got["sandbox: JSON API"] = anyone.get("/sandbox/checkout/_stats")
        got["sandbox: not found"] = anyone.get("/sandbox/knet/kpg/paymentpage.htm")
    with browser(shop) as customer:
        got["page: pay (provider page or its form)"] = pay = place_order(customer, product_id)
        if pay.status_code == 303:
            got["sandbox: payment page"] = customer.get(pay.headers["location"], follow_redirects=True)
    got["page: staff orders"] = owner.get("/staff/orders")
    got["fragment: staff orders"] = owner.get("/staff/orders", headers={"HX-Request": "true"})
    got["download: CSV"] = owner.get("/staff/reports/orders.csv")
    got["page: staff catalogue"] = owner.get("/staff/catalogue")
    owner.close()
    return got


def production_samples(shop: Shop) -> dict[str, httpx.Response]:
    """A production shop (https public URL, no sandboxes, real-looking credentials) on the same
    database: pages, redirects, errors and webhook replies must all carry HSTS."""
    env = {
        "SHOP_ENV": "production", "SHOP_SANDBOX": "0", "SHOP_PUBLIC_URL": "https://shop.example.test",
        "SHOP_RECONCILE_INTERVAL_S": "0", "SHOP_MEDIA_DIR": str(shop.work_dir / "media"),
        "SHOP_PROVIDER": "checkout", "SHOP_CHECKOUT_API_URL": "https://api.checkout.example.test",
        "SHOP_CHECKOUT_SECRET_KEY": "sk_" + secrets.token_hex(16), "SHOP_CHECKOUT_WEBHOOK_SECRET": secrets.token_hex(16),
        "SHOP_CHECKOUT_PROCESSING_CHANNEL_ID": "pc_" + secrets.token_hex(8),
    }
    got: dict[str, httpx.Response] = {}
    with live_server(shop.database_url, log_path=shop.work_dir / "production.log", **env) as url:
        with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
            got["page"] = client.get("/")
            got["fragment"] = client.get("/products?q=tea", headers={"HX-Request": "true"})
            got["redirect"] = client.get("/staff")
            got["error"] = client.get("/no-such-page")
            got["webhook reply"] = client.post("/webhooks/checkout", json={})
            got["static"] = client.get("/static/css/shop.css")
            got["sandbox gone"] = client.get("/sandbox/knet/kpg/paymentpage.htm")
    return got


@case(CASE, order=60)
async def run(shop: Shop) -> list[Figure]:
    responses = samples(shop)
    missing = {label: missing_headers(r) for label, r in responses.items() if missing_headers(r)}
    inline = {label: inline_code(r) for label, r in responses.items() if inline_code(r)}
    production = production_samples(shop)
    no_hsts = {label: missing_headers(r, True) for label, r in production.items() if missing_headers(r, True)}
    statuses = {r.status_code // 100 for r in responses.values()}
    for label, problems in {**missing, **no_hsts}.items():
        print(f"#   {CASE}: {label} lacks {', '.join(problems)}")
    return [
        at_least(CASE, "response classes sampled", len(responses), 30),
        exactly(CASE, "status classes sampled (2xx 3xx 4xx)", len(statuses & {2, 3, 4}), 3),
        exactly(CASE, "responses missing a security header", len(missing), 0),
        exactly(CASE, "inline scripts, styles or handlers in HTML", sum(inline.values()), 0),
        exactly(CASE, "production responses without HSTS or headers", len(no_hsts), 0),
        at_least(CASE, "production responses sampled", len(production), 7),
    ]
