"""Helpers for HTTP tests: peek at the database the app under test uses."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from shop.cart.tables import Cart, CartLine
from shop.catalog.tables import Product
from tests.support import run_async


def run(query: Any) -> Any:
    """Run a query from a synchronous test (the app's own loop lives in the client's thread)."""

    async def awaited() -> Any:
        return await query

    return run_async(awaited)


async def _snapshot() -> dict[str, Any]:
    return {
        "carts": await Cart.count(),
        "lines": await CartLine.select(CartLine.cart, CartLine.product, CartLine.quantity).order_by(CartLine.id),
        "stock": await Product.select(Product.id, Product.stock, Product.reserved, Product.price_fils).order_by(Product.id),
    }


@pytest.fixture()
def db_snapshot() -> Callable[[], dict[str, Any]]:
    """Call it before and after a request to prove the request changed nothing."""
    return lambda: run(_snapshot())


@pytest.fixture()
def product(client) -> dict[str, Any]:
    """An in-stock demo product with at least 10 units sellable."""
    return sellable(10)[0]


def sellable(at_least: int, at_most: int = 10**9) -> list[dict[str, Any]]:
    """Active products whose sellable stock lies in [at_least, at_most], by id."""
    rows = run(Product.select().where(Product.active.eq(True)).order_by(Product.id))
    found = [r for r in rows if at_least <= r["stock"] - r["reserved"] <= at_most]
    assert found, "the demo catalogue has such products"
    return found
