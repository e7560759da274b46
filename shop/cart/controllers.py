"""Cart pages and forms. htmx gets fragments; plain forms get a redirect (POST/redirect/GET)."""
from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Template

from shop.cart import services
from shop.cart.services import CartError, UnknownProduct
from shop.i18n import gettext as _, localized
from shop.web.page_cache import layout_page
from shop.web.pages import CART_SESSION_KEY, cart_token, flash, is_htmx, kept_layouts, page_context, see_other


def _fragment_name(request: Request) -> str:
    # The cart page swaps the whole cart; every other page swaps the mini-cart beside it.
    return "cart/_cart.html" if request.headers.get("hx-target") == "cart" else "cart/_mini_cart.html"


async def _cart_response(request: Request, message: str = "", error: str = "") -> Response:
    cart = await services.load_cart(cart_token(request))
    if is_htmx(request):
        context = {"cart": cart, "cart_count": cart.item_count, "message": message, "error": error, "oob": True}
        return Template(_fragment_name(request), context=context, status_code=422 if error else 200)
    if error:
        context = await page_context(request, cart=cart, error=error)
        return Template("cart/cart.html", context=context, status_code=422)
    if message:
        flash(request, message)
    return see_other("/cart")


class CartController(Controller):
    path = "/cart"

    @get("/", name="cart")
    async def show(self, request: Request) -> Response[bytes]:
        cart = await services.load_cart(cart_token(request))
        context = await page_context(request, cart_count=cart.item_count, cart=cart)
        return layout_page(request, kept_layouts(request), "cart/cart.html", "cart/_cart_lines.html", context)

    @post("/items", name="cart-add", status_code=200)
    async def add(self, request: Request) -> Response:
        form = await request.form()
        try:
            product_id = services.parse_product_id(form.get("product_id"))
            quantity = services.parse_quantity(form.get("quantity", "1"), allow_zero=False)
            token = cart_token(request)
            if token is None:
                token = services.new_cart_token()
                request.session[CART_SESSION_KEY] = token
            product = await services.add_item(token, product_id, quantity)
        except UnknownProduct as exc:
            raise NotFoundException(str(exc)) from exc
        except CartError as exc:
            return await _cart_response(request, error=str(exc))
        return await _cart_response(request, message=_("Added %(name)s to your cart.", name=localized(product, "name")))

    @post("/items/{product_id:str}", name="cart-update", status_code=200)
    async def update(self, request: Request, product_id: FromPath[str]) -> Response:
        form = await request.form()
        try:
            pid = services.parse_product_id(product_id)
            quantity = services.parse_quantity(form.get("quantity"), allow_zero=True)
            await services.set_quantity(cart_token(request), pid, quantity)
        except UnknownProduct as exc:
            raise NotFoundException(str(exc)) from exc
        except CartError as exc:
            return await _cart_response(request, error=str(exc))
        return await _cart_response(request, message=_("Your cart was updated."))
