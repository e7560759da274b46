"""Stateful load: customers with cookies (add to cart, start checkout) and signed webhooks."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import httpx

from bench.wrk import Request

CSRF_HEADER = "x-csrftoken"
ADDRESS = {
    "name": "Bench Customer", "email": "bench@example.com", "phone": "+96550001234", "governorate": "hawalli",
    "area": "salmiya", "block": "10", "street": "Salem Al-Mubarak St", "avenue": "", "building": "5",
    "floor": "", "apartment": "", "notes": "",
}


@dataclass
class Customer:
    """A browser's cookie jar, kept by hand: the shop runs as in production, so its cookies are
    `Secure`, and httpx (rightly) would not send them back over the plain-http loopback."""

    cookies: dict[str, str] = field(default_factory=dict)

    def remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or morsel.value == "null":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def headers(self, htmx: bool = False) -> dict[str, str]:
        headers = {"cookie": self.cookie_header, CSRF_HEADER: self.cookies.get("csrftoken", "")}
        if htmx:
            headers["hx-request"] = "true"
        return headers

    async def get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        response = await client.get(path, headers={"cookie": self.cookie_header})
        self.remember(response)
        return response

    async def post(self, client: httpx.AsyncClient, path: str, data: dict[str, str], htmx: bool = False) -> httpx.Response:
        response = await client.post(path, data=data, headers=self.headers(htmx))
        self.remember(response)
        return response


async def customer_with_cart(client: httpx.AsyncClient, product_ids: list[int]) -> Customer:
    """A customer who has visited once and put one of each of `product_ids` in the cart."""
    customer = Customer()
    await customer.get(client, "/cart")
    for product_id in product_ids:
        response = await customer.post(client, "/cart/items", {"product_id": str(product_id), "quantity": "1"},
                                       htmx=True)
        response.raise_for_status()
    return customer


async def customers_with_carts(base_url: str, carts: list[list[int]]) -> list[Customer]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(ids: list[int]) -> Customer:
            async with semaphore:
                return await customer_with_cart(client, ids)

        return list(await asyncio.gather(*(one(ids) for ids in carts)))


def page_requests(customer: Customer, paths: list[str]) -> list[Request]:
    """GETs by a returning customer: session (with a cart) and CSRF cookies sent."""
    return [Request("GET", path, {"Cookie": customer.cookie_header}) for path in paths]


def add_to_cart_requests(customers: list[Customer], product_ids: list[list[int]]) -> list[Request]:
    """htmx POSTs with CSRF header: each customer adds again to their own few lines in turn."""
    requests = []
    for turn in range(max(len(ids) for ids in product_ids)):
        for customer, ids in zip(customers, product_ids):
            headers = {**{k.title(): v for k, v in customer.headers(htmx=True).items()},
                       "Content-Type": "application/x-www-form-urlencoded"}
            body = f"product_id={ids[turn % len(ids)]}&quantity=1"
            requests.append(Request("POST", "/cart/items", headers, body))
    return requests


def checkout_requests(customers: list[Customer]) -> list[Request]:
    """Each customer, with a filled cart, presses Pay once (POST /checkout/ with CSRF header)."""
    body = urlencode(ADDRESS)
    return [Request("POST", "/checkout/", {**{k.title(): v for k, v in customer.headers().items()},
                                           "Content-Type": "application/x-www-form-urlencoded"}, body)
            for customer in customers]


def checkout_webhooks(attempts: list[dict[str, Any]], secret: str, count: int, seed: int) -> list[Request]:
    """`count` signed Checkout.com webhooks over the open `attempts`: a capture for each, then
    further events (pending, captured again) and, every fifth, a repeat of an earlier event
    that the shop must recognise and skip."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests: list[Request] = []
    kinds = ("payment_captured", "payment_pending", "payment_captured")
    for n in range(count):
        if n % 5 == 4 and requests:
            requests.append(requests[n - 3])
            continue
        attempt = attempts[n % len(attempts)]
        kind = kinds[(n // len(attempts)) % len(kinds)]
        body = json.dumps({
            "id": f"evt_bench_{seed}_{n}", "type": kind, "created_on": now,
            "data": {"id": attempt["provider_payment_id"], "action_id": f"act_bench_{seed}_{n}",
                     "amount": attempt["amount_fils"], "currency": attempt["currency"],
                     "reference": attempt["merchant_reference"], "response_code": "10000",
                     "response_summary": "Approved", "processed_on": now, "source": {"type": "knet"},
                     "metadata": {}},
        }, separators=(",", ":"))
        signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        requests.append(Request("POST", "/webhooks/checkout",
                                {"Content-Type": "application/json", "Cko-Signature": signature}, body))
    return requests


SLUG = re.compile(r'data-slug="([^"]+)"')
