"""Driving purchases over HTTP the way a browser does, for every provider: the cart, the Pay
press, the provider's hosted KNET page, and the way back. Shared by the money/stock cases.

`Customer.to_provider_and_back()` walks redirects and auto-submitting forms up to the shop's
return URL and stops there, so a case decides when (and whether) the customer comes back."""
from __future__ import annotations

import asyncio
import html
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import httpx

from tests.support import CSRF_FIELD
from tests.unit.test_forms import VALID
from torture import db
from torture.harness import PROVIDERS, Shop

APPROVED_CARD, DECLINED_CARD, PIN = "8888880000000001", "8888880000000002", "1234"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
AUTO_FORM = re.compile(r'<form[^>]+action="([^"]+)"[^>]*data-autosubmit')
CARD_FORM = re.compile(r'<form[^>]+action="([^"]+)"[^>]*>(?=(?:(?!</form>).)*name="card_number")', re.S)
STATES = re.compile(r'data-order-status="([a-z_]+)"[^>]*data-payment-status="([a-z_]*)"', re.S)
ORDER_PATH = re.compile(r"/orders/[A-Za-z0-9_-]+")
RETRY_FORM = re.compile(r'<form method="post" action="(/orders/[A-Za-z0-9_-]+/retry)">')


def sandbox_of(provider: str) -> str:
    """Both Checkout.com flavours share one sandbox."""
    return "checkout" if provider == "checkout_setup" else provider


def timeout() -> httpx.Timeout:
    return httpx.Timeout(30.0, connect=5.0)


class WalkError(RuntimeError):
    """The browser's way through the provider did not look like any provider's."""


@dataclass(frozen=True)
class Back:
    """The request that brings the customer back to the shop (not sent yet)."""

    method: str
    url: str
    data: dict[str, str] | None = None


class Customer:
    """One browser: its own cookies (session, cart), never following redirects by itself."""

    def __init__(self, shop: Shop, base_url: str | None = None) -> None:
        self.shop = shop
        self.base_url = base_url or shop.base_url  # another process of the same shop, if given
        self.client = httpx.AsyncClient(base_url=self.base_url, follow_redirects=False, timeout=timeout())
        self._token = ""

    def use(self, base_url: str) -> None:
        """Go on with the same cookies at another process of the shop (same database)."""
        self.base_url = base_url
        self.client.base_url = httpx.URL(base_url)

    async def __aenter__(self) -> "Customer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def token(self) -> str:
        if not self._token:
            self._token = CSRF_FIELD.search((await self.client.get("/products")).text).group(1)
        return self._token

    async def add(self, product_id: int, quantity: int = 1) -> httpx.Response:
        return await self.client.post("/cart/items", data={"product_id": str(product_id), "quantity": str(quantity),
                                                           "_csrf_token": await self.token()})

    async def press_pay(self) -> httpx.Response:
        return await self.client.post("/checkout", data={**VALID, "_csrf_token": await self.token()})

    async def to_provider_and_back(self, started: httpx.Response, card: str = APPROVED_CARD,
                                   action: str = "pay") -> Back:
        """From the Pay press's answer, through the provider's pages, to the shop's return request."""
        response = started
        own_return = f"{self.base_url}/payments/"
        for _ in range(12):
            text = response.text if response.status_code == 200 else ""
            if response.status_code in (301, 302, 303):
                url = str(response.url.join(response.headers["location"]))
                if url.startswith(own_return) or ORDER_PATH.match(httpx.URL(url).path or ""):
                    return Back("GET", url)
                response = await self.client.get(url)
            elif (form := AUTO_FORM.search(text)) is not None:
                url = str(response.url.join(html.unescape(form.group(1))))
                fields = {k: html.unescape(v) for k, v in HIDDEN.findall(text)}
                if url.startswith(own_return):
                    return Back("POST", url, fields)
                response = await self.client.post(url, data=fields)
            elif (form := CARD_FORM.search(text)) is not None:
                url = str(response.url.join(html.unescape(form.group(1))))
                response = await self.client.post(url, data={
                    "bank": "KNET1", "card_number": card, "expiry_month": "09", "expiry_year": "2030",
                    "pin": PIN if card else "", "action": action})
            else:
                raise WalkError(f"{response.request.method} {response.request.url} -> {response.status_code}: "
                                f"{response.text[:300]}")
        raise WalkError("too many steps before the way back to the shop")

    async def pay_and_return(self, started: httpx.Response, card: str = APPROVED_CARD) -> httpx.Response:
        """The whole way: the provider's page, the card, back to the shop's order page."""
        return await self.come_back(await self.to_provider_and_back(started, card))

    async def pay_again(self, order_path: str) -> httpx.Response | None:
        """Press the order page's retry button (resume or a new attempt); None when it has none."""
        page = await self.client.get(order_path)
        form = RETRY_FORM.search(page.text)
        if form is None:
            return None
        return await self.client.post(form.group(1), data={"_csrf_token": CSRF_FIELD.search(page.text).group(1)})

    async def come_back(self, back: Back) -> httpx.Response:
        """Send the return request and open the order page it leads to (the last answer if not 303)."""
        for attempt in range(3):
            try:
                if back.method == "POST":
                    returned = await self.client.post(back.url, data=back.data)
                else:
                    returned = await self.client.get(back.url)
                break
            except httpx.TransportError as exc:
                # A kept-alive connection the server closed as we sent: browsers send again.
                if isinstance(exc, httpx.TimeoutException) or attempt == 2:
                    raise
        if returned.status_code != 303:
            return returned
        return await self.client.get(returned.headers["location"])


