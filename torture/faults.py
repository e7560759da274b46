"""Provider faults, per provider: connection refused, an answer that never comes after the
provider accepted, 5xx, an HTML error page with 200, slow answers, a webhook never sent.

The customer always finds a way to pay once; the provider never charges twice; what the shop
shows catches up with the provider within two reconciliation passes; and while a provider
hangs, the rest of the shop stays fast."""
from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import ExitStack
from typing import Any

import httpx

from shop.payments.states import OPEN_PAYMENT, PaymentStatus
from tests.support import free_port, live_server
from torture import db
from torture.figures import Figure, at_most, exactly
from torture.harness import PROVIDER_TIMEOUT_S, PROVIDERS, RECONCILE_INTERVAL_S, Shop
from torture.registry import case
from torture.shopping import (ORDER_PATH, Customer, as_providers_see_them, claim_product, extra_creates,
                              leads_to_provider, provider_in_use, sandbox_stats, sandbox_of, set_controls, states,
                              timeout)

CASE = "provider-faults"
# The `fail_next` operation of each sandbox that the shop calls to start a payment (APS and
# KNET start in the browser), and the one it calls to ask about a payment.
CREATE_OP = {"checkout": "create", "checkout_setup": "setup", "tap": "create", "upayments": "charge"}
INQUIRY_OP = {"checkout": "details", "checkout_setup": "details", "tap": "retrieve", "upayments": "status",
              "aps": "check_status", "knet": "inquiry"}
# The API URL settings pointed at a closed port for the connection-refused run (KNET's one
# gateway URL also serves its payment page, so KNET has no API-only outage to simulate).
API_URL_SETTINGS = {"checkout": "SHOP_CHECKOUT_API_URL", "checkout_setup": "SHOP_CHECKOUT_API_URL",
                    "tap": "SHOP_TAP_API_URL", "upayments": "SHOP_UPAYMENTS_API_URL", "aps": "SHOP_APS_API_URL"}
HANG_MS = 2500  # longer than the shop's provider timeout: the call hangs until the shop gives up
SLOW_MS = 800  # slow, but inside the timeout
FAST_PAGE_P99_MS = 1000


async def buy_whatever_happens(customer: Customer, product: int) -> tuple[list[int], bool]:
    """Press Pay; when the provider failed, press the order page's button (reloading the page
    while it offers none) until a payment page comes; pay and come back. (Status codes seen,
    paid in the end)."""
    await customer.add(product, 1)
    answer: httpx.Response | None = await customer.press_pay()
    codes = [answer.status_code]
    order_path = ""
    deadline = time.monotonic() + 4 * RECONCILE_INTERVAL_S + 4
    while time.monotonic() < deadline:
        if answer is not None and leads_to_provider(answer):
            page = await customer.pay_and_return(answer)
            codes.append(page.status_code)
            return codes, await _settled_state(customer, page) == "paid"
        if answer is not None:
            location = answer.headers.get("location", "") if answer.status_code == 303 else ""
            if not ORDER_PATH.match(location):
                break
            order_path = location
        else:
            await asyncio.sleep(0.5)
        answer = await customer.pay_again(order_path)
        codes.append(answer.status_code if answer is not None else 0)
    return codes, False


async def _settled_state(customer: Customer, page: httpx.Response) -> str:
    """The order state once "verifying" is over: the page refreshes itself every 2 s until the
    webhook or the reconciler settles what the return could not confirm."""
    deadline = time.monotonic() + 2 * RECONCILE_INTERVAL_S + 2
    while states(page.text)[0] == "pending_payment" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        page = await customer.client.get(page.url)
    return states(page.text)[0]


