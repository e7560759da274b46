"""All stock arithmetic, done by the database so concurrent checkouts can never oversell.

`reserved` is held for unpaid orders; sellable = stock - reserved. Lines are always touched
in product-id order so two multi-line checkouts cannot deadlock each other.
"""
from __future__ import annotations

from typing import Iterable

from shop.catalog.tables import Product
from shop.sql import Statement

_RESERVE = Statement(Product, "UPDATE product SET reserved = reserved + {} "
                              "WHERE id = {} AND active = {} AND stock - reserved >= {} RETURNING id")
_RELEASE = Statement(Product, "UPDATE product SET reserved = reserved - {} WHERE id = {}")
_SELL_RESERVED = Statement(Product, "UPDATE product SET stock = stock - {}, reserved = reserved - {} WHERE id = {}")
_SELL_UNRESERVED = Statement(Product, "UPDATE product SET stock = stock - {} "
                                      "WHERE id = {} AND stock - reserved >= {} RETURNING id")
_RESTOCK = Statement(Product, "UPDATE product SET stock = stock + {} WHERE id = {}")


def _by_product(lines: Iterable[dict]) -> list[tuple[int, int]]:
    return sorted((line["product"], line["quantity"]) for line in lines if line.get("product"))


async def reserve(lines: Iterable[dict]) -> int | None:
    """Reserve every line, or return the id of the first product that is short.

    Must run inside a transaction: the caller rolls back the partial reservation."""
    for product_id, quantity in _by_product(lines):
        rows = await _RESERVE.rows(quantity, product_id, True, quantity)
        if not rows:
            return product_id
    return None


async def release(lines: Iterable[dict]) -> None:
    """Give back what `reserve` held (order failed, expired or cancelled)."""
    for product_id, quantity in _by_product(lines):
        await _RELEASE.rows(quantity, product_id)


async def sell_reserved(lines: Iterable[dict]) -> None:
    """The order is paid: what was reserved leaves the shelf."""
    for product_id, quantity in _by_product(lines):
        await _SELL_RESERVED.rows(quantity, quantity, product_id)


async def sell_unreserved(lines: Iterable[dict]) -> list[int]:
    """A capture arrived after the reservation was released: sell what is still there.

    Returns the product ids that could not be sold (stock gone), for staff to resolve."""
    short = []
    for product_id, quantity in _by_product(lines):
        rows = await _SELL_UNRESERVED.rows(quantity, product_id, quantity)
        if not rows:
            short.append(product_id)
    return short


async def restock(lines: Iterable[dict]) -> None:
    """Sold items that never left (a paid order cancelled before dispatch) go back on the shelf."""
    for product_id, quantity in _by_product(lines):
        await _RESTOCK.rows(quantity, product_id)