def states(page_html: str) -> tuple[str, str]:
    found = STATES.search(page_html)
    return (found.group(1), found.group(2)) if found else ("", "")


# -- shop set-up through the database ----------------------------------------------------------

async def claim_product(shop: Shop, stock: int, price_fils: int = 1250) -> int:
    """A product of the demo catalogue that no other case has used, with the stock asked for and
    nothing reserved; the price is a whole 10 fils so every provider can take it."""
    used = shop.claimed_products
    rows = await db.fetch(shop, "SELECT id FROM product ORDER BY id")
    product_id = next(row["id"] for row in rows if row["id"] not in used)
    used.add(product_id)
    await db.fetch(shop, "UPDATE product SET stock = ?, reserved = 0, price_fils = ?, active = ? WHERE id = ?",
                   stock, price_fils, True, product_id)
    return product_id


async def set_active_provider(shop: Shop, provider: str) -> None:
    await db.fetch(shop, "INSERT INTO shop_setting (key, value, updated_by, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", "active_provider", provider,
                   "torture", datetime.now(timezone.utc) if shop.backend == "postgres" else
                   datetime.now(timezone.utc).isoformat())


async def set_controls(sandbox: httpx.AsyncClient, provider: str, **controls: Any) -> None:
    """The sandbox's fault controls back to normal, then `controls` set."""
    await sandbox.delete("/_control")
    if provider == "upayments":
        # Its sandbox allows 30 status calls a minute across all keys; a torture run packs
        # hours of a real shop's traffic into a minute.
        controls = {"status_rate_limit": 0, **controls}
    if controls:
        (await sandbox.post("/_control", json=controls)).raise_for_status()


@asynccontextmanager
async def provider_in_use(shop: Shop, provider: str, **controls: Any) -> AsyncIterator[httpx.AsyncClient]:
    """New payments go to `provider`, whose sandbox has `controls` set; both are put back after.
    Yields a client on the sandbox (its `/_control`, `/_stats`, `/_webhooks/...`)."""
    async with httpx.AsyncClient(base_url=f"{shop.base_url}/sandbox/{sandbox_of(provider)}",
                                 timeout=timeout()) as sandbox:
        await set_controls(sandbox, provider, **controls)
        await set_active_provider(shop, provider)
        try:
            yield sandbox
        finally:
            await sandbox.delete("/_control")
            await set_active_provider(shop, "checkout")


# -- what the providers' sandboxes counted -------------------------------------------------------

async def sandbox_stats(shop: Shop, provider: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"{shop.base_url}/sandbox/{sandbox_of(provider)}",
                                 timeout=timeout()) as sandbox:
        answer = await sandbox.get("/_stats")
        answer.raise_for_status()
        return answer.json()


def payments_created(provider: str, stats: dict[str, Any]) -> int:
    """Payments (charges, transactions) the provider holds, whatever their state."""
    return int(stats[{"tap": "charges", "knet": "transactions"}.get(sandbox_of(provider), "payments")])


def extra_creates(stats: dict[str, Any]) -> int:
    """Payments created beyond one per idempotency key (per order id at UPayments): each one is
    money that could be charged twice. Providers the shop never calls to create have no books."""
    books = stats.get("creates_by_idempotency_key") or stats.get("charges_by_order_id") or {}
    return sum(max(0, int(entry["payments"]) - 1) for entry in books.values())


