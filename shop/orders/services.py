"""Placing orders from carts: snapshot the lines, reserve stock, all in one transaction."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from shop.cart.tables import CartLine
from shop.checkout.forms import CheckoutDetails
from shop.db import is_unique_violation, write_transaction
from shop.i18n import gettext as _
from shop.orders import stock
from shop.orders.tables import Order, OrderLine
from shop.sql import Insert, Statement
from shop.vendors.services import vendor_snapshot

REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: read over the phone
# A day has 32^6 (about a billion) references: a shop taking 10,000 orders in a day draws one
# already taken about once in 20 days, and then draws again.
REFERENCE_TRIES = 5


class OrderError(ValueError):
    """The order cannot be placed as asked; the message is for the customer."""


class CartSpent(Exception):
    """The cart became an order in a concurrent request (internal: that order is returned)."""


def new_reference(now: datetime | None = None) -> str:
    """Human reference, also the KNET track id stem: "DM", the date, 6 letters or digits (DM261125NA27L2)."""
    day = (now or datetime.now(timezone.utc)).strftime("%y%m%d")
    return f"DM{day}{''.join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))}"


def new_public_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    order: dict[str, Any]
    created: bool  # False when this cart already had an order (a second Pay press)


_ORDER_FOR_CART = Statement(Order, "SELECT * FROM shop_order WHERE cart_token = {}")


async def order_for_cart(cart_token: str) -> dict[str, Any] | None:
    return await _ORDER_FOR_CART.first(cart_token)


async def place_order(cart_token: str, details: CheckoutDetails, language: str, provider: str,
                      check_total: Callable[[int], None] | None = None) -> PlacedOrder:
    """Turn the cart into an order with its stock reserved. Idempotent per cart.

    `check_total` may refuse the total (raising OrderError) before anything is kept.
    Raises OrderError when the cart is empty or a product is short (nothing is changed)."""
    existing = await order_for_cart(cart_token)
    if existing:
        return PlacedOrder(existing, created=False)
    engine = Order._meta.db
    tries = 0
    while True:
        tries += 1
        try:
            async with write_transaction(engine):
                order = await _place(cart_token, details, language, provider, check_total)
            return PlacedOrder(order, created=True)
        except Exception as exc:
            if not (is_unique_violation(exc) or isinstance(exc, CartSpent)):
                raise
            # Another request placed this cart's order a moment ago: that one stands.
            existing = await order_for_cart(cart_token)
            if existing is not None:
                return PlacedOrder(existing, created=False)
            # Else the reference drawn was taken: everything was rolled back; draw another.
            if isinstance(exc, CartSpent) or tries == REFERENCE_TRIES:
                raise


# The cart's lines as the order will keep them, in product order (stock is locked in that order).
_CART_LINES = Statement(CartLine, """
    SELECT cart_line.quantity, cart_line.product, product.name_en, product.name_ar, product.price_fils,
           vendor.id AS vendor_id, vendor.name AS vendor_name, vendor.iban AS vendor_iban,
           vendor.commission_bps AS vendor_commission_bps
    FROM cart_line JOIN cart ON cart.id = cart_line.cart JOIN product ON product.id = cart_line.product
    LEFT JOIN vendor ON vendor.id = product.vendor
    WHERE cart.token = {} ORDER BY cart_line.product""")
_SPEND_CART = Statement(CartLine, "DELETE FROM cart_line WHERE cart IN (SELECT id FROM cart WHERE token = {})")
_ORDER = Insert(Order, returning="*")
_ORDER_LINE = Insert(OrderLine)


async def _place(cart_token: str, details: CheckoutDetails, language: str, provider: str,
                 check_total: Callable[[int], None] | None) -> dict[str, Any]:
    lines = await _CART_LINES.rows(cart_token)
    if not lines:
        # Empty because a concurrent press just turned it into an order? Then that order stands.
        if await order_for_cart(cart_token):
            raise CartSpent()
        raise OrderError(_("Your cart is empty."))
    total = sum(line["price_fils"] * line["quantity"] for line in lines)
    if check_total is not None:
        check_total(total)
    short = await stock.reserve(lines)
    if short is not None:
        name = next((line for line in lines if line["product"] == short), {})
        raise OrderError(
            _("Sorry, %(name)s is no longer available in the quantity you chose. Please update your cart.",
              name=name.get("name_ar" if language == "ar" else "name_en", ""))
        )
    now = datetime.now(timezone.utc)
    order = await _ORDER.row(
        public_token=new_public_token(),
        reference=new_reference(now),
        cart_token=cart_token,
        status="pending_payment",
        stock_state="reserved",
        customer_name=details.name,
        email=details.email,
        phone=details.phone,
        governorate=details.governorate,
        area=details.area,
        block=details.block,
        street=details.street,
        avenue=details.avenue,
        building=details.building,
        floor=details.floor,
        apartment=details.apartment,
        notes=details.notes,
        language=language,
        provider=provider,
        total_fils=total,
        currency="KWD",
        created_at=now,
        updated_at=now,
    )
    for line in lines:
        await _ORDER_LINE.row(
            order=order["id"],
            product=line["product"],
            name_en=line["name_en"],
            name_ar=line["name_ar"],
            unit_price_fils=line["price_fils"],
            quantity=line["quantity"],
            line_total_fils=line["price_fils"] * line["quantity"],
            **vendor_snapshot(line),
        )
    # The cart is spent: its lines now live in the order.
    await _SPEND_CART.rows(cart_token)
    return order


async def order_lines(order_id: int) -> list[dict[str, Any]]:
    return await OrderLine.select().where(OrderLine.order == order_id).order_by(OrderLine.id)


async def order_by_token(public_token: str) -> dict[str, Any] | None:
    if not public_token or len(public_token) > 64:
        return None
    return await Order.select().where(Order.public_token == public_token).first()
