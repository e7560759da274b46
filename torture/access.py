"""Access: order tokens nobody can guess, staff routes nobody gets into without the role, forms
nobody can post from another site, and provider returns that need no cookie."""
from __future__ import annotations

import math
import re
import secrets
import string
from typing import Callable

import httpx

from shop.staff.auth import Role
from torture.clients import (Route, active_provider, app_routes, browser, make_active, new_product, page_token,
                             place_order, remember_cookies, staff_client)
from torture.figures import Figure, at_least, exactly
from torture.harness import Shop
from torture.registry import case

CASE = "access"
ORDER_PATH = re.compile(r"/orders/([A-Za-z0-9_-]+)")
# The alphabet a token is drawn from, judged by the characters it uses (smallest first).
ALPHABETS = (string.digits, string.hexdigits[:16], string.hexdigits, string.ascii_letters + string.digits,
             string.ascii_letters + string.digits + "-_")


def token_bits(tokens: list[str]) -> float:
    """Entropy of the weakest token: length x log2(size of the smallest alphabet holding them all)."""
    used = set("".join(tokens))
    alphabet = next((a for a in ALPHABETS if used <= set(a)), string.printable)
    return min(len(t) for t in tokens) * math.log2(len(alphabet))


def order_token(customer: httpx.Client) -> str:
    """The order the customer just placed: an empty cart's checkout sends them to it."""
    return ORDER_PATH.search(customer.get("/checkout").headers["location"]).group(1)


def guesses(token: str, reference: str) -> list[str]:
    """What a stranger might try instead of the real token."""
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [flipped, token[:-1], token.upper(), token.lower(), reference, "1", "0", secrets.token_urlsafe(24),
            token + "x", f"{token[:16]}%00{token[16:]}"]


def strangers_in(shop: Shop, orders: list[str], references: list[str]) -> int:
    opened = 0
    with browser(shop) as stranger:
        for token, reference in zip(orders, references):
            for guess in guesses(token, reference):
                for headers in ({}, {"HX-Request": "true"}):
                    opened += stranger.get(f"/orders/{guess}", headers=headers).status_code < 400
    return opened


def refused(response: httpx.Response) -> bool:
    location = response.headers.get("location", "")
    return response.status_code in (401, 403) or (response.status_code == 303 and location.startswith("/staff/login"))


def sweep(client: httpx.Client, routes: list[Route], allowed: Callable[[Route], bool]) -> tuple[int, int]:
    """(requests let through that should have been refused, requests sent)."""
    let_through = sent = 0
    for route in routes:
        if route.roles is None or (route.path == "/staff/logout" and allowed(route)):
            continue  # public (sign-in), or would end the session the rest of the sweep uses
        data = {"_csrf_token": client.cookies.get("csrftoken", "")} if route.method != "GET" else None
        response = client.request(route.method, route.concrete(), data=data)
        sent += 1
        if not allowed(route):
            let_through += not refused(response)
    return let_through, sent


def csrf_attempts(client: httpx.Client, routes: list[Route], foreign_token: str) -> tuple[int, int]:
    """Every state-changing route with no token, a foreign token and a made-up one: (accepted, sent)."""
    accepted = sent = 0
    for route in routes:
        for form in ({}, {"_csrf_token": foreign_token}, {"_csrf_token": secrets.token_hex(32)}):
            for headers in ({}, {"HX-Request": "true"}):
                response = client.request(route.method, route.concrete(), data=form, headers=headers)
                sent += 1
                accepted += response.status_code != 403
    # The header a script would use instead of the field, with a foreign value.
    for route in routes:
        response = client.request(route.method, route.concrete(), headers={"x-csrftoken": foreign_token})
        sent += 1
        accepted += response.status_code != 403
    return accepted, sent


