"""Double submit: one customer presses Pay 2 to 5 times at once; one order, one provider payment."""
from __future__ import annotations

import asyncio
import random

from torture import db
from torture.figures import Figure, exactly
from torture.harness import PROVIDERS, Shop
from torture.registry import case
from torture.shopping import (ORDER_PATH, Customer, claim_product, leads_to_provider, payments_created_everywhere,
                              provider_in_use, states)

CASE = "double-submit"


@case(CASE, order=20)
async def double_submit(shop: Shop) -> list[Figure]:
    trials = shop.scaled(100, minimum=len(PROVIDERS) * 2)
    rng = random.Random(2)
    product = await claim_product(shop, stock=10 * trials)
    created_before = await payments_created_everywhere(shop)
    server_errors = no_way_to_pay = not_paid = 0
    presses = 0
    # Every provider takes its share of the trials, a few sessions at a time.
    for index, provider in enumerate(PROVIDERS):
        share = trials // len(PROVIDERS) + (index < trials % len(PROVIDERS))
        async with provider_in_use(shop, provider):
            for start in range(0, share, 4):
                batch = [rng.randint(2, 5) for _ in range(min(4, share - start))]
                presses += sum(batch)
                results = await asyncio.gather(*(_trial(shop, product, count) for count in batch))
                for errors, paid, could_pay in results:
                    server_errors += errors
                    not_paid += not paid
                    no_way_to_pay += not could_pay
    created = await payments_created_everywhere(shop) - created_before
    orders = await db.value(shop, "SELECT COUNT(DISTINCT \"order\") FROM order_line WHERE product = ?", product)
    extra_attempts = await db.value(
        shop, "SELECT COUNT(*) FROM payment_attempt a JOIN order_line l ON l.\"order\" = a.\"order\" "
              "WHERE l.product = ? AND a.number > 1", product)
    return [
        exactly(CASE, f"provider payments created for {trials} trials ({presses} presses)", created, trials),
        exactly(CASE, "orders placed", orders, trials),
        exactly(CASE, "second payment attempts", extra_attempts, 0),
        exactly(CASE, "trials with no way to the provider", no_way_to_pay, 0),
        exactly(CASE, "trials not paid in the end", not_paid, 0),
        exactly(CASE, "5xx answers", server_errors, 0),
    ]


async def _trial(shop: Shop, product: int, presses: int) -> tuple[int, bool, bool]:
    """(5xx answers, paid, could reach the provider) for one session pressing Pay `presses` times."""
    async with Customer(shop) as customer:
        await customer.add(product, 1)
        answers = await asyncio.gather(*(customer.press_pay() for _ in range(presses)))
        errors = sum(answer.status_code >= 500 for answer in answers)
        onward = next((answer for answer in answers if leads_to_provider(answer)), None)
        if onward is None:
            # Every press landed on the order page (the provider was slow): its button resumes.
            order = next((a.headers["location"] for a in answers if ORDER_PATH.match(a.headers.get("location", ""))),
                         "")
            onward = await customer.pay_again(order) if order else None
        if onward is None or not leads_to_provider(onward):
            return errors, False, False
        page = await customer.pay_and_return(onward)
        return errors, states(page.text) == ("paid", "captured"), True
