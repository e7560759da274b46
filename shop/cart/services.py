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
from shop.i18n import gettext as _

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
    if not text.isascii() or not text.isdigit() or len(text) > 12:
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


# Built once (see catalog.services): on the checkout path, building these cost more than
# running the query.
_LINE_COLUMNS = (
    CartLine.quantity,
    CartLine.product.id.as_alias("product_id"),
    CartLine.product.slug.as_alias("slug"),
    CartLine.product.name_en.as_alias("name_en"),
    CartLine.product.name_ar.as_alias("name_ar"),
    CartLine.product.price_fils.as_alias("price_fils"),
    CartLine.product.image.as_alias("image"),
    CartLine.product.stock.as_alias("stock"),
    CartLine.product.reserved.as_alias("reserved"),
    CartLine.product.active.as_alias("active"),
)
CART_TOKEN = CartLine.cart.token


async def load_cart(token: str | None) -> CartView:
    """The cart's lines with current prices and stock, in one query."""
    if not token:
        return CartView()
    rows = await CartLine.select(*_LINE_COLUMNS).where(CART_TOKEN == token).order_by(CartLine.id)
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


async def item_count(token: str | None) -> int:
    if not token:
        return 0
    rows = await CartLine.raw(f"SELECT ({ITEM_COUNT_SQL}) AS n", token)
    return int(rows[0]["n"]) if rows else 0


async def _sellable_product(product_id: int) -> dict[str, Any]:
    product = await Product.select(Product.id, Product.name_en, Product.name_ar, Product.stock, Product.reserved).where(
        (Product.id == product_id) & Product.active.eq(True) & CATEGORY_ACTIVE.eq(True)
    ).first()
    if product is None:
        raise UnknownProduct(_("That product does not exist."))
    product["available"] = max(0, product["stock"] - product["reserved"])
    return product


async def _cart_id(token: str) -> int:
    """The cart row for a token, created on first use (safe if two requests race)."""
    found = await Cart.select(Cart.id).where(Cart.token == token).first()
    if found:
        return found["id"]
    await Cart.insert(Cart(token=token)).on_conflict(action="DO NOTHING")
    created = await Cart.select(Cart.id).where(Cart.token == token).first()
    assert created is not None
    return created["id"]


def _not_enough(product: dict[str, Any], wanted: int) -> CartError:
    if product["available"] == 0:
        return CartError(_("Sorry, this product is out of stock."))
    return CartError(
        _("Only %(count)s left in stock; you asked for %(wanted)s.", count=product["available"], wanted=wanted)
    )


async def add_item(token: str, product_id: int, quantity: int) -> dict[str, Any]:
    """Add `quantity` to the product's line. Raises UnknownProduct or CartError (stock/limit)."""
    product = await _sellable_product(product_id)
    cart = await Cart.select(Cart.id).where(Cart.token == token).first()
    line = None
    if cart:
        line = await CartLine.select(CartLine.id, CartLine.quantity).where(
            (CartLine.cart == cart["id"]) & (CartLine.product == product_id)
        ).first()
    wanted = quantity + (line["quantity"] if line else 0)
    if wanted > product["available"]:
        raise _not_enough(product, wanted)
    if wanted > MAX_LINE_QUANTITY:
        raise CartError(_("Quantity must be between %(low)s and %(high)s.", low=1, high=MAX_LINE_QUANTITY))
    # Only now, with nothing left to refuse, does the cart row come into being.
    cart_id = cart["id"] if cart else await _cart_id(token)
    if line:
        await CartLine.update({CartLine.quantity: CartLine.quantity + quantity}).where(CartLine.id == line["id"])
    else:
        await _insert_line(cart_id, product_id, quantity)
    await _touch(cart_id)
    return product


async def _insert_line(cart_id: int, product_id: int, quantity: int) -> None:
    # A concurrent add may have created the line first: the unique index makes that a no-op,
    # and the quantity is then added to the existing line.
    inserted = await CartLine.insert(CartLine(cart=cart_id, product=product_id, quantity=quantity)).on_conflict(
        action="DO NOTHING"
    ).returning(CartLine.id)
    if not inserted:
        await CartLine.update({CartLine.quantity: CartLine.quantity + quantity}).where(
            (CartLine.cart == cart_id) & (CartLine.product == product_id)
        )


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
