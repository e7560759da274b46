"""Placing orders from carts: snapshot the lines, reserve stock, all in one transaction."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from shop.cart.services import CART_TOKEN
from shop.cart.tables import Cart, CartLine
from shop.checkout.forms import CheckoutDetails
from shop.db import is_unique_violation, write_transaction
from shop.i18n import gettext as _
from shop.orders import stock
from shop.orders.tables import Order, OrderLine
from shop.vendors.services import vendor_columns, vendor_snapshot

REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: read over the phone


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


async def order_for_cart(cart_token: str) -> dict[str, Any] | None:
    return await Order.select().where(Order.cart_token == cart_token).first()


async def place_order(cart_token: str, details: CheckoutDetails, language: str, provider: str) -> PlacedOrder:
    """Turn the cart into an order with its stock reserved. Idempotent per cart.

    Raises OrderError when the cart is empty or a product is short (nothing is changed)."""
    existing = await order_for_cart(cart_token)
    if existing:
        return PlacedOrder(existing, created=False)
    engine = Order._meta.db
    try:
        async with write_transaction(engine):
            order = await _place(cart_token, details, language, provider)
    except Exception as exc:
        if not (is_unique_violation(exc) or isinstance(exc, CartSpent)):
            raise
        # Another request placed this cart's order a moment ago: that one stands.
        existing = await order_for_cart(cart_token)
        if existing is None:
            raise
        return PlacedOrder(existing, created=False)
    return PlacedOrder(order, created=True)


# Built once (see cart.services._LINE_COLUMNS).
_ORDERED_COLUMNS = (
    CartLine.id,
    CartLine.quantity,
    CartLine.product.as_alias("product"),
    CartLine.product.name_en.as_alias("name_en"),
    CartLine.product.name_ar.as_alias("name_ar"),
    CartLine.product.price_fils.as_alias("price_fils"),
    *vendor_columns(CartLine.product.vendor),
)


async def _place(cart_token: str, details: CheckoutDetails, language: str, provider: str) -> dict[str, Any]:
    lines = await CartLine.select(*_ORDERED_COLUMNS).where(CART_TOKEN == cart_token).order_by(CartLine.product)
    if not lines:
        # Empty because a concurrent press just turned it into an order? Then that order stands.
        if await order_for_cart(cart_token):
            raise CartSpent()
        raise OrderError(_("Your cart is empty."))
    short = await stock.reserve(lines)
    if short is not None:
        name = next((line for line in lines if line["product"] == short), {})
        raise OrderError(
            _("Sorry, %(name)s is no longer available in the quantity you chose. Please update your cart.",
              name=name.get("name_ar" if language == "ar" else "name_en", ""))
        )
    total = sum(line["price_fils"] * line["quantity"] for line in lines)
    now = datetime.now(timezone.utc)
    inserted = await Order.insert(
        Order(
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
    ).returning(Order.id)
    order_id = inserted[0]["id"]
    await OrderLine.insert(
        *[
            OrderLine(
                order=order_id,
                product=line["product"],
                name_en=line["name_en"],
                name_ar=line["name_ar"],
                unit_price_fils=line["price_fils"],
                quantity=line["quantity"],
                line_total_fils=line["price_fils"] * line["quantity"],
                **vendor_snapshot(line),
            )
            for line in lines
        ]
    )
    # The cart is spent: its lines now live in the order.
    cart = await Cart.select(Cart.id).where(Cart.token == cart_token).first()
    if cart:
        await CartLine.delete().where(CartLine.cart == cart["id"])
    order = await Order.select().where(Order.id == order_id).first()
    assert order is not None
    return order


async def order_lines(order_id: int) -> list[dict[str, Any]]:
    return await OrderLine.select().where(OrderLine.order == order_id).order_by(OrderLine.id)


async def order_by_token(public_token: str) -> dict[str, Any] | None:
    if not public_token or len(public_token) > 64:
        return None
    return await Order.select().where(Order.public_token == public_token).first()
