"""Crashes: a worker killed with SIGKILL at random points of checkout and webhook handling,
restarted by its supervisor, then one reconciliation pass (`shop reconcile`): no money taken
for an unpaid order, no provider news lost, no receipt sent twice, stock exact."""
from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

import httpx

from shop.payments.states import CAPTURED_PAYMENT, FAILED_PAYMENT, PaymentStatus
from tests.support import ROOT, free_port, run_shop, shop_env, stop_process_group
from torture import db
from torture.figures import Figure, at_least, exactly
from torture.harness import PROVIDER_TIMEOUT_S, PROVIDERS, Shop
from torture.registry import case
from torture.shopping import (APPROVED_CARD, DECLINED_CARD, Customer, WalkError, as_providers_see_them,
                              claim_product, extra_emails, sandbox_of, set_active_provider, set_controls,
                              stock_drift, timeout)

CASE = "crashes"
PAID_ORDER = ("paid", "fulfilled", "partially_refunded", "refunded")
SHOPPERS = 6  # customers buying at once against the crashing shop


class CrashingShop:
    """`shop serve --workers 2` on the shop's database: uvicorn replaces a worker that dies."""

    def __init__(self, shop: Shop) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = shop_env(shop.database_url, SHOP_PUBLIC_URL=self.url, SHOP_PROVIDER_TIMEOUT_S=str(PROVIDER_TIMEOUT_S),
                       SHOP_RECONCILE_INTERVAL_S="0", SHOP_MEDIA_DIR=str(shop.work_dir / "media"))
        self.log = (shop.work_dir / "crashing-shop.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shop", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    async def wait_ready(self, workers: int = 2, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=1) as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200 and \
                            len(self.workers()) >= workers:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("the crashing shop did not come up")

    def kill_a_worker(self, rng: random.Random) -> bool:
        workers = self.workers()
        if not workers:
            return False
        os.kill(rng.choice(workers), signal.SIGKILL)
        return True

    def stop(self) -> None:
        stop_process_group(self.process)
        self.log.close()


async def _shopper(crashing: CrashingShop, shop: Shop, product: int, rng: random.Random,
                   until: Callable[[], float]) -> None:
    """Buys again and again until `until()`; a request cut by a crash ends that purchase there, as
    a customer would give up. Some come back from the provider, some never do; some are declined."""
    while time.monotonic() < until():
        async with Customer(shop, crashing.url) as customer:
            try:
                await customer.add(product, 1)
                started = await customer.press_pay()
                card = DECLINED_CARD if rng.random() < 0.2 else APPROVED_CARD
                back = await customer.to_provider_and_back(started, card)
                if rng.random() < 0.6:
                    await customer.come_back(back)
            except (httpx.HTTPError, WalkError):
                await asyncio.sleep(0.2)


async def _try(call: Awaitable[object]) -> None:
    """A control call that may land on a worker being killed; the next kill point sets it again."""
    try:
        await call
    except httpx.HTTPError:
        pass


@case(CASE, order=60)
async def crashes(shop: Shop) -> list[Figure]:
    rng = random.Random(9)
    kill_points = shop.scaled(50, minimum=3)
    stock = 100_000
    product = await claim_product(shop, stock)
    crashing = CrashingShop(shop)
    kills = 0
    try:
        await crashing.wait_ready()
        # Shoppers never stop; a killer takes a worker down every so often, wherever it is, and
        # the provider changes at each kill point so every provider's journey gets cut somewhere.
        until = time.monotonic() + 3600
        shoppers = [asyncio.create_task(_shopper(crashing, shop, product, rng, lambda: until)) for _ in range(SHOPPERS)]
        try:
            for point in range(kill_points):
                provider = PROVIDERS[point % len(PROVIDERS)]
                await set_active_provider(shop, provider)
                async with httpx.AsyncClient(base_url=f"{crashing.url}/sandbox/{sandbox_of(provider)}",
                                             timeout=timeout()) as sandbox:
                    await _try(set_controls(sandbox, provider))
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                kills += crashing.kill_a_worker(rng)
                if not crashing.workers():
                    await crashing.wait_ready(workers=1)
        finally:
            until = 0
            await asyncio.gather(*shoppers)
        await crashing.wait_ready()
    finally:
        crashing.stop()
        await set_active_provider(shop, "checkout")
    # One reconciliation pass by hand, as an operator would after a crash.
    reconciled = run_shop(shop.database_url, "reconcile", check=False, SHOP_PUBLIC_URL=shop.base_url,
                          SHOP_PROVIDER_TIMEOUT_S=str(PROVIDER_TIMEOUT_S))
    unpaid_money, lost, unasked = await _against_the_providers(shop, product)
    duplicate_emails = await extra_emails(shop, product)
    drift = await stock_drift(shop, product, stock)
    orders = await db.value(shop, "SELECT COUNT(DISTINCT \"order\") FROM order_line WHERE product = ?", product)
    return [
        at_least(CASE, f"workers killed with SIGKILL ({orders} orders under way)", kills, kill_points),
        exactly(CASE, "reconciliation pass failed", int(reconciled.returncode != 0), 0),
        exactly(CASE, "money captured but order unpaid", unpaid_money, 0),
        exactly(CASE, "lost events (provider settled, shop still open)", lost, 0),
        exactly(CASE, "duplicate emails", duplicate_emails, 0),
        exactly(CASE, "stock drift (reserved or sold not matching the orders)", drift, 0),
        exactly(CASE, "attempts the providers could not be asked about", unasked, 0),
    ]


async def _against_the_providers(shop: Shop, product: int) -> tuple[int, int, int]:
    """Each attempt as its provider sees it, against the shop's view: (money taken for an unpaid
    order, provider final but shop still open, attempts the provider could not be asked about)."""
    attempts = await db.fetch(
        shop, "SELECT a.provider, a.provider_payment_id, a.merchant_reference, a.status, o.status AS order_status "
              "FROM payment_attempt a JOIN shop_order o ON o.id = a.\"order\" WHERE a.\"order\" IN "
              "(SELECT \"order\" FROM order_line WHERE product = ?)", product)
    unpaid_money = lost = unasked = 0
    for attempt, seen in await as_providers_see_them(shop, attempts):
        if seen is None:
            unasked += 1
        elif seen.status is not None:
            if seen.status in CAPTURED_PAYMENT and attempt["order_status"] not in PAID_ORDER:
                unpaid_money += 1
            final = seen.status in CAPTURED_PAYMENT or seen.status in FAILED_PAYMENT
            lost += final and PaymentStatus(attempt["status"]) in (PaymentStatus.INITIATED, PaymentStatus.PENDING)
    return unpaid_money, lost, unasked
