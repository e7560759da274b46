"""Concurrent checkouts for the last units: never oversold, never below zero, no errors."""
import asyncio
import random

import pytest

from shop.cart.services import add_item, new_cart_token
from shop.checkout.forms import validate_checkout
from shop.orders.services import OrderError, place_order
from tests.integration.conftest import make_product, product_row
from tests.unit.test_forms import VALID

pytestmark = pytest.mark.asyncio
DETAILS = validate_checkout(VALID)[0]


async def checkout_cart(token: str) -> str:
    try:
        await place_order(token, DETAILS, "en", "checkout")
    except OrderError:
        return "short"
    return "placed"


async def test_fifty_checkouts_for_the_last_five_units() -> None:
    product = await make_product(stock=5)
    tokens = []
    for _ in range(50):
        token = new_cart_token()
        await add_item(token, product["id"], 1)
        tokens.append(token)
    results = await asyncio.gather(*[checkout_cart(t) for t in tokens], return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert results.count("placed") == 5 and results.count("short") == 45
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (5, 5)


async def test_mixed_multi_line_carts_in_random_order_never_oversell() -> None:
    products = [await make_product(stock=4) for _ in range(3)]
    tokens = []
    for _ in range(20):
        token = new_cart_token()
        for product in random.sample(products, k=random.randint(1, 3)):
            await add_item(token, product["id"], random.randint(1, 2))
        tokens.append(token)
    results = await asyncio.gather(*[checkout_cart(t) for t in tokens], return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    for product in products:
        row = await product_row(product["id"])
        assert 0 <= row["reserved"] <= row["stock"] == 4


async def test_the_same_cart_twice_at_once_makes_one_order() -> None:
    product = await make_product(stock=5)
    token = new_cart_token()
    await add_item(token, product["id"], 2)
    placed = await asyncio.gather(*[place_order(token, DETAILS, "en", "checkout") for _ in range(5)])
    assert len({p.order["id"] for p in placed}) == 1
    assert sum(p.created for p in placed) == 1
    assert (await product_row(product["id"]))["reserved"] == 2


async def test_a_reference_already_taken_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Order references are random (a billion a day): a shop taking thousands of orders a day
    draws one already taken now and then. That customer's Pay press failed with a 500."""
    from shop.orders import services

    product = await make_product(stock=5)
    first_token, second_token = new_cart_token(), new_cart_token()
    await add_item(first_token, product["id"], 1)
    await add_item(second_token, product["id"], 2)
    first = (await place_order(first_token, DETAILS, "en", "checkout")).order
    draws = iter([first["reference"], first["reference"], "DM991231FRESH2"])
    monkeypatch.setattr(services, "new_reference", lambda now=None: next(draws))
    second = await place_order(second_token, DETAILS, "en", "checkout")
    assert second.created and second.order["reference"] == "DM991231FRESH2"
    assert second.order["id"] != first["id"] and second.order["cart_token"] == second_token
    row = await product_row(product["id"])
    assert (row["stock"], row["reserved"]) == (5, 3)  # reserved once for each order, not per try


async def test_a_reference_never_free_is_an_error_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from shop.db import is_unique_violation
    from shop.orders import services

    product = await make_product(stock=5)
    first_token, second_token = new_cart_token(), new_cart_token()
    await add_item(first_token, product["id"], 1)
    await add_item(second_token, product["id"], 1)
    taken = (await place_order(first_token, DETAILS, "en", "checkout")).order["reference"]
    monkeypatch.setattr(services, "new_reference", lambda now=None: taken)
    with pytest.raises(Exception) as refused:
        await place_order(second_token, DETAILS, "en", "checkout")
    assert is_unique_violation(refused.value)
    assert (await product_row(product["id"]))["reserved"] == 1
