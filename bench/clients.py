"""Stateful load: customers with cookies (add to cart, start checkout) and signed webhooks."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from typing import Any

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


@dataclass(frozen=True, slots=True)
class FlowResult:
    per_s: float
    p50_ms: float
    p99_ms: float
    done: int
    errors: int
    client_cpu_share: float  # of one core, by this load generator: near 1.0 means it is the bottleneck


async def checkout_load(base_url: str, product_ids: list[int], duration_s: float, concurrency: int = 32) -> FlowResult:
    """`concurrency` customers, each in a loop until the deadline: add a product (htmx, CSRF),
    then press Pay (POST /checkout, CSRF): the order is placed, stock reserved and the payment
    started with the provider, answered by a 303 to the provider's page. Counts orders placed."""
    timings: list[float] = []
    errors = 0
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        customers = [Customer() for _ in range(concurrency)]
        await asyncio.gather(*(c.get(client, "/cart") for c in customers))
        cpu_start, start = time.process_time(), time.monotonic()
        deadline = start + duration_s

        async def shop(customer: Customer) -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                added = await customer.post(client, "/cart/items",
                                            {"product_id": str(rng.choice(product_ids)), "quantity": "1"}, htmx=True)
                began = time.monotonic()
                paid = await customer.post(client, "/checkout/", ADDRESS)
                if added.status_code == 200 and paid.status_code == 303 and "/sandbox/" in paid.headers["location"]:
                    timings.append(time.monotonic() - began)
                else:
                    errors += 1

        await asyncio.gather(*(shop(c) for c in customers))
        elapsed, cpu = time.monotonic() - start, time.process_time() - cpu_start
    return _flow_result(timings, errors, elapsed, cpu)


def _flow_result(timings: list[float], errors: int, elapsed: float, cpu: float) -> FlowResult:
    ms = sorted(t * 1000 for t in timings) or [0.0]
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return FlowResult(len(timings) / elapsed, statistics.median(ms), p99, len(timings), errors, cpu / elapsed)


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