@case(CASE, order=40)
async def provider_faults(shop: Shop) -> list[Figure]:
    product = await claim_product(shop, stock=100_000)
    codes: list[int] = []
    unpaid = 0
    p99s: list[float] = []
    for provider in PROVIDERS:
        async with provider_in_use(shop, provider) as sandbox:
            for controls, should_pay in _scenarios(provider, everything=shop.scale >= 0.2):
                await set_controls(sandbox, provider, **controls)
                async with Customer(shop) as customer:
                    seen, paid = await buy_whatever_happens(customer, product)
                codes += seen
                if paid != should_pay:
                    unpaid += 1
                    # Which purchase went wrong is what a reader of the figures needs to reproduce it.
                    print(f"#   provider-faults: {provider} {controls}: paid={paid}, expected {should_pay}; "
                          f"answers {seen}", flush=True)
            await set_controls(sandbox, provider)
            if provider in CREATE_OP and shop.scale >= 0.2 or provider == "checkout":
                p99s.append(await _p99_while_hanging(shop, sandbox, provider, product))
    refused_codes, refused_unpaid = await _connection_refused(shop, product)
    codes += refused_codes
    unpaid += refused_unpaid
    # Two reconciliation passes later, no attempt the provider has settled may still look open.
    await asyncio.sleep(2 * RECONCILE_INTERVAL_S + 1)
    behind, unasked = await _open_but_settled_at_provider(shop, product)
    one_per_sandbox = {sandbox_of(p): p for p in PROVIDERS}.values()
    double_charges = sum([extra_creates(await sandbox_stats(shop, p)) for p in one_per_sandbox])
    paid_twice = await db.value(
        shop, "SELECT COUNT(*) FROM (SELECT a.\"order\" FROM payment_attempt a WHERE a.status = 'captured' AND "
              "a.\"order\" IN (SELECT \"order\" FROM order_line WHERE product = ?) GROUP BY a.\"order\" "
              "HAVING COUNT(*) > 1) AS twice", product)
    return [
        exactly(CASE, "double charges (provider creates beyond one per idempotency key)", double_charges, 0),
        exactly(CASE, "orders captured twice", paid_twice, 0),
        exactly(CASE, f"attempts still open {2 * RECONCILE_INTERVAL_S} s after the provider settled them",
                behind, 0),
        exactly(CASE, "open attempts the providers could not be asked about", unasked, 0),
        exactly(CASE, "customers who could not pay in the end (or paid where KNET voids)", unpaid, 0),
        exactly(CASE, "5xx answers to customers", sum(code >= 500 for code in codes), 0),
        at_most(CASE, "p99 of /products while a provider hangs (ms)", round(max(p99s)), FAST_PAGE_P99_MS),
    ]


FAULTS = ("http_500", "html_200", "timeout", "accept_then_timeout")


def _scenarios(provider: str, everything: bool) -> list[tuple[dict[str, Any], bool]]:
    """(sandbox controls, whether the customer ends up paid) for one purchase each: every fault
    on the create call (where the shop makes one) and on the inquiry that checks the return,
    slow answers, and a notification never sent. `everything` False (CI) takes one fault on one
    call and one of the others, a different pair for each provider."""
    turn = PROVIDERS.index(provider)
    operations = [op for op in (CREATE_OP.get(provider), INQUIRY_OP[provider]) if op]
    hangs = [({"fail_next": {op: fault}, "api_delay_ms": HANG_MS}, True) for op in operations for fault in FAULTS]
    slow = [({"fail_next": {op: "accept_then_timeout"}, "api_delay_ms": SLOW_MS}, True) for op in operations]
    # KNET voids a payment whose notification it could not deliver: nobody pays, nobody is charged.
    dropped = [({"webhooks": "drop"}, provider != "knet")]
    if everything:
        return hangs + slow + dropped
    return [hangs[turn % len(hangs)], (slow if turn % 2 == 0 else dropped)[0]]