def cookieless_returns(shop: Shop, owner: httpx.Client, product_id: int) -> tuple[int, int]:
    """Pay with APS (a cross-site form POST back) and KNET (a redirect back), then deliver the
    return from a client with no cookies at all. Returns (returns that reached a paid order, tried)."""
    from tests.flows.test_aps_flow import knet as aps_knet, start as aps_start
    from tests.flows.test_knet_flow import submit as knet_submit

    before = active_provider(owner)
    reached = tried = 0
    try:
        for provider in ("aps", "knet"):
            make_active(owner, provider)
            with browser(shop) as customer:
                started = place_order(customer, product_id)
                if provider == "aps":
                    action, fields = aps_knet(customer, aps_start(customer, started))
                    request = ("POST", action, fields)
                else:
                    landed = customer.get(started.headers["location"])
                    page = landed.headers["location"]
                    customer.get(page)
                    request = ("GET", knet_submit(customer, page).headers["location"], None)
            with httpx.Client(timeout=30, follow_redirects=False) as cookieless:
                method, url, fields = request
                url = url if url.startswith("http") else shop.base_url + url
                back = cookieless.request(method, url, data=fields)
                tried += 1
                if back.status_code == 303 and ORDER_PATH.match(back.headers["location"]):
                    order = cookieless.get(shop.base_url + back.headers["location"]).text
                    reached += 'data-order-status="paid"' in order and not cookieless.cookies.get("session")
    finally:
        make_active(owner, before)
    return reached, tried


@case(CASE, order=60)
async def run(shop: Shop) -> list[Figure]:
    routes = app_routes(shop)
    staff_routes = [r for r in routes if r.staff]
    guarded_staff = [r for r in staff_routes if r.roles is not None]
    owner = staff_client(shop, Role.OWNER)
    product_id, _slug = new_product(owner, "Access test tea", "شاي اختبار الوصول")

    tokens, references = [], []
    for _ in range(shop.scaled(20, minimum=3)):
        with browser(shop) as customer:
            place_order(customer, product_id)
            tokens.append(order_token(customer))
            page = customer.get(f"/orders/{tokens[-1]}").text
            references.append(re.search(r"DM[A-Z0-9]+", page).group(0))
            remember_cookies(shop, customer)
    opened = strangers_in(shop, tokens, references)

    let_through = sent = 0
    with browser(shop) as anonymous:
        page_token(anonymous)  # a CSRF cookie, so refusals come from the guard, not the CSRF check
        counts = sweep(anonymous, staff_routes, lambda r: r.roles is None)
        let_through, sent = let_through + counts[0], sent + counts[1]
    with browser(shop) as customer:
        place_order(customer, product_id)
        counts = sweep(customer, staff_routes, lambda r: r.roles is None)
        let_through, sent = let_through + counts[0], sent + counts[1]
    for role in Role:
        member = staff_client(shop, role)
        counts = sweep(member, staff_routes, lambda r, role=role: r.roles is None or role in r.roles)
        let_through, sent = let_through + counts[0], sent + counts[1]
        member.close()

    guarded = [r for r in routes if r.csrf and not r.path.startswith("/sandbox")]
    with browser(shop) as other:
        foreign = page_token(other)
    with browser(shop) as customer:
        place_order(customer, product_id)
        accepted, csrf_sent = csrf_attempts(customer, [r for r in guarded if not r.staff], foreign)
    staff_accepted, staff_sent = csrf_attempts(owner, [r for r in guarded if r.staff], foreign)
    reached, tried = cookieless_returns(shop, owner, product_id)
    owner.close()
    return [
        at_least(CASE, "order token bits (weakest of real orders)", round(token_bits(tokens), 1), 128),
        exactly(CASE, "distinct order tokens", len(set(tokens)), len(tokens)),
        exactly(CASE, "other people's orders opened by a stranger", opened, 0),
        exactly(CASE, "unauthorised staff requests let through", let_through, 0),
        at_least(CASE, "staff sweep requests (anonymous, customer, each role)", sent, 4 * len(guarded_staff)),
        exactly(CASE, "state changes accepted without a valid CSRF token", accepted + staff_accepted, 0),
        at_least(CASE, "CSRF attempts", csrf_sent + staff_sent, 7 * len(guarded)),
        exactly(CASE, "cookie-less provider returns reaching the paid order", reached, tried),
    ]
