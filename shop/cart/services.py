"""Cart rules: quantities are checked against sellable stock; totals are computed in fils here."""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shop.cart.tables import Cart, CartLine
from shop.catalog.services import CATEGORY_ACTIVE
from shop.catalog.tables import Product
from shop.db import MAX_ROW_ID, write_transaction
from shop.i18n import gettext as _
from shop.sql import Statement

MAX_LINE_QUANTITY = 99
_WHOLE_NUMBER = re.compile(r"^\s*\d{1,6}\s*$")


class CartError(ValueError):
    """A cart change the customer must be told about; nothing was changed."""


class UnknownProduct(CartError):
    """No active product with that id."""


def parse_quantity(raw: str | None, allow_zero: bool) -> int:
    """A whole number from 1 (or 0 to remove) to MAX_LINE_QUANTITY, else CartError."""
    if raw is None or not _WHOLE_NUMBER.match(raw):
        raise CartError(_("Quantity must be a whole number."))
    quantity = int(raw)
    lowest = 0 if allow_zero else 1
    if not lowest <= quantity <= MAX_LINE_QUANTITY:
        raise CartError(_("Quantity must be between %(low)s and %(high)s.", low=lowest, high=MAX_LINE_QUANTITY))
    return quantity


def parse_product_id(raw: str | int | None) -> int:
    text = str(raw if raw is not None else "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_ROW_ID:
        raise UnknownProduct(_("That product does not exist."))
    return int(text)


def new_cart_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(slots=True)
class CartView:
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_fils(self) -> int:
        return sum(line["line_total_fils"] for line in self.lines)

    @property
    def item_count(self) -> int:
        return sum(line["quantity"] for line in self.lines)

    @property
    def problems(self) -> list[dict[str, Any]]:
        """Lines that cannot be bought as they are (stock fell, product withdrawn)."""
        return [line for line in self.lines if line["problem"]]

    @property
    def is_empty(self) -> bool:
        return not self.lines


_CART_LINES = Statement(CartLine, """
    SELECT cart_line.quantity, product.id AS product_id, product.slug, product.name_en, product.name_ar,
           product.price_fils, product.image, product.stock, product.reserved, product.active
    FROM cart_line JOIN cart ON cart.id = cart_line.cart JOIN product ON product.id = cart_line.product
    WHERE cart.token = {} ORDER BY cart_line.id""")


async def load_cart(token: str | None) -> CartView:
    """The cart's lines with current prices and stock, in one query."""
    if not token:
        return CartView()
    rows = await _CART_LINES.rows(token)
    for row in rows:
        row["available"] = max(0, row["stock"] - row["reserved"])
        row["line_total_fils"] = row["price_fils"] * row["quantity"]
        if not row["active"]:
            row["problem"] = "withdrawn"
        elif row["quantity"] > row["available"]:
            row["problem"] = "short"
        else:
            row["problem"] = ""
    return CartView(rows)


# The number of items in the cart of token {}; also a subquery of every catalogue page's statement.
ITEM_COUNT_SQL = ("SELECT COALESCE(SUM(cart_line.quantity), 0) FROM cart_line "
                  "JOIN cart ON cart.id = cart_line.cart WHERE cart.token = {}")
_ITEM_COUNT = Statement(CartLine, f"SELECT ({ITEM_COUNT_SQL}) AS n")


async def item_count(token: str | None) -> int:
    if not token:
        return 0
    row = await _ITEM_COUNT.first(token)
    return int(row["n"]) if row else 0


async def _sellable_product(product_id: int) -> dict[str, Any]:
    product = await Product.select(Product.id, Product.name_en, Product.name_ar, Product.stock, Product.reserved).where(
        (Product.id == product_id) & Product.active.eq(True) & CATEGORY_ACTIVE.eq(True)
    ).first()
    if product is None:
        raise UnknownProduct(_("That product does not exist."))
    product["available"] = max(0, product["stock"] - product["reserved"])
    return product


def _not_enough(product: dict[str, Any], wanted: int) -> CartError:
    if product["available"] == 0:
        return CartError(_("Sorry, this product is out of stock."))
    return CartError(
        _("Only %(count)s left in stock; you asked for %(wanted)s.", count=product["available"], wanted=wanted)
    )


# The product as the customer may buy it, with what this cart already holds of it (one read).
_ADDING = Statement(Product, """
    SELECT product.id, product.name_en, product.name_ar, product.stock, product.reserved,
           cart.id AS cart_id, cart_line.quantity AS in_cart
    FROM product JOIN category ON category.id = product.category
    LEFT JOIN cart ON cart.token = {}
    LEFT JOIN cart_line ON cart_line.cart = cart.id AND cart_line.product = product.id
    WHERE product.id = {} AND product.active = {} AND category.active = {}""")
# A concurrent first add may create the cart (or the line) first: these then add to that one.
_NEW_CART = Statement(Cart, """
    INSERT INTO cart (token, created_at, updated_at) VALUES ({}, {}, {})
    ON CONFLICT (token) DO UPDATE SET updated_at = excluded.updated_at RETURNING id""")
_TOUCH_CART = Statement(Cart, "UPDATE cart SET updated_at = {} WHERE id = {}")
_ADD_LINE = Statement(CartLine, """
    INSERT INTO cart_line (cart, product, quantity) VALUES ({}, {}, {})
    ON CONFLICT (cart, product) DO UPDATE SET quantity = cart_line.quantity + excluded.quantity""")


async def add_item(token: str, product_id: int, quantity: int) -> dict[str, Any]:
    """Add `quantity` to the product's line. Raises UnknownProduct or CartError (stock/limit)."""
    product = await _ADDING.first(token, product_id, True, True)
    if product is None:
        raise UnknownProduct(_("That product does not exist."))
    product["available"] = max(0, product["stock"] - product["reserved"])
    wanted = quantity + (product["in_cart"] or 0)
    if wanted > product["available"]:
        raise _not_enough(product, wanted)
    if wanted > MAX_LINE_QUANTITY:
        raise CartError(_("Quantity must be between %(low)s and %(high)s.", low=1, high=MAX_LINE_QUANTITY))
    # Only now, with nothing left to refuse, does the cart row come into being: cart and line
    # in one transaction (one commit).
    now = datetime.now(timezone.utc)
    async with write_transaction(Cart._meta.db):
        if product["cart_id"] is None:
            cart_id = (await _NEW_CART.first(token, now, now))["id"]  # type: ignore[index]
        else:
            cart_id = product["cart_id"]
            await _TOUCH_CART.rows(now, cart_id)
        await _ADD_LINE.rows(cart_id, product_id, quantity)
    return product


async def set_quantity(token: str | None, product_id: int, quantity: int) -> None:
    """Set a line's quantity; 0 removes it. Raises UnknownProduct or CartError."""
    if not token:
        raise UnknownProduct(_("That product is not in your cart."))
    cart = await Cart.select(Cart.id).where(Cart.token == token).first()
    line = None
    if cart:
        line = await CartLine.select(CartLine.id).where(
            (CartLine.cart == cart["id"]) & (CartLine.product == product_id)
        ).first()
    if line is None:
        raise UnknownProduct(_("That product is not in your cart."))
    if quantity == 0:
        await CartLine.delete().where(CartLine.id == line["id"])
    else:
        product = await _sellable_product(product_id)
        if quantity > product["available"]:
            raise _not_enough(product, quantity)
        await CartLine.update({CartLine.quantity: quantity}).where(CartLine.id == line["id"])
    await _touch(cart["id"])


async def _touch(cart_id: int) -> None:
    await Cart.update({Cart.updated_at: datetime.now(timezone.utc)}).where(Cart.id == cart_id)