async def _p99_while_hanging(shop: Shop, sandbox: httpx.AsyncClient, provider: str, product: int) -> float:
    """p99 of catalogue pages while Pay presses hang on the provider until the shop gives up."""
    done = asyncio.Event()

    async def hang() -> None:
        while not done.is_set():
            await sandbox.post("/_control", json={"fail_next": {CREATE_OP[provider]: "timeout"},
                                                  "api_delay_ms": HANG_MS})
            async with Customer(shop) as customer:
                await customer.add(product, 1)
                await customer.press_pay()

    hangers = [asyncio.create_task(hang()) for _ in range(3)]
    await asyncio.sleep(0.5)
    timings: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=shop.base_url, timeout=timeout()) as browser:
            for _ in range(shop.scaled(150, minimum=30)):
                started = time.monotonic()
                (await browser.get("/products", params={"page": 2})).raise_for_status()
                timings.append((time.monotonic() - started) * 1000)
    finally:
        done.set()
        await asyncio.gather(*hangers)
        await set_controls(sandbox, provider)
    return statistics.quantiles(timings, n=100)[98]


async def _connection_refused(shop: Shop, product: int) -> tuple[list[int], int]:
    """A second shop process on the same database whose provider API URLs are a closed port: the
    customer presses Pay there (or comes back there), then pays with the shop once it is back."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = {name: dead for name in set(API_URL_SETTINGS.values())}
    codes: list[int] = []
    unpaid = 0
    with ExitStack() as stack:
        outage_url = stack.enter_context(live_server(
            shop.database_url, log_path=shop.work_dir / "faults-outage.log",
            SHOP_PROVIDER_TIMEOUT_S=str(PROVIDER_TIMEOUT_S),
            SHOP_RECONCILE_INTERVAL_S="0", **env))
        for provider in API_URL_SETTINGS if shop.scale >= 0.2 else ("checkout", "aps"):
            async with provider_in_use(shop, provider):
                async with Customer(shop, outage_url) as customer:
                    await customer.add(product, 1)
                    answer = await customer.press_pay()
                    codes.append(answer.status_code)
                    back = await customer.to_provider_and_back(answer) if leads_to_provider(answer) else None
                    if back is not None:
                        page = await customer.come_back(back)
                        codes.append(page.status_code)
                    # The outage is over: the same customer (same session) goes on at the healthy shop.
                    customer.use(shop.base_url)
                    location = answer.headers.get("location", "") if back is None else str(page.url)
                    order = ORDER_PATH.search(location)
                    paid = False
                    if order is not None:
                        deadline = time.monotonic() + 10
                        while not paid and time.monotonic() < deadline:
                            page = await customer.client.get(order.group(0))
                            paid = states(page.text)[0] == "paid"
                            if not paid and back is None:
                                again = await customer.pay_again(order.group(0))
                                if again is not None and leads_to_provider(again):
                                    paid = states((await customer.pay_and_return(again)).text)[0] == "paid"
                                    codes.append(200)
                            if not paid:
                                await asyncio.sleep(0.5)
                    if not paid:
                        unpaid += 1
                        print(f"#   provider-faults: {provider} API unreachable: not paid", flush=True)
    return codes, unpaid


async def _open_but_settled_at_provider(shop: Shop, product: int) -> tuple[int, int]:
    """Attempts the shop still shows open although the provider has a final answer for them
    (or says it never created them), asked through each provider's own adapter. (UPayments
    cannot be asked about a charge whose answer was lost; it may have sent the customer a
    payment link, so the shop rightly keeps that one open until the payment window is over.)"""
    open_attempts = await db.fetch(
        shop, "SELECT id, provider, provider_payment_id, merchant_reference FROM payment_attempt WHERE status IN "
              "('initiated', 'pending') AND \"order\" IN (SELECT \"order\" FROM order_line WHERE product = ?)", product)
    behind = unasked = 0
    for _, observation in await as_providers_see_them(shop, open_attempts):
        if observation is None:
            unasked += 1
        else:
            behind += observation.unknown_to_provider or (
                observation.status is not None and PaymentStatus(observation.status) not in OPEN_PAYMENT)
    return behind, unasked