async def payments_created_everywhere(shop: Shop) -> int:
    sandboxes = {sandbox_of(provider): provider for provider in PROVIDERS}
    total = 0
    for provider in sandboxes.values():
        total += payments_created(provider, await sandbox_stats(shop, provider))
    return total


def leads_to_provider(answer: httpx.Response) -> bool:
    """A Pay press that sends the browser to the provider (a 303 away from the order page, or the
    auto-submitting form of a form-POST provider)."""
    if answer.status_code == 303:
        return not ORDER_PATH.match(httpx.URL(answer.headers["location"]).path) and \
            answer.headers["location"] != "/cart"
    return answer.status_code == 200 and AUTO_FORM.search(answer.text) is not None


@dataclass
class Purchase:
    """A customer who paid at the provider and has not come back yet."""

    customer: Customer
    back: Back

    @property
    def reference(self) -> str:
        """The attempt's merchant reference: every provider's return URL carries it as `ref`."""
        return httpx.URL(self.back.url).params["ref"]


async def pay_without_returning(shop: Shop, product: int, concurrency: int = 6, count: int = 1,
                                card: str = APPROVED_CARD) -> list[Purchase]:
    """`count` customers buy one `product` each and pay at the provider, a few at a time, and
    stop before the way back. Close their clients with `close_all`."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Purchase:
        async with gate:
            customer = Customer(shop)
            await customer.add(product, 1)
            answer = await customer.press_pay()
            for _ in range(5):
                back = await customer.to_provider_and_back(answer, card)
                if "ref" in httpx.URL(back.url).params:
                    return Purchase(customer, back)
                # The provider did not answer in time (a loaded machine): press the order page's button.
                await asyncio.sleep(0.5)
                answer = await customer.pay_again(httpx.URL(back.url).path) or answer
            raise WalkError(f"no way to the provider from {back.url}")

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(purchases: list[Purchase]) -> None:
    await asyncio.gather(*(purchase.customer.client.aclose() for purchase in purchases))


async def as_providers_see_them(shop: Shop, attempts: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]]:
    """Each attempt (rows with provider, provider_payment_id, merchant_reference) with what its
    provider says about it now, asked through the shop's own adapter for that provider; None
    where the provider could not be asked."""
    from shop.db import bind_tables, make_engine
    from shop.payments.providers.base import ProviderError
    from shop.payments.registry import provider_for
    from shop.tables import TABLES
    from shop.settings import Settings
    from tests.support import TEST_SECRET

    # Some adapters read the attempt back (KNET's inquiry needs its amount): the tables must
    # point at this shop's database, as in the shop's own processes.
    bind_tables(make_engine(shop.database_url), TABLES)
    settings = Settings(secret_key=TEST_SECRET, public_url=shop.base_url)
    seen: list[tuple[dict[str, Any], Any]] = []
    async with httpx.AsyncClient(timeout=timeout()) as client:
        for attempt in attempts:
            adapter = provider_for(attempt["provider"], settings, client)
            try:
                seen.append((attempt, await adapter.inquire(attempt["provider_payment_id"],
                                                            attempt["merchant_reference"])))
            except ProviderError:
                seen.append((attempt, None))
    return seen


# -- side effects, counted in the database ------------------------------------------------------

async def extra_emails(shop: Shop, product: int) -> int:
    """Emails of one kind sent more than once for one order (orders holding `product`)."""
    return int(await db.value(
        shop, "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM outbox_email WHERE \"order\" IN "
              "(SELECT \"order\" FROM order_line WHERE product = ?) GROUP BY \"order\", kind) AS per_order", product))


async def stock_drift(shop: Shop, product: int, initial_stock: int) -> int:
    """How far the product's counts are from its orders': |reserved - held by unpaid orders| +
    |stock taken - sold to paid orders|. Any stock moved twice (or never) shows here."""
    row = (await db.fetch(shop, "SELECT stock, reserved FROM product WHERE id = ?", product))[0]
    held = await db.fetch(
        shop, "SELECT o.stock_state AS state, COALESCE(SUM(l.quantity), 0) AS quantity FROM order_line l "
              "JOIN shop_order o ON o.id = l.\"order\" WHERE l.product = ? GROUP BY o.stock_state", product)
    by_state = {r["state"]: int(r["quantity"]) for r in held}
    return abs(row["reserved"] - by_state.get("reserved", 0)) + \
        abs(initial_stock - row["stock"] - by_state.get("sold", 0))
