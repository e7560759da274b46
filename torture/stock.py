"""Last items: many customers press Pay at once for the last few items; stock stays exact."""
from __future__ import annotations

import asyncio
import random

import httpx

from torture import db
from torture.figures import Figure, exactly
from torture.harness import Shop
from torture.registry import case
from torture.shopping import Customer, claim_product

LAST_ITEMS = 5
BUYERS = 50


async def _press_all(customers: list[Customer]) -> list[httpx.Response | None]:
    """Every customer presses Pay at the same moment; their answers (None: no answer at all)."""
    answers = await asyncio.gather(*(customer.press_pay() for customer in customers), return_exceptions=True)
    return [None if isinstance(answer, BaseException) else answer for answer in answers]


def _status(answer: httpx.Response | None) -> int:
    return 599 if answer is None else answer.status_code


@case("last-items", order=10)
async def last_items(shop: Shop) -> list[Figure]:
    rounds = shop.scaled(20, minimum=3)
    buyers = shop.scaled(BUYERS, minimum=20)
    product = await claim_product(shop, stock=0)
    wrong_rounds = oversold = negative = server_errors = 0
    # Those who lose a round keep their cart and press again in the next; winners are replaced.
    customers: list[Customer] = []
    try:
        for _ in range(rounds):
            # Five more on the shelf: earlier rounds' orders keep theirs reserved, so exactly five are sellable.
            await db.fetch(shop, "UPDATE product SET stock = stock + ? WHERE id = ?", LAST_ITEMS, product)
            before = await db.value(shop, "SELECT reserved FROM product WHERE id = ?", product)
            fresh = [Customer(shop) for _ in range(buyers - len(customers))]
            added = await asyncio.gather(*(customer.add(product, 1) for customer in fresh))
            assert all(answer.status_code < 400 for answer in added), "a customer could not fill the cart"
            customers += fresh
            codes = [_status(answer) for answer in await _press_all(customers)]
            server_errors += sum(code >= 500 for code in codes)
            winners = [customer for customer, code in zip(customers, codes) if code == 303]
            await asyncio.gather(*(customer.client.aclose() for customer in winners))
            customers = [customer for customer in customers if customer not in winners]
            row = (await db.fetch(shop, "SELECT stock, reserved FROM product WHERE id = ?", product))[0]
            wrong_rounds += row["reserved"] - before != LAST_ITEMS
            oversold += max(0, row["reserved"] - row["stock"])
            negative += int(row["stock"] < 0 or row["reserved"] < 0)
    finally:
        await asyncio.gather(*(customer.client.aclose() for customer in customers))
    mixed = await _mixed_carts(shop)
    return [
        exactly("last-items", f"rounds of {buyers} buyers not reserving exactly {LAST_ITEMS}", wrong_rounds, 0),
        exactly("last-items", "oversold items", oversold, 0),
        exactly("last-items", "negative stock", negative, 0),
        exactly("last-items", "5xx answers", server_errors, 0),
        *mixed,
    ]


async def _mixed_carts(shop: Shop) -> list[Figure]:
    """Carts of several of the same few products, added in random line order, paid at once:
    a lock-order mistake would deadlock (a 5xx); the stock sums must still hold."""
    rng = random.Random(6)
    products = [await claim_product(shop, stock=12) for _ in range(4)]
    buyers = shop.scaled(60, minimum=20)
    customers = [Customer(shop) for _ in range(buyers)]
    try:
        carts = []
        for _ in customers:
            lines = rng.sample(products, rng.randint(2, len(products)))
            rng.shuffle(lines)  # random line order: the shop must lock in its own order
            carts.append([(product, rng.randint(1, 3)) for product in lines])

        async def fill(customer: Customer, cart: list[tuple[int, int]]) -> None:
            for product, quantity in cart:
                await customer.add(product, quantity)

        await asyncio.gather(*(fill(customer, cart) for customer, cart in zip(customers, carts)))
        answers = await _press_all(customers)
        codes = [_status(answer) for answer in answers]
        # Half of those who got through pay, so sold and reserved both count.
        through = [(customer, answer) for customer, answer in zip(customers, answers) if _status(answer) == 303]
        await asyncio.gather(*(customer.pay_and_return(answer) for customer, answer in through[: len(through) // 2]))
    finally:
        await asyncio.gather(*(customer.client.aclose() for customer in customers))
    rows = await db.fetch(shop, "SELECT stock, reserved FROM product WHERE id IN (?, ?, ?, ?)", *products)
    # stock now = 12 - sold, so reserved + sold <= 12 is reserved <= stock.
    over = sum(max(0, row["reserved"] - row["stock"]) for row in rows)
    negative = sum(int(row["stock"] < 0 or row["reserved"] < 0) for row in rows)
    deadlocks = shop.log_path.read_text(errors="replace").lower().count("deadlock")
    return [
        exactly("last-items", "mixed carts: 5xx answers", sum(code >= 500 for code in codes), 0),
        exactly("last-items", "mixed carts: deadlocks in the log", deadlocks, 0),
        exactly("last-items", "mixed carts: reserved + sold over stock", over, 0),
        exactly("last-items", "mixed carts: negative stock", negative, 0),
    ]
